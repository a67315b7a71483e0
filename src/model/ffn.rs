//! The feed-forward half of a block, a variation point of the one Qwen3 block.
//!
//! Dense Qwen3 uses SwiGLU, `down(silu(gate(h)) * up(h))`. A mixture of experts (Qwen3-MoE) plugs
//! in as one more variant of [`FeedForward`]: its tensors in the name table (router
//! `ffn_gate_inp [experts, hidden]`, experts `ffn_gate_exps`/`ffn_up_exps [experts, expert_ffn,
//! hidden]`, `ffn_down_exps [experts, hidden, expert_ffn]`), its weights chosen from the config
//! in [`FeedForward::new`], its graph in [`FeedForward::forward`]. The attention half, the norm
//! before the feed-forward and the residual around it stay as they are.

use luminal::prelude::*;

use super::config::Qwen3Config;
use super::dims::{Ffn, Hidden, Seq};
use super::tensors::LayerTensor;

/// One block's feed-forward weights, by kind.
#[derive(Clone, Copy)]
pub enum FeedForward {
    /// SwiGLU over `ffn` inner units: every dense Qwen3.
    Dense(DenseFfn),
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
    pub fn new(cx: &mut Graph, _config: &Qwen3Config) -> Self {
        FeedForward::Dense(DenseFfn {
            gate: cx.named_tensor(LayerTensor::FfnGate.name()),
            up: cx.named_tensor(LayerTensor::FfnUp.name()),
            down: cx.named_tensor(LayerTensor::FfnDown.name()),
        })
    }

    /// The feed-forward of the normed hidden state `h`, `[seq, hidden]` (the residual add is the
    /// block's).
    pub fn forward(&self, h: GraphTensor<(Seq, Hidden)>) -> GraphTensor<(Seq, Hidden)> {
        match self {
            FeedForward::Dense(w) => {
                let gate = h.matmul(w.gate.permute()); // [seq, ffn]
                let up = h.matmul(w.up.permute());
                (gate.swish() * up).matmul(w.down.permute())
            }
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
        }
    }
}
