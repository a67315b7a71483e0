//! The GGUF tensor names of a Qwen3 file, verbatim as llama.cpp's converter writes them, with the
//! shape each must have: the one table that the graph, the loader, the config check and the GPU
//! weights read.
//!
//! Global tensors are named in full (`token_embd.weight`); a block's tensors by the part between
//! `blk.{i}.` and `.weight` (`attn_q`). Shapes are outermost first, as PyTorch and `--inspect`
//! print them: a weight matrix is `[rows (outputs), cols (inputs)]`.

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
}

/// The global tensors and their shapes.
pub const GLOBAL: [(&str, &[Dim]); 3] = [
    (TOKEN_EMBD, &[Dim::Vocab, Dim::Hidden]),
    (OUTPUT_NORM, &[Dim::Hidden]),
    (OUTPUT, &[Dim::Vocab, Dim::Hidden]),
];

/// A tensor of one transformer block, `blk.{i}.<name>.weight`.
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
}

use LayerTensor::*;

/// Every per-layer tensor: its name (verbatim) and shape.
const LAYER: [(LayerTensor, &str, &[Dim]); 15] = [
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

    fn row(self) -> &'static (LayerTensor, &'static str, &'static [Dim]) {
        LAYER
            .iter()
            .find(|r| r.0 == self)
            .expect("every LayerTensor has a row in LAYER")
    }

    /// The name between `blk.{i}.` and `.weight`, e.g. `attn_q`.
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// The shape, outermost first.
    pub fn shape(self) -> &'static [Dim] {
        self.row().2
    }

    /// A 1-D norm weight (F32, F16 or BF16 in a valid file).
    pub fn is_norm(self) -> bool {
        self.shape().len() == 1
    }

    /// The GGUF name in block `layer`, e.g. `blk.3.attn_q.weight`.
    pub fn in_layer(self, layer: usize) -> String {
        format!("blk.{layer}.{}.weight", self.name())
    }
}

/// The tensor's name without `.weight` (`token_embd`, `blk.3.attn_q`): graph node names and
/// kernel-profile labels.
pub fn stem(name: &str) -> &str {
    name.strip_suffix(".weight").unwrap_or(name)
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
    fn every_layer_tensor_is_listed_once() {
        let mut all: Vec<LayerTensor> = [
            &LayerTensor::ATTENTION[..],
            &LayerTensor::DENSE_FFN[..],
            &LayerTensor::MOE_FFN[..],
        ]
        .concat();
        // Both feed-forward halves start with the one norm.
        all.sort_by_key(|t| t.name());
        all.dedup();
        assert_eq!(all.len(), LAYER.len());
        for (i, (t, name, _)) in LAYER.iter().enumerate() {
            assert!(all.contains(t), "{name} is in no half of the block");
            assert!(LAYER[..i].iter().all(|r| r.1 != *name), "{name} twice");
        }
        let norms: Vec<&str> = LAYER
            .iter()
            .filter(|r| r.0.is_norm())
            .map(|r| r.1)
            .collect();
        assert_eq!(
            norms,
            ["attn_norm", "attn_q_norm", "attn_k_norm", "ffn_norm"]
        );
    }
}
