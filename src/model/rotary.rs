//! NEOX-style rotary position embedding (rotate-half), as llama.cpp applies it to Qwen3: the
//! rotation in the graph, and the tables of cos and sin the host computes for each step.

use luminal::prelude::symbolic::Expression;
use luminal::prelude::*;

use super::dims::{HalfHeadDim, HeadDim, Seq};

/// The step's rotary tables, `[seq, head_dim / 2]`: inputs the engine sets before each step.
#[derive(Clone, Copy)]
pub struct Rotary {
    pub cos: GraphTensor<(Seq, HalfHeadDim)>,
    pub sin: GraphTensor<(Seq, HalfHeadDim)>,
}

impl Rotary {
    /// The two table inputs of `cx`.
    pub fn inputs(cx: &mut Graph) -> Self {
        Rotary {
            cos: cx.named_tensor("rope_cos"),
            sin: cx.named_tensor("rope_sin"),
        }
    }

    /// Rotates every head of `x`: the first and second halves of each head form the (real,
    /// imaginary) pairs.
    pub fn apply<H: Dimension>(
        self,
        x: GraphTensor<(Seq, H, HeadDim)>,
    ) -> GraphTensor<(Seq, H, HeadDim)> {
        let halves = x.reshape::<(Seq, H, Const<2>, HalfHeadDim)>(); // [seq, heads, 2, head_dim / 2]
        let x1 = halves
            .slice((.., .., ..Expression::from(1), ..))
            .realize::<(Seq, H, Const<1>, HalfHeadDim)>();
        let x2 = halves
            .slice((.., .., Expression::from(1).., ..))
            .realize::<(Seq, H, Const<1>, HalfHeadDim)>();
        let cos = self.cos.expand::<(Seq, H, Const<1>, HalfHeadDim), _>();
        let sin = self.sin.expand::<(Seq, H, Const<1>, HalfHeadDim), _>();
        let first = x1 * cos - x2 * sin;
        let second = x2 * cos + x1 * sin;
        first
            .concat_along::<(Seq, H, Const<2>, HalfHeadDim), Axis<2>, _>(second)
            .reshape()
    }
}

/// The rotary tables for `positions`: `cos` and `sin` of each position's angles, `[seq,
/// rope_dims / 2]`, for a rotation of the first `rope_dims` dimensions of each head.
///
/// Computed on the host the way ggml does (`ggml_rope_cache_init`): the angle starts at the
/// position and is multiplied by `theta^(-2/rope_dims)` in f32 for each successive pair, then
/// `cosf`/`sinf`. Doing it in the graph would cost luminal's `cos(x) = sin(pi/2 - x)`, which loses
/// precision at large positions.
///
/// With `sections` (the hybrid models' interleaved multi-axis RoPE, ggml's IMROPE), pair `s`
/// belongs to the time, height or width axis by `s % 3` while `s < 3 * section`; a text token
/// has its position on all three axes, and a pair no section covers takes the fourth axis,
/// whose position is 0: it is not turned (cos 1, sin 0).
pub fn rope_tables(
    positions: &[usize],
    rope_dims: usize,
    theta: f32,
    sections: Option<[usize; 4]>,
) -> (Vec<f32>, Vec<f32>) {
    let half = rope_dims / 2;
    let theta_scale = theta.powf(-2.0 / rope_dims as f32);
    let mut cos = Vec::with_capacity(positions.len() * half);
    let mut sin = Vec::with_capacity(positions.len() * half);
    for &p in positions {
        let mut angle = p as f32;
        for pair in 0..half {
            let a = if sections.is_none_or(|s| turned(pair, s)) {
                angle
            } else {
                0.0
            };
            cos.push(a.cos());
            sin.push(a.sin());
            angle *= theta_scale;
        }
    }
    (cos, sin)
}

/// Whether rotary pair `pair` is turned by a text position under IMROPE `sections` (ggml's
/// `ggml_mrope_cache_init`: the sector is the pair modulo the sections' sum).
fn turned(pair: usize, sections: [usize; 4]) -> bool {
    let total: usize = sections.iter().sum();
    let sector = pair % total.max(1);
    let axis = sector % 3;
    sector < 3 * sections[axis]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_that_cover_every_pair_are_plain_neox() {
        // 8 rotated dims (4 pairs) with the writer's [2, 1, 1, 0]; 32 pairs with [11, 11, 10, 0].
        for (dims, sections) in [(8, [2, 1, 1, 0]), (64, [11, 11, 10, 0])] {
            let plain = rope_tables(&[0, 7, 300], dims, 1e7, None);
            assert_eq!(rope_tables(&[0, 7, 300], dims, 1e7, Some(sections)), plain);
        }
    }

    #[test]
    fn a_pair_no_section_covers_is_not_turned() {
        // [1, 1, 1, 1] over 8 pairs: sectors 0..4 repeat; sector 3 is axis 0 again but not below
        // 3 * 1, so pairs 3 and 7 take the fourth axis (position 0).
        let (cos, sin) = rope_tables(&[5], 16, 100.0, Some([1, 1, 1, 1]));
        for pair in 0..8 {
            let still = (cos[pair], sin[pair]) == (1.0, 0.0);
            assert_eq!(still, pair % 4 == 3, "pair {pair}");
        }
    }
}
