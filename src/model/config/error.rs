//! Why a file is not a usable model: each error names the file and the key or tensor at fault.

use thiserror::Error;

use super::super::tensors::TOKEN_EMBD;
use crate::quant::GgmlType;

/// A file that is not a usable Qwen3 model. Each error names the file and the key or tensor.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("architecture '{found}' is not supported (this program runs qwen3, qwen3moe, qwen35, qwen35moe, qwen3next, qwen3vl and qwen3vlmoe); {file} holds a different model")]
    WrongArchitecture { found: String, file: String },

    #[error("metadata key '{key}' not found in {file}; is it a complete Qwen3 GGUF file?")]
    MissingKey { key: String, file: String },

    #[error("metadata key '{key}' in {file} holds {found}, expected {expected}")]
    KeyType {
        key: String,
        expected: &'static str,
        found: String,
        file: String,
    },

    #[error("metadata key '{key}' is 0 in {file}; a model size cannot be zero")]
    ZeroSize { key: String, file: String },

    #[error("metadata key '{key}' is {value} in {file}; it must be a positive finite number")]
    BadFloat {
        key: String,
        value: f32,
        file: String,
    },

    #[error(
        "{heads_key} ({heads}) is not a multiple of {kv_heads_key} ({kv_heads}) in {file}; \
         grouped-query attention needs whole groups"
    )]
    HeadsNotDivisible {
        heads: usize,
        kv_heads: usize,
        heads_key: String,
        kv_heads_key: String,
        file: String,
    },

    #[error(
        "{value_key} ({value_length}) differs from {key_key} ({key_length}) in {file}; \
         Qwen3 uses one head size for keys and values"
    )]
    ValueLengthMismatch {
        key_length: usize,
        value_length: usize,
        key_key: String,
        value_key: String,
        file: String,
    },

    #[error(
        "{used_key} ({used}) is more than {experts_key} ({experts}) in {file}; a token cannot \
         be routed to more experts than a layer has"
    )]
    TooManyExpertsUsed {
        used: usize,
        experts: usize,
        used_key: String,
        experts_key: String,
        file: String,
    },

    #[error(
        "{arch}.ssm.time_step_rank ({v_heads}) is not a multiple of {arch}.ssm.group_count \
         ({k_heads}) in {file}; each DeltaNet key head serves a whole number of value heads"
    )]
    KeyHeadsNotDivisible {
        v_heads: usize,
        k_heads: usize,
        arch: &'static str,
        file: String,
    },

    #[error(
        "{arch}.ssm.inner_size ({inner}) in {file} is not {arch}.ssm.time_step_rank x \
         {arch}.ssm.state_size ({v_heads} x {state} = {}): the DeltaNet state sizes contradict \
         each other",
        v_heads * state
    )]
    StateSizeMismatch {
        inner: usize,
        v_heads: usize,
        state: usize,
        arch: &'static str,
        file: String,
    },

    #[error(
        "{key} is 0 in {file}; every layer would be a gated DeltaNet layer with no full \
         attention, which no Qwen model has (the file is damaged)"
    )]
    ZeroInterval { key: String, file: String },

    #[error("{key} in {file} has {found} entries, expected {expected} (one per block)")]
    RecurrentLayersLength {
        key: String,
        found: usize,
        expected: usize,
        file: String,
    },

    #[error(
        "{mtp_key} ({mtp}) in {file} is not below {layers_key} ({layers}): the trunk would have \
         no layers"
    )]
    TooManyMtpLayers {
        mtp: usize,
        layers: usize,
        mtp_key: String,
        layers_key: String,
        file: String,
    },

    #[error(
        "{key} ({dims}) in {file} must be even and at most the head size ({head_dim}): rotary \
         embeddings turn pairs of a head's dimensions"
    )]
    BadRopeDims {
        dims: usize,
        head_dim: usize,
        key: String,
        file: String,
    },

    #[error(
        "{key} {sections:?} in {file} covers no rotary pair; the first three sections give \
         the pairs each position axis turns"
    )]
    EmptyRopeSections {
        sections: [usize; 4],
        key: String,
        file: String,
    },

    #[error("head_dim {head_dim} is odd in {file}; rotary embeddings rotate pairs of dimensions")]
    OddHeadDim { head_dim: usize, file: String },

    #[error("tensor '{tensor}' not found in {file}; the file is not a complete Qwen3 model")]
    MissingTensor { tensor: String, file: String },

    #[error("tensor '{tensor}' in {file} has shape {found:?}, expected {expected}: {reason}")]
    ShapeMismatch {
        tensor: String,
        file: String,
        found: Vec<u64>,
        expected: String,
        reason: String,
    },

    #[error("{key} ({vocab_size}) in {file} differs from the {rows} rows of {TOKEN_EMBD}")]
    VocabMismatch {
        vocab_size: u64,
        rows: u64,
        key: String,
        file: String,
    },

    #[error("tensor '{tensor}' in {file} is for layer {layer}, but {key} is {layers}")]
    ExtraLayer {
        tensor: String,
        layer: usize,
        layers: usize,
        key: String,
        file: String,
    },

    #[error("unsupported tensor type {ty} in '{tensor}' (supported: {supported})")]
    UnsupportedType {
        tensor: String,
        ty: GgmlType,
        supported: String,
    },

    #[error(
        "'{tensor}' in {file} is {ty}; norm weights and the other small per-channel vectors \
         (DeltaNet conv taps, dt bias, decay) must be F32, F16 or BF16"
    )]
    NormNotFloat {
        tensor: String,
        ty: GgmlType,
        file: String,
    },
}
