//! Causal grouped-query attention over a KV cache that the op owns.
//!
//! Stock luminal can only grow a cache by concatenating tensors and copying them back after each
//! step, and its broadcast attention costs tens of seconds per token at 1k context. This op keeps
//! one layer's keys and values in buffers sized for the whole context (zeroed pages the OS commits
//! only when written), appends the step's rows at their positions and attends in place, so prefill
//! and decode run the same compiled graph.

use luminal::op::{InputTensor, Operator};
use luminal::prelude::*;

use super::input::{contiguous, f32_data};
use super::matmul::dot;

/// Attention geometry of one layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Positions the cache can hold.
    pub max_context: usize,
}

impl AttentionShape {
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }
    /// Query heads sharing one KV head.
    pub fn group(&self) -> usize {
        self.heads / self.kv_heads
    }
}

/// Inputs: `q [seq, heads, head_dim]`, `k [seq, kv_heads, head_dim]`, `v [seq, kv_heads * head_dim]`
/// (q and k already normed and rotated), absolute `positions [seq]` (consecutive).
/// Output: `[seq, heads * head_dim]`.
#[derive(Debug, Clone)]
pub struct CachedAttention {
    pub shape: AttentionShape,
    keys: Vec<f32>,
    values: Vec<f32>,
}

impl PartialEq for CachedAttention {
    /// Each layer's cache is its own: never merge two attention ops.
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

impl CachedAttention {
    pub fn new(shape: AttentionShape) -> Self {
        let n = shape.max_context * shape.kv_dim();
        Self {
            shape,
            keys: vec![0.0; n],
            values: vec![0.0; n],
        }
    }

    /// Stores the step's keys and values at positions `start..start + seq`.
    fn append(&mut self, start: usize, k: &[f32], v: &[f32]) {
        let at = start * self.shape.kv_dim();
        let f16r = |x: &f32| half::f16::from_f32(*x).to_f32();
        let mode = std::env::var("KVF16").unwrap_or_default();
        for (d, s) in self.keys[at..at + k.len()].iter_mut().zip(k) { *d = if mode.contains('k') { f16r(s) } else { *s }; }
        for (d, s) in self.values[at..at + v.len()].iter_mut().zip(v) { *d = if mode.contains('v') { f16r(s) } else { *s }; }
    }

    /// Attention of query `q` (one head) at absolute position `pos` over KV head `kv_head`.
    fn attend_one(&self, q: &[f32], pos: usize, kv_head: usize, scores: &mut Vec<f32>, out: &mut [f32]) {
        let (kv_dim, hd) = (self.shape.kv_dim(), self.shape.head_dim);
        let scale = 1.0 / (hd as f32).sqrt();
        let mode = std::env::var("KVF16").unwrap_or_default();
        let qr: Vec<f32> = q.iter().map(|x| if mode.contains('q') { half::f16::from_f32(*x).to_f32() } else { *x }).collect();
        let q = &qr[..];
        scores.clear();
        scores.extend((0..=pos).map(|j| {
            let at = j * kv_dim + kv_head * hd;
            dot(q, &self.keys[at..at + hd]) * scale
        }));
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        out.fill(0.0);
        for (j, w) in scores.iter().enumerate() {
            let at = j * kv_dim + kv_head * hd;
            let w = w / sum;
            let w = if mode.contains('p') { half::f16::from_f32(w).to_f32() } else { w };
            for (o, v) in out.iter_mut().zip(&self.values[at..at + hd]) {
                *o += w * v;
            }
        }
    }
}

impl Operator for CachedAttention {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let q = contiguous(&inp[0].0, &inp[0].1);
        let k = contiguous(&inp[1].0, &inp[1].1);
        let v = contiguous(&inp[2].0, &inp[2].1);
        let positions = f32_data(&inp[3].0).expect("attention: positions must be f32 data");
        let (q_dim, hd) = (self.shape.q_dim(), self.shape.head_dim);
        let seq = positions.len();
        let start = positions.first().map_or(0, |p| *p as usize);
        self.append(start, &k, &v);

        let mut out = vec![0.0; seq * q_dim];
        let mut scores = Vec::with_capacity(start + seq);
        for i in 0..seq {
            for h in 0..self.shape.heads {
                let at = i * q_dim + h * hd;
                let q_head = &q[at..at + hd];
                self.attend_one(q_head, start + i, h / self.shape.group(), &mut scores, &mut out[at..at + hd]);
            }
        }
        vec![Tensor::new(out)]
    }
}

/// Adds attention with a KV cache for one layer to the graph.
pub fn cached_attention<S: Dimension, H: Dimension, G: Dimension, D: Dimension, Q: Dimension, C: Dimension>(
    q: GraphTensor<(S, H, D)>,
    k: GraphTensor<(S, G, D)>,
    v: GraphTensor<(S, C)>,
    positions: GraphTensor<(S,)>,
    shape: AttentionShape,
) -> GraphTensor<(S, Q)> {
    let id = q
        .graph()
        .add_op(CachedAttention::new(shape))
        .input(q.id, 0, q.shape)
        .input(k.id, 0, k.shape)
        .input(v.id, 0, v.shape)
        .input(positions.id, 0, positions.shape)
        .finish();
    GraphTensor::from_id(
        id,
        ShapeTracker::new(&[S::const_size(), Q::const_size()]),
        q.graph_ref,
    )
}
