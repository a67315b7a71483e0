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

/// The rotary tables for `positions`: `cos` and `sin` of each position's angles, `[seq, head_dim / 2]`.
///
/// Computed on the host the way ggml does (`ggml_rope_cache_init`): the angle starts at the
/// position and is multiplied by `theta^(-2/head_dim)` in f32 for each successive pair, then
/// `cosf`/`sinf`. Doing it in the graph would cost luminal's `cos(x) = sin(pi/2 - x)`, which loses
/// precision at large positions.
pub fn rope_tables(positions: &[usize], head_dim: usize, theta: f32) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let theta_scale = theta.powf(-2.0 / head_dim as f32);
    let mut cos = Vec::with_capacity(positions.len() * half);
    let mut sin = Vec::with_capacity(positions.len() * half);
    for &p in positions {
        let mut angle = p as f32;
        for _ in 0..half {
            cos.push(angle.cos());
            sin.push(angle.sin());
            angle *= theta_scale;
        }
    }
    (cos, sin)
}
