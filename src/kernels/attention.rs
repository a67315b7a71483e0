//! Causal grouped-query attention over a KV cache that the op owns.
//!
//! Stock luminal can only grow a cache by concatenating tensors and copying them back after each
//! step, and its broadcast attention costs tens of seconds per token at 1k context. This op keeps
//! one layer's keys and values in buffers sized for the whole context (zeroed pages the OS commits
//! only when written), appends the step's rows at their positions and attends in place, so prefill
//! and decode run the same compiled graph.
//!
//! Numerics follow llama.cpp's CPU attention with its default f16 KV cache: keys and values are
//! stored rounded to f16, the query is rounded to f16 for the `K·q` product (ggml converts the f32
//! operand of an f16 matmul), softmax sums in f64, and the probabilities are rounded to f16 for the
//! `V·p` product. Without this the logits of a random-weight model drift ~0.04 from llama.cpp's;
//! with it they agree to ~1e-5 until a rare f16 rounding tie. Values are kept as f32 (already
//! rounded), which costs twice f16's memory but needs no conversion on the hot path.

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

/// `x` rounded to the nearest f16 (ties to even), as f32.
#[inline]
pub fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// One layer's keys and values, `[position, kv_head, head_dim]`, f16-rounded.
#[derive(Debug, Clone)]
pub struct KvCache {
    shape: AttentionShape,
    keys: Vec<f32>,
    values: Vec<f32>,
}

impl KvCache {
    pub fn new(shape: AttentionShape) -> Self {
        // Zeroed allocations of this size come from fresh pages that the OS maps on first write,
        // so a cache sized for the whole context only costs what is used.
        let n = shape.max_context * shape.kv_dim();
        Self {
            shape,
            keys: vec![0.0; n],
            values: vec![0.0; n],
        }
    }

    pub fn shape(&self) -> &AttentionShape {
        &self.shape
    }

    /// Moves the cache out (to the op that replaces this one), leaving an empty one.
    pub fn take(&mut self) -> KvCache {
        let empty = KvCache {
            shape: self.shape,
            keys: Vec::new(),
            values: Vec::new(),
        };
        std::mem::replace(self, empty)
    }

    /// Stores keys and values `[seq, kv_dim]` at positions `start..start + seq`.
    pub fn append(&mut self, start: usize, k: &[f32], v: &[f32]) {
        let at = start * self.shape.kv_dim();
        for (dst, src) in self.keys[at..at + k.len()].iter_mut().zip(k) {
            *dst = round_f16(*src);
        }
        for (dst, src) in self.values[at..at + v.len()].iter_mut().zip(v) {
            *dst = round_f16(*src);
        }
    }

    /// Keys of head `kv_head` at position `pos`.
    #[inline]
    pub fn key(&self, pos: usize, kv_head: usize) -> &[f32] {
        let at = pos * self.shape.kv_dim() + kv_head * self.shape.head_dim;
        &self.keys[at..at + self.shape.head_dim]
    }

    /// Values of head `kv_head` at position `pos`.
    #[inline]
    pub fn value(&self, pos: usize, kv_head: usize) -> &[f32] {
        let at = pos * self.shape.kv_dim() + kv_head * self.shape.head_dim;
        &self.values[at..at + self.shape.head_dim]
    }

    /// Attention of one query head `q` at absolute position `pos` over KV head `kv_head`, causal:
    /// keys `0..=pos`. `scores` is scratch; the result goes to `out` (`head_dim` long).
    pub fn attend(
        &self,
        q: &[f32],
        pos: usize,
        kv_head: usize,
        scores: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        let scale = 1.0 / (self.shape.head_dim as f32).sqrt();
        let q: Vec<f32> = q.iter().map(|x| round_f16(*x)).collect();
        scores.clear();
        scores.extend((0..=pos).map(|j| dot(&q, self.key(j, kv_head)) * scale));
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f64;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += f64::from(*s);
        }
        let inv_sum = (1.0 / sum) as f32;
        out.fill(0.0);
        for (j, s) in scores.iter().enumerate() {
            let p = round_f16(s * inv_sum);
            for (o, v) in out.iter_mut().zip(self.value(j, kv_head)) {
                *o += p * v;
            }
        }
    }
}

/// Inputs: `q [seq, heads, head_dim]`, `k [seq, kv_heads, head_dim]`, `v [seq, kv_heads * head_dim]`
/// (q and k already normed and rotated), absolute `positions [seq]` (consecutive).
/// Output: `[seq, heads * head_dim]`.
#[derive(Debug, Clone)]
pub struct CachedAttention {
    pub cache: KvCache,
}

impl PartialEq for CachedAttention {
    /// Each layer's cache is its own: never merge two attention ops.
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

impl Operator for CachedAttention {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let q = contiguous(&inp[0].0, &inp[0].1);
        let k = contiguous(&inp[1].0, &inp[1].1);
        let v = contiguous(&inp[2].0, &inp[2].1);
        let positions = f32_data(&inp[3].0).expect("attention: positions must be f32 data");
        let shape = self.cache.shape;
        let (q_dim, hd) = (shape.q_dim(), shape.head_dim);
        let start = positions.first().map_or(0, |p| *p as usize);
        self.cache.append(start, &k, &v);

        let mut out = vec![0.0; positions.len() * q_dim];
        let mut scores = Vec::with_capacity(start + positions.len());
        for (i, row) in out.chunks_exact_mut(q_dim).enumerate() {
            for (h, head_out) in row.chunks_exact_mut(hd).enumerate() {
                let at = i * q_dim + h * hd;
                let kv_head = h / shape.group();
                self.cache
                    .attend(&q[at..at + hd], start + i, kv_head, &mut scores, head_out);
            }
        }
        vec![Tensor::new(out)]
    }
}

/// Adds attention with a KV cache for one layer to the graph.
pub fn cached_attention<S, H, G, D, C, Q>(
    q: GraphTensor<(S, H, D)>,
    k: GraphTensor<(S, G, D)>,
    v: GraphTensor<(S, C)>,
    positions: GraphTensor<(S,)>,
    shape: AttentionShape,
) -> GraphTensor<(S, Q)>
where
    S: Dimension,
    H: Dimension,
    G: Dimension,
    D: Dimension,
    C: Dimension,
    Q: Dimension,
{
    let id = q
        .graph()
        .add_op(CachedAttention {
            cache: KvCache::new(shape),
        })
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
