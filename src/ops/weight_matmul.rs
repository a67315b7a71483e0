//! Weight matmul `y = x · Wᵀ` on weights kept in their GGUF encoding, and the pass that puts it in
//! the graph.
//!
//! luminal expresses `x.matmul(w.permute())` as a broadcast `Mul` followed by `SumReduce`; stock
//! 0.2 never turns the 2-D form into a real matmul (its `MatMul2DCompiler` checks the wrong axis)
//! and could not read quantized data anyway. [`WeightMatMulCompiler`] finds every such pair whose
//! right operand is a bound [`WeightData`] and replaces it with [`WeightMatMul`].

use luminal::op::{InputTensor, Operator};
use luminal::op::{Mul, SumReduce};
use luminal::prelude::*;
use petgraph::Direction;

use super::cost::{self, Cost, OpCost};
use super::input::contiguous;
use super::weight::{as_weight, WeightData};
use crate::cpu::ggml_math::{self, VecDot};

/// Standard-mode weight matmul: one thread, each weight row decoded to f32 once per call and
/// dotted with every token, so results equal "dequantize, then f32 math".
///
/// Inputs: `x [..., cols]` (f32), `W [rows, cols]` (a bound weight). Output: `[..., rows]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WeightMatMul;

impl Operator for WeightMatMul {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let w = as_weight(&inp[1].0).expect("weight matmul: right operand must be a weight");
        let x = contiguous(&inp[0].0, &inp[0].1);
        vec![Tensor::new(matmul_dequantized(w, &x))]
    }
    /// The cost model and kind, for the profiler (`cost::model_of`, `cost::kind_of`).
    fn custom(&mut self, key: &str, _: Box<dyn std::any::Any>) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key)
    }
}

impl OpCost for WeightMatMul {
    /// The weight in its encoding, the activations, `2 · tokens · rows · cols`.
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        let Some(w) = inp.get(1).and_then(|(t, _)| as_weight(t)) else {
            return Cost::default();
        };
        let x = inp.first().map_or(0, |(_, t)| cost::read_len(t));
        w.matmul_cost(x / w.cols.max(1) as u64) + Cost::activations(x)
    }
}

/// Weights decoded at a time: a whole number of blocks of every type (32 and 256) and of ggml's
/// 64-element dot-product steps, small enough that the decoded chunk stays in L1 while every
/// token's activations are dotted with it.
const CHUNK: usize = 256;

ggml_math::fma_dispatch! {
    /// `x [n, cols] · Wᵀ -> [n, rows]` in f32 on dequantized weights, summed in the order llama.cpp's
    /// CPU backend sums (see [`ggml_math`]): tinyBLAS's for a batch it would hand to tinyBLAS, one
    /// `ggml_vec_dot_f32` per output otherwise. Each row is decoded chunk by chunk and dotted with
    /// every token before the next chunk, so a prompt pass decodes each weight once.
    pub fn matmul_dequantized(w: &WeightData, x: &[f32]) -> Vec<f32> => matmul_body
}

#[inline(always)]
fn matmul_body(w: &WeightData, x: &[f32]) -> Vec<f32> {
    let n_tokens = x.len() / w.cols;
    let mut y = vec![0.0; n_tokens * w.rows];
    let mut decoded = [0.0f32; CHUNK];
    let chunk_bytes = CHUNK / w.ty.block_size() * w.ty.type_size();
    let tinyblas = ggml_math::uses_tinyblas(w.rows, w.cols, n_tokens);
    let mut batch = vec![[0.0f32; ggml_math::LANES]; n_tokens];
    let mut single = vec![VecDot::default(); n_tokens];
    for r in 0..w.rows {
        batch.iter_mut().for_each(|a| *a = [0.0; ggml_math::LANES]);
        single.iter_mut().for_each(|d| *d = VecDot::default());
        let mut at = 0;
        for bytes in w.row(r).chunks(chunk_bytes) {
            let len = bytes.len() / w.ty.type_size() * w.ty.block_size();
            let chunk = &mut decoded[..len];
            w.dequantize_into(bytes, chunk);
            for t in 0..n_tokens {
                let xt = &x[t * w.cols + at..t * w.cols + at + len];
                if tinyblas {
                    ggml_math::tinyblas_feed(&mut batch[t], chunk, xt);
                } else {
                    let fed = single[t].feed(chunk, xt);
                    if fed < len {
                        // Only the row's last chunk has leftovers (CHUNK is a multiple of 64).
                        y[t * w.rows + r] = single[t].finish_f32(&chunk[fed..], &xt[fed..]);
                    }
                }
            }
            at += len;
        }
        for t in 0..n_tokens {
            if tinyblas {
                y[t * w.rows + r] = ggml_math::reduce16(&batch[t]);
            } else if w.cols.is_multiple_of(64) {
                y[t * w.rows + r] = single[t].finish_f32(&[], &[]);
            }
        }
    }
    y
}

/// Rewrites `Mul -> SumReduce` matmuls against bound weights into [`WeightMatMul`].
/// Weights must be bound (their data set in the graph) before this pass runs.
#[derive(Debug, Default)]
pub struct WeightMatMulCompiler;

impl Compiler for WeightMatMulCompiler {
    fn compile<T: ToIdsMut>(&self, graph: &mut Graph, mut remap: T) {
        for (mul, sum_reduce, x, w) in find_weight_matmuls(graph) {
            let new_op = graph
                .add_op(WeightMatMul)
                .input(x.0, x.1, x.2)
                .input(w.0, w.1, w.2)
                .finish();
            move_outgoing_edge(sum_reduce, new_op, &mut graph.graph);
            for old in [sum_reduce, mul] {
                move_references(
                    &mut remap,
                    &mut graph.no_delete,
                    &mut graph.to_retrieve,
                    old,
                    new_op,
                );
                graph.graph.remove_node(old);
            }
        }
    }
}

type Source = (NodeIndex, u8, ShapeTracker);

/// Every `(mul, sum_reduce, x, weight)` where `sum_reduce` reduces the last axis of a broadcast
/// `mul` of `x` with a bound weight; the sources come back with the matmul's broadcasts undone.
fn find_weight_matmuls(graph: &Graph) -> Vec<(NodeIndex, NodeIndex, Source, Source)> {
    let mut found = vec![];
    for sum_reduce in graph.graph.node_indices() {
        let Some(SumReduce(axis)) = op_as::<SumReduce>(graph, sum_reduce) else {
            continue;
        };
        let srcs = graph.get_sources(sum_reduce);
        let [(mul, 0, _)] = srcs[..] else { continue };
        if op_as::<Mul>(graph, mul).is_none()
            || graph.no_delete.contains(&mul)
            || graph.graph.edges_directed(mul, Direction::Outgoing).count() != 1
        {
            continue;
        }
        let mut mul_srcs = graph.get_sources(mul);
        if mul_srcs.len() != 2 || !is_weight(graph, mul_srcs[1].0) {
            continue;
        }
        // x was expanded on the output-feature axis, the weight on the leading axes.
        let (mut x, mut w) = (mul_srcs.remove(0), mul_srcs.remove(0));
        let rank = x.2.len();
        if *axis != rank - 1 || rank < 2 {
            continue;
        }
        x.2.remove_dim(rank - 2);
        for _ in 0..rank - 2 {
            w.2.remove_dim(0);
        }
        found.push((mul, sum_reduce, x, w));
    }
    found
}

fn op_as<O: 'static>(graph: &Graph, node: NodeIndex) -> Option<&O> {
    graph.graph.node_weight(node)?.as_any().downcast_ref::<O>()
}

fn is_weight(graph: &Graph, node: NodeIndex) -> bool {
    graph
        .tensors
        .get(&(node, 0))
        .is_some_and(|t| t.data.as_any().is::<WeightData>())
}
