//! The mixture-of-experts router as llama.cpp computes it for qwen3moe (`build_moe_ffn`): from
//! the router logits (`ffn_gate_inp · rms_norm(x)`, f32), per token
//! 1. `soft_max` over all experts, with ggml's CPU numerics (`exp` of `x - max` in 16-lane chunks
//!    by `ggml_v_expf` and libm's `expf` for the tail, sums in f64, one f32 scale by `1 / sum`);
//! 2. `argsort_top_k`: the experts sorted by probability, descending, as `std::sort` leaves them
//!    ([`super::sort`]), the first `k` kept, in that order;
//! 3. the kept probabilities renormalised: divided by their sum (f64, then f32), the sum clamped
//!    to at least 2^-14 as llama.cpp does against a division by zero.
//!
//! The experts' outputs are later weighted and added in this slot order (most probable first).

use super::sort::argsort_desc;
use crate::cpu::ggml_math::{reduce16, v_expf, LANES};

/// llama.cpp clamps the sum of the kept probabilities to this (the smallest normal f16).
const MIN_WEIGHT_SUM: f32 = 6.103_515_6e-5;

/// The experts each token uses, most probable first, and the weights of their outputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routing {
    pub n_tokens: usize,
    /// Experts used per token (`expert_used_count`).
    pub k: usize,
    /// Experts per layer (`expert_count`).
    pub n_experts: usize,
    /// `[n_tokens, k]` expert ids.
    pub experts: Vec<u32>,
    /// `[n_tokens, k]` renormalised probabilities.
    pub weights: Vec<f32>,
}

impl Routing {
    /// Token `t`'s experts, most probable first.
    pub fn experts_of(&self, t: usize) -> &[u32] {
        &self.experts[t * self.k..(t + 1) * self.k]
    }

    /// Token `t`'s weights, in the order of [`Routing::experts_of`].
    pub fn weights_of(&self, t: usize) -> &[f32] {
        &self.weights[t * self.k..(t + 1) * self.k]
    }

    /// The routing as one f32 row per token: its `k` expert ids (exact in f32), then their
    /// weights; how it travels between graph ops.
    pub fn to_rows(&self) -> Vec<f32> {
        let mut rows = Vec::with_capacity(2 * self.experts.len());
        for t in 0..self.n_tokens {
            rows.extend(self.experts_of(t).iter().map(|&e| e as f32));
            rows.extend_from_slice(self.weights_of(t));
        }
        rows
    }

    /// The inverse of [`Routing::to_rows`] (`rows` holds `[n_tokens, 2 k]`).
    pub fn from_rows(rows: &[f32], k: usize, n_experts: usize) -> Routing {
        let mut r = Routing {
            n_tokens: rows.len() / (2 * k).max(1),
            k,
            n_experts,
            ..Routing::default()
        };
        for row in rows.chunks_exact(2 * k) {
            r.experts.extend(row[..k].iter().map(|&e| e as u32));
            r.weights.extend_from_slice(&row[k..]);
        }
        r
    }

    /// The (token, slot) pairs grouped by expert (ascending), tokens ascending within an expert:
    /// ggml's `mul_mat_id` row mapping, so that each expert's weights are read once per batch.
    pub fn group(&self) -> Groups {
        let mut counts = vec![0usize; self.n_experts + 1];
        for &e in &self.experts {
            counts[e as usize + 1] += 1;
        }
        for e in 0..self.n_experts {
            counts[e + 1] += counts[e];
        }
        let mut next = counts.clone();
        let mut entries = vec![0u32; self.experts.len()];
        let mut position = vec![0u32; self.experts.len()];
        for (pair, &e) in self.experts.iter().enumerate() {
            let at = next[e as usize];
            next[e as usize] += 1;
            entries[at] = pair as u32;
            position[pair] = at as u32;
        }
        Groups {
            k: self.k,
            offsets: counts,
            entries,
            position,
        }
    }
}

/// A routing's (token, slot) pairs grouped by expert. A pair is `token * k + slot`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Groups {
    pub k: usize,
    /// Expert `e`'s pairs are `entries[offsets[e]..offsets[e + 1]]`.
    pub offsets: Vec<usize>,
    pub entries: Vec<u32>,
    /// Where each pair sits in `entries`.
    pub position: Vec<u32>,
}

impl Groups {
    /// Expert `e`'s range in the grouped order.
    pub fn range(&self, e: usize) -> std::ops::Range<usize> {
        self.offsets[e]..self.offsets[e + 1]
    }

    /// The token of grouped row `i`.
    pub fn token(&self, i: usize) -> usize {
        self.entries[i] as usize / self.k
    }
}

/// Routes every token of `logits` (`[n_tokens, n_experts]`) to its `k` experts into `out`.
///
/// # Panics
/// If `k` is 0 or above `n_experts`, or `logits` is not a whole number of rows (the callers check
/// the configuration first).
pub fn route(logits: &[f32], n_experts: usize, k: usize, out: &mut Routing) {
    assert!(k > 0 && k <= n_experts && logits.len().is_multiple_of(n_experts));
    let n_tokens = logits.len() / n_experts;
    out.n_tokens = n_tokens;
    out.k = k;
    out.n_experts = n_experts;
    out.experts.resize(n_tokens * k, 0);
    out.weights.resize(n_tokens * k, 0.0);
    let mut probs = vec![0.0f32; n_experts];
    let mut order: Vec<u32> = Vec::with_capacity(n_experts);
    for t in 0..n_tokens {
        soft_max(&logits[t * n_experts..(t + 1) * n_experts], &mut probs);
        order.clear();
        order.extend(0..n_experts as u32);
        argsort_desc(&probs, &mut order);
        let experts = &mut out.experts[t * k..(t + 1) * k];
        experts.copy_from_slice(&order[..k]);
        let weights = &mut out.weights[t * k..(t + 1) * k];
        for (w, &e) in weights.iter_mut().zip(experts.iter()) {
            *w = probs[e as usize];
        }
        renormalise(weights);
    }
}

/// `ggml_compute_forward_soft_max_f32` on one row (scale 1, no mask), into `out`.
pub fn soft_max(x: &[f32], out: &mut [f32]) {
    // ggml_vec_max_f32: MAX(max, x[i]) from -inf.
    let max = x
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if m > v { m } else { v });
    let mut sum = 0.0f64;
    let full = x.len() / LANES * LANES;
    for (xs, os) in x[..full]
        .chunks_exact(LANES)
        .zip(out[..full].chunks_exact_mut(LANES))
    {
        let mut e = [0.0f32; LANES];
        for ((o, d), &v) in e.iter_mut().zip(os.iter_mut()).zip(xs) {
            *o = v_expf(v - max);
            *d = *o;
        }
        sum += f64::from(reduce16(&e));
    }
    for (o, &v) in out[full..x.len()].iter_mut().zip(&x[full..]) {
        *o = (v - max).exp();
        sum += f64::from(*o);
    }
    let scale = (1.0 / sum) as f32;
    for o in out[..x.len()].iter_mut() {
        *o *= scale;
    }
}

/// `weights / clamp(sum(weights))`, the sum in f64 rounded to f32 (`ggml_vec_sum_f32`).
fn renormalise(weights: &mut [f32]) {
    let sum = weights.iter().map(|&w| f64::from(w)).sum::<f64>() as f32;
    let sum = sum.max(MIN_WEIGHT_SUM);
    for w in weights.iter_mut() {
        *w /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_most_probable_and_renormalises() {
        // Two tokens, five experts.
        let logits = [0.1, 2.0, -1.0, 1.5, 0.0, 3.0, 3.0, 0.0, -2.0, 1.0];
        let mut r = Routing::default();
        route(&logits, 5, 2, &mut r);
        assert_eq!(r.experts_of(0), &[1, 3]);
        // A tie keeps the lower index first (insertion sort for few experts).
        assert_eq!(r.experts_of(1), &[0, 1]);
        let (a, b) = (2.0f64.exp(), 1.5f64.exp());
        let w = r.weights_of(0);
        assert!((f64::from(w[0]) - a / (a + b)).abs() < 1e-6);
        assert!((w[0] + w[1] - 1.0).abs() < 1e-6);
        assert_eq!(r.weights_of(1), &[0.5, 0.5]);
    }

    #[test]
    fn soft_max_matches_exact_math_on_chunks_and_tail() {
        let x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.77).sin() * 4.0).collect();
        let mut p = vec![0.0; 37];
        soft_max(&x, &mut p);
        let max = x.iter().copied().fold(f32::MIN, f32::max) as f64;
        let total: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
        for (&pi, &xi) in p.iter().zip(&x) {
            let exact = (xi as f64 - max).exp() / total;
            assert!((pi as f64 - exact).abs() < 1e-6, "{pi} vs {exact}");
        }
    }

    #[test]
    fn groups_pairs_by_expert_then_token() {
        let r = Routing {
            n_tokens: 3,
            k: 2,
            n_experts: 4,
            experts: vec![2, 0, 0, 3, 2, 1],
            weights: vec![0.5; 6],
        };
        let g = r.group();
        assert_eq!(g.offsets, vec![0, 2, 3, 5, 6]);
        // expert 0: (t0, s1), (t1, s0); expert 1: (t2, s1); expert 2: (t0, s0), (t2, s0); 3: (t1, s1)
        assert_eq!(g.entries, vec![1, 2, 5, 0, 4, 3]);
        for (pair, &at) in g.position.iter().enumerate() {
            assert_eq!(g.entries[at as usize] as usize, pair);
        }
        assert_eq!(g.token(4), 2);
        assert_eq!(g.range(2), 3..5);
    }

    #[test]
    fn a_zero_sum_is_clamped_not_divided_by() {
        let mut w = [0.0f32, 0.0];
        renormalise(&mut w);
        assert_eq!(w, [0.0, 0.0]);
    }
}
