//! The attention block fused into one op: per-head q/k RMSNorm, rotary embedding, KV-cache append
//! and causal grouped-query attention, parallel over KV heads.
//!
//! In the standard graph this is five ops per layer (two `RmsNorm`s, two `Rope`s, the attention
//! op), each a separate pass over the data with its own allocation. [`FusedAttentionCompiler`] finds the region behind each
//! [`CachedAttention`] op, back to the q/k projections, and replaces it with [`FusedAttention`],
//! which takes over the layer's KV cache. Norms and rotation have the numerics of the ops they
//! replace; attention reads the same f16 cache (its bits converted inside the FMA loops,
//! [`crate::cpu::kv_simd`]) but computes in f32 in its own summation order
//! ([`KvCache::attend_group_fast`]), several times faster than ggml's.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use luminal::op::{Function, InputTensor, Operator};
use luminal::prelude::*;

use super::super::cached_attention::{attention_span, CachedAttention, GroupScratch, KvCache};
use super::super::cost::{self, Cost, OpCost};
use super::super::input::{contiguous, f32_data};
use super::super::rewrite::{self, is_op, op_as, sources, Source};
use super::super::rms_norm::{rms_norm_row, RmsNorm};
use super::super::rope::rope_head;
use super::Runtime;
use crate::cpu::ggml_math::fma_dispatch;
use crate::cpu::shared::SharedMut;

/// Inputs: `q_proj [seq, q_dim]`, `k_proj [seq, kv_dim]`, `v [seq, kv_dim]`, `q_norm [head_dim]`,
/// `k_norm [head_dim]`, `rope_cos [seq, head_dim/2]`, `rope_sin [seq, head_dim/2]`,
/// `positions [seq]`. Output: `[seq, q_dim]`.
pub struct FusedAttention {
    cache: KvCache,
    eps: f32,
    runtime: Arc<Runtime>,
    /// Attention scratch, one per pool thread, reused across calls.
    scratch: Vec<Mutex<GroupScratch>>,
    q: Vec<f32>,
    k: Vec<f32>,
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
    /// q or k heads (`[seq, heads, head_dim]`) normalised and rotated into `out`, with the
    /// numerics of the standard graph's `RmsNorm` and `Rope` ops.
    fn norm_rope(x: &[f32], norm: &[f32], cos: &[f32], sin: &[f32], eps: f32, out: &mut Vec<f32>)
        => norm_rope_body
}

#[inline(always)]
fn norm_rope_body(x: &[f32], norm: &[f32], cos: &[f32], sin: &[f32], eps: f32, out: &mut Vec<f32>) {
    let hd = norm.len();
    let half = hd / 2;
    out.resize(x.len(), 0.0);
    let seq = (cos.len() / half.max(1)).max(1);
    let heads_per_token = x.len() / hd / seq;
    let mut normed = vec![0.0f32; hd];
    for (i, (o, head)) in out.chunks_exact_mut(hd).zip(x.chunks_exact(hd)).enumerate() {
        let t = i / heads_per_token;
        rms_norm_row(head, norm, eps, &mut normed);
        rope_head(
            &normed,
            &cos[t * half..(t + 1) * half],
            &sin[t * half..(t + 1) * half],
            o,
        );
    }
}

fma_dispatch! {
    /// Attention jobs `worker, worker + stride, ...` (job = token * kv_heads + kv_head: the
    /// query heads sharing one KV head).
    #[allow(clippy::too_many_arguments)]
    fn attend_jobs(
        cache: &KvCache,
        q: &[f32],
        start: usize,
        worker: usize,
        stride: usize,
        scratch: &mut GroupScratch,
        out: SharedMut<'_, f32>,
    ) => attend_jobs_body
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn attend_jobs_body(
    cache: &KvCache,
    q: &[f32],
    start: usize,
    worker: usize,
    stride: usize,
    scratch: &mut GroupScratch,
    out: SharedMut<'_, f32>,
) {
    let shape = *cache.shape();
    let (q_dim, hd, kv_heads) = (shape.q_dim(), shape.head_dim, shape.kv_heads);
    let span = shape.group() * hd;
    let n_jobs = q.len() / span;
    let mut job = worker;
    while job < n_jobs {
        let (i, kv) = (job / kv_heads, job % kv_heads);
        let at = i * q_dim + kv * span;
        // SAFETY: each (token, KV head) span belongs to exactly one job, each job to one worker.
        let dst = unsafe { out.slice(at, span) };
        cache.attend_group_fast(&q[at..at + span], start + i, kv, scratch, dst);
        job += stride;
    }
}

impl Operator for FusedAttention {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let out = self.compute(&inp);
        self.runtime.buffers.recycle(inp);
        vec![Tensor::new(out)]
    }
}

impl OpCost for FusedAttention {
    /// Every input (projections, norm weights, rotary tables, positions), the cache over
    /// every attended position, and the q/k norms and rotations besides attention itself.
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        let (start, seq) = attention_span(inp, 7);
        let qk: u64 = (0..2)
            .map(|i| inp.get(i).map_or(0, |(_, t)| cost::read_len(t)))
            .sum();
        let mut total: Cost = (0..8).map(|i| cost::input_activations(inp, i)).sum();
        total += cost::attention(self.cache.shape(), start, seq);
        // RMSNorm (4 per element) and rotation (3 per element) of q and k.
        total.flops += 7 * qk;
        total
    }
}

impl FusedAttention {
    fn compute(&mut self, inp: &[(InputTensor, ShapeTracker)]) -> Vec<f32> {
        let input = |i: usize| contiguous(&inp[i].0, &inp[i].1);
        let (q_proj, k_proj, v) = (input(0), input(1), input(2));
        let vector = |i: usize| f32_data(&inp[i].0).expect("fused attention: f32 input");
        let (q_norm, k_norm) = (vector(3), vector(4));
        let (cos, sin, positions) = (vector(5), vector(6), vector(7));
        norm_rope(&q_proj, q_norm, cos, sin, self.eps, &mut self.q);
        norm_rope(&k_proj, k_norm, cos, sin, self.eps, &mut self.k);
        let start = positions.first().map_or(0, |p| *p as usize);
        self.cache.append(start, &self.k, &v);

        let mut out = self.runtime.buffers.take(self.q.len());
        let shape = self.cache.shape();
        let n_jobs = self.q.len() / (shape.group() * shape.head_dim);
        let threads = self.runtime.pool.n_threads().min(n_jobs).max(1);
        let shared = SharedMut::new(&mut out);
        let (cache, q, scratch) = (&self.cache, &self.q, &self.scratch);
        self.runtime.pool.run(threads, |worker| {
            let mut s = scratch[worker].lock().unwrap_or_else(|e| e.into_inner());
            attend_jobs(cache, q, start, worker, threads, &mut s, shared);
        });
        out
    }
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
            let threads = self.runtime.pool.n_threads();
            let op = Box::new(FusedAttention {
                cache,
                eps: plan.eps,
                runtime: self.runtime.clone(),
                scratch: (0..threads).map(|_| Mutex::default()).collect(),
                q: vec![],
                k: vec![],
            });
            rewrite::replace(graph, &mut remap, node, op, &plan.inputs);
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
