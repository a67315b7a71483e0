//! The hybrid models' gated full attention (Qwen3.5/3.6, Qwen3-Next) as one op that owns the
//! layer's KV cache: from the raw projections to the gated output.
//!
//! As llama.cpp's `build_layer_attn` (qwen35.cpp): the query projection yields per head the
//! query and a gate (`[q (head_dim) | gate (head_dim)]`); q and k get their per-head RMSNorm;
//! the rotary embedding turns the first `rope_dims` dimensions of each head (NEOX pairs `(i,
//! i + rope_dims / 2)`, the engine's tables already carry the sections), the rest pass
//! through; then causal grouped-query attention over the f16 cache, as the Qwen3 op computes it
//! ([`KvCache::attend`]); and the output times `sigmoid(gate)`. Norms and rotation have the
//! numerics of the standard graph's ops ([`rms_norm_row`], [`rope_head`]).
//!
//! Inputs: `q_gate [seq, 2 * q_dim]`, `k [seq, kv_dim]`, `v [seq, kv_dim]`, `q_norm
//! [head_dim]`, `k_norm [head_dim]`, `rope_cos`, `rope_sin [seq, rope_dims / 2]`, `positions
//! [seq]`. Output: `[seq, q_dim]`.

use luminal::op::{InputTensor, Operator};
use luminal::prelude::*;

use super::cached_attention::{attention_span, AttendScratch, KvCache};
use super::cost::{self, Cost, OpCost};
use super::input::{contiguous, f32_data};
use super::rms_norm::rms_norm_row;
use super::rope::rope_head;
use crate::cpu::ggml_math;

/// Gated attention over a KV cache the op owns.
#[derive(Debug, Clone)]
pub struct GatedAttention {
    pub cache: KvCache,
    pub eps: f32,
    /// Leading dimensions of each head the rotary embedding turns.
    pub rope_dims: usize,
}

impl PartialEq for GatedAttention {
    /// Each layer's cache is its own: never merge two attention ops.
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

/// One head normed with `weight`, then its first `rope_dims` dimensions turned by the tables
/// (`cos`, `sin`: `rope_dims / 2` each), into `out` (`head_dim` long).
pub fn norm_rope_partial(
    x: &[f32],
    weight: &[f32],
    eps: f32,
    tables: (&[f32], &[f32]),
    normed: &mut [f32],
    out: &mut [f32],
) {
    let (cos, sin) = tables;
    let rot = 2 * cos.len();
    rms_norm_row(x, weight, eps, normed);
    rope_head(&normed[..rot], cos, sin, &mut out[..rot]);
    out[rot..].copy_from_slice(&normed[rot..]);
}

/// `sigmoid(x)`, as ggml's `ggml_vec_sigmoid_f32` computes it.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl GatedAttention {
    /// Queries `[seq, q_dim]` and keys `[seq, kv_dim]` normed and rotated, and the gates
    /// `[seq, q_dim]`, from the raw projections.
    fn prepare(
        &self,
        q_gate: &[f32],
        k: &[f32],
        norms: (&[f32], &[f32]),
        tables: (&[f32], &[f32]),
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let shape = *self.cache.shape();
        let hd = shape.head_dim;
        let half = self.rope_dims / 2;
        let seq = k.len() / shape.kv_dim().max(1);
        let mut normed = vec![0.0; hd];
        let mut q = vec![0.0; seq * shape.q_dim()];
        let mut gates = vec![0.0; seq * shape.q_dim()];
        let mut keys = vec![0.0; k.len()];
        for t in 0..seq {
            let rows = (
                &tables.0[t * half..(t + 1) * half],
                &tables.1[t * half..(t + 1) * half],
            );
            for h in 0..shape.heads {
                let at = (t * shape.heads + h) * 2 * hd;
                let out = &mut q[(t * shape.heads + h) * hd..][..hd];
                let x = &q_gate[at..at + hd];
                norm_rope_partial(x, norms.0, self.eps, rows, &mut normed, out);
                gates[(t * shape.heads + h) * hd..][..hd].copy_from_slice(&q_gate[at + hd..][..hd]);
            }
            for g in 0..shape.kv_heads {
                let at = (t * shape.kv_heads + g) * hd;
                let out = &mut keys[at..at + hd];
                norm_rope_partial(&k[at..at + hd], norms.1, self.eps, rows, &mut normed, out);
            }
        }
        (q, keys, gates)
    }
}

impl Operator for GatedAttention {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let input = |i: usize| contiguous(&inp[i].0, &inp[i].1);
        let (q_gate, k, v) = (input(0), input(1), input(2));
        let vector = |i: usize| f32_data(&inp[i].0).expect("gated attention: f32 input");
        let norms = (vector(3).as_slice(), vector(4).as_slice());
        let tables = (vector(5).as_slice(), vector(6).as_slice());
        let positions = vector(7);
        let start = positions.first().map_or(0, |p| *p as usize);
        let (q, keys, gates) = self.prepare(&q_gate, &k, norms, tables);
        self.cache.append(start, &keys, &v);

        let mut out = vec![0.0; q.len()];
        let batch = positions.len() > 1;
        attend_gated(&self.cache, &q, &gates, start, batch, &mut out);
        vec![Tensor::new(out)]
    }

    /// The cost model and kind, for the profiler (`cost::model_of`, `cost::kind_of`).
    fn custom(&mut self, key: &str, _: Box<dyn std::any::Any>) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key)
    }
}

impl OpCost for GatedAttention {
    /// Every input, the cache over every attended position, the norms, rotations and gates.
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        let (start, seq) = attention_span(inp, 7);
        let shape = self.cache.shape();
        let (q, kv) = (shape.q_dim() as u64, shape.kv_dim() as u64);
        let extra = Cost {
            // q and k norms (square, add, scale, weight), rotation, sigmoid and gate.
            flops: seq * ((q + kv) * 5 + q * 5),
            ..Cost::default()
        };
        (0..8)
            .map(|i| cost::input_activations(inp, i))
            .sum::<Cost>()
            + shape.cost(start, seq)
            + extra
    }
}

ggml_math::fma_dispatch! {
    /// Attention of every query head of every token (`q [tokens, q_dim]`, first at position
    /// `start`) into `out`, each head's output times the sigmoid of its gate.
    fn attend_gated(
        cache: &KvCache,
        q: &[f32],
        gates: &[f32],
        start: usize,
        batch: bool,
        out: &mut [f32],
    ) => attend_gated_body
}

#[inline(always)]
fn attend_gated_body(
    cache: &KvCache,
    q: &[f32],
    gates: &[f32],
    start: usize,
    batch: bool,
    out: &mut [f32],
) {
    let shape = *cache.shape();
    let (q_dim, hd) = (shape.q_dim(), shape.head_dim);
    let mut scratch = AttendScratch::default();
    for (i, row) in out.chunks_exact_mut(q_dim).enumerate() {
        for (h, head_out) in row.chunks_exact_mut(hd).enumerate() {
            let at = i * q_dim + h * hd;
            let kv_head = h / shape.group();
            let q = &q[at..at + hd];
            cache.attend(q, start + i, kv_head, batch, &mut scratch, head_out);
            for (o, g) in head_out.iter_mut().zip(&gates[at..at + hd]) {
                *o *= sigmoid(*g);
            }
        }
    }
}

/// The tensors of a gated attention call.
pub struct GatedAttentionInputs<
    S: Dimension,
    QG: Dimension,
    C: Dimension,
    D: Dimension,
    E: Dimension,
> {
    pub q_gate: GraphTensor<(S, QG)>,
    pub k: GraphTensor<(S, C)>,
    pub v: GraphTensor<(S, C)>,
    pub q_norm: GraphTensor<(D,)>,
    pub k_norm: GraphTensor<(D,)>,
    pub cos: GraphTensor<(S, E)>,
    pub sin: GraphTensor<(S, E)>,
    pub positions: GraphTensor<(S,)>,
}

/// Adds gated attention with a KV cache (of one layer, made by the caller) to the graph.
pub fn gated_attention<S, QG, C, D, E, Q>(
    inputs: GatedAttentionInputs<S, QG, C, D, E>,
    op: GatedAttention,
) -> GraphTensor<(S, Q)>
where
    S: Dimension,
    QG: Dimension,
    C: Dimension,
    D: Dimension,
    E: Dimension,
    Q: Dimension,
{
    let i = &inputs;
    let id = i
        .q_gate
        .graph()
        .add_op(op)
        .input(i.q_gate.id, 0, i.q_gate.shape)
        .input(i.k.id, 0, i.k.shape)
        .input(i.v.id, 0, i.v.shape)
        .input(i.q_norm.id, 0, i.q_norm.shape)
        .input(i.k_norm.id, 0, i.k_norm.shape)
        .input(i.cos.id, 0, i.cos.shape)
        .input(i.sin.id, 0, i.sin.shape)
        .input(i.positions.id, 0, i.positions.shape)
        .finish();
    GraphTensor::from_id(
        id,
        ShapeTracker::new(&[S::const_size(), Q::const_size()]),
        i.q_gate.graph_ref,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_rotation_leaves_the_tail_of_the_head() {
        let x: Vec<f32> = (0..8).map(|i| i as f32 + 1.0).collect();
        let ones = [1.0; 8];
        let (cos, sin) = ([0.0, 1.0], [1.0, 0.0]);
        let (mut normed, mut out) = ([0.0; 8], [0.0; 8]);
        norm_rope_partial(&x, &ones, 0.0, (&cos, &sin), &mut normed, &mut out);
        // Pairs (0, 2) and (1, 3) of the first four: pair 0 turned a quarter, pair 1 not.
        assert!((out[0] + normed[2]).abs() < 1e-6 && (out[2] - normed[0]).abs() < 1e-6);
        assert_eq!((out[1], out[3]), (normed[1], normed[3]));
        assert_eq!(&out[4..], &normed[4..]);
    }

    #[test]
    fn the_gate_is_a_sigmoid() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!((sigmoid(2.0) + sigmoid(-2.0) - 1.0).abs() < 1e-7);
    }
}
