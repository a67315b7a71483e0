//! Fused RMSNorm: `x / sqrt(mean(x²) + eps) * weight` over the last axis, one op instead of eight.
//!
//! Numerics as ggml's `rms_norm` followed by `mul`: the sum of squares accumulates in f64, the
//! scale `1 / sqrt(mean + eps)` is an f32, and `(x * scale) * weight` is rounded twice in f32.

use luminal::op::{self, InputTensor, Operator};
use luminal::prelude::*;

use super::cost::{self, Cost, OpCost};
use super::input::{contiguous, f32_data};
use super::rewrite::{self, bound_vector, constant_value, is_op, single_source, sources, Source};

/// Inputs: `x [..., n]`, `weight [n]`. Output: `[..., n]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RmsNorm {
    pub eps: f32,
}

impl Operator for RmsNorm {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let x = contiguous(&inp[0].0, &inp[0].1);
        let w = f32_data(&inp[1].0).expect("rms norm: weight must be f32 data");
        let mut out = vec![0.0; x.len()];
        for (o, xr) in out.chunks_exact_mut(w.len()).zip(x.chunks_exact(w.len())) {
            rms_norm_row(xr, w, self.eps, o);
        }
        vec![Tensor::new(out)]
    }
    /// The cost model and kind, for the profiler (`cost::model_of`, `cost::kind_of`).
    fn custom(&mut self, key: &str, _: Box<dyn std::any::Any>) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key)
    }
}

impl OpCost for RmsNorm {
    /// `x` and the weight; per element a square-and-add, then two multiplies, plus the scale
    /// per row (counted as one more per element).
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        let x = inp.first().map_or(0, |(_, t)| cost::read_len(t));
        Cost {
            flops: 4 * x,
            ..cost::input_activations(inp, 0) + cost::input_activations(inp, 1)
        }
    }
}

/// One row: `out = x * (1 / sqrt(mean(x²) + eps)) * w`.
pub fn rms_norm_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let sum: f64 = x.iter().map(|v| f64::from(v * v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, xv), wv) in out.iter_mut().zip(x).zip(w) {
        *o = (xv * scale) * wv;
    }
}

/// Replaces luminal's `std_norm(x) * weight` (as `model::qwen3` writes every RMSNorm, including the
/// per-head q/k norms) with [`RmsNorm`]. Anchored at the multiply by a bound 1-D weight.
#[derive(Debug, Default)]
pub struct RmsNormCompiler;

impl Compiler for RmsNormCompiler {
    fn compile<T: ToIdsMut>(&self, graph: &mut Graph, mut remap: T) {
        let anchors: Vec<NodeIndex> = graph.graph.node_indices().collect();
        for node in anchors {
            if let Some((x, weight, eps)) = match_rms_norm(graph, node) {
                let op = Box::new(RmsNorm { eps });
                rewrite::replace(graph, &mut remap, node, op, &[x, weight]);
            }
        }
    }
}

/// Recognises `Mul(Mul(Recip(Sqrt(Add(Mul(SumReduce(Mul(x, x)), 1/n), eps))), x), weight)`;
/// returns `(x, weight, eps)`.
fn match_rms_norm(graph: &Graph, node: NodeIndex) -> Option<(Source, Source, f32)> {
    if graph.graph.node_weight(node).is_none() || !is_op::<op::Mul>(graph, node) {
        return None;
    }
    let [normed, weight] = <[Source; 2]>::try_from(sources(graph, node)).ok()?;
    bound_vector(graph, weight.0)?;
    let [inv_rms, x] = <[Source; 2]>::try_from(sources(graph, normed.0)).ok()?;
    if !is_op::<op::Mul>(graph, normed.0) || !is_op::<op::Recip>(graph, inv_rms.0) {
        return None;
    }
    let sqrt = single_source(graph, inv_rms.0)?;
    let add = single_source(graph, sqrt.0).filter(|_| is_op::<op::Sqrt>(graph, sqrt.0))?;
    let [mean, eps] = <[Source; 2]>::try_from(sources(graph, add.0)).ok()?;
    let eps = constant_value(graph, eps.0).filter(|_| is_op::<op::Add>(graph, add.0))?;
    let [sum, _inv_n] = <[Source; 2]>::try_from(sources(graph, mean.0)).ok()?;
    let squares = single_source(graph, sum.0).filter(|_| is_op::<op::SumReduce>(graph, sum.0))?;
    let [a, b] = <[Source; 2]>::try_from(sources(graph, squares.0)).ok()?;
    let squares_of_x = is_op::<op::Mul>(graph, squares.0) && a.0 == x.0 && b.0 == x.0;
    squares_of_x.then_some((x, weight, eps))
}
