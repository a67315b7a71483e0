//! The GGUF tensor names of the Qwen files this program runs, verbatim as llama.cpp's converter
//! writes them, with the shape each must have: the one table that the graph, the loader, the
//! config check and the GPU weights read.
//!
//! Global tensors are named in full (`token_embd.weight`); a block's tensors by the part between
//! `blk.{i}.` and their suffix (`attn_q`), which is `.weight` but for two tensors of the gated
//! DeltaNet layers: `ssm_dt.bias` and `ssm_a` (no suffix). Shapes are outermost first, as
//! PyTorch and `--inspect` print them: a weight matrix is `[rows (outputs), cols (inputs)]`.

/// The embedding table, `[vocab, hidden]`; also the head when embeddings are tied.
pub const TOKEN_EMBD: &str = "token_embd.weight";
/// The final RMSNorm's weight, `[hidden]`.
pub const OUTPUT_NORM: &str = "output_norm.weight";
/// The output head, `[vocab, hidden]`; absent when embeddings are tied.
pub const OUTPUT: &str = "output.weight";

/// What sets one dimension of a tensor's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Hidden,
    Vocab,
    HeadDim,
    /// `heads * head_dim`.
    QDim,
    /// `kv_heads * head_dim`.
    KvDim,
    Ffn,
    /// Experts per layer (mixture of experts).
    Experts,
    /// Inner width of one expert.
    ExpertFfn,
    /// Inner width of the shared expert (`qwen35moe`, `qwen3next`).
    SharedFfn,
    /// The gated attention's query-and-gate projection: `2 * heads * head_dim`.
    QGateDim,
    /// Gated DeltaNet: its q, k and v channels, `2 * k_heads * state + v_heads * state`.
    ConvDim,
    /// Gated DeltaNet: taps of the causal convolution.
    ConvKernel,
    /// Gated DeltaNet: the value width `v_heads * state` (`ssm.inner_size`).
    ValueDim,
    /// Gated DeltaNet: value heads (`ssm.time_step_rank`).
    VHeads,
    /// Gated DeltaNet: `2 * v_heads`, beta and alpha in one projection (`qwen3next`).
    BetaAlpha,
    /// Gated DeltaNet: the head size (`ssm.state_size`).
    StateSize,
    /// Gated DeltaNet, legacy fused input projection (`qwen3next`): `2 * k_dim + 2 * value_dim`.
    QkvzDim,
    /// Multi-token prediction: the token's embedding and the trunk's hidden state side by side,
    /// `2 * hidden`.
    EhDim,
}

/// The global tensors and their shapes.
pub const GLOBAL: [(&str, &[Dim]); 3] = [
    (TOKEN_EMBD, &[Dim::Vocab, Dim::Hidden]),
    (OUTPUT_NORM, &[Dim::Hidden]),
    (OUTPUT, &[Dim::Vocab, Dim::Hidden]),
];

/// A tensor of one transformer block, `blk.{i}.<name>.weight` (`.bias`, or nothing, for the
/// two DeltaNet vectors that llama.cpp's converter names so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerTensor {
    AttnNorm,
    AttnQ,
    AttnK,
    AttnV,
    AttnQNorm,
    AttnKNorm,
    AttnOutput,
    FfnNorm,
    FfnGate,
    FfnUp,
    FfnDown,
    FfnGateInp,
    FfnGateExps,
    FfnUpExps,
    FfnDownExps,
    /// The hybrid models' norm before the feed-forward (Qwen3's `ffn_norm`).
    PostAttentionNorm,
    /// Gated attention: query and gate, interleaved per head.
    AttnQGate,
    AttnQkv,
    AttnGate,
    SsmConv1d,
    SsmDt,
    SsmA,
    SsmBeta,
    SsmAlpha,
    SsmBa,
    SsmIn,
    SsmNorm,
    SsmOut,
    FfnGateInpShexp,
    FfnGateShexp,
    FfnUpShexp,
    FfnDownShexp,
}

use LayerTensor::*;

/// Every per-layer tensor: its name (verbatim) and shape.
const LAYER: [(LayerTensor, &str, &[Dim]); 32] = [
    (AttnNorm, "attn_norm", &[Dim::Hidden]),
    (AttnQ, "attn_q", &[Dim::QDim, Dim::Hidden]),
    (AttnK, "attn_k", &[Dim::KvDim, Dim::Hidden]),
    (AttnV, "attn_v", &[Dim::KvDim, Dim::Hidden]),
    (AttnQNorm, "attn_q_norm", &[Dim::HeadDim]),
    (AttnKNorm, "attn_k_norm", &[Dim::HeadDim]),
    (AttnOutput, "attn_output", &[Dim::Hidden, Dim::QDim]),
    (FfnNorm, "ffn_norm", &[Dim::Hidden]),
    (FfnGate, "ffn_gate", &[Dim::Ffn, Dim::Hidden]),
    (FfnUp, "ffn_up", &[Dim::Ffn, Dim::Hidden]),
    (FfnDown, "ffn_down", &[Dim::Hidden, Dim::Ffn]),
    // Mixture of experts: the router, and every expert's matrices stacked (PyTorch order).
    (FfnGateInp, "ffn_gate_inp", &[Dim::Experts, Dim::Hidden]),
    (
        FfnGateExps,
        "ffn_gate_exps",
        &[Dim::Experts, Dim::ExpertFfn, Dim::Hidden],
    ),
    (
        FfnUpExps,
        "ffn_up_exps",
        &[Dim::Experts, Dim::ExpertFfn, Dim::Hidden],
    ),
    (
        FfnDownExps,
        "ffn_down_exps",
        &[Dim::Experts, Dim::Hidden, Dim::ExpertFfn],
    ),
    // The hybrid models (qwen35, qwen35moe, qwen3next): gated attention every few layers,
    // gated DeltaNet in the others, a norm named after the attention before the feed-forward.
    (PostAttentionNorm, "post_attention_norm", &[Dim::Hidden]),
    (AttnQGate, "attn_q", &[Dim::QGateDim, Dim::Hidden]),
    (AttnQkv, "attn_qkv", &[Dim::ConvDim, Dim::Hidden]),
    (AttnGate, "attn_gate", &[Dim::ValueDim, Dim::Hidden]),
    (SsmConv1d, "ssm_conv1d", &[Dim::ConvDim, Dim::ConvKernel]),
    (SsmDt, "ssm_dt", &[Dim::VHeads]),
    (SsmA, "ssm_a", &[Dim::VHeads]),
    (SsmBeta, "ssm_beta", &[Dim::VHeads, Dim::Hidden]),
    (SsmAlpha, "ssm_alpha", &[Dim::VHeads, Dim::Hidden]),
    (SsmBa, "ssm_ba", &[Dim::BetaAlpha, Dim::Hidden]),
    (SsmIn, "ssm_in", &[Dim::QkvzDim, Dim::Hidden]),
    (SsmNorm, "ssm_norm", &[Dim::StateSize]),
    (SsmOut, "ssm_out", &[Dim::Hidden, Dim::ValueDim]),
    // The shared expert beside the routed ones (qwen35moe, qwen3next); its gate is a vector.
    (FfnGateInpShexp, "ffn_gate_inp_shexp", &[Dim::Hidden]),
    (
        FfnGateShexp,
        "ffn_gate_shexp",
        &[Dim::SharedFfn, Dim::Hidden],
    ),
    (FfnUpShexp, "ffn_up_shexp", &[Dim::SharedFfn, Dim::Hidden]),
    (
        FfnDownShexp,
        "ffn_down_shexp",
        &[Dim::Hidden, Dim::SharedFfn],
    ),
];

impl LayerTensor {
    /// The attention half of a block (in the order the config check reads them, so that a file
    /// with several faults reports the same one first as it always has).
    pub const ATTENTION: [LayerTensor; 7] = [
        AttnNorm, AttnQ, AttnK, AttnV, AttnOutput, AttnQNorm, AttnKNorm,
    ];
    /// The dense (SwiGLU) feed-forward half, its norm first.
    pub const DENSE_FFN: [LayerTensor; 4] = [FfnNorm, FfnGate, FfnUp, FfnDown];
    /// The mixture-of-experts feed-forward half (architecture `qwen3moe`), its norm first.
    pub const MOE_FFN: [LayerTensor; 5] =
        [FfnNorm, FfnGateInp, FfnGateExps, FfnUpExps, FfnDownExps];
    /// A hybrid model's gated-attention half.
    pub const GATED_ATTENTION: [LayerTensor; 7] = [
        AttnNorm, AttnQGate, AttnK, AttnV, AttnOutput, AttnQNorm, AttnKNorm,
    ];
    /// A hybrid model's gated-DeltaNet half (qwen35's separate beta and alpha projections).
    pub const DELTA_NET: [LayerTensor; 10] = [
        AttnNorm, AttnQkv, AttnGate, SsmConv1d, SsmDt, SsmA, SsmBeta, SsmAlpha, SsmNorm, SsmOut,
    ];
    /// A hybrid model's dense feed-forward half, its norm first.
    pub const HYBRID_DENSE_FFN: [LayerTensor; 4] = [PostAttentionNorm, FfnGate, FfnUp, FfnDown];
    /// A hybrid model's mixture of experts with a shared expert, its norm first.
    pub const HYBRID_MOE_FFN: [LayerTensor; 9] = [
        PostAttentionNorm,
        FfnGateInp,
        FfnGateExps,
        FfnUpExps,
        FfnDownExps,
        FfnGateInpShexp,
        FfnGateShexp,
        FfnUpShexp,
        FfnDownShexp,
    ];

    fn row(self) -> &'static (LayerTensor, &'static str, &'static [Dim]) {
        LAYER
            .iter()
            .find(|r| r.0 == self)
            .expect("every LayerTensor has a row in LAYER")
    }

    /// The name between `blk.{i}.` and the suffix, e.g. `attn_q`.
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// What follows the name: `.weight`, but `.bias` for `ssm_dt` and nothing for `ssm_a`, as
    /// llama.cpp's converter names them.
    pub fn suffix(self) -> &'static str {
        match self {
            SsmDt => ".bias",
            SsmA => "",
            _ => ".weight",
        }
    }

    /// The shape, outermost first.
    pub fn shape(self) -> &'static [Dim] {
        self.row().2
    }

    /// A vector that must stay in a float type (F32, F16 or BF16 in a valid file): the norms,
    /// and the DeltaNet's small per-head parameters and convolution taps, which llama.cpp's
    /// converter and llama-quantize keep F32.
    pub fn is_float_only(self) -> bool {
        self.shape().len() == 1 || self == SsmConv1d
    }

    /// The GGUF name in block `layer`, e.g. `blk.3.attn_q.weight`.
    pub fn in_layer(self, layer: usize) -> String {
        format!("blk.{layer}.{}{}", self.name(), self.suffix())
    }
}

/// A tensor of a multi-token-prediction ("nextn") block of its own, `blk.{n}.nextn.<name>.weight`,
/// where `n` is the trunk's depth (the block comes after the trunk). Besides these the block has
/// the tensors of a trunk attention layer ([`LayerTensor::GATED_ATTENTION`] and its feed-forward
/// half), under the same `blk.{n}.` (llama.cpp's `load_block_mtp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MtpTensor {
    /// The projection of `[RMSNorm(embedding) * enorm ; RMSNorm(hidden) * hnorm]` back to the
    /// model width, `[hidden, 2 * hidden]`.
    EhProj,
    /// The norm of the token's embedding.
    ENorm,
    /// The norm of the trunk's hidden state.
    HNorm,
    /// Its own embedding table; optional (`token_embd` when absent).
    EmbedTokens,
    /// Its own head; optional (the trunk's head when absent).
    SharedHeadHead,
    /// The norm before the head; optional (`output_norm` when absent).
    SharedHeadNorm,
}

/// Every multi-token-prediction tensor: its name (verbatim), shape and whether a file must have
/// it (llama.cpp loads the last three as `TENSOR_NOT_REQUIRED`; published files leave out the
/// embedding table and the head).
const MTP: [(MtpTensor, &str, &[Dim], bool); 6] = [
    (
        MtpTensor::EhProj,
        "nextn.eh_proj",
        &[Dim::Hidden, Dim::EhDim],
        true,
    ),
    (MtpTensor::ENorm, "nextn.enorm", &[Dim::Hidden], true),
    (MtpTensor::HNorm, "nextn.hnorm", &[Dim::Hidden], true),
    (
        MtpTensor::EmbedTokens,
        "nextn.embed_tokens",
        &[Dim::Vocab, Dim::Hidden],
        false,
    ),
    (
        MtpTensor::SharedHeadHead,
        "nextn.shared_head_head",
        &[Dim::Vocab, Dim::Hidden],
        false,
    ),
    (
        MtpTensor::SharedHeadNorm,
        "nextn.shared_head_norm",
        &[Dim::Hidden],
        false,
    ),
];

impl MtpTensor {
    /// Every one, in the table's order.
    pub const ALL: [MtpTensor; 6] = [
        MtpTensor::EhProj,
        MtpTensor::ENorm,
        MtpTensor::HNorm,
        MtpTensor::EmbedTokens,
        MtpTensor::SharedHeadHead,
        MtpTensor::SharedHeadNorm,
    ];

    fn row(self) -> &'static (MtpTensor, &'static str, &'static [Dim], bool) {
        MTP.iter()
            .find(|r| r.0 == self)
            .expect("every MtpTensor has a row in MTP")
    }

    /// The name between `blk.{n}.` and `.weight`, e.g. `nextn.eh_proj`.
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// The shape, outermost first.
    pub fn shape(self) -> &'static [Dim] {
        self.row().2
    }

    /// Whether a file with the block must have it.
    pub fn required(self) -> bool {
        self.row().3
    }

    /// The GGUF name in block `layer`, e.g. `blk.4.nextn.eh_proj.weight`.
    pub fn in_layer(self, layer: usize) -> String {
        format!("blk.{layer}.{}.weight", self.name())
    }
}

/// The tensor's name without `.weight` (`token_embd`, `blk.3.attn_q`): graph node names and
/// kernel-profile labels.
pub fn stem(name: &str) -> &str {
    name.strip_suffix(".weight").unwrap_or(name)
}

/// Whether the tensor a per-layer name names is one the CPU engine decodes to f32 at load: a
/// float-only one (norms, DeltaNet parameters and convolution taps).
pub fn decoded_to_f32(name: &str) -> bool {
    let Some(layer) = layer_of(name) else {
        return false;
    };
    LAYER
        .iter()
        .any(|(t, _, _)| t.is_float_only() && t.in_layer(layer) == name)
}

/// The block a per-layer tensor name belongs to: `blk.3.attn_q.weight` -> 3.
pub fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_llama_cpp_s() {
        assert_eq!(AttnQ.in_layer(3), "blk.3.attn_q.weight");
        assert_eq!(FfnDown.in_layer(0), "blk.0.ffn_down.weight");
        assert_eq!(FfnGateExps.in_layer(5), "blk.5.ffn_gate_exps.weight");
        assert_eq!(FfnGateInp.shape(), [Dim::Experts, Dim::Hidden]);
        assert_eq!(stem(TOKEN_EMBD), "token_embd");
        assert_eq!(stem(&AttnKNorm.in_layer(12)), "blk.12.attn_k_norm");
        assert_eq!(layer_of("blk.12.ffn_up.weight"), Some(12));
        assert_eq!(layer_of(OUTPUT), None);
    }

    #[test]
    fn mtp_names_are_llama_cpp_s() {
        assert_eq!(MtpTensor::EhProj.in_layer(4), "blk.4.nextn.eh_proj.weight");
        assert_eq!(MtpTensor::ENorm.in_layer(4), "blk.4.nextn.enorm.weight");
        assert_eq!(MtpTensor::HNorm.in_layer(4), "blk.4.nextn.hnorm.weight");
        assert_eq!(
            MtpTensor::EmbedTokens.in_layer(4),
            "blk.4.nextn.embed_tokens.weight"
        );
        assert_eq!(
            MtpTensor::SharedHeadHead.in_layer(4),
            "blk.4.nextn.shared_head_head.weight"
        );
        assert_eq!(
            MtpTensor::SharedHeadNorm.in_layer(4),
            "blk.4.nextn.shared_head_norm.weight"
        );
        let required: Vec<bool> = MtpTensor::ALL.iter().map(|t| t.required()).collect();
        assert_eq!(required, [true, true, true, false, false, false]);
        assert_eq!(layer_of(&MtpTensor::EhProj.in_layer(24)), Some(24));
    }

    #[test]
    fn hybrid_names_are_llama_cpp_s() {
        assert_eq!(SsmDt.in_layer(0), "blk.0.ssm_dt.bias");
        assert_eq!(SsmA.in_layer(2), "blk.2.ssm_a");
        assert_eq!(SsmConv1d.in_layer(1), "blk.1.ssm_conv1d.weight");
        assert_eq!(AttnQGate.in_layer(3), "blk.3.attn_q.weight");
        assert_eq!(
            PostAttentionNorm.in_layer(3),
            "blk.3.post_attention_norm.weight"
        );
    }

    #[test]
    fn every_layer_tensor_is_listed_once() {
        let halves = [
            &LayerTensor::ATTENTION[..],
            &LayerTensor::DENSE_FFN[..],
            &LayerTensor::MOE_FFN[..],
            &LayerTensor::GATED_ATTENTION[..],
            &LayerTensor::DELTA_NET[..],
            &LayerTensor::HYBRID_DENSE_FFN[..],
            &LayerTensor::HYBRID_MOE_FFN[..],
            &[SsmBa, SsmIn][..],
        ];
        let mut all: Vec<LayerTensor> = halves.concat();
        // Halves share their norms and some matrices.
        all.sort_by_key(|t| format!("{t:?}"));
        all.dedup();
        assert_eq!(all.len(), LAYER.len());
        for (i, (t, name, _)) in LAYER.iter().enumerate() {
            assert!(all.contains(t), "{name} is in no half of the block");
            // Two rows share a name only as two shapes of one tensor: Qwen3's query and the
            // hybrid models' query and gate.
            let twin = LAYER[..i].iter().find(|r| r.1 == *name);
            assert!(
                twin.is_none() || (twin.unwrap().0, *t) == (AttnQ, AttnQGate),
                "{name} twice"
            );
        }
        let float_only: Vec<&str> = LAYER
            .iter()
            .filter(|r| r.0.is_float_only())
            .map(|r| r.1)
            .collect();
        assert_eq!(
            float_only,
            [
                "attn_norm",
                "attn_q_norm",
                "attn_k_norm",
                "ffn_norm",
                "post_attention_norm",
                "ssm_conv1d",
                "ssm_dt",
                "ssm_a",
                "ssm_norm",
                "ffn_gate_inp_shexp"
            ]
        );
    }
}
