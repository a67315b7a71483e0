//! Mixture-of-experts feed-forward (Qwen3-MoE) in standard mode: exact f32 math on dequantized
//! weights, in llama.cpp's order of operations, so its outputs equal llama.cpp's on F32 files.
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
//! Each expert's rows are decoded once per call and dotted with all the pairs routed to it.

use super::swiglu::swiglu_row;
use super::weight::WeightData;
use super::weight_matmul::matmul_dequantized;
use crate::cpu::ggml_math::{self, vec_dot_f32};
use crate::cpu::moe::{route, Routing};

/// A layer's MoE weights as bound in the graph: the router `[experts, hidden]` and the expert
/// tensors seen as 2-D, experts stacked along the rows: gate and up `[experts * ffn, hidden]`,
/// down `[experts * hidden, ffn]`.
#[derive(Debug, Clone, Copy)]
pub struct MoeWeights<'a> {
    pub router: &'a WeightData,
    pub gate: &'a WeightData,
    pub up: &'a WeightData,
    pub down: &'a WeightData,
    /// Experts used per token.
    pub used: usize,
}

impl MoeWeights<'_> {
    pub fn experts(&self) -> usize {
        self.router.rows
    }

    pub fn hidden(&self) -> usize {
        self.router.cols
    }

    pub fn ffn(&self) -> usize {
        self.gate.rows / self.experts().max(1)
    }
}

/// The routing of `h` (`[n_tokens, hidden]`, normalised): router logits in llama.cpp's f32
/// order, then [`route`].
pub fn route_exact(w: &MoeWeights<'_>, h: &[f32]) -> Routing {
    let logits = matmul_dequantized(w.router, h);
    let mut routing = Routing::default();
    route(&logits, w.experts(), w.used, &mut routing);
    routing
}

ggml_math::fma_dispatch! {
    /// The MoE feed-forward output for `h` (`[n_tokens, hidden]`, normalised), without the
    /// residual: `[n_tokens, hidden]`, llama.cpp's `ffn_moe_out`.
    pub fn moe_ffn_exact(w: &MoeWeights<'_>, h: &[f32]) -> Vec<f32> => moe_ffn_body
}

#[inline(always)]
fn moe_ffn_body(w: &MoeWeights<'_>, h: &[f32]) -> Vec<f32> {
    let (hidden, ffn, experts) = (w.hidden(), w.ffn(), w.experts());
    let routing = route_exact(w, h);
    let groups = routing.group();
    let pairs = routing.experts.len();
    // Per pair (grouped order): gate, then SwiGLU outputs; up; down outputs.
    let mut gate = vec![0.0f32; pairs * ffn];
    let mut up = vec![0.0f32; pairs * ffn];
    let mut act = vec![0.0f32; pairs * ffn];
    let mut down = vec![0.0f32; pairs * hidden];
    let mut row = vec![0.0f32; hidden.max(ffn)];
    for e in 0..experts {
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

    /// Against f64 math with the same routing (routing itself is tested in `cpu::moe`).
    #[test]
    fn equals_plain_math_on_odd_shapes() {
        let mut rng = Rng::new(21);
        let (experts, hidden, ffn, used, n) = (6, 40, 24, 3, 5);
        let (rv, router) = matrix(&mut rng, experts, hidden, 1.0);
        let (gv, gate) = matrix(&mut rng, experts * ffn, hidden, 0.3);
        let (uv, up) = matrix(&mut rng, experts * ffn, hidden, 0.3);
        let (dv, down) = matrix(&mut rng, experts * hidden, ffn, 0.3);
        let w = MoeWeights {
            router: &router,
            gate: &gate,
            up: &up,
            down: &down,
            used,
        };
        let h: Vec<f32> = (0..n * hidden).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let out = moe_ffn_exact(&w, &h);
        let routing = route_exact(&w, &h);
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
