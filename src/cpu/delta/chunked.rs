//! The gated delta rule over chunks of tokens in closed form (the "WY" form of llama.cpp's
//! graph fallback `build_delta_net_chunking`), for prompts.
//!
//! Within a chunk of `C` tokens, with `gc` the cumulative log-decay from the chunk's start,
//! `D[i][j] = exp(gc_i - gc_j)` (`j <= i`), and `M` the state at the chunk's start (`[v][k]`):
//! - `A[i][j] = beta_i (k_i · k_j) D[i][j]` for `j < i`; `(I + A) X = [beta v | beta exp(gc) k]`
//!   solved by forward substitution gives `v'` and `k_cd`;
//! - per state row `v`: `delta_i = v'_i[v] - M[v] · k_cd_i`, the output `o_i[v] = exp(gc_i)
//!   M[v] · q_i + sum_{j <= i} D[i][j] (q_i · k_j) delta_j`, and the new row
//!   `exp(gc_last) M[v] + sum_j exp(gc_last - gc_j) delta_j k_j`.
//!
//! Every exponent is a difference `gc_i - gc_j <= 0`, so nothing overflows however strong the
//! decay. Mathematically the recurrence; numerically within rounding of it (tests bound it).
//! Rows stay independent, so the per-row work runs in blocks of rows as in [`super::rows`],
//! and the state is read and written once per chunk.

use super::rows::ROWS;
use super::simd::Simd;
use super::vmath;

/// The largest chunk (the per-row buffers of a chunk live on the stack).
pub const MAX_CHUNK: usize = 128;

/// One value head's inputs over a run of `T` tokens.
#[derive(Clone, Copy)]
pub(crate) struct ChunkRun<'a> {
    pub s: usize,
    /// Normalised queries and keys, `[T][S]`.
    pub q: &'a [f32],
    pub k: &'a [f32],
    /// Token `t`'s value at `v[t * v_stride..][..S]`.
    pub v: &'a [f32],
    pub v_stride: usize,
    /// Per token: the log-decay `g` and `beta`.
    pub g: &'a [f32],
    pub beta: &'a [f32],
    pub scale: f32,
}

/// Buffers of one chunk.
#[derive(Debug, Default)]
pub(crate) struct ChunkScratch {
    /// Cumulative log-decay, its exponential, and `exp(gc_last - gc_j)`, `[C]`.
    gc: Vec<f32>,
    eg: Vec<f32>,
    w: Vec<f32>,
    /// `A` (strictly lower) and `P = D ⊙ (Q Kᵀ)` (lower with the diagonal), `[C][C]`.
    a: Vec<f32>,
    p: Vec<f32>,
    /// The solve's result `[C][2S]`: `v'` then `k_cd` in each row.
    x: Vec<f32>,
    /// `exp(gc_last - gc_j) k_j`, `[C][S]`.
    kw: Vec<f32>,
    /// Per token and state row: `delta` and `M[v] · q`, `[C][S]`.
    delta: Vec<f32>,
    mq: Vec<f32>,
}

/// Runs `run` over `state` (`S x S`) in chunks of `size`, token `t`'s output to
/// `o[t * o_stride..][..S]`.
///
/// # Safety
/// The CPU must support `S`'s ISA.
#[inline(always)]
pub(crate) unsafe fn run_head<S: Simd>(
    run: &ChunkRun<'_>,
    state: &mut [f32],
    o: &mut [f32],
    o_stride: usize,
    size: usize,
    sc: &mut ChunkScratch,
) {
    let (s, n) = (run.s, run.g.len());
    assert!(state.len() == s * s && run.q.len() >= n * s && run.k.len() >= n * s);
    assert!(
        n == 0 || (run.v.len() >= (n - 1) * run.v_stride + s && o.len() >= (n - 1) * o_stride + s)
    );
    let size = size.clamp(1, MAX_CHUNK);
    let mut t0 = 0;
    while t0 < n {
        let len = size.min(n - t0);
        prepare::<S>(run, t0, len, sc);
        let mut r0 = 0;
        while r0 + ROWS <= s {
            rows_block::<S, ROWS>(run, t0, len, r0, state, sc);
            r0 += ROWS;
        }
        while r0 < s {
            rows_block::<S, 1>(run, t0, len, r0, state, sc);
            r0 += 1;
        }
        outputs::<S>(run, len, &mut o[t0 * o_stride..], o_stride, sc);
        t0 += len;
    }
}

/// The chunk's shared quantities: decays, `A`, `P`, the solve, the weighted keys.
#[inline(always)]
unsafe fn prepare<S: Simd>(run: &ChunkRun<'_>, t0: usize, len: usize, sc: &mut ChunkScratch) {
    let s = run.s;
    for buf in [&mut sc.gc, &mut sc.eg, &mut sc.w] {
        buf.resize(len, 0.0);
    }
    for buf in [&mut sc.a, &mut sc.p] {
        buf.resize(len * len, 0.0);
    }
    sc.x.resize(len * 2 * s, 0.0);
    for buf in [&mut sc.kw, &mut sc.delta, &mut sc.mq] {
        buf.resize(len * s, 0.0);
    }

    let mut acc = 0.0f32;
    for i in 0..len {
        acc += run.g[t0 + i];
        sc.gc[i] = acc;
    }
    let last = sc.gc[len - 1];
    for i in 0..len {
        sc.eg[i] = super::simd::exp_plain(sc.gc[i]);
        sc.w[i] = super::simd::exp_plain(last - sc.gc[i]);
    }
    let key = |t: usize| &run.k[(t0 + t) * s..(t0 + t + 1) * s];
    let query = |t: usize| &run.q[(t0 + t) * s..(t0 + t + 1) * s];
    for i in 0..len {
        let b = run.beta[t0 + i];
        for j in 0..=i {
            let d = super::simd::exp_plain(sc.gc[i] - sc.gc[j]);
            sc.p[i * len + j] = vmath::dot::<S>(query(i), key(j)) * d;
            if j < i {
                sc.a[i * len + j] = b * vmath::dot::<S>(key(i), key(j)) * d;
            }
        }
    }
    // (I + A) X = B by forward substitution, B_i = [beta_i v_i | beta_i exp(gc_i) k_i]
    for i in 0..len {
        let b = run.beta[t0 + i];
        let (done, rest) = sc.x.split_at_mut(i * 2 * s);
        let xi = &mut rest[..2 * s];
        let v = &run.v[(t0 + i) * run.v_stride..][..s];
        for c in 0..s {
            xi[c] = b * v[c];
        }
        let bk = b * sc.eg[i];
        for (x, k) in xi[s..].iter_mut().zip(key(i)) {
            *x = bk * k;
        }
        for j in 0..i {
            vmath::axpy::<S>(xi, -sc.a[i * len + j], &done[j * 2 * s..(j + 1) * 2 * s]);
        }
    }
    for j in 0..len {
        let wj = sc.w[j];
        for (kw, k) in sc.kw[j * s..(j + 1) * s].iter_mut().zip(key(j)) {
            *kw = wj * k;
        }
    }
}

/// State rows `r0..r0 + R` through the chunk: their deltas and `M[v] · q` (into the
/// scratch), then their new values.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // rows by index
unsafe fn rows_block<S: Simd, const R: usize>(
    run: &ChunkRun<'_>,
    t0: usize,
    len: usize,
    r0: usize,
    state: &mut [f32],
    sc: &mut ChunkScratch,
) {
    let (s, l) = (run.s, S::LANES);
    let rows = &mut state[r0 * s..(r0 + R) * s];
    let x = rows.as_mut_ptr();
    let main = s / l * l;
    // delta_i[v] = v'_i[v] - M[v] · k_cd_i, and M[v] · q_i, for every token of the chunk
    for i in 0..len {
        let kcd = &sc.x[i * 2 * s + s..(i + 1) * 2 * s];
        let q = &run.q[(t0 + i) * s..(t0 + i + 1) * s];
        let mut ak = [S::splat(0.0); R];
        let mut aq = [S::splat(0.0); R];
        let mut c = 0;
        while c < main {
            let kc = S::load(kcd.as_ptr().add(c));
            let qc = S::load(q.as_ptr().add(c));
            for r in 0..R {
                let xr = S::load(x.add(r * s + c));
                ak[r] = S::fma(xr, kc, ak[r]);
                aq[r] = S::fma(xr, qc, aq[r]);
            }
            c += l;
        }
        for r in 0..R {
            let (mut sk, mut sq) = (S::hsum(ak[r]), S::hsum(aq[r]));
            for c in main..s {
                sk = S::fma1(rows[r * s + c], kcd[c], sk);
                sq = S::fma1(rows[r * s + c], q[c], sq);
            }
            sc.delta[i * s + r0 + r] = sc.x[i * 2 * s + r0 + r] - sk;
            sc.mq[i * s + r0 + r] = sq;
        }
    }
    // the new rows: exp(gc_last) M[v] + sum_j delta_j[v] kw_j, each lane chunk in registers
    let e_last = sc.eg[len - 1];
    let ve = S::splat(e_last);
    let mut c = 0;
    while c < main {
        let mut acc: [S::V; R] = std::array::from_fn(|r| S::mul(S::load(x.add(r * s + c)), ve));
        for j in 0..len {
            let kw = S::load(sc.kw.as_ptr().add(j * s + c));
            for r in 0..R {
                acc[r] = S::fma(kw, S::splat(sc.delta[j * s + r0 + r]), acc[r]);
            }
        }
        for r in 0..R {
            S::store(x.add(r * s + c), acc[r]);
        }
        c += l;
    }
    for c in main..s {
        for r in 0..R {
            let mut v = rows[r * s + c] * e_last;
            for j in 0..len {
                v = S::fma1(sc.kw[j * s + c], sc.delta[j * s + r0 + r], v);
            }
            rows[r * s + c] = v;
        }
    }
}

/// The chunk's outputs, all state rows at once: `o_i = (exp(gc_i) M q_i + sum_{j <= i}
/// P[i][j] delta_j) * scale`, token `i` to `o[i * o_stride..][..S]`.
#[inline(always)]
unsafe fn outputs<S: Simd>(
    run: &ChunkRun<'_>,
    len: usize,
    o: &mut [f32],
    o_stride: usize,
    sc: &ChunkScratch,
) {
    let s = run.s;
    for i in 0..len {
        let oi = &mut o[i * o_stride..i * o_stride + s];
        oi.copy_from_slice(&sc.mq[i * s..(i + 1) * s]);
        vmath::scale::<S>(oi, sc.eg[i]);
        for j in 0..=i {
            vmath::axpy::<S>(oi, sc.p[i * len + j], &sc.delta[j * s..(j + 1) * s]);
        }
        vmath::scale::<S>(oi, run.scale);
    }
}
