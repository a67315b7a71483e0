//! SwiGLU, `silu(gate) * up`, as one op with ggml's numerics.
//!
//! `model::qwen3` writes `gate.swish() * up`, which luminal builds from six primitive ops and an
//! `exp2`. llama.cpp computes `(x / (1 + v_expf(-x))) * up` (its fused `swiglu`); the last-bit
//! differences matter for matching it (see `ggml_math`), so the standard path uses this op too.

use luminal::op::{self, InputTensor, Operator};
use luminal::prelude::*;

use super::cost::{self, Cost, OpCost};
use super::input::contiguous;
use super::rewrite::{self, is_op, is_primitive_elementwise, region_inputs, sources};
use super::weight_matmul::WeightMatMul;
use crate::cpu::ggml_math::{self, v_expf, LANES};

/// Inputs: `gate [..., n]`, `up [..., n]`. Output: `[..., n]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SwiGlu;

impl Operator for SwiGlu {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let gate = contiguous(&inp[0].0, &inp[0].1);
        let up = contiguous(&inp[1].0, &inp[1].1);
        let n = inp[0]
            .1
            .shape()
            .last()
            .and_then(|d| d.to_usize())
            .unwrap_or(gate.len())
            .max(1);
        let mut out = vec![0.0; gate.len()];
        swiglu_rows(&gate, &up, n, &mut out);
        vec![Tensor::new(out)]
    }
    /// The cost model and kind, for the profiler (`cost::model_of`, `cost::kind_of`).
    fn custom(&mut self, key: &str, _: Box<dyn std::any::Any>) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key)
    }
}

impl OpCost for SwiGlu {
    /// Gate and up; per element an exp, an add, a divide and a multiply.
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        let n = inp.first().map_or(0, |(_, t)| cost::read_len(t));
        Cost {
            flops: 4 * n,
            ..cost::input_activations(inp, 0) + cost::input_activations(inp, 1)
        }
    }
}

ggml_math::fma_dispatch! {
    /// Every row of `n` elements, see [`swiglu_row`].
    pub fn swiglu_rows(gate: &[f32], up: &[f32], n: usize, out: &mut [f32]) => swiglu_rows_body
}

#[inline(always)]
fn swiglu_rows_body(gate: &[f32], up: &[f32], n: usize, out: &mut [f32]) {
    for ((o, g), u) in out.chunks_mut(n).zip(gate.chunks(n)).zip(up.chunks(n)) {
        swiglu_row(g, u, o);
    }
}

/// One row: `(g / (1 + exp(-g))) * u`, with ggml's `v_expf` over whole 16-element chunks and
/// libm's `expf` for a row's tail. AVX-512 where the CPU has it (the same bits: the vector
/// `v_expf` equals the scalar one lane for lane, and the rest is one IEEE operation each).
#[inline(always)]
pub fn swiglu_row(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let vector_part = gate.len() / LANES * LANES;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was just detected.
        unsafe { x86::swiglu_chunks(&gate[..vector_part], &up[..vector_part], out) };
        done = vector_part;
    }
    for (i, ((o, g), u)) in out.iter_mut().zip(gate).zip(up).enumerate().skip(done) {
        let e = if i < vector_part {
            v_expf(0.0 - g)
        } else {
            (0.0 - g).exp()
        };
        *o = (g / (1.0 + e)) * u;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::ggml_math::x86::v_expf_512;

    /// [`super::swiglu_row`] of whole 16-element chunks (`gate.len()` a multiple of 16).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn swiglu_chunks(gate: &[f32], up: &[f32], out: &mut [f32]) {
        assert!(up.len() >= gate.len() && out.len() >= gate.len());
        let one = _mm512_set1_ps(1.0);
        for i in (0..gate.len() / 16 * 16).step_by(16) {
            let g = _mm512_loadu_ps(gate.as_ptr().add(i));
            let e = v_expf_512(_mm512_sub_ps(_mm512_setzero_ps(), g));
            let s = _mm512_div_ps(g, _mm512_add_ps(one, e));
            let o = _mm512_mul_ps(s, _mm512_loadu_ps(up.as_ptr().add(i)));
            _mm512_storeu_ps(out.as_mut_ptr().add(i), o);
        }
    }
}

/// Replaces `swish(gate) * up` with [`SwiGlu`]: a multiply of a weight matmul by a region of
/// primitive ops whose only input is another weight matmul.
#[derive(Debug, Default)]
pub struct SwiGluCompiler;

impl Compiler for SwiGluCompiler {
    fn compile<T: ToIdsMut>(&self, graph: &mut Graph, mut remap: T) {
        let nodes: Vec<NodeIndex> = graph.graph.node_indices().collect();
        for node in nodes {
            if graph.graph.node_weight(node).is_none() || !is_op::<op::Mul>(graph, node) {
                continue;
            }
            let srcs = sources(graph, node);
            let [act, up] = srcs[..] else { continue };
            if !is_op::<WeightMatMul>(graph, up.0) || is_op::<WeightMatMul>(graph, act.0) {
                continue;
            }
            let inputs = region_inputs(graph, act.0, is_primitive_elementwise);
            let [gate] = inputs[..] else { continue };
            if !is_op::<WeightMatMul>(graph, gate) || !is_silu(graph, act.0, gate) {
                continue;
            }
            let gate_src = (gate, 0, up.2);
            rewrite::replace(graph, &mut remap, node, Box::new(SwiGlu), &[gate_src, up]);
        }
    }
}

/// The region `x * recip(1 + exp2(x * -1 * log2(e)))`: an `Exp2` and a `Recip` between `x` and
/// the output, and the output multiplies `x` itself.
fn is_silu(graph: &Graph, act: NodeIndex, x: NodeIndex) -> bool {
    let srcs = sources(graph, act);
    let reads_x = srcs.iter().any(|s| s.0 == x);
    let has = |check: fn(&Graph, NodeIndex) -> bool| {
        srcs.iter().any(|s| {
            let mut stack = vec![s.0];
            let mut found = false;
            while let Some(n) = stack.pop() {
                if n == x {
                    continue;
                }
                found |= check(graph, n);
                stack.extend(sources(graph, n).into_iter().map(|s| s.0));
            }
            found
        })
    };
    is_op::<op::Mul>(graph, act) && reads_x && has(is_op::<op::Exp2>) && has(is_op::<op::Recip>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_gives_the_scalar_formula_bit_for_bit() {
        // Odd row lengths have a libm tail; the values cover exp's clamps and signed zeros.
        for n in [16, 37, 48, 3072] {
            let gate: Vec<f32> = (0..n)
                .map(|i| match i % 7 {
                    0 => -0.0,
                    1 => 95.0,
                    2 => -120.0,
                    _ => (i as f32 * 0.731).sin() * 9.0,
                })
                .collect();
            let up: Vec<f32> = (0..n).map(|i| (i as f32 * 0.17).cos()).collect();
            let mut out = vec![0.0; n];
            swiglu_rows(&gate, &up, n, &mut out);
            for i in 0..n {
                let g = gate[i];
                let e = if i < n / LANES * LANES {
                    v_expf(0.0 - g)
                } else {
                    (0.0 - g).exp()
                };
                let want = (g / (1.0 + e)) * up[i];
                assert_eq!(out[i].to_bits(), want.to_bits(), "n {n} element {i}");
            }
        }
    }
}
