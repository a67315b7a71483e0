//! The attention block fused into one op: per-head q/k RMSNorm, rotary embedding, KV-cache append
//! and causal grouped-query attention, parallel over KV heads and blocks of query tokens.
//!
//! In the standard graph this is five ops per layer (two `RmsNorm`s, two `Rope`s, the attention
//! op), each a separate pass over the data with its own allocation. [`FusedAttentionCompiler`] finds the region behind each
//! [`CachedAttention`] op, back to the q/k projections, and replaces it with [`FusedAttention`],
//! which takes over the layer's KV cache. Norms and rotation have the numerics of the ops they
//! replace; attention reads the same f16 cache but computes in f32 with its own tiled kernels
//! ([`crate::cpu::flash`]), several times faster than ggml's order: a prompt runs one job per KV head
//! and block of [`QUERY_BLOCK`] tokens, decode one per KV head and segment of the context, so
//! that a long context is split across threads even where there are fewer KV heads than threads.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use luminal::op::{Function, InputTensor, Operator};
use luminal::prelude::*;

use super::super::cached_attention::{attention_span, AttentionShape, CachedAttention, KvCache};
use super::super::cost::{self, Cost, OpCost};
use super::super::gated_attention::{sigmoid, GatedAttention};
use super::super::input::{contiguous, f32_data};
use super::super::rewrite::{self, is_op, op_as, sources, Source};
use super::super::rms_norm::{rms_norm_row, RmsNorm};
use super::super::rope::rope_head;
use super::runtime::Runtime;
use crate::cpu::flash::{self, FlashScratch, Partial};
use crate::cpu::ggml_math::fma_dispatch;
use crate::cpu::pool::ThreadPool;
use crate::cpu::shared::SharedMut;

/// Query tokens per prompt job: each block of the cache is widened once for this many tokens'
/// query heads, and a 512-token prompt still makes hundreds of jobs to balance.
pub const QUERY_BLOCK: usize = 16;

/// Inputs: `q_proj [seq, q_dim]`, `k_proj [seq, kv_dim]`, `v [seq, kv_dim]`, `q_norm [head_dim]`,
/// `k_norm [head_dim]`, `rope_cos [seq, head_dim/2]`, `rope_sin [seq, head_dim/2]`,
/// `positions [seq]`. Output: `[seq, q_dim]`.
pub struct FusedAttention {
    cache: KvCache,
    eps: f32,
    /// The hybrid models' gated attention: input 0 holds per head the query and its gate, and
    /// each head's output is multiplied by `sigmoid(gate)`.
    gated: bool,
    runtime: Arc<Runtime>,
    /// Attention scratch, one per pool thread, reused across calls.
    scratch: Vec<Mutex<JobScratch>>,
    /// The call's q and k, normalised and rotated: buffers of the runtime's pool, handed back
    /// at the end of each call (held per layer, a long prompt's would add up to gigabytes).
    q: Vec<f32>,
    k: Vec<f32>,
    /// Decode at long context: each (KV head, segment) job's softmax state.
    parts: Parts,
}

/// One thread's buffers: the kernels' own, and a job's query rows gathered and their outputs.
#[derive(Debug, Default)]
struct JobScratch {
    flash: FlashScratch,
    q: Vec<f32>,
    last: Vec<usize>,
    out: Vec<f32>,
}

/// Softmax states `[kv_head, segment, query head of the group]` (`o`: times `head_dim`).
#[derive(Debug, Default)]
struct Parts {
    m: Vec<f32>,
    l: Vec<f32>,
    o: Vec<f32>,
}

impl std::fmt::Debug for FusedAttention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FusedAttention")
    }
}

impl PartialEq for FusedAttention {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

fma_dispatch! {
    /// q or k heads (`[seq, heads, head_dim]`) normalised and rotated into `out` (same length),
    /// with the numerics of the standard graph's `RmsNorm` and `Rope` ops; the tables have
    /// `half` rotary pairs per token.
    fn norm_rope(x: &[f32], norm: &[f32], tables: (&[f32], &[f32]), half: usize, eps: f32, out: &mut [f32])
        => norm_rope_body
}

/// The first `2 * half` dimensions of each head turn, the rest (the hybrid models' partial
/// rotation) pass through.
#[inline(always)]
fn norm_rope_body(
    x: &[f32],
    norm: &[f32],
    (cos, sin): (&[f32], &[f32]),
    half: usize,
    eps: f32,
    out: &mut [f32],
) {
    let hd = norm.len();
    let seq = (cos.len() / half.max(1)).max(1);
    let rot = 2 * half;
    let heads_per_token = x.len() / hd / seq;
    let mut normed = vec![0.0f32; hd];
    for (i, (o, head)) in out.chunks_exact_mut(hd).zip(x.chunks_exact(hd)).enumerate() {
        let t = i / heads_per_token;
        rms_norm_row(head, norm, eps, &mut normed);
        rope_head(
            &normed[..rot],
            &cos[t * half..(t + 1) * half],
            &sin[t * half..(t + 1) * half],
            &mut o[..rot],
        );
        o[rot..].copy_from_slice(&normed[rot..]);
    }
}

/// [`norm_rope`] of a batch, its tokens split across the pool.
fn norm_rope_tokens(
    pool: &ThreadPool,
    x: &[f32],
    tables: [&[f32]; 3],
    half: usize,
    eps: f32,
    out: &mut Vec<f32>,
) {
    let [norm, cos, sin] = tables;
    out.resize(x.len(), 0.0);
    let half = half.max(1);
    let n_tokens = cos.len() / half;
    let threads = pool.n_threads().min(n_tokens / 2).max(1);
    if threads == 1 {
        return norm_rope(x, norm, (cos, sin), half, eps, out);
    }
    let (width, per) = (x.len() / n_tokens, n_tokens.div_ceil(threads));
    let shared = SharedMut::new(out);
    pool.run(threads, |i| {
        let tokens = (i * per).min(n_tokens)..((i + 1) * per).min(n_tokens);
        let span = tokens.start * width..tokens.end * width;
        // SAFETY: each index writes its own tokens' rows.
        let dst = unsafe { shared.slice(span.start, span.len()) };
        let rows = tokens.start * half..tokens.end * half;
        norm_rope(
            &x[span],
            norm,
            (&cos[rows.clone()], &sin[rows]),
            half,
            eps,
            dst,
        );
    });
}

impl Operator for FusedAttention {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let out = self.compute(&inp);
        self.runtime.buffers.recycle(inp);
        vec![Tensor::new(out)]
    }
    /// The cost model and kind, for the profiler (`cost::model_of`, `cost::kind_of`).
    fn custom(&mut self, key: &str, _: Box<dyn std::any::Any>) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key)
    }
}

impl OpCost for FusedAttention {
    /// Every input (projections, norm weights, rotary tables, positions), the cache over
    /// every attended position, and the q/k norms and rotations besides attention itself.
    /// The cache counts once, as for the standard op: the tiled kernels read a KV head's
    /// blocks again for each block of [`QUERY_BLOCK`] query tokens, reads served mostly by the
    /// CPU's caches (a KV head's cache is 512 KiB at 1024 positions of head size 128); the
    /// model counts memory traffic. Decode's segment merge (a few operations per segment and
    /// query head) is not counted.
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        let (start, seq) = attention_span(inp, 7);
        let qk: u64 = (0..2)
            .map(|i| inp.get(i).map_or(0, |(_, t)| cost::read_len(t)))
            .sum();
        let mut total: Cost = (0..8).map(|i| cost::input_activations(inp, i)).sum();
        total += self.cache.shape().cost(start, seq);
        // RMSNorm (4 per element) and rotation (3 per element) of q and k.
        total.flops += 7 * qk;
        total
    }
}

impl FusedAttention {
    fn compute(&mut self, inp: &[(InputTensor, ShapeTracker)]) -> Vec<f32> {
        let input = |i: usize| contiguous(&inp[i].0, &inp[i].1);
        let (q_in, k_proj, v) = (input(0), input(1), input(2));
        let vector = |i: usize| f32_data(&inp[i].0).expect("fused attention: f32 input");
        let (q_norm, k_norm) = (vector(3), vector(4));
        let (cos, sin, positions) = (vector(5), vector(6), vector(7));
        let pool = &self.runtime.pool;
        let half = cos.len() / positions.len().max(1);
        let (q_proj, gates) = match self.gated {
            true => split_query_and_gate(&q_in, self.cache.shape().head_dim),
            false => (q_in, Cow::Borrowed(&[][..])),
        };
        self.q = self.runtime.buffers.take_stale(q_proj.len());
        self.k = self.runtime.buffers.take_stale(k_proj.len());
        norm_rope_tokens(
            pool,
            &q_proj,
            [q_norm, cos, sin],
            half,
            self.eps,
            &mut self.q,
        );
        norm_rope_tokens(
            pool,
            &k_proj,
            [k_norm, cos, sin],
            half,
            self.eps,
            &mut self.k,
        );
        let start = positions.first().map_or(0, |p| *p as usize);
        self.cache.append(start, &self.k, &v);

        let mut out = self.runtime.buffers.take_stale(self.q.len());
        match positions.len() {
            0 => {}
            1 => self.decode(start, &mut out),
            n => self.prompt(start, n, &mut out),
        }
        for (o, g) in out.iter_mut().zip(gates.iter()) {
            *o *= sigmoid(*g);
        }
        for buf in [std::mem::take(&mut self.q), std::mem::take(&mut self.k)] {
            self.runtime.buffers.give(buf);
        }
        out
    }

    /// Tokens at `start..start + n_tokens`: one job per block of query tokens and KV head,
    /// the blocks that see the most keys handed out first.
    fn prompt(&self, start: usize, n_tokens: usize, out: &mut [f32]) {
        let shape = *self.cache.shape();
        let (kv_heads, span) = (shape.kv_heads, shape.group() * shape.head_dim);
        let blocks = n_tokens.div_ceil(QUERY_BLOCK);
        let jobs = blocks * kv_heads;
        let next = AtomicUsize::new(0);
        let shared = SharedMut::new(out);
        let threads = self.runtime.pool.n_threads().min(jobs);
        self.runtime.pool.run(threads, |worker| {
            let mut s = self.scratch[worker]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            loop {
                let job = next.fetch_add(1, Ordering::Relaxed);
                if job >= jobs {
                    break;
                }
                let (block, kv) = (blocks - 1 - job / kv_heads, job % kv_heads);
                let tokens = block * QUERY_BLOCK..((block + 1) * QUERY_BLOCK).min(n_tokens);
                let JobScratch {
                    flash,
                    q,
                    last,
                    out,
                } = &mut *s;
                q.clear();
                last.clear();
                for t in tokens.clone() {
                    let at = t * shape.q_dim() + kv * span;
                    q.extend_from_slice(&self.q[at..at + span]);
                    last.extend(std::iter::repeat_n(start + t, shape.group()));
                }
                out.resize(q.len(), 0.0);
                let head = self.cache.head(kv, start + tokens.end);
                flash::attend_rows(head, q, last, scale(&shape), flash, out);
                for (i, t) in tokens.enumerate() {
                    // SAFETY: each (token, KV head) span belongs to exactly one job.
                    let dst = unsafe { shared.slice(t * shape.q_dim() + kv * span, span) };
                    dst.copy_from_slice(&out[i * span..(i + 1) * span]);
                }
            }
        });
    }

    /// One token at `pos`: a job per KV head and segment of the positions `0..=pos`; with
    /// more than one segment their states are merged, in order, once all are done.
    fn decode(&mut self, pos: usize, out: &mut [f32]) {
        let shape = *self.cache.shape();
        let (kv_heads, group, hd) = (shape.kv_heads, shape.group(), shape.head_dim);
        let segs = flash::segments(pos);
        let jobs = kv_heads * segs;
        let slots = jobs * group;
        let parts = &mut self.parts;
        for v in [&mut parts.m, &mut parts.l] {
            v.resize(slots, 0.0);
        }
        parts.o.resize(slots * hd, 0.0);
        let (m, l, o) = (
            SharedMut::new(&mut parts.m),
            SharedMut::new(&mut parts.l),
            SharedMut::new(&mut parts.o),
        );
        let shared = SharedMut::new(out);
        let (cache, q, scratch) = (&self.cache, &self.q, &self.scratch);
        let next = AtomicUsize::new(0);
        let threads = self.runtime.pool.n_threads().min(jobs);
        self.runtime.pool.run(threads, |worker| {
            let mut s = scratch[worker].lock().unwrap_or_else(|e| e.into_inner());
            let JobScratch { flash, last, .. } = &mut *s;
            last.clear();
            last.resize(group, pos);
            loop {
                let job = next.fetch_add(1, Ordering::Relaxed);
                if job >= jobs {
                    break;
                }
                let (kv, seg) = (job / segs, job % segs);
                let q = &q[kv * group * hd..(kv + 1) * group * hd];
                let head = cache.head(kv, pos + 1);
                let slot = job * group;
                // SAFETY: each job owns its slots, and its span of the output.
                let mut part = unsafe {
                    Partial {
                        m: m.slice(slot, group),
                        l: l.slice(slot, group),
                        o: o.slice(slot * hd, group * hd),
                    }
                };
                flash::segment_partial(head, q, last, seg, scale(&shape), flash, &mut part);
                if segs == 1 {
                    // SAFETY: with one segment per KV head, this job alone writes the head's
                    // group of query rows.
                    let dst = unsafe { shared.slice(kv * group * hd, group * hd) };
                    flash::finish(&part, hd, dst);
                }
            }
        });
        if segs > 1 {
            self.merge_segments(segs, out);
        }
    }

    /// Each KV head's segment states merged in order, then normalised into `out`.
    fn merge_segments(&mut self, segs: usize, out: &mut [f32]) {
        let shape = *self.cache.shape();
        let (group, hd) = (shape.group(), shape.head_dim);
        let Parts { m, l, o } = &mut self.parts;
        let per_head = segs * group;
        let heads = m
            .chunks_exact_mut(per_head)
            .zip(l.chunks_exact_mut(per_head))
            .zip(o.chunks_exact_mut(per_head * hd));
        for (kv, ((m, l), o)) in heads.enumerate() {
            let (m0, m_rest) = m.split_at_mut(group);
            let (l0, l_rest) = l.split_at_mut(group);
            let (o0, o_rest) = o.split_at_mut(group * hd);
            let mut total = Partial {
                m: m0,
                l: l0,
                o: o0,
            };
            for seg in 0..segs - 1 {
                let part = Partial {
                    m: &mut m_rest[seg * group..(seg + 1) * group],
                    l: &mut l_rest[seg * group..(seg + 1) * group],
                    o: &mut o_rest[seg * group * hd..(seg + 1) * group * hd],
                };
                flash::merge(&mut total, &part, hd);
            }
            flash::finish(&total, hd, &mut out[kv * group * hd..(kv + 1) * group * hd]);
        }
    }
}

/// The queries and the gates of a gated attention layer's projection, whose rows hold per head
/// `[query (head_dim) | gate (head_dim)]`: each `[seq, q_dim]`.
fn split_query_and_gate(q_gate: &[f32], hd: usize) -> (Cow<'static, [f32]>, Cow<'static, [f32]>) {
    let (mut q, mut g) = (
        Vec::with_capacity(q_gate.len() / 2),
        Vec::with_capacity(q_gate.len() / 2),
    );
    for head in q_gate.chunks_exact(2 * hd) {
        q.extend_from_slice(&head[..hd]);
        g.extend_from_slice(&head[hd..]);
    }
    (Cow::Owned(q), Cow::Owned(g))
}

/// `1 / sqrt(head_dim)`, the attention scale.
fn scale(shape: &AttentionShape) -> f32 {
    1.0 / (shape.head_dim as f32).sqrt()
}

/// Replaces each layer's q/k norms, rotary embeddings and [`CachedAttention`] with one
/// [`FusedAttention`]. Runs after [`super::rms_norm::RmsNormCompiler`], whose [`RmsNorm`] ops
/// mark where the region begins.
pub struct FusedAttentionCompiler {
    pub runtime: Arc<Runtime>,
    /// The graph's rotary-table inputs, the only loads the rotation region may read.
    pub rope_inputs: [NodeIndex; 2],
}

impl Compiler for FusedAttentionCompiler {
    fn compile<T: ToIdsMut>(&self, graph: &mut Graph, mut remap: T) {
        let anchors: Vec<NodeIndex> = graph
            .graph
            .node_indices()
            .filter(|&n| is_op::<CachedAttention>(graph, n))
            .collect();
        for node in anchors {
            let Some(plan) = self.match_region(graph, node) else {
                continue;
            };
            let cache = graph
                .graph
                .node_weight_mut(node)
                .and_then(|op| op.as_any_mut().downcast_mut::<CachedAttention>())
                .map(|a| a.cache.take())
                .expect("anchor is a CachedAttention");
            let op = Box::new(self.fused(cache, plan.eps, false));
            rewrite::replace(graph, &mut remap, node, op, &plan.inputs);
        }
        self.swap_gated(graph);
    }
}

impl FusedAttentionCompiler {
    fn fused(&self, cache: KvCache, eps: f32, gated: bool) -> FusedAttention {
        let threads = self.runtime.pool.n_threads();
        FusedAttention {
            cache,
            eps,
            gated,
            runtime: self.runtime.clone(),
            scratch: (0..threads).map(|_| Mutex::default()).collect(),
            q: vec![],
            k: vec![],
            parts: Parts::default(),
        }
    }

    /// Each [`GatedAttention`] op (the hybrid models' attention layers, already one op with the
    /// same inputs in the same order) becomes a gated [`FusedAttention`] that takes over its
    /// cache.
    fn swap_gated(&self, graph: &mut Graph) {
        let nodes: Vec<NodeIndex> = graph
            .graph
            .node_indices()
            .filter(|&n| is_op::<GatedAttention>(graph, n))
            .collect();
        for node in nodes {
            let Some(op) = graph.graph.node_weight_mut(node) else {
                continue;
            };
            let Some(gated) = op.as_any_mut().downcast_mut::<GatedAttention>() else {
                continue;
            };
            let (cache, eps) = (gated.cache.take(), gated.eps);
            *op = Box::new(self.fused(cache, eps, true));
        }
    }
}

struct Region {
    inputs: Vec<Source>,
    eps: f32,
}

impl FusedAttentionCompiler {
    fn match_region(&self, graph: &Graph, attention: NodeIndex) -> Option<Region> {
        let [q_out, k_out, v, positions] =
            <[Source; 4]>::try_from(sources(graph, attention)).ok()?;
        let (q_norm, q_eps) = self.norm_behind(graph, q_out.0)?;
        let (k_norm, k_eps) = self.norm_behind(graph, k_out.0)?;
        if q_eps != k_eps {
            return None;
        }
        let [q_proj, q_w] = <[Source; 2]>::try_from(sources(graph, q_norm)).ok()?;
        let [k_proj, k_w] = <[Source; 2]>::try_from(sources(graph, k_norm)).ok()?;
        let plain = |node: NodeIndex| (node, 0u8, ShapeTracker::new(&[]));
        let [cos, sin] = self.rope_inputs;
        Some(Region {
            inputs: vec![
                q_proj,
                k_proj,
                v,
                plain(q_w.0),
                plain(k_w.0),
                plain(cos),
                plain(sin),
                positions,
            ],
            eps: q_eps,
        })
    }

    /// The single RMSNorm op behind a rotary region ending at `node`, if the region reads nothing
    /// else but constants and the rotary tables.
    fn norm_behind(&self, graph: &Graph, node: NodeIndex) -> Option<(NodeIndex, f32)> {
        let mut stack = vec![node];
        let mut seen = HashSet::new();
        let mut norm = None;
        while let Some(n) = stack.pop() {
            if !seen.insert(n) {
                continue;
            }
            if let Some(op) = op_as::<RmsNorm>(graph, n) {
                if norm.replace((n, op.eps)).is_some_and(|(m, _)| m != n) {
                    return None;
                }
                continue;
            }
            if is_op::<Function>(graph, n) && !self.rope_inputs.contains(&n) {
                return None;
            }
            stack.extend(sources(graph, n).into_iter().map(|s| s.0));
        }
        norm
    }
}
