//! Mixture-of-experts feed-forward (Qwen3-MoE) in standard mode: two ops, the router and the
//! experts, in exact f32 on dequantized weights and in llama.cpp's order of operations, so that
//! their outputs equal llama.cpp's on F32 files.
//!
//! llama.cpp (`build_moe_ffn`) computes, for the normalised input `h` of a batch:
//! - router logits `ffn_gate_inp · h`: an ordinary f32 `mul_mat` (tinyBLAS for a batch);
//! - the routing ([`crate::cpu::moe::route`]): softmax, top-k in `std::sort` order, weights
//!   renormalised;
//! - `mul_mat_id` for up and gate: per (token, expert) pair and row, one `ggml_vec_dot_f32`
//!   (`mul_mat_id` never hands F32 experts to tinyBLAS), then `swiglu` per pair row;
//! - `mul_mat_id` for down, the same way;
//! - each pair's output times its weight (rounded), then the pairs of a token added in slot
//!   order: `((y0 w0 + y1 w1) + y2 w2) + ...`.
//!
//! The hybrid mixtures of experts (`qwen35moe`, `qwen3next`) add a shared expert, which
//! llama.cpp builds as a dense SwiGLU feed-forward (ordinary `mul_mat`s, `swiglu`), a gate
//! `mul_mat` of the vector `ffn_gate_inp_shexp` with each token, `sigmoid`, `mul`, then `add`
//! to the routed sum: [`shared_exact`] computes each of those steps the same way, after the
//! routed sum.
//!
//! Each expert's rows are decoded once per call and dotted with all the pairs routed to it.
//! Between the two ops the routing travels as one f32 tensor `[tokens, 2 k]`: each token's
//! expert ids (exact in f32), then their weights ([`Routing::to_rows`]).

use luminal::op::{InputTensor, Operator};
use luminal::prelude::*;

use super::cost::{self, Cost, OpCost};
use super::gated_attention::sigmoid;
use super::input::{contiguous, f32_data};
use super::swiglu::{swiglu_row, swiglu_rows};
use super::weight::{as_weight, WeightData};
use super::weight_matmul::matmul_dequantized;
use crate::cpu::ggml_math::{self, vec_dot_f32};
use crate::cpu::moe::{route, Routing};

/// Inputs: `h [seq, hidden]` (normalised), the router `[experts, hidden]`. Output: the routing,
/// `[seq, 2 used]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeRouter {
    pub used: usize,
}

impl Operator for MoeRouter {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let h = contiguous(&inp[0].0, &inp[0].1);
        let router = as_weight(&inp[1].0).expect("moe router: the router must be a bound weight");
        vec![Tensor::new(route_exact(router, self.used, &h).to_rows())]
    }
    /// The cost model and kind, for the profiler (`cost::model_of`, `cost::kind_of`).
    fn custom(&mut self, key: &str, _: Box<dyn std::any::Any>) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key)
    }
}

/// Inputs: `h [seq, hidden]` (normalised), the routing `[seq, 2 used]`, then the expert
/// tensors as bound: gate and up `[experts * ffn, hidden]`, down `[experts * hidden, ffn]`;
/// with a shared expert, then its gate `[hidden]`, gate and up `[shared_ffn, hidden]` and down
/// `[hidden, shared_ffn]`. Output: `[seq, hidden]`, the experts' weighted sum (llama.cpp's
/// `ffn_moe_out`, plus its gated `ffn_shexp`).
#[derive(Debug, Clone, PartialEq)]
pub struct MoeExperts {
    pub experts: usize,
    pub used: usize,
    /// Inputs 5..=8 are a shared expert.
    pub shared: bool,
}

/// The inputs of [`MoeExperts`] a shared expert takes.
pub const SHARED_INPUTS: std::ops::RangeInclusive<usize> = 5..=8;

impl Operator for MoeExperts {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let h = contiguous(&inp[0].0, &inp[0].1);
        let rows = f32_data(&inp[1].0).expect("moe experts: the routing must be f32 data");
        let weight = |i: usize| as_weight(&inp[i].0).expect("moe experts: bound expert tensors");
        let w = ExpertData {
            gate: weight(2),
            up: weight(3),
            down: weight(4),
            experts: self.experts,
        };
        let routing = Routing::from_rows(rows, self.used, self.experts);
        let mut out = experts_exact(&w, &routing, &h);
        if self.shared {
            // The gate is a vector: bound decoded to f32 (see `backend::loader`).
            let gate_inp = f32_data(&inp[5].0).expect("moe experts: the shared gate as f32");
            let shared = SharedData {
                gate_inp,
                gate: weight(6),
                up: weight(7),
                down: weight(8),
            };
            shared_exact(&shared, &h, &mut out);
        }
        vec![Tensor::new(out)]
    }
    /// The cost model and kind, for the profiler (`cost::model_of`, `cost::kind_of`).
    fn custom(&mut self, key: &str, _: Box<dyn std::any::Any>) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key)
    }
}

impl OpCost for MoeRouter {
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        router_cost(inp)
    }
}

impl OpCost for MoeExperts {
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        experts_cost(inp, self.experts, self.used, self.shared)
    }

    /// `MoeExperts`, or `MoeExperts(+Shared)` with a shared expert in it.
    fn kind(&self) -> String {
        match self.shared {
            true => "MoeExperts(+Shared)".to_string(),
            false => "MoeExperts".to_string(),
        }
    }
}

/// The router `[experts, hidden]` read whole and multiplied by every token of `h` (input 0,
/// input 1 the router); the softmax and top-k are not counted (a few operations per expert).
pub fn router_cost(inp: &[(InputTensor, ShapeTracker)]) -> Cost {
    let Some(router) = inp.get(1).and_then(|(t, _)| as_weight(t)) else {
        return Cost::default();
    };
    let x = inp.first().map_or(0, |(_, t)| cost::read_len(t));
    router.matmul_cost(x / router.cols.max(1) as u64) + Cost::activations(x)
}

/// The experts' feed-forward under the routing it is given (input 1): the routed experts' slices
/// of gate, up and down (inputs 2..=4) once per call each, however many tokens share an expert
/// (as a batch grouped by expert reads them), and per (token, slot) pair the three matmuls,
/// SwiGLU and the weighted add; with `shared`, the shared expert (inputs 5..=8) whole, for
/// every token its three matmuls, gate dot, sigmoid and add; activations: `h`, the routing and
/// a folded-in residual. Idle experts are not counted.
pub fn experts_cost(
    inp: &[(InputTensor, ShapeTracker)],
    experts: usize,
    used: usize,
    shared: bool,
) -> Cost {
    let weight = |i: usize| inp.get(i).and_then(|(t, _)| as_weight(t));
    let (Some(gate), Some(up), Some(down)) = (weight(2), weight(3), weight(4)) else {
        return Cost::default();
    };
    let Some(rows) = inp.get(1).and_then(|(t, _)| f32_data(t)) else {
        return Cost::default();
    };
    let routing = Routing::from_rows(rows, used, experts);
    let mut routed = routing.experts.clone();
    routed.sort_unstable();
    routed.dedup();
    let slice_bytes = |w: &WeightData| (w.bytes().len() / experts.max(1)) as u64;
    let weight_bytes =
        routed.len() as u64 * (slice_bytes(gate) + slice_bytes(up) + slice_bytes(down));
    let (ffn, hidden) = ((gate.rows / experts.max(1)) as u64, gate.cols as u64);
    let pairs = routing.experts.len() as u64;
    // Three matmuls of ffn x hidden (2 per multiply-add), SwiGLU (~5 per element), weight and add.
    let flops = pairs * (3 * 2 * ffn * hidden + 5 * ffn + 2 * hidden);
    let weights = |i: &usize| (2..=4).contains(i) || (shared && SHARED_INPUTS.contains(i));
    let activations = (0..inp.len())
        .filter(|i| !weights(i))
        .map(|i| cost::input_activations(inp, i))
        .sum::<Cost>();
    let shared_cost = if shared {
        shared_cost(inp, routing.n_tokens as u64)
    } else {
        Cost::default()
    };
    Cost {
        weight_bytes,
        flops,
        ..Cost::default()
    } + activations
        + shared_cost
}

/// The shared expert's three matrices and its gate vector (inputs 5..=8), each read once, for
/// `tokens` tokens; SwiGLU (~5 per element), the sigmoid and the scaled add.
fn shared_cost(inp: &[(InputTensor, ShapeTracker)], tokens: u64) -> Cost {
    let mut total = Cost::default();
    for i in 6..=8 {
        if let Some(w) = inp.get(i).and_then(|(t, _)| as_weight(t)) {
            total += w.matmul_cost(tokens);
        }
    }
    // The gate vector, f32.
    if let Some(g) = inp.get(5).and_then(|(t, _)| f32_data(t)) {
        let n = g.len() as u64;
        total += Cost::matmul(4 * n, 1, n, tokens);
    }
    let width = inp
        .get(6)
        .and_then(|(t, _)| as_weight(t))
        .map_or(0, |w| w.rows as u64);
    let hidden = inp
        .get(6)
        .and_then(|(t, _)| as_weight(t))
        .map_or(0, |w| w.cols as u64);
    total
        + Cost {
            flops: tokens * (5 * width + 5 + 2 * hidden),
            ..Cost::default()
        }
}

/// Adds the router of `h` to the graph: the routing `[seq, 2 used]`.
pub fn moe_router<S: Dimension, H: Dimension, E: Dimension, R: Dimension>(
    h: GraphTensor<(S, H)>,
    router: GraphTensor<(E, H)>,
    used: usize,
) -> GraphTensor<(S, R)> {
    let id = h
        .graph()
        .add_op(MoeRouter { used })
        .input(h.id, 0, h.shape)
        .input(router.id, 0, router.shape)
        .finish();
    GraphTensor::from_id(
        id,
        ShapeTracker::new(&[S::const_size(), R::const_size()]),
        h.graph_ref,
    )
}

/// The expert tensors of one layer as graph nodes (see [`MoeExperts`] for their shapes).
#[derive(Clone, Copy)]
pub struct ExpertNodes<F: Dimension, D: Dimension, H: Dimension, X: Dimension> {
    pub gate: GraphTensor<(F, H)>,
    pub up: GraphTensor<(F, H)>,
    pub down: GraphTensor<(D, X)>,
}

/// A shared expert's tensors as graph nodes: the gate vector `[hidden]`, gate and up
/// `[shared_ffn, hidden]`, down `[hidden, shared_ffn]`.
#[derive(Clone, Copy)]
pub struct SharedNodes<B: Dimension, H: Dimension> {
    pub gate_inp: GraphTensor<(H,)>,
    pub gate: GraphTensor<(B, H)>,
    pub up: GraphTensor<(B, H)>,
    pub down: GraphTensor<(H, B)>,
}

/// Adds the experts' feed-forward of `h` under `routing` to the graph, with the gated shared
/// expert where there is one: `[seq, hidden]`.
pub fn moe_experts<S, H, R, F, D, X, B>(
    h: GraphTensor<(S, H)>,
    routing: GraphTensor<(S, R)>,
    w: ExpertNodes<F, D, H, X>,
    shared: Option<SharedNodes<B, H>>,
    experts: usize,
    used: usize,
) -> GraphTensor<(S, H)>
where
    S: Dimension,
    H: Dimension,
    R: Dimension,
    F: Dimension,
    D: Dimension,
    X: Dimension,
    B: Dimension,
{
    let op = MoeExperts {
        experts,
        used,
        shared: shared.is_some(),
    };
    let mut node = h
        .graph()
        .add_op(op)
        .input(h.id, 0, h.shape)
        .input(routing.id, 0, routing.shape)
        .input(w.gate.id, 0, w.gate.shape)
        .input(w.up.id, 0, w.up.shape)
        .input(w.down.id, 0, w.down.shape);
    if let Some(s) = shared {
        node = node
            .input(s.gate_inp.id, 0, s.gate_inp.shape)
            .input(s.gate.id, 0, s.gate.shape)
            .input(s.up.id, 0, s.up.shape)
            .input(s.down.id, 0, s.down.shape);
    }
    let id = node.finish();
    GraphTensor::from_id(
        id,
        ShapeTracker::new(&[S::const_size(), H::const_size()]),
        h.graph_ref,
    )
}

/// The routing of `h` (`[n_tokens, hidden]`, normalised): router logits in llama.cpp's f32
/// order, then [`route`].
pub fn route_exact(router: &WeightData, used: usize, h: &[f32]) -> Routing {
    let logits = matmul_dequantized(router, h);
    let mut routing = Routing::default();
    route(&logits, router.rows, used, &mut routing);
    routing
}

/// A layer's expert tensors as bound: experts stacked along the rows.
#[derive(Debug, Clone, Copy)]
pub struct ExpertData<'a> {
    /// `[experts * ffn, hidden]`.
    pub gate: &'a WeightData,
    pub up: &'a WeightData,
    /// `[experts * hidden, ffn]`.
    pub down: &'a WeightData,
    pub experts: usize,
}

/// A shared expert's tensors as bound (see [`SharedNodes`]).
#[derive(Debug, Clone, Copy)]
pub struct SharedData<'a> {
    /// `[hidden]`.
    pub gate_inp: &'a [f32],
    pub gate: &'a WeightData,
    pub up: &'a WeightData,
    pub down: &'a WeightData,
}

/// Adds the gated shared expert of `h` (`[n_tokens, hidden]`, normalised) to `out`, the routed
/// experts' sum: `out += down(swiglu(gate · h, up · h)) * sigmoid(gate_inp · h)`, each step as
/// llama.cpp's graph computes it (ordinary matmuls, then the scale, then the add).
pub fn shared_exact(w: &SharedData<'_>, h: &[f32], out: &mut [f32]) {
    let (hidden, width) = (w.gate.cols, w.gate.rows);
    let gate = matmul_dequantized(w.gate, h);
    let up = matmul_dequantized(w.up, h);
    let mut act = vec![0.0f32; gate.len()];
    swiglu_rows(&gate, &up, width, &mut act);
    let y = matmul_dequantized(w.down, &act);
    // llama.cpp's `mul_mat` of a one-row matrix: the same sums as any other weight's.
    let gate_inp = WeightData::from_f32(w.gate_inp, 1, hidden)
        .expect("the shared gate is as wide as the hidden state");
    let scale = matmul_dequantized(&gate_inp, h);
    for ((o, y), &s) in out
        .chunks_exact_mut(hidden)
        .zip(y.chunks_exact(hidden))
        .zip(&scale)
    {
        let s = sigmoid(s);
        o.iter_mut().zip(y).for_each(|(o, &v)| *o += v * s);
    }
}

ggml_math::fma_dispatch! {
    /// The experts' weighted sum for `h` (`[n_tokens, hidden]`, normalised) under `routing`:
    /// `[n_tokens, hidden]`, without the residual.
    pub fn experts_exact(w: &ExpertData<'_>, routing: &Routing, h: &[f32]) -> Vec<f32> => experts_body
}

#[inline(always)]
fn experts_body(w: &ExpertData<'_>, routing: &Routing, h: &[f32]) -> Vec<f32> {
    let (hidden, ffn) = (w.gate.cols, w.gate.rows / w.experts.max(1));
    let groups = routing.group();
    let pairs = routing.experts.len();
    // Per pair (grouped order): gate, then SwiGLU outputs; up; down outputs.
    let mut gate = vec![0.0f32; pairs * ffn];
    let mut up = vec![0.0f32; pairs * ffn];
    let mut act = vec![0.0f32; pairs * ffn];
    let mut down = vec![0.0f32; pairs * hidden];
    let mut row = vec![0.0f32; hidden.max(ffn)];
    for e in 0..w.experts {
        let range = groups.range(e);
        if range.is_empty() {
            continue;
        }
        for (m, out) in [(w.gate, &mut gate), (w.up, &mut up)] {
            for r in 0..ffn {
                let wr = &mut row[..hidden];
                m.dequantize_row_into(e * ffn + r, wr);
                for i in range.clone() {
                    let t = groups.token(i);
                    out[i * ffn + r] = vec_dot_f32(wr, &h[t * hidden..(t + 1) * hidden]);
                }
            }
        }
        for i in range.clone() {
            let span = i * ffn..(i + 1) * ffn;
            swiglu_row(&gate[span.clone()], &up[span.clone()], &mut act[span]);
        }
        for r in 0..hidden {
            let wr = &mut row[..ffn];
            w.down.dequantize_row_into(e * hidden + r, wr);
            for i in range.clone() {
                down[i * hidden + r] = vec_dot_f32(wr, &act[i * ffn..(i + 1) * ffn]);
            }
        }
    }
    let mut out = vec![0.0f32; routing.n_tokens * hidden];
    for (t, o) in out.chunks_exact_mut(hidden).enumerate() {
        for (slot, &weight) in routing.weights_of(t).iter().enumerate() {
            let i = groups.position[t * routing.k + slot] as usize;
            let y = &down[i * hidden..(i + 1) * hidden];
            if slot == 0 {
                o.iter_mut().zip(y).for_each(|(o, &v)| *o = v * weight);
            } else {
                o.iter_mut().zip(y).for_each(|(o, &v)| *o += v * weight);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::synth::Rng;

    fn matrix(rng: &mut Rng, rows: usize, cols: usize, scale: f32) -> (Vec<f32>, WeightData) {
        let v: Vec<f32> = (0..rows * cols)
            .map(|_| rng.uniform(-scale, scale))
            .collect();
        let w = WeightData::from_f32(&v, rows, cols).unwrap();
        (v, w)
    }

    /// Against f64 math (routing itself is tested in `cpu::moe`; here its choice is checked
    /// against f64 logits, which random logits never tie).
    #[test]
    fn equals_plain_math_on_odd_shapes() {
        let mut rng = Rng::new(21);
        let (experts, hidden, ffn, used, n) = (6, 40, 24, 3, 5);
        let (rv, router) = matrix(&mut rng, experts, hidden, 1.0);
        let (gv, gate) = matrix(&mut rng, experts * ffn, hidden, 0.3);
        let (uv, up) = matrix(&mut rng, experts * ffn, hidden, 0.3);
        let (dv, down) = matrix(&mut rng, experts * hidden, ffn, 0.3);
        let w = ExpertData {
            gate: &gate,
            up: &up,
            down: &down,
            experts,
        };
        let h: Vec<f32> = (0..n * hidden).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let routing = route_exact(&router, used, &h);
        // The routing survives its trip through a tensor.
        assert_eq!(
            Routing::from_rows(&routing.to_rows(), used, experts),
            routing
        );
        let out = experts_exact(&w, &routing, &h);
        let dot = |a: &[f32], b: &[f64]| -> f64 {
            a.iter().zip(b).map(|(&x, &y)| f64::from(x) * y).sum()
        };
        for t in 0..n {
            let ht: Vec<f64> = h[t * hidden..(t + 1) * hidden]
                .iter()
                .map(|&v| v.into())
                .collect();
            let logits: Vec<f64> = (0..experts)
                .map(|e| dot(&rv[e * hidden..(e + 1) * hidden], &ht))
                .collect();
            let mut order: Vec<usize> = (0..experts).collect();
            order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
            let chosen: Vec<u32> = order[..used].iter().map(|&e| e as u32).collect();
            assert_eq!(routing.experts_of(t), &chosen[..]);
            let mut acc = vec![0.0f64; hidden];
            for (&e, &wt) in routing.experts_of(t).iter().zip(routing.weights_of(t)) {
                let e = e as usize;
                let act: Vec<f64> = (0..ffn)
                    .map(|r| {
                        let row = (e * ffn + r) * hidden..(e * ffn + r + 1) * hidden;
                        let (g, u) = (dot(&gv[row.clone()], &ht), dot(&uv[row], &ht));
                        g / (1.0 + (-g).exp()) * u
                    })
                    .collect();
                for (r, a) in acc.iter_mut().enumerate() {
                    let row = (e * hidden + r) * ffn..(e * hidden + r + 1) * ffn;
                    *a += f64::from(wt) * dot(&dv[row], &act);
                }
            }
            for (r, a) in acc.iter().enumerate() {
                let got = f64::from(out[t * hidden + r]);
                assert!((got - a).abs() < 1e-5, "token {t} row {r}: {got} vs {a}");
            }
        }
    }
}
