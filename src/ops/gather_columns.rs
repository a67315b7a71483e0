//! A fused projection taken apart: the columns of `x [seq, width]` picked in a fixed order, an
//! exact copy. Qwen3-Next stores its DeltaNet input projections fused per key head (`ssm_ba`:
//! each key head's betas then alphas; the older `ssm_in`: each key head's q, k, v and z), while
//! the DeltaNet op takes `[q | k | v]`, `z`, beta and alpha each over all heads, as llama.cpp's
//! views and `ggml_cont`s lay them out. The layouts are computed here ([`FusedLayout`]) so the
//! engine and the tests build the same column lists.

use std::sync::Arc;

use luminal::op::{InputTensor, Operator};
use luminal::prelude::*;

use super::cost::{self, Cost, OpCost};
use super::input::contiguous;

/// Inputs: `x [seq, width]`. Output: `[seq, index.len()]`, column `c` being `x`'s column
/// `index[c]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GatherColumns {
    pub width: usize,
    pub index: Arc<[u32]>,
}

impl Operator for GatherColumns {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let x = contiguous(&inp[0].0, &inp[0].1);
        let mut out = Vec::with_capacity(x.len() / self.width.max(1) * self.index.len());
        for row in x.chunks_exact(self.width) {
            out.extend(self.index.iter().map(|&c| row[c as usize]));
        }
        vec![Tensor::new(out)]
    }
    /// The cost model and kind, for the profiler (`cost::model_of`, `cost::kind_of`).
    fn custom(&mut self, key: &str, _: Box<dyn std::any::Any>) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key)
    }
}

impl OpCost for GatherColumns {
    /// The columns it copies; no arithmetic.
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        let rows = inp
            .first()
            .map_or(0, |(_, t)| cost::read_len(t) / self.width.max(1) as u64);
        Cost::activations(rows * self.index.len() as u64)
    }
}

/// Adds the gather of `x`'s columns `index` to the graph, `[seq, out]` (`out` of `index.len()`
/// columns, a dimension of the caller's).
pub fn gather_columns<S: Dimension, W: Dimension, O: Dimension>(
    x: GraphTensor<(S, W)>,
    width: usize,
    index: Vec<u32>,
) -> GraphTensor<(S, O)> {
    let op = GatherColumns {
        width,
        index: index.into(),
    };
    let id = x.graph().add_op(op).input(x.id, 0, x.shape).finish();
    GraphTensor::from_id(
        id,
        ShapeTracker::new(&[S::const_size(), O::const_size()]),
        x.graph_ref,
    )
}

/// The geometry of Qwen3-Next's fused projections: `k_heads` key heads of `state` channels,
/// `r = v_heads / k_heads` value heads per key head (value head `j` belongs to key head
/// `j / r`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FusedLayout {
    pub k_heads: usize,
    pub v_heads: usize,
    pub state: usize,
}

impl FusedLayout {
    fn per_key(&self) -> usize {
        self.v_heads / self.k_heads
    }

    /// Width of `ssm_ba`'s output: `2 v_heads`.
    pub fn ba_width(&self) -> usize {
        2 * self.v_heads
    }

    /// `ssm_ba`'s columns of the betas (`alpha` false) or alphas, by value head.
    pub fn beta_alpha(&self, alpha: bool) -> Vec<u32> {
        let r = self.per_key();
        (0..self.v_heads)
            .map(|j| (j / r * 2 * r + usize::from(alpha) * r + j % r) as u32)
            .collect()
    }

    /// Width of one key head's group in `ssm_in`'s output: q, k, then `r` values and `r` gates.
    fn group(&self) -> usize {
        2 * self.state + 2 * self.per_key() * self.state
    }

    /// Width of `ssm_in`'s output: `2 key_dim + 2 value_dim`.
    pub fn qkvz_width(&self) -> usize {
        self.k_heads * self.group()
    }

    /// `ssm_in`'s columns of `[q | k | v]` (all key heads' q, then their k, then every value
    /// head's v).
    pub fn qkv(&self) -> Vec<u32> {
        let (s, rs, g) = (self.state, self.per_key() * self.state, self.group());
        let part = |offset: usize, len: usize| {
            (0..self.k_heads).flat_map(move |h| (0..len).map(move |c| (h * g + offset + c) as u32))
        };
        part(0, s)
            .chain(part(s, s))
            .chain(part(2 * s, rs))
            .collect()
    }

    /// `ssm_in`'s columns of `z`, by value head.
    pub fn z(&self) -> Vec<u32> {
        let (s, rs, g) = (self.state, self.per_key() * self.state, self.group());
        (0..self.k_heads)
            .flat_map(|h| (0..rs).map(move |c| (h * g + 2 * s + rs + c) as u32))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two key heads of state 2, four value heads (two per key head).
    const LAYOUT: FusedLayout = FusedLayout {
        k_heads: 2,
        v_heads: 4,
        state: 2,
    };

    #[test]
    fn ssm_ba_gives_each_key_heads_betas_then_alphas() {
        // Columns: [b0 b1 a0 a1 | b2 b3 a2 a3].
        assert_eq!(LAYOUT.beta_alpha(false), [0, 1, 4, 5]);
        assert_eq!(LAYOUT.beta_alpha(true), [2, 3, 6, 7]);
    }

    #[test]
    fn ssm_in_splits_into_q_k_v_and_z_per_key_head() {
        // Per key head (12 columns): q (2), k (2), v of its two value heads (4), z (4).
        assert_eq!(LAYOUT.qkvz_width(), 24);
        assert_eq!(
            LAYOUT.qkv(),
            [0, 1, 12, 13, 2, 3, 14, 15, 4, 5, 6, 7, 16, 17, 18, 19]
        );
        assert_eq!(LAYOUT.z(), [8, 9, 10, 11, 20, 21, 22, 23]);
    }

    #[test]
    fn the_op_copies_the_columns_of_every_row() {
        let mut op = GatherColumns {
            width: 3,
            index: vec![2, 0].into(),
        };
        let data = Tensor::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let out = op.process(vec![(
            InputTensor::Borrowed(&data),
            ShapeTracker::new(&[2.into(), 3.into()]),
        )]);
        let got = out[0].data.as_any().downcast_ref::<Vec<f32>>().unwrap();
        assert_eq!(got, &vec![3.0, 1.0, 6.0, 4.0]);
    }
}
