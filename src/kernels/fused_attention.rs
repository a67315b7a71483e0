//! The attention block fused into one op: per-head q/k RMSNorm, rotary embedding, KV-cache append
//! and causal grouped-query attention, parallel over heads.
//!
//! In the standard graph this is ~30 nodes per layer (two norms of eight ops, two rotary
//! embeddings of ten, the attention op). [`FusedAttentionCompiler`] finds the region behind each
//! [`CachedAttention`] op, back to the q/k projections, and replaces it with [`FusedAttention`],
//! which takes over the layer's KV cache. Numerics are those of the ops it replaces: ggml's
//! RMSNorm, NEOX rotation with the same tables, llama.cpp's f16 KV-cache attention.

use std::collections::HashSet;
use std::sync::Arc;

use luminal::op::{Function, InputTensor, Operator};
use luminal::prelude::*;

use super::attention::{round_f16, CachedAttention, KvCache};
use super::input::{contiguous, f32_data};
use super::rewrite::{self, is_op, op_as, sources, Source};
use super::rms_norm::{rms_norm_row, RmsNorm};
use crate::cpu::pool::ThreadPool;

/// Inputs: `q_proj [seq, q_dim]`, `k_proj [seq, kv_dim]`, `v [seq, kv_dim]`, `q_norm [head_dim]`,
/// `k_norm [head_dim]`, `rope_cos [seq, head_dim/2]`, `rope_sin [seq, head_dim/2]`,
/// `positions [seq]`. Output: `[seq, q_dim]`.
pub struct FusedAttention {
    pub cache: KvCache,
    pub eps: f32,
    pub pool: Arc<ThreadPool>,
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

/// q or k heads after RMSNorm and rotation: `[seq, heads, head_dim]`.
fn norm_rope(x: &[f32], norm: &[f32], cos: &[f32], sin: &[f32], eps: f32) -> Vec<f32> {
    let hd = norm.len();
    let half = hd / 2;
    let mut out = vec![0.0; x.len()];
    let tokens = x.len() / hd;
    let heads_per_token = tokens / (cos.len() / half).max(1);
    for (i, (o, head)) in out.chunks_exact_mut(hd).zip(x.chunks_exact(hd)).enumerate() {
        let t = i / heads_per_token;
        let (c, s) = (&cos[t * half..(t + 1) * half], &sin[t * half..(t + 1) * half]);
        let mut normed = vec![0.0; hd];
        rms_norm_row(head, norm, eps, &mut normed);
        let (x1, x2) = normed.split_at(half);
        let (o1, o2) = o.split_at_mut(half);
        for j in 0..half {
            // The same products and sums as the graph's `x1*cos - x2*sin`, `x2*cos + x1*sin`.
            o1[j] = x1[j] * c[j] + (x2[j] * s[j]) * -1.0;
            o2[j] = x2[j] * c[j] + x1[j] * s[j];
        }
    }
    out
}

impl Operator for FusedAttention {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let input = |i: usize| contiguous(&inp[i].0, &inp[i].1);
        let (q, k, v) = (input(0), input(1), input(2));
        let vector = |i: usize| f32_data(&inp[i].0).expect("fused attention: f32 input");
        let (q_norm, k_norm) = (vector(3), vector(4));
        let (cos, sin, positions) = (vector(5), vector(6), vector(7));
        let shape = *self.cache.shape();
        let q = norm_rope(&q, q_norm, cos, sin, self.eps);
        let k = norm_rope(&k, k_norm, cos, sin, self.eps);
        let start = positions.first().map_or(0, |p| *p as usize);
        self.cache.append(start, &k, &v);

        let (q_dim, hd, heads) = (shape.q_dim(), shape.head_dim, shape.heads);
        let seq = positions.len();
        let mut out = vec![0.0f32; seq * q_dim];
        let jobs = seq * heads;
        let threads = self.pool.n_threads().min(jobs);
        let out_ptr = crate::cpu::shared::SharedMut::new(&mut out);
        let cache = &self.cache;
        self.pool.run(threads, |worker| {
            let mut scores = Vec::with_capacity(start + seq);
            for job in (worker..jobs).step_by(threads) {
                let (i, h) = (job / heads, job % heads);
                let at = i * q_dim + h * hd;
                // SAFETY: each (token, head) slice is written by exactly one job.
                let dst = unsafe { out_ptr.slice_mut(at, hd) };
                cache.attend(&q[at..at + hd], start + i, h / shape.group(), &mut scores, dst);
            }
        });
        vec![Tensor::new(out)]
    }
}

/// Replaces each layer's q/k norms, rotary embeddings and [`CachedAttention`] with one
/// [`FusedAttention`]. Runs after [`super::rms_norm::RmsNormCompiler`], whose [`RmsNorm`] ops
/// mark where the region begins.
pub struct FusedAttentionCompiler {
    pub pool: Arc<ThreadPool>,
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
            let op = Box::new(FusedAttention {
                cache,
                eps: plan.eps,
                pool: self.pool.clone(),
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
        let [q_out, k_out, v, positions] = <[Source; 4]>::try_from(sources(graph, attention)).ok()?;
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
            inputs: vec![q_proj, k_proj, v, plain(q_w.0), plain(k_w.0), plain(cos), plain(sin), positions],
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
