//! NEOX rotary embedding as one op with ggml's numerics.
//!
//! `model::qwen3` writes the rotation as luminal slices, multiplies and a concatenation (ten nodes per
//! use). llama.cpp computes `out[i] = fma(x0, cos, -(x1 * sin))` and
//! `out[i + d/2] = fma(x0, sin, x1 * cos)` (as GCC contracts its loop), which the graph's separate
//! roundings miss in ~14% of elements; the standard path uses this op to match.

use luminal::op::{Function, InputTensor, Operator};
use luminal::prelude::*;

use super::cached_attention::CachedAttention;
use super::cost::{self, Cost, OpCost};
use super::input::{contiguous, f32_data};
use super::rewrite::{self, is_op, is_primitive_elementwise, region_inputs, sources, Source};
use super::rms_norm::RmsNorm;
use crate::cpu::ggml_math;

/// Inputs: `x [seq, heads, head_dim]`, `cos [seq, head_dim/2]`, `sin [seq, head_dim/2]`.
/// Output: `[seq, heads, head_dim]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rope;

impl Operator for Rope {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let x = contiguous(&inp[0].0, &inp[0].1);
        let cos = f32_data(&inp[1].0).expect("rope: cos table must be f32 data");
        let sin = f32_data(&inp[2].0).expect("rope: sin table must be f32 data");
        let head_dim = inp[0]
            .1
            .shape()
            .last()
            .and_then(|d| d.to_usize())
            .unwrap_or(0);
        let mut out = vec![0.0; x.len()];
        rope(&x, head_dim, cos, sin, &mut out);
        vec![Tensor::new(out)]
    }
    /// The cost model and kind, for the profiler (`cost::model_of`, `cost::kind_of`).
    fn custom(&mut self, key: &str, _: Box<dyn std::any::Any>) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key)
    }
}

impl OpCost for Rope {
    /// `x` and the tables; each pair of elements is two multiplies and two fused multiply-adds.
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        let x = inp.first().map_or(0, |(_, t)| cost::read_len(t));
        Cost {
            flops: 3 * x,
            ..(0..3).map(|i| cost::input_activations(inp, i)).sum()
        }
    }
}

ggml_math::fma_dispatch! {
    /// Rotates every head of `x` (`[seq, heads, head_dim]`) by its token's angles; `cos` and `sin`
    /// are `[seq, head_dim / 2]`.
    pub fn rope(x: &[f32], head_dim: usize, cos: &[f32], sin: &[f32], out: &mut [f32]) => rope_body
}

#[inline(always)]
fn rope_body(x: &[f32], head_dim: usize, cos: &[f32], sin: &[f32], out: &mut [f32]) {
    let half = head_dim / 2;
    let seq = cos.len() / half.max(1);
    let per_token = x.len() / seq.max(1);
    for (i, (o, head)) in out
        .chunks_exact_mut(head_dim)
        .zip(x.chunks_exact(head_dim))
        .enumerate()
    {
        let t = i * head_dim / per_token;
        rope_head(
            head,
            &cos[t * half..(t + 1) * half],
            &sin[t * half..(t + 1) * half],
            o,
        );
    }
}

/// One head: the first and second halves are the (real, imaginary) pairs.
#[inline(always)]
pub fn rope_head(x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32]) {
    let half = cos.len();
    let (x0s, x1s) = x.split_at(half);
    let (o0, o1) = out.split_at_mut(half);
    for i in 0..half {
        let (x0, x1, c, s) = (x0s[i], x1s[i], cos[i], sin[i]);
        o0[i] = x0.mul_add(c, -(x1 * s));
        o1[i] = x0.mul_add(s, x1 * c);
    }
}

/// Replaces the rotation between each per-head RMSNorm and the attention op with [`Rope`].
/// Anchored at the attention op's q and k inputs; the region may read only the norm's output and
/// the two rotary tables.
pub struct RopeCompiler {
    /// The graph's `rope_cos` and `rope_sin` inputs.
    pub tables: [NodeIndex; 2],
}

impl Compiler for RopeCompiler {
    fn compile<T: ToIdsMut>(&self, graph: &mut Graph, mut remap: T) {
        let attention: Vec<NodeIndex> = graph
            .graph
            .node_indices()
            .filter(|&n| is_op::<CachedAttention>(graph, n))
            .collect();
        for node in attention {
            for input in 0..2 {
                let rotated = sources(graph, node)[input].0;
                if let Some(normed) = self.match_region(graph, rotated) {
                    let plain = |n| (n, 0u8, ShapeTracker::new(&[]));
                    let [cos, sin] = self.tables;
                    let inputs = [normed, plain(cos), plain(sin)];
                    rewrite::replace(graph, &mut remap, rotated, Box::new(Rope), &inputs);
                }
            }
        }
    }
}

impl RopeCompiler {
    /// The normed heads a rotation region ending at `rotated` reads, if it is one.
    fn match_region(&self, graph: &Graph, rotated: NodeIndex) -> Option<Source> {
        if !is_primitive_elementwise(graph, rotated) {
            return None;
        }
        let inputs = region_inputs(graph, rotated, is_primitive_elementwise);
        let norms: Vec<NodeIndex> = inputs
            .iter()
            .copied()
            .filter(|&n| is_op::<RmsNorm>(graph, n))
            .collect();
        let others_are_tables = inputs.iter().all(|n| {
            norms.contains(n) || (is_op::<Function>(graph, *n) && self.tables.contains(n))
        });
        let [norm] = norms[..] else { return None };
        if !others_are_tables {
            return None;
        }
        // The heads' view: the norm's output as `[seq, heads, head_dim]` (contiguous).
        let shape = sources(graph, norm).first()?.2;
        Some((norm, 0, shape))
    }
}
