//! RMSNorm as the graph writes it: a variation point of the block, plain or f16-safe.
//!
//! Plain is `x / sqrt(mean(x²) + eps) * weight` in luminal's stock ops (`std_norm`), the form the
//! CPU passes recognise and replace (`ops::rms_norm`). In f16 the plain form overflows: `x²`
//! passes 65504 once `|x|` passes 256, which the residual stream of real Qwen3 models does. The
//! f16-safe form first divides each row by its largest magnitude `m`; then
//! `rms_norm(x) = y / sqrt(mean(y²) + eps / m²)` with `y = x / m`, `|y| <= 1`.

use luminal::prelude::*;

use super::dims::{HeadDim, Hidden, Seq};

/// Which form of RMSNorm the graph uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NormKind {
    /// Stock `std_norm` times the weight (CPU engines, f32 GPU graphs).
    #[default]
    Plain,
    /// Rows scaled by their largest magnitude first, so squares stay inside f16's range.
    F16Safe,
}

/// RMSNorm with its epsilon, in the chosen form.
#[derive(Debug, Clone, Copy)]
pub struct Norm {
    pub eps: f32,
    pub kind: NormKind,
}

/// Keeps the row maximum away from zero (an all-zero row) without moving real rows.
const TINY: f32 = 1e-4;

impl Norm {
    /// Over the hidden axis of `[rows, hidden]`.
    pub fn rows<R: Dimension>(
        self,
        x: GraphTensor<(R, Hidden)>,
        weight: GraphTensor<(Hidden,)>,
    ) -> GraphTensor<(R, Hidden)> {
        if self.kind == NormKind::Plain {
            return x.std_norm::<1, f32>(self.eps) * weight.expand();
        }
        let m: GraphTensor<(R,)> = x.max_reduce::<_, Axis<1>>().max((-x).max_reduce()) + TINY;
        let y = x / m.expand();
        let mean = (y * y).mean_reduce::<_, Axis<1>>() + m.recip() * m.recip() * self.eps;
        y * mean.sqrt().recip().expand() * weight.expand()
    }

    /// Qwen3's per-head norm of queries and keys, over `head_dim`.
    pub fn heads<H: Dimension>(
        self,
        x: GraphTensor<(Seq, H, HeadDim)>,
        weight: GraphTensor<(HeadDim,)>,
    ) -> GraphTensor<(Seq, H, HeadDim)> {
        if self.kind == NormKind::Plain {
            return x.std_norm::<2, f32>(self.eps) * weight.expand();
        }
        let m: GraphTensor<(Seq, H)> = x.max_reduce::<_, Axis<2>>().max((-x).max_reduce()) + TINY;
        let y = x / m.expand();
        let mean = (y * y).mean_reduce::<_, Axis<2>>() + m.recip() * m.recip() * self.eps;
        y * mean.sqrt().recip().expand() * weight.expand()
    }
}
