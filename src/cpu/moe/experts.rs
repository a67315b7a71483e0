//! The experts' feed-forward of a mixture-of-experts layer: for each token, the sum over its
//! routed experts of `weight · down_e(silu(gate_e · x) ⊙ (up_e · x))`, on the quantized 3-D expert
//! tensors read in place (the selected experts' slices of the memory map, nothing copied).
//!
//! Most of a MoE model's time is spent here. The work is laid out as ggml's `mul_mat_id` lays
//! it out, so each selected expert's weights stream through the cores once per call:
//! - the input is quantized once per token; a batch then regroups its quantized tokens by expert
//!   ([`QuantActs::gather`]), so expert `e` sees its tokens as one contiguous run;
//! - phase 1: work units of (expert, block of rows) compute the gate and the up rows for that
//!   expert's tokens and apply SwiGLU to them in place (the two matrices share the activations);
//! - the SwiGLU outputs, one row per (token, expert), are quantized once for the down matrices;
//! - phase 2: units of (expert, block of rows) of the down projection;
//! - last, each token's expert outputs are weighted and added in routing order (most probable
//!   first, as llama.cpp adds them), plus the residual.
//!
//! A shared expert (`qwen35moe`, `qwen3next`: a SwiGLU every token runs, scaled by
//! `sigmoid(gate_inp · x)`) rides in the same pass: its rows are more units of phases 1 and 2
//! beside the routed experts' (all tokens in order, its own width), so one pass over the
//! token's activations feeds both and the pool splits them together; its scaled output is added
//! after the routed sum, before the residual, as llama.cpp adds `ffn_shexp`.
//!
//! Units are claimed from an atomic counter by the pool's threads. Each uses `crate::cpu::dot`'s
//! tile kernels (one token: decode) or, for an expert with enough tokens, its 16-row panels.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::route::{Groups, Routing};
use crate::cpu::dot::{kernel_set, panel, KernelSet, Tile};
use crate::cpu::error::KernelError;
use crate::cpu::features::cpu_features;
use crate::cpu::features::Isa;
use crate::cpu::ggml_math::{self, v_expf};
use crate::cpu::matmul::{dequantize_row, WeightMatrix};
use crate::cpu::pool::ThreadPool;
use crate::cpu::quantize::{ActFormat, QuantActs};
use crate::cpu::shared::SharedMut;
use crate::quant::GgmlType;

/// Tokens one pass over the experts takes: bounds the scratch (about 80 MB for Qwen3-30B-A3B's
/// shape) like llama.cpp's default micro-batch of 512; a longer batch makes several passes.
pub const MAX_PASS_TOKENS: usize = 512;

/// One 3-D expert tensor in GGUF layout: `experts` matrices of `rows x cols`, one after the other
/// (PyTorch order `[experts, rows, cols]`), read in place.
#[derive(Debug, Clone, Copy)]
pub struct ExpertTensor<'a> {
    pub ty: GgmlType,
    pub experts: usize,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> ExpertTensor<'a> {
    /// Checks the type, the block alignment of `cols` and the byte count.
    pub fn new(
        ty: GgmlType,
        experts: usize,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, KernelError> {
        let all = experts.checked_mul(rows).ok_or(KernelError::Overflow)?;
        WeightMatrix::new(ty, all, cols, data)?;
        Ok(ExpertTensor {
            ty,
            experts,
            rows,
            cols,
            data,
        })
    }

    /// Expert `e`'s matrix, a slice of the tensor.
    pub fn expert(&self, e: usize) -> WeightMatrix<'a> {
        let bytes = self.data.len() / self.experts.max(1);
        WeightMatrix {
            ty: self.ty,
            rows: self.rows,
            cols: self.cols,
            data: &self.data[e * bytes..(e + 1) * bytes],
            repacked: None,
        }
    }
}

/// A layer's three expert tensors: gate and up `[experts, ffn, hidden]`, down
/// `[experts, hidden, ffn]`; and its shared expert, if any.
#[derive(Debug, Clone, Copy)]
pub struct ExpertWeights<'a> {
    pub gate: ExpertTensor<'a>,
    pub up: ExpertTensor<'a>,
    pub down: ExpertTensor<'a>,
    pub shared: Option<SharedExpert<'a>>,
}

/// A shared expert: its gate vector `[hidden]` (f32) and its SwiGLU's three matrices, each an
/// [`ExpertTensor`] of one expert (gate and up `[shared_ffn, hidden]`, down `[hidden,
/// shared_ffn]`).
#[derive(Debug, Clone, Copy)]
pub struct SharedExpert<'a> {
    pub gate_inp: &'a [f32],
    pub gate: ExpertTensor<'a>,
    pub up: ExpertTensor<'a>,
    pub down: ExpertTensor<'a>,
}

impl SharedExpert<'_> {
    /// Its width, after checking that it fits `hidden`.
    fn width(&self, hidden: usize) -> Result<usize, KernelError> {
        let (g, u, d) = (&self.gate, &self.up, &self.down);
        let fits = [g.experts, u.experts, d.experts] == [1; 3]
            && (g.rows, g.cols) == (u.rows, u.cols)
            && (d.rows, d.cols) == (g.cols, g.rows)
            && g.cols == hidden
            && self.gate_inp.len() == hidden;
        if !fits {
            return Err(KernelError::ExpertShapes {
                gate: [g.experts, g.rows, g.cols],
                up: [u.experts, u.rows, u.cols],
                down: [d.experts, d.rows, d.cols],
            });
        }
        Ok(g.rows)
    }
}

impl ExpertWeights<'_> {
    /// (hidden, expert ffn), after checking that the three tensors fit together.
    fn dims(&self) -> Result<(usize, usize), KernelError> {
        let (g, u, d) = (&self.gate, &self.up, &self.down);
        let fits = g.experts == u.experts
            && g.experts == d.experts
            && (g.rows, g.cols) == (u.rows, u.cols)
            && (d.rows, d.cols) == (g.cols, g.rows);
        if !fits {
            return Err(KernelError::ExpertShapes {
                gate: [g.experts, g.rows, g.cols],
                up: [u.experts, u.rows, u.cols],
                down: [d.experts, d.rows, d.cols],
            });
        }
        Ok((g.cols, g.rows))
    }
}

/// How the expert matmuls run: the knobs a kernel search may tune.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MoePlan {
    pub isa: Isa,
    /// Threads to use, capped at the pool's size; 0: all of the pool.
    pub threads: usize,
    /// Rows of a gate/up work unit (0: 64), and of a down unit (0: 128); rounded up to the tile.
    pub gate_up_rows: usize,
    pub down_rows: usize,
    /// Weight rows and tokens per tile kernel call.
    pub row_tile: usize,
    pub token_tile: usize,
    /// Experts with at least this many tokens in a call go through 16-row panels, where the
    /// ISA and type have panel kernels (0: never).
    pub panel_min_tokens: usize,
}

impl MoePlan {
    /// Defaults for this CPU's fastest path.
    pub fn new() -> Self {
        let isa = cpu_features().best();
        MoePlan {
            isa,
            threads: 0,
            gate_up_rows: 0,
            down_rows: 0,
            row_tile: 4,
            token_tile: 8,
            panel_min_tokens: panel_min_tokens(isa),
        }
    }

    /// Short description for `--kernel-timing`.
    pub fn describe(&self) -> String {
        let rows = |n: usize, auto: usize| if n == 0 { auto } else { n };
        let panel = match self.panel_min_tokens {
            0 => String::new(),
            n => format!(" panel16 from {n} tokens"),
        };
        format!(
            "{} t{} rows{}/{} tile{}x{}{panel}",
            self.isa,
            self.threads,
            rows(self.gate_up_rows, 64),
            rows(self.down_rows, 128),
            self.row_tile,
            self.token_tile
        )
    }
}

/// The fewest tokens an expert needs in a call for its rows to go through panels, by ISA: a
/// panel is rebuilt per call, so its pack must be shared by enough tokens. With AVX2 below 8
/// the tiles win (`cargo bench --bench moe -- FILE 2 0 N`, Qwen3-30B-A3B shape, 64 tokens: 4
/// to 8 gave 1.4x on Q4_K experts, 1.2x on Q8_0, 1.3x on IQ2_S/IQ3_S, with no change at 512
/// tokens). AVX-512 keeps 4, the setting its `vpdpbusd` panels were tuned with.
fn panel_min_tokens(isa: Isa) -> usize {
    match isa {
        Isa::Avx2 => 8,
        _ if panel::any(isa) => 4,
        _ => 0,
    }
}

impl Default for MoePlan {
    fn default() -> Self {
        Self::new()
    }
}

/// Buffers reused across calls.
#[derive(Default)]
pub struct MoeScratch {
    x_gate: QuantActs,
    x_up: QuantActs,
    grouped_gate: QuantActs,
    grouped_up: QuantActs,
    /// f32 inputs regrouped by expert (float expert weights).
    grouped_x: Vec<f32>,
    /// `[pairs, ffn]`: the gate outputs, then SwiGLU's, and the up outputs.
    h: Vec<f32>,
    u: Vec<f32>,
    h_acts: QuantActs,
    /// `[pairs, hidden]`: each (token, expert) pair's down output.
    y: Vec<f32>,
    /// The shared expert: inputs quantized for its gate and up where the routed experts'
    /// formats differ, its `[n, shared_ffn]` gate (then SwiGLU) and up outputs, their
    /// quantized form, its `[n, hidden]` down outputs and each token's gate.
    xs_gate: QuantActs,
    xs_up: QuantActs,
    hs: Vec<f32>,
    us: Vec<f32>,
    hs_acts: QuantActs,
    ys: Vec<f32>,
    scale: Vec<f32>,
    /// Per job index: a panel, dequantized rows.
    panels: Vec<u8>,
    rows_f32: Vec<f32>,
}

/// `out[t] = residual[t] + sum over token t's experts of weight * expert(x[t])` for the
/// `routing.n_tokens` rows of `x` (`[n_tokens, hidden]`, already normalised), on `pool`.
#[allow(clippy::too_many_arguments)]
pub fn moe_experts(
    pool: &ThreadPool,
    w: &ExpertWeights<'_>,
    x: &[f32],
    routing: &Routing,
    residual: Option<&[f32]>,
    out: &mut [f32],
    plan: &MoePlan,
    scratch: &mut MoeScratch,
) -> Result<(), KernelError> {
    let (hidden, _) = w.dims()?;
    let n = routing.n_tokens;
    if !cpu_features().supports(plan.isa) {
        return Err(KernelError::IsaUnavailable(plan.isa));
    }
    let expected = n.checked_mul(hidden).ok_or(KernelError::Overflow)?;
    for (what, len) in [("input x", x.len()), ("output", out.len())]
        .into_iter()
        .chain(residual.map(|r| ("residual", r.len())))
    {
        if len != expected {
            return Err(KernelError::SliceLen {
                what,
                n_tokens: n,
                width: hidden,
                expected,
                got: len,
            });
        }
    }
    if routing
        .experts
        .iter()
        .any(|&e| e as usize >= w.gate.experts)
    {
        return Err(KernelError::ExpertIndex {
            experts: w.gate.experts,
        });
    }
    let mut t = 0;
    while t < n {
        let end = (t + MAX_PASS_TOKENS).min(n);
        let part = routing_part(routing, t, end);
        let span = t * hidden..end * hidden;
        let res = residual.map(|r| &r[span.clone()]);
        pass(
            pool,
            w,
            &x[span.clone()],
            &part,
            res,
            &mut out[span],
            plan,
            scratch,
        )?;
        t = end;
    }
    Ok(())
}

/// Tokens `begin..end` of a routing.
fn routing_part(r: &Routing, begin: usize, end: usize) -> Routing {
    Routing {
        n_tokens: end - begin,
        k: r.k,
        n_experts: r.n_experts,
        experts: r.experts[begin * r.k..end * r.k].to_vec(),
        weights: r.weights[begin * r.k..end * r.k].to_vec(),
    }
}

/// One expert's run of rows in the pass: its tokens are activation rows `acts_t0..acts_t0 + n`
/// and output rows `row0..row0 + n` (decode: the one token, row = slot; batch: grouped order).
#[derive(Debug, Clone, Copy)]
struct Span {
    expert: usize,
    acts_t0: usize,
    row0: usize,
    n: usize,
}

/// The spans of a pass and where each (token, slot) pair's output row is.
fn spans(routing: &Routing, groups: Option<&Groups>) -> (Vec<Span>, Vec<u32>) {
    match groups {
        None => {
            let spans = routing
                .experts_of(0)
                .iter()
                .enumerate()
                .map(|(s, &e)| Span {
                    expert: e as usize,
                    acts_t0: 0,
                    row0: s,
                    n: 1,
                })
                .collect();
            (spans, (0..routing.k as u32).collect())
        }
        Some(g) => {
            let spans = (0..routing.n_experts)
                .map(|e| (e, g.range(e)))
                .filter(|(_, r)| !r.is_empty())
                .map(|(e, r)| Span {
                    expert: e,
                    acts_t0: r.start,
                    row0: r.start,
                    n: r.len(),
                })
                .collect();
            (spans, g.position.clone())
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn pass(
    pool: &ThreadPool,
    w: &ExpertWeights<'_>,
    x: &[f32],
    routing: &Routing,
    residual: Option<&[f32]>,
    out: &mut [f32],
    plan: &MoePlan,
    s: &mut MoeScratch,
) -> Result<(), KernelError> {
    let (hidden, ffn) = w.dims()?;
    let n = routing.n_tokens;
    let pairs = n * routing.k;
    let threads = match plan.threads {
        0 => pool.n_threads(),
        t => t.min(pool.n_threads()),
    };
    let gate_set = kernel_set(w.gate.ty, plan.isa, true)?;
    let up_set = kernel_set(w.up.ty, plan.isa, true)?;
    let down_set = kernel_set(w.down.ty, plan.isa, true)?;
    let shared = match &w.shared {
        Some(sh) => Some(SharedSets {
            width: sh.width(hidden)?,
            gate: kernel_set(sh.gate.ty, plan.isa, true)?,
            up: kernel_set(sh.up.ty, plan.isa, true)?,
            down: kernel_set(sh.down.ty, plan.isa, true)?,
        }),
        None => None,
    };
    let batch = n > 1;
    let groups = batch.then(|| routing.group());
    let (spans, position) = spans(routing, groups.as_ref());

    // The input, quantized once per token (once per format the gate and up weights take).
    s.x_gate.prepare(gate_set.fmt, n, hidden);
    s.x_gate.quantize(pool, threads, x, plan.isa);
    let up_shares = up_set.fmt == gate_set.fmt;
    if !up_shares {
        s.x_up.prepare(up_set.fmt, n, hidden);
        s.x_up.quantize(pool, threads, x, plan.isa);
    }
    // The shared expert reads the tokens in order: the routed experts' quantized input where
    // the formats agree, else its own.
    if let Some(sh) = &shared {
        for (fmt, buf) in [(sh.gate.fmt, &mut s.xs_gate), (sh.up.fmt, &mut s.xs_up)] {
            if fmt != gate_set.fmt && fmt != up_set.fmt {
                buf.prepare(fmt, n, hidden);
                buf.quantize(pool, threads, x, plan.isa);
            }
        }
    }
    let mut x_rows: &[f32] = x;
    if let Some(g) = &groups {
        let tokens: Vec<u32> = (0..pairs).map(|i| g.token(i) as u32).collect();
        s.grouped_gate.gather(pool, threads, &s.x_gate, &tokens);
        if !up_shares {
            s.grouped_up.gather(pool, threads, &s.x_up, &tokens);
        }
        if gate_set.fmt == ActFormat::F32 || up_set.fmt == ActFormat::F32 {
            s.grouped_x.clear();
            for &t in &tokens {
                let t = t as usize;
                s.grouped_x
                    .extend_from_slice(&x[t * hidden..(t + 1) * hidden]);
            }
            x_rows = &s.grouped_x;
        }
    }
    let (acts_gate, acts_up) = match (&groups, up_shares) {
        (Some(_), true) => (&s.grouped_gate, &s.grouped_gate),
        (Some(_), false) => (&s.grouped_gate, &s.grouped_up),
        (None, true) => (&s.x_gate, &s.x_gate),
        (None, false) => (&s.x_gate, &s.x_up),
    };
    let (x_gate, x_up) = (&s.x_gate, &s.x_up);
    let in_order = [(gate_set.fmt, x_gate), (up_set.fmt, x_up)];
    let (shared_gate_acts, shared_up_acts) = match &shared {
        Some(sh) => (
            pick(&in_order, sh.gate.fmt, &s.xs_gate),
            pick(&in_order, sh.up.fmt, &s.xs_up),
        ),
        None => (x_gate, x_up),
    };
    let width = shared.as_ref().map_or(0, |sh| sh.width);

    s.h.resize(pairs * ffn, 0.0);
    s.u.resize(pairs * ffn, 0.0);
    s.y.resize(pairs * hidden, 0.0);
    s.hs.resize(n * width, 0.0);
    s.us.resize(n * width, 0.0);
    s.ys.resize(n * hidden, 0.0);
    let cols_max = hidden.max(ffn).max(width);
    let row_tile_max = plan.row_tile.clamp(1, 8);
    let panel_bytes = panel::scratch_bytes(cols_max);
    grow(&mut s.panels, threads * panel_bytes, 0);
    grow(&mut s.rows_f32, threads * row_tile_max * cols_max, 0.0);
    let gate_up_rows = unit_rows(plan.gate_up_rows, 64);
    let thread_bufs = ThreadBufs {
        panels: SharedMut::new(&mut s.panels[..]),
        panel_bytes,
        rows_f32: SharedMut::new(&mut s.rows_f32[..]),
        rows_per_thread: row_tile_max * cols_max,
    };
    // The shared expert's one span: every token, in order.
    let all = [Span {
        expert: 0,
        acts_t0: 0,
        row0: 0,
        n,
    }];
    let shared_spans: &[Span] = if shared.is_some() { &all } else { &[] };

    // Phase 1: gate and up rows of every span, SwiGLU fused; the shared expert's too.
    {
        let h = SharedMut::new(&mut s.h[..]);
        let u = SharedMut::new(&mut s.u[..]);
        let hs = SharedMut::new(&mut s.hs[..]);
        let us = SharedMut::new(&mut s.us[..]);
        let parts = [
            Units::new(&spans, ffn, gate_up_rows),
            Units::new(shared_spans, width, gate_up_rows),
        ];
        let job = |tid: usize, part: usize, span: &Span, r0: usize, r1: usize| {
            let (gate, up, rows, hp, up_p) = match (part, &w.shared, &shared) {
                (0, _, _) => (
                    Product::new(&w.gate, span, gate_set, acts_gate, x_rows, h.as_ptr(), plan),
                    Product::new(&w.up, span, up_set, acts_up, x_rows, u.as_ptr(), plan),
                    ffn,
                    &h,
                    &u,
                ),
                (_, Some(sw), Some(sh)) => (
                    Product::new(
                        &sw.gate,
                        span,
                        sh.gate,
                        shared_gate_acts,
                        x,
                        hs.as_ptr(),
                        plan,
                    ),
                    Product::new(&sw.up, span, sh.up, shared_up_acts, x, us.as_ptr(), plan),
                    width,
                    &hs,
                    &us,
                ),
                _ => return,
            };
            gate.rows(&thread_bufs, tid, r0, r1);
            up.rows(&thread_bufs, tid, r0, r1);
            for row in span.row0..span.row0 + span.n {
                // SAFETY: this unit alone owns rows r0..r1 of its span's output rows.
                let (hr, ur) = unsafe {
                    (
                        hp.slice(row * rows + r0, r1 - r0),
                        up_p.slice(row * rows + r0, r1 - r0),
                    )
                };
                swiglu_in_place(hr, ur);
            }
        };
        run_units(pool, threads, &parts, job);
    }

    // The SwiGLU outputs, quantized once per (token, expert) row for the down matrices.
    s.h_acts.prepare(down_set.fmt, pairs, ffn);
    s.h_acts.quantize(pool, threads, &s.h, plan.isa);
    if let Some(sh) = &shared {
        s.hs_acts.prepare(sh.down.fmt, n, width);
        s.hs_acts.quantize(pool, threads, &s.hs, plan.isa);
    }

    // Phase 2: down rows of every span (activations in the spans' own rows).
    {
        let y = SharedMut::new(&mut s.y[..]);
        let ys = SharedMut::new(&mut s.ys[..]);
        let down_spans: Vec<Span> = spans
            .iter()
            .map(|sp| Span {
                acts_t0: sp.row0,
                ..*sp
            })
            .collect();
        let down_rows = unit_rows(plan.down_rows, 128);
        let parts = [
            Units::new(&down_spans, hidden, down_rows),
            Units::new(shared_spans, hidden, down_rows),
        ];
        let (h_acts, h_rows, hs_acts, hs_rows) = (&s.h_acts, &s.h[..], &s.hs_acts, &s.hs[..]);
        let job = |tid: usize, part: usize, span: &Span, r0: usize, r1: usize| {
            let down = match (part, &w.shared, &shared) {
                (0, _, _) => {
                    Product::new(&w.down, span, down_set, h_acts, h_rows, y.as_ptr(), plan)
                }
                (_, Some(sw), Some(sh)) => {
                    Product::new(&sw.down, span, sh.down, hs_acts, hs_rows, ys.as_ptr(), plan)
                }
                _ => return,
            };
            down.rows(&thread_bufs, tid, r0, r1);
        };
        run_units(pool, threads, &parts, job);
    }

    let shared_out = match &w.shared {
        Some(sw) => {
            s.scale.clear();
            s.scale.extend(
                x.chunks_exact(hidden)
                    .map(|xt| sigmoid(ggml_math::vec_dot_f32(sw.gate_inp, xt))),
            );
            Some((&s.ys[..], &s.scale[..]))
        }
        None => None,
    };
    combine(
        pool, threads, routing, &position, &s.y, shared_out, residual, hidden, out,
    );
    Ok(())
}

/// The first of `quantized` in format `fmt`, else `own`.
fn pick<'b>(
    quantized: &[(ActFormat, &'b QuantActs)],
    fmt: ActFormat,
    own: &'b QuantActs,
) -> &'b QuantActs {
    quantized
        .iter()
        .find(|(f, _)| *f == fmt)
        .map_or(own, |(_, q)| q)
}

/// The kernel sets of a shared expert's three matrices, and its width.
struct SharedSets {
    width: usize,
    gate: KernelSet,
    up: KernelSet,
    down: KernelSet,
}

/// `1 / (1 + e^-x)`: the shared expert's gate.
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

ggml_math::fma_dispatch! {
    /// `gate = silu(gate) * up`, element by element (ggml's `v_expf`; SwiGLU of the experts).
    fn swiglu_in_place(gate: &mut [f32], up: &[f32]) => swiglu_body
}

#[inline(always)]
fn swiglu_body(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = (*g / (1.0 + v_expf(0.0 - *g))) * u;
    }
}

fn grow<T: Clone>(v: &mut Vec<T>, n: usize, fill: T) {
    if v.len() < n {
        v.resize(n, fill);
    }
}

fn unit_rows(planned: usize, auto: usize) -> usize {
    let rows = if planned == 0 { auto } else { planned };
    rows.div_ceil(panel::ROWS) * panel::ROWS
}

/// `out[t] = ((w0 * y0 + w1 * y1 + ...) + shared[t] * scale[t]) + residual[t]`, slots in
/// routing order.
#[allow(clippy::too_many_arguments)]
fn combine(
    pool: &ThreadPool,
    threads: usize,
    routing: &Routing,
    position: &[u32],
    y: &[f32],
    shared_out: Option<(&[f32], &[f32])>,
    residual: Option<&[f32]>,
    hidden: usize,
    out: &mut [f32],
) {
    let n = routing.n_tokens;
    let threads = if n * hidden < 64 * 1024 {
        1
    } else {
        threads.min(n)
    };
    let shared = SharedMut::new(out);
    pool.run(threads, |tid| {
        for t in n * tid / threads..n * (tid + 1) / threads {
            // SAFETY: each token's output row belongs to exactly one thread.
            let o = unsafe { shared.slice(t * hidden, hidden) };
            for (slot, &wt) in routing.weights_of(t).iter().enumerate() {
                let row = position[t * routing.k + slot] as usize;
                let yr = &y[row * hidden..(row + 1) * hidden];
                if slot == 0 {
                    o.iter_mut().zip(yr).for_each(|(o, &v)| *o = v * wt);
                } else {
                    o.iter_mut().zip(yr).for_each(|(o, &v)| *o += v * wt);
                }
            }
            if let Some((ys, scale)) = shared_out {
                let (ys, k) = (&ys[t * hidden..(t + 1) * hidden], scale[t]);
                o.iter_mut().zip(ys).for_each(|(o, &v)| *o += v * k);
            }
            if let Some(r) = residual {
                let r = &r[t * hidden..(t + 1) * hidden];
                o.iter_mut().zip(r).for_each(|(o, &v)| *o += v);
            }
        }
    });
}

/// Per job index scratch, shared by the units a thread runs.
struct ThreadBufs<'a> {
    panels: SharedMut<'a, u8>,
    panel_bytes: usize,
    rows_f32: SharedMut<'a, f32>,
    rows_per_thread: usize,
}

/// The work units of a phase: (span, block of rows), numbered span by span.
struct Units<'a> {
    spans: &'a [Span],
    rows: usize,
    per_unit: usize,
    per_span: usize,
}

impl<'a> Units<'a> {
    fn new(spans: &'a [Span], rows: usize, per_unit: usize) -> Self {
        Units {
            spans,
            rows,
            per_unit,
            per_span: rows.div_ceil(per_unit),
        }
    }

    fn len(&self) -> usize {
        self.spans.len() * self.per_span
    }

    /// Unit `u`: its span, first row and end row.
    fn unit(&self, u: usize) -> (&Span, usize, usize) {
        let (span, block) = (&self.spans[u / self.per_span], u % self.per_span);
        let r0 = block * self.per_unit;
        (span, r0, (r0 + self.per_unit).min(self.rows))
    }
}

/// Runs `job(tid, part, span, first_row, end_row)` for every unit of every part on `threads`
/// pool threads, claimed from one counter (so the parts share the pool).
fn run_units<F: Fn(usize, usize, &Span, usize, usize) + Sync>(
    pool: &ThreadPool,
    threads: usize,
    parts: &[Units<'_>],
    job: F,
) {
    let total: usize = parts.iter().map(Units::len).sum();
    let next = AtomicUsize::new(0);
    pool.run(threads.min(total), |tid| loop {
        let mut u = next.fetch_add(1, Ordering::Relaxed);
        if u >= total {
            break;
        }
        for (p, units) in parts.iter().enumerate() {
            if u < units.len() {
                let (span, r0, r1) = units.unit(u);
                job(tid, p, span, r0, r1);
                break;
            }
            u -= units.len();
        }
    });
}

/// One expert matrix times one span's tokens, as a unit runs it.
struct Product<'a> {
    w: WeightMatrix<'a>,
    row_bytes: usize,
    ks: KernelSet,
    /// Quantized weights on the f32 path: rows dequantized into the thread's buffer.
    dequant: bool,
    panel: bool,
    acts: &'a QuantActs,
    /// f32 activations `[*, cols]` (float formats).
    x: &'a [f32],
    /// Output: activation row `t` of the span goes to `y[t * y_stride + r]` (already offset).
    y: *mut f32,
    y_stride: usize,
    t0: usize,
    n: usize,
    row_tile: usize,
    token_tile: usize,
    /// The plan's ISA: which panel kernels run.
    isa: Isa,
}

impl<'a> Product<'a> {
    fn new(
        t: &ExpertTensor<'a>,
        span: &Span,
        ks: KernelSet,
        acts: &'a QuantActs,
        x: &'a [f32],
        y_base: *mut f32,
        plan: &MoePlan,
    ) -> Self {
        let w = t.expert(span.expert);
        let row_bytes = w.data.len() / w.rows.max(1);
        let float_weights = matches!(t.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
        let panel = plan.panel_min_tokens > 0
            && span.n >= plan.panel_min_tokens
            && ks.fmt != ActFormat::F32
            && panel::supports(t.ty, plan.isa);
        Product {
            w,
            row_bytes,
            ks,
            dequant: ks.fmt == ActFormat::F32 && !float_weights,
            panel,
            acts,
            x,
            // Activation row acts_t0 + i is output row row0 + i, and row0 >= acts_t0.
            y: y_base.wrapping_add((span.row0 - span.acts_t0) * t.rows),
            y_stride: t.rows,
            t0: span.acts_t0,
            n: span.n,
            row_tile: plan.row_tile.clamp(1, ks.max_rows()),
            token_tile: plan.token_tile.max(1),
            isa: plan.isa,
        }
    }

    /// Rows `begin..end` for every token of the span, on job index `tid`.
    fn rows(&self, bufs: &ThreadBufs<'_>, tid: usize, begin: usize, end: usize) {
        if self.panel {
            return self.panel_rows(bufs, tid, begin, end);
        }
        let tt = self.token_tile.min(self.ks.max_tokens()).min(self.n);
        let mut r = begin;
        while r < end {
            // As the dense matmul: a tile's rows come from equal stretches of the range, so
            // each streams through memory in order.
            let nr = self.ks.best_fit(self.row_tile.min(end - r), tt).rows;
            let len = (end - r) / nr;
            for i in 0..len {
                self.tile_rows(bufs, tid, r + i, nr, len, tt);
            }
            r += nr * len;
        }
    }

    /// Rows `first + k * step` for `k in 0..nr`, every token of the span.
    fn tile_rows(
        &self,
        bufs: &ThreadBufs<'_>,
        tid: usize,
        first: usize,
        nr: usize,
        step: usize,
        tt: usize,
    ) {
        let cols = self.w.cols;
        let (wp, w_stride, row_bytes) = if self.dequant {
            // SAFETY: job index `tid` runs on one thread at a time and owns this buffer.
            let f = unsafe { bufs.rows_f32.slice(tid * bufs.rows_per_thread, nr * cols) };
            for (k, out) in f.chunks_exact_mut(cols).enumerate() {
                let row = &self.w.data[(first + k * step) * self.row_bytes..][..self.row_bytes];
                // Cannot fail: the tensor was checked before the threads started.
                let _ = dequantize_row(self.w.ty, row, out);
            }
            (f.as_ptr() as *const u8, cols * 4, cols * 4)
        } else {
            let wp = self.w.data[first * self.row_bytes..].as_ptr();
            (wp, step * self.row_bytes, self.row_bytes)
        };
        let end = self.t0 + self.n;
        let mut t = self.t0;
        while t < end {
            let e = self.ks.with_rows(nr, tt.min(end - t));
            let tile = Tile {
                w: wp,
                w_stride,
                row_bytes,
                cols,
                r0: first,
                y_step: step,
                t0: t,
                acts: self.acts,
                x: self.x,
                y: self.y,
                y_stride: self.y_stride,
            };
            // SAFETY: rows first + k * step (k < nr) lie in the expert's matrix, tokens
            // t..t + e.tokens in the activations (prepared in the set's format); the outputs
            // are this unit's alone; the ISA was checked.
            unsafe { (e.f)(&tile) };
            t += e.tokens;
        }
    }

    /// Rows `begin..end` for every token of the span, 16 rows at a time through a panel.
    fn panel_rows(&self, bufs: &ThreadBufs<'_>, tid: usize, begin: usize, end: usize) {
        // SAFETY: job index `tid` runs on one thread at a time and owns this scratch.
        let buf = unsafe { bufs.panels.slice(tid * bufs.panel_bytes, bufs.panel_bytes) };
        let pan = panel::Panel::new(buf, self.w.cols);
        let base = self.w.data.as_ptr();
        let mut r = begin;
        while r < end {
            let valid = (end - r).min(panel::ROWS);
            // Past the matrix's last row the panel repeats it; those outputs are not stored.
            let rows: [*const u8; panel::ROWS] = std::array::from_fn(|i| {
                // SAFETY: row r + min(i, valid - 1) < rows: inside the checked weight data.
                unsafe { base.add((r + i.min(valid - 1)) * self.row_bytes) }
            });
            let out = panel::Out {
                y: self.y,
                stride: self.y_stride,
                row0: r,
                valid,
            };
            let next = (r + valid)..(r + valid + panel::ROWS).min(end);
            panel::prefetch(&self.w.data[next.start * self.row_bytes..next.end * self.row_bytes]);
            // SAFETY: whole rows of a supported type (checked with the ISA); activations hold
            // the span's tokens in the type's format; this unit alone owns these outputs.
            unsafe {
                panel::pack(self.isa, self.w.ty, &rows, &pan);
                let tokens = self.t0..self.t0 + self.n;
                panel::gemm(
                    self.isa,
                    self.w.ty,
                    &pan,
                    self.acts,
                    tokens,
                    self.token_tile,
                    &out,
                );
            }
            r += valid;
        }
    }
}
