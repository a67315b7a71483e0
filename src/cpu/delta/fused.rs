//! The `--parallel` path's GDN layer: the convolution, SiLU, L2 norms, gates, the delta rule
//! and the gated output norm fused per key head and its value heads, groups split across the
//! thread pool.
//!
//! A job is one key head `kh` and the value heads that read it (`v_heads / k_heads` of them):
//! it convolves exactly the channels it needs (q and k of `kh`, v of its value heads), so the
//! query and key are computed once for the group, and it owns disjoint parts of the
//! convolution state, the recurrent state and the output. Each recurrent state is read and
//! written once per call (per row block and token tile, see [`super::rows`]). A job's
//! arithmetic depends only on its group, so any thread count gives the same bits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::cpu::features::{cpu_features, Isa};
use crate::cpu::pool::ThreadPool;
use crate::cpu::shared::SharedMut;

use super::chunked::{self, ChunkRun, ChunkScratch};
use super::rows::{self, HeadRun};
use super::shape::{len, GdnInputs, GdnShape, GdnState, GdnWeights, ShapeError};
use super::simd::{Portable, Simd};
use super::standard::softplus;
use super::vmath;

/// How a run of several tokens goes through the recurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefill {
    /// Token by token; each block of state rows stays in cache over `tile` tokens.
    Sequential { tile: usize },
    /// Chunks of `size` tokens in the closed (WY) form llama.cpp's graph fallback uses: one
    /// triangular solve per chunk, the state read and written once per chunk. One-token calls
    /// (decode) always take the sequential form.
    Chunked { size: usize },
}

/// Choices of [`layer`] that change speed (and, for [`Prefill`], the last bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FusedOptions {
    pub prefill: Prefill,
    /// SIMD path; must be one this CPU supports.
    pub isa: Isa,
}

impl Default for FusedOptions {
    fn default() -> Self {
        FusedOptions {
            prefill: DEFAULT_PREFILL,
            isa: cpu_features().best(),
        }
    }
}

/// The default prefill form (measured: see the notes of [`super`]).
pub const DEFAULT_PREFILL: Prefill = Prefill::Sequential { tile: 16 };

/// A layer's parameters, laid out for the fused kernels (prepared once per model).
#[derive(Debug, Clone)]
pub struct FusedWeights {
    shape: GdnShape,
    /// The convolution taps transposed to `[K][conv_dim]`, so that a tap runs along channels.
    taps: Vec<f32>,
    dt_bias: Vec<f32>,
    a: Vec<f32>,
    norm: Vec<f32>,
}

impl FusedWeights {
    pub fn new(shape: &GdnShape, w: &GdnWeights<'_>) -> Result<Self, ShapeError> {
        w.check(shape)?;
        let (cd, k) = (shape.conv_dim(), shape.conv_kernel);
        let mut taps = vec![0.0; cd * k];
        for c in 0..cd {
            for i in 0..k {
                taps[i * cd + c] = w.conv[c * k + i];
            }
        }
        Ok(FusedWeights {
            shape: *shape,
            taps,
            dt_bias: w.dt_bias.to_vec(),
            a: w.a.to_vec(),
            norm: w.norm.to_vec(),
        })
    }

    pub fn shape(&self) -> &GdnShape {
        &self.shape
    }
}

/// Buffers of [`layer`], one set per pool thread, reused across calls.
#[derive(Debug, Default)]
pub struct FusedScratch {
    threads: Vec<Mutex<GroupScratch>>,
}

/// One job's buffers: its group's convolved q and k (`[T][S]`), v (`[T][ratio * S]`), and per
/// token `k · q`, log-decay, decay, beta and one head's output `[T][S]`.
#[derive(Debug, Default)]
struct GroupScratch {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    kq: Vec<f32>,
    g: Vec<f32>,
    decay: Vec<f32>,
    beta: Vec<f32>,
    o: Vec<f32>,
    chunk: ChunkScratch,
}

/// What every job of one call shares.
struct Ctx<'a> {
    w: &'a FusedWeights,
    inputs: GdnInputs<'a>,
    n: usize,
    prefill: Prefill,
    conv_state: SharedMut<'a, f32>,
    ssm: SharedMut<'a, f32>,
    out: SharedMut<'a, f32>,
}

/// One GDN layer over a run of tokens, on `pool`: `out` (`[n_tokens][value_dim]`) gets the
/// gated-normed output, the input of `ssm_out`; `state` advances past the run.
pub fn layer(
    pool: &ThreadPool,
    weights: &FusedWeights,
    state: &mut GdnState,
    inputs: &GdnInputs<'_>,
    out: &mut [f32],
    scratch: &mut FusedScratch,
    options: FusedOptions,
) -> Result<(), ShapeError> {
    let shape = weights.shape;
    state.check(&shape)?;
    let n = inputs.check(&shape)?;
    len("output", out, n * shape.value_dim())?;
    if n == 0 {
        return Ok(());
    }
    let jobs = shape.k_heads;
    let threads = pool.n_threads().min(jobs);
    while scratch.threads.len() < threads {
        scratch.threads.push(Mutex::default());
    }
    let ctx = Ctx {
        w: weights,
        inputs: *inputs,
        n,
        prefill: options.prefill,
        conv_state: SharedMut::new(&mut state.conv),
        ssm: SharedMut::new(&mut state.ssm),
        out: SharedMut::new(out),
    };
    let next = AtomicUsize::new(0);
    let isa = options.isa;
    pool.run(threads, |worker| {
        let mut sc = scratch.threads[worker]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        loop {
            let kh = next.fetch_add(1, Ordering::Relaxed);
            if kh >= jobs {
                break;
            }
            group_on(isa, &ctx, kh, &mut sc);
        }
    });
    Ok(())
}

/// Runs the job of key head `kh` on the kernels of `isa`.
fn group_on(isa: Isa, ctx: &Ctx<'_>, kh: usize, sc: &mut GroupScratch) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => {
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512(ctx: &Ctx<'_>, kh: usize, sc: &mut GroupScratch) {
                group::<super::simd::Avx512>(ctx, kh, sc)
            }
            // SAFETY: `isa` is one the CPU supports (FusedOptions' contract).
            unsafe { avx512(ctx, kh, sc) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2(ctx: &Ctx<'_>, kh: usize, sc: &mut GroupScratch) {
                group::<super::simd::Avx2>(ctx, kh, sc)
            }
            // SAFETY: as above.
            unsafe { avx2(ctx, kh, sc) }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => {
            #[target_feature(enable = "neon")]
            unsafe fn neon(ctx: &Ctx<'_>, kh: usize, sc: &mut GroupScratch) {
                group::<super::simd::Neon>(ctx, kh, sc)
            }
            // SAFETY: as above.
            unsafe { neon(ctx, kh, sc) }
        }
        // SAFETY: portable code runs anywhere.
        _ => unsafe { group::<Portable>(ctx, kh, sc) },
    }
}

#[inline(always)]
unsafe fn group<S: Simd>(ctx: &Ctx<'_>, kh: usize, sc: &mut GroupScratch) {
    let shape = &ctx.w.shape;
    let (s, n, r) = (shape.head_dim, ctx.n, shape.ratio());
    for buf in [&mut sc.q, &mut sc.k] {
        buf.resize(n * s, 0.0);
    }
    sc.v.resize(n * r * s, 0.0);
    for buf in [&mut sc.kq, &mut sc.g, &mut sc.decay, &mut sc.beta] {
        buf.resize(n, 0.0);
    }
    sc.o.resize(n * s, 0.0);

    // convolution + SiLU of the group's channels
    conv_span::<S>(ctx, shape.q_channels(kh).start, &mut sc.q, s);
    conv_span::<S>(ctx, shape.k_channels(kh).start, &mut sc.k, s);
    for m in 0..r {
        let j = shape.value_head(kh, m);
        conv_span::<S>(ctx, shape.v_channels(j).start, &mut sc.v[m * s..], r * s);
    }

    // L2 norms of q and k, and k · q
    for t in 0..n {
        let q = &mut sc.q[t * s..(t + 1) * s];
        l2_normalize::<S>(q, shape.eps);
        let k = &mut sc.k[t * s..(t + 1) * s];
        l2_normalize::<S>(k, shape.eps);
        sc.kq[t] = vmath::dot::<S>(&sc.k[t * s..(t + 1) * s], &sc.q[t * s..(t + 1) * s]);
    }

    for m in 0..r {
        let j = shape.value_head(kh, m);
        head::<S>(ctx, j, m, sc);
    }
}

/// Value head `j` (the `m`-th of its group): gates, recurrence, gated norm into the output.
#[inline(always)]
unsafe fn head<S: Simd>(ctx: &Ctx<'_>, j: usize, m: usize, sc: &mut GroupScratch) {
    let shape = &ctx.w.shape;
    let (s, n, nv, r) = (shape.head_dim, ctx.n, shape.v_heads, shape.ratio());
    for t in 0..n {
        let g = ctx.w.a[j] * softplus(ctx.inputs.alpha[t * nv + j] + ctx.w.dt_bias[j]);
        sc.g[t] = g;
        sc.decay[t] = g.exp();
        sc.beta[t] = 1.0 / (1.0 + (-ctx.inputs.beta[t * nv + j]).exp());
    }
    // SAFETY: value head j's state belongs to this job alone.
    let state = unsafe { ctx.ssm.slice(j * s * s, s * s) };
    let scale = 1.0 / (s as f32).sqrt();
    match ctx.prefill {
        Prefill::Chunked { size } if n > 1 => {
            let run = ChunkRun {
                s,
                q: &sc.q,
                k: &sc.k,
                v: &sc.v[m * s..],
                v_stride: r * s,
                g: &sc.g,
                beta: &sc.beta,
                scale,
            };
            chunked::run_head::<S>(&run, state, &mut sc.o, s, size, &mut sc.chunk);
        }
        Prefill::Sequential { tile } => sequential::<S>(sc, m, r, state, scale, tile),
        Prefill::Chunked { .. } => sequential::<S>(sc, m, r, state, scale, 1),
    }

    // gated RMSNorm, straight into the output
    for t in 0..n {
        let x = &sc.o[t * s..(t + 1) * s];
        let z = &ctx.inputs.z[t * nv * s + j * s..][..s];
        // SAFETY: token t's span of value head j belongs to this job alone.
        let y = unsafe { ctx.out.slice(t * nv * s + j * s, s) };
        let scale = 1.0 / (vmath::dot::<S>(x, x) / s as f32 + shape.eps).sqrt();
        vmath::gated_out::<S>(y, x, scale, &ctx.w.norm, z);
    }
}

#[inline(always)]
unsafe fn sequential<S: Simd>(
    sc: &mut GroupScratch,
    m: usize,
    r: usize,
    state: &mut [f32],
    scale: f32,
    tile: usize,
) {
    let s = state.len().isqrt();
    let run = HeadRun {
        s,
        q: &sc.q,
        k: &sc.k,
        v: &sc.v[m * s..],
        v_stride: r * s,
        decay: &sc.decay,
        beta: &sc.beta,
        kq: &sc.kq,
        scale,
    };
    rows::run_rows::<S>(&run, state, &mut sc.o, s, tile.max(1));
}

/// `x / sqrt(sum x^2 + eps)` in place.
#[inline(always)]
unsafe fn l2_normalize<S: Simd>(x: &mut [f32], eps: f32) {
    let inv = 1.0 / (vmath::dot::<S>(x, x) + eps).sqrt();
    vmath::scale::<S>(x, inv);
}

/// The causal convolution and SiLU of the `S` channels from `c0` over the call's tokens into
/// `dst[t * stride..][..S]`; then the kept inputs of those channels advance.
#[inline(always)]
unsafe fn conv_span<S: Simd>(ctx: &Ctx<'_>, c0: usize, dst: &mut [f32], stride: usize) {
    let shape = &ctx.w.shape;
    let (s, cd, kk, n) = (shape.head_dim, shape.conv_dim(), shape.conv_kernel, ctx.n);
    let keep = kk - 1;
    let qkv = ctx.inputs.qkv;
    for t in 0..n {
        let y = &mut dst[t * stride..t * stride + s];
        y.fill(0.0);
        for i in 0..kk {
            let at = t + i;
            let w = &ctx.w.taps[i * cd + c0..][..s];
            if at < keep {
                // SAFETY: these channels of the kept rows belong to this job alone, and
                // nothing writes them until the loop is done.
                let x = unsafe { ctx.conv_state.slice(at * cd + c0, s) };
                vmath::fma_into::<S>(y, x, w);
            } else {
                vmath::fma_into::<S>(y, &qkv[(at - keep) * cd + c0..][..s], w);
            }
        }
        vmath::silu_in_place::<S>(y);
    }
    // The kept inputs become the last `keep` rows of [kept; run], oldest first: row `i`
    // takes row `n + i` of that sequence, which is later, so ascending order reads each
    // kept row before it is overwritten.
    for i in 0..keep {
        let from = n + i;
        // SAFETY: as above; the source and destination rows differ (`from > i`).
        let dst = unsafe { ctx.conv_state.slice(i * cd + c0, s) };
        if from < keep {
            let src = unsafe { ctx.conv_state.slice(from * cd + c0, s) };
            dst.copy_from_slice(src);
        } else {
            dst.copy_from_slice(&qkv[(from - keep) * cd + c0..][..s]);
        }
    }
}
