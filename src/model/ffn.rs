//! The feed-forward half of a block, a variation point of the one Qwen3 block.
//!
//! Dense Qwen3 uses SwiGLU, `down(silu(gate(h)) * up(h))`. A mixture of experts (Qwen3-MoE) is
//! the other variant of [`FeedForward`]: a router `ffn_gate_inp [experts, hidden]` picks each
//! token's `experts_used` experts, and their SwiGLU feed-forwards (`ffn_gate_exps`/`ffn_up_exps
//! [experts, expert_ffn, hidden]`, `ffn_down_exps [experts, hidden, expert_ffn]`) are summed,
//! weighted by the router's renormalised probabilities. Stock luminal cannot express the routing
//! (a data-dependent choice of weights), so the engine supplies it as the [`MixtureOfExperts`]
//! part; an engine without one refuses `qwen3moe` files when it opens. The attention half, the
//! norm before the feed-forward and the residual around it stay as they are.
//!
//! The hybrid mixtures of experts (`qwen35moe`, `qwen3next`) add a shared expert every token
//! runs: a SwiGLU of its own width whose output is scaled by `sigmoid(ffn_gate_inp_shexp · h)`
//! (one scalar per token) and added to the routed experts' sum. It travels with the routed
//! experts to the engine's part, so that an engine can run both in one pass over the token.

use luminal::prelude::*;

use super::config::Qwen3Config;
use super::dims::{
    ExpertDownRows, ExpertFfn, ExpertRows, Experts, Ffn, Hidden, LogitRows, Seq, SharedFfn,
};
use super::tensors::LayerTensor;

/// One block's feed-forward weights, by kind.
// Both variants are large (a graph tensor carries its shape tracker, ~5 KB) and about the same
// size; one value per layer while the graph is built, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy)]
pub enum FeedForward {
    /// SwiGLU over `ffn` inner units: every dense Qwen3.
    Dense(DenseFfn),
    /// Routed experts (Qwen3-MoE).
    Moe(MoeFfn),
}

/// A mixture-of-experts feed-forward's weights: the router, and the expert tensors seen as 2-D
/// with the experts stacked along the rows (a view of the 3-D tensor, nothing copied).
#[derive(Clone, Copy)]
pub struct MoeFfn {
    /// `ffn_gate_inp [experts, hidden]`.
    pub router: GraphTensor<(Experts, Hidden)>,
    /// `ffn_gate_exps`, `ffn_up_exps` as `[experts * expert_ffn, hidden]`.
    pub gate: GraphTensor<(ExpertRows, Hidden)>,
    pub up: GraphTensor<(ExpertRows, Hidden)>,
    /// `ffn_down_exps` as `[experts * hidden, expert_ffn]`.
    pub down: GraphTensor<(ExpertDownRows, ExpertFfn)>,
    pub experts: usize,
    pub experts_used: usize,
    /// The shared expert (`qwen35moe`, `qwen3next`).
    pub shared: Option<SharedExpert>,
}

/// The shared expert of a hybrid mixture of experts: `ffn_gate_inp_shexp [hidden]` (its gate,
/// a vector), `ffn_gate_shexp`, `ffn_up_shexp [shared_ffn, hidden]`, `ffn_down_shexp [hidden,
/// shared_ffn]`.
#[derive(Clone, Copy)]
pub struct SharedExpert {
    pub gate_inp: GraphTensor<(Hidden,)>,
    pub gate: GraphTensor<(SharedFfn, Hidden)>,
    pub up: GraphTensor<(SharedFfn, Hidden)>,
    pub down: GraphTensor<(Hidden, SharedFfn)>,
}

/// Variation point: the routed experts of a mixture-of-experts feed-forward.
pub trait MixtureOfExperts {
    /// The weighted sum of the experts the router picks for each token of the normed `h`, plus
    /// the gated shared expert where `w` has one, `[seq, hidden]` (the residual add is the
    /// block's).
    fn experts(&mut self, h: GraphTensor<(Seq, Hidden)>, w: &MoeFfn) -> GraphTensor<(Seq, Hidden)>;

    /// [`MixtureOfExperts::experts`] of the logit rows only: the last block's feed-forward,
    /// where only those rows' outputs are wanted.
    fn logit_rows_experts(
        &mut self,
        h: GraphTensor<(LogitRows, Hidden)>,
        w: &MoeFfn,
    ) -> GraphTensor<(LogitRows, Hidden)>;
}

/// The row dimensions a feed-forward runs on: every position of the step ([`Seq`]), or only
/// the trailing positions that get logits ([`LogitRows`]). Picks the engine's method for them.
pub trait FfnRows: Dimension {
    fn routed(
        moe: &mut dyn MixtureOfExperts,
        h: GraphTensor<(Self, Hidden)>,
        w: &MoeFfn,
    ) -> GraphTensor<(Self, Hidden)>;
}

impl FfnRows for Seq {
    fn routed(
        moe: &mut dyn MixtureOfExperts,
        h: GraphTensor<(Seq, Hidden)>,
        w: &MoeFfn,
    ) -> GraphTensor<(Seq, Hidden)> {
        moe.experts(h, w)
    }
}

impl FfnRows for LogitRows {
    fn routed(
        moe: &mut dyn MixtureOfExperts,
        h: GraphTensor<(LogitRows, Hidden)>,
        w: &MoeFfn,
    ) -> GraphTensor<(LogitRows, Hidden)> {
        moe.logit_rows_experts(h, w)
    }
}

/// `ffn_gate`, `ffn_up` `[ffn, hidden]` and `ffn_down` `[hidden, ffn]`.
#[derive(Clone, Copy)]
pub struct DenseFfn {
    pub gate: GraphTensor<(Ffn, Hidden)>,
    pub up: GraphTensor<(Ffn, Hidden)>,
    pub down: GraphTensor<(Hidden, Ffn)>,
}

impl FeedForward {
    /// The feed-forward weight nodes of one block of `config`.
    pub fn new(cx: &mut Graph, config: &Qwen3Config) -> Self {
        use LayerTensor::*;
        match config.moe {
            None => FeedForward::Dense(DenseFfn {
                gate: cx.named_tensor(FfnGate.name()),
                up: cx.named_tensor(FfnUp.name()),
                down: cx.named_tensor(FfnDown.name()),
            }),
            Some(m) => FeedForward::Moe(MoeFfn {
                router: cx.named_tensor(FfnGateInp.name()),
                gate: cx.named_tensor(FfnGateExps.name()),
                up: cx.named_tensor(FfnUpExps.name()),
                down: cx.named_tensor(FfnDownExps.name()),
                experts: m.experts,
                experts_used: m.experts_used,
                shared: m.shared_ffn.map(|_| SharedExpert {
                    gate_inp: cx.named_tensor(FfnGateInpShexp.name()),
                    gate: cx.named_tensor(FfnGateShexp.name()),
                    up: cx.named_tensor(FfnUpShexp.name()),
                    down: cx.named_tensor(FfnDownShexp.name()),
                }),
            }),
        }
    }

    /// The feed-forward of the normed hidden state `h`, `[rows, hidden]` (the residual add is
    /// the block's). `moe` is the engine's mixture-of-experts part, needed for
    /// [`FeedForward::Moe`].
    ///
    /// # Panics
    /// For a mixture of experts without `moe`: engines without one refuse such files at `open`.
    pub fn forward<R: FfnRows>(
        &self,
        h: GraphTensor<(R, Hidden)>,
        moe: Option<&mut dyn MixtureOfExperts>,
    ) -> GraphTensor<(R, Hidden)> {
        match self {
            FeedForward::Dense(w) => {
                let gate = h.matmul(w.gate.permute()); // [rows, ffn]
                let up = h.matmul(w.up.permute());
                (gate.swish() * up).matmul(w.down.permute())
            }
            FeedForward::Moe(w) => R::routed(
                moe.expect(
                    "an engine that builds a mixture-of-experts graph supplies its experts part",
                ),
                h,
                w,
            ),
        }
    }

    /// Each weight node with the table entry whose tensor it takes.
    pub fn tensors(&self) -> Vec<(LayerTensor, NodeIndex)> {
        match self {
            FeedForward::Dense(w) => vec![
                (LayerTensor::FfnGate, w.gate.id),
                (LayerTensor::FfnUp, w.up.id),
                (LayerTensor::FfnDown, w.down.id),
            ],
            FeedForward::Moe(w) => {
                let mut out = vec![
                    (LayerTensor::FfnGateInp, w.router.id),
                    (LayerTensor::FfnGateExps, w.gate.id),
                    (LayerTensor::FfnUpExps, w.up.id),
                    (LayerTensor::FfnDownExps, w.down.id),
                ];
                if let Some(s) = &w.shared {
                    out.extend([
                        (LayerTensor::FfnGateInpShexp, s.gate_inp.id),
                        (LayerTensor::FfnGateShexp, s.gate.id),
                        (LayerTensor::FfnUpShexp, s.up.id),
                        (LayerTensor::FfnDownShexp, s.down.id),
                    ]);
                }
                out
            }
        }
    }
}
