//! The Qwen3 model configuration, read from GGUF metadata and checked against the tensors.
//!
//! Key and tensor names are those llama.cpp's converter writes for `Qwen3ForCausalLM`
//! (`qwen3.embedding_length`, `blk.{i}.attn_q.weight`, ...). Decisions where a file may differ:
//! - `qwen3.rope.freq_base` absent: 10000, the default of llama.cpp and of transformers'
//!   `Qwen3Config`, so a file without it runs as they run it (every released Qwen3 sets 1e6).
//! - `qwen3.attention.key_length` absent: head_dim = hidden / heads, as llama.cpp does.
//! - `qwen3.attention.head_count_kv` absent: kv_heads = heads (no grouping), as llama.cpp does.
//! - Norm weights must be F32, F16 or BF16: they are tiny, and llama.cpp always writes them as
//!   F32; a block-quantized norm is a broken file, not a format to support.

use serde::Serialize;
use thiserror::Error;

use super::tensors::{self, Dim, LayerTensor, OUTPUT, TOKEN_EMBD};
use crate::gguf::{GgufError, GgufFile, TensorInfo};
use crate::quant::{supported_type_names, GgmlType};

const ARCH_KEY: &str = "general.architecture";
const ARCH: &str = "qwen3";
const HIDDEN: &str = "qwen3.embedding_length";
const LAYERS: &str = "qwen3.block_count";
const FFN: &str = "qwen3.feed_forward_length";
const HEADS: &str = "qwen3.attention.head_count";
const KV_HEADS: &str = "qwen3.attention.head_count_kv";
const KEY_LENGTH: &str = "qwen3.attention.key_length";
const VALUE_LENGTH: &str = "qwen3.attention.value_length";
const ROPE_THETA: &str = "qwen3.rope.freq_base";
const RMS_EPS: &str = "qwen3.attention.layer_norm_rms_epsilon";
const CONTEXT: &str = "qwen3.context_length";
const VOCAB_SIZE: &str = "qwen3.vocab_size";

/// llama.cpp's and transformers' default when the file has no `rope.freq_base`.
pub const DEFAULT_ROPE_THETA: f32 = 10_000.0;

/// The sizes and constants of a Qwen3 model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Qwen3Config {
    /// Model width (`embedding_length`).
    pub hidden: usize,
    /// Transformer blocks (`block_count`).
    pub layers: usize,
    /// Feed-forward inner width (`feed_forward_length`).
    pub ffn: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention: `heads` is a multiple of it).
    pub kv_heads: usize,
    /// Width of one head; Qwen3 may have heads * head_dim != hidden.
    pub head_dim: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
    /// Context length the model was trained for.
    pub context_length: usize,
    /// Rows of `token_embd.weight`.
    pub vocab: usize,
    /// No `output.weight`: the output head reuses `token_embd.weight`.
    pub tied_embeddings: bool,
}

/// A file that is not a usable Qwen3 model. Each error names the file and the key or tensor.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("architecture '{found}' is not supported (this program runs qwen3); {file} holds a different model")]
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
        "{HEADS} ({heads}) is not a multiple of {KV_HEADS} ({kv_heads}) in {file}; grouped-query \
         attention needs whole groups"
    )]
    HeadsNotDivisible {
        heads: usize,
        kv_heads: usize,
        file: String,
    },

    #[error(
        "{VALUE_LENGTH} ({value_length}) differs from {KEY_LENGTH} ({key_length}) in {file}; \
         Qwen3 uses one head size for keys and values"
    )]
    ValueLengthMismatch {
        key_length: usize,
        value_length: usize,
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

    #[error("{VOCAB_SIZE} ({vocab_size}) in {file} differs from the {rows} rows of {TOKEN_EMBD}")]
    VocabMismatch {
        vocab_size: u64,
        rows: u64,
        file: String,
    },

    #[error("tensor '{tensor}' in {file} is for layer {layer}, but {LAYERS} is {layers}")]
    ExtraLayer {
        tensor: String,
        layer: usize,
        layers: usize,
        file: String,
    },

    #[error("unsupported tensor type {ty} in '{tensor}' (supported: {supported})")]
    UnsupportedType {
        tensor: String,
        ty: GgmlType,
        supported: String,
    },

    #[error("norm weight '{tensor}' in {file} is {ty}; norm weights must be F32, F16 or BF16")]
    NormNotFloat {
        tensor: String,
        ty: GgmlType,
        file: String,
    },
}

impl Qwen3Config {
    /// Reads and checks the configuration of a Qwen3 GGUF file.
    pub fn from_gguf(file: &GgufFile) -> Result<Qwen3Config, ConfigError> {
        let meta = Meta { file };
        let arch = meta.required(ARCH_KEY, file.get_str(ARCH_KEY))?;
        if arch != ARCH {
            return Err(ConfigError::WrongArchitecture {
                found: arch.to_string(),
                file: meta.name(),
            });
        }
        let config = meta.read_config()?;
        meta.check_heads(&config)?;
        meta.check_tensors(&config)?;
        Ok(config)
    }

    /// Query projection width: heads * head_dim.
    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Key (and value) projection width: kv_heads * head_dim.
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Parameters the model has by this configuration (equals the file's element count).
    pub fn n_params(&self) -> u64 {
        let [h, q, kv, f, v, hd] = [
            self.hidden,
            self.q_dim(),
            self.kv_dim(),
            self.ffn,
            self.vocab,
            self.head_dim,
        ]
        .map(|n| n as u64);
        let heads_out = if self.tied_embeddings { 0 } else { v * h };
        let attention = q * h + 2 * kv * h + h * q + 2 * hd;
        let layer = 2 * h + attention + 3 * f * h;
        v * h + heads_out + h + self.layers as u64 * layer
    }
}

/// The expected shape of one tensor (outermost first), each dim with the metadata that sets it.
struct Expected {
    name: String,
    dims: Vec<(usize, String)>,
    is_norm: bool,
}

/// Metadata reads that turn reader errors into config errors naming the file.
struct Meta<'a> {
    file: &'a GgufFile,
}

impl Meta<'_> {
    fn name(&self) -> String {
        self.file.source().to_string()
    }

    fn optional<T>(&self, key: &str, read: Result<T, GgufError>) -> Result<Option<T>, ConfigError> {
        match read {
            Ok(v) => Ok(Some(v)),
            Err(GgufError::MissingKey { .. }) => Ok(None),
            Err(GgufError::KeyType {
                expected, found, ..
            }) => Err(ConfigError::KeyType {
                key: key.to_string(),
                expected,
                found,
                file: self.name(),
            }),
            Err(other) => Err(ConfigError::KeyType {
                key: key.to_string(),
                expected: "a readable value",
                found: other.to_string(),
                file: self.name(),
            }),
        }
    }

    fn required<T>(&self, key: &str, read: Result<T, GgufError>) -> Result<T, ConfigError> {
        self.optional(key, read)?
            .ok_or_else(|| ConfigError::MissingKey {
                key: key.to_string(),
                file: self.name(),
            })
    }

    /// A size: a non-zero integer.
    fn size(&self, key: &str) -> Result<usize, ConfigError> {
        let n = self.required(key, self.file.get_u32(key))?;
        self.non_zero(key, n as usize)
    }

    fn non_zero(&self, key: &str, n: usize) -> Result<usize, ConfigError> {
        if n == 0 {
            return Err(ConfigError::ZeroSize {
                key: key.to_string(),
                file: self.name(),
            });
        }
        Ok(n)
    }

    fn positive(&self, key: &str, value: f32) -> Result<f32, ConfigError> {
        if !(value.is_finite() && value > 0.0) {
            return Err(ConfigError::BadFloat {
                key: key.to_string(),
                value,
                file: self.name(),
            });
        }
        Ok(value)
    }

    fn read_config(&self) -> Result<Qwen3Config, ConfigError> {
        let file = self.file;
        let hidden = self.size(HIDDEN)?;
        let heads = self.size(HEADS)?;
        let kv_heads = match self.optional(KV_HEADS, file.get_u32(KV_HEADS))? {
            Some(n) => self.non_zero(KV_HEADS, n as usize)?,
            None => heads,
        };
        let head_dim = match self.optional(KEY_LENGTH, file.get_u32(KEY_LENGTH))? {
            Some(n) => self.non_zero(KEY_LENGTH, n as usize)?,
            None => self.non_zero("embedding_length / head_count", hidden / heads)?,
        };
        let rope_theta = self.optional(ROPE_THETA, file.get_f32(ROPE_THETA))?;
        let rms_eps = self.required(RMS_EPS, file.get_f32(RMS_EPS))?;
        let (vocab, _) = self.embedding_size()?;
        Ok(Qwen3Config {
            hidden,
            layers: self.size(LAYERS)?,
            ffn: self.size(FFN)?,
            heads,
            kv_heads,
            head_dim,
            rope_theta: self.positive(ROPE_THETA, rope_theta.unwrap_or(DEFAULT_ROPE_THETA))?,
            rms_eps: self.positive(RMS_EPS, rms_eps)?,
            context_length: self.size(CONTEXT)?,
            vocab,
            tied_embeddings: file.tensor(OUTPUT).is_none(),
        })
    }

    /// (rows, cols) of the embedding table; rows is the vocabulary.
    fn embedding_size(&self) -> Result<(usize, usize), ConfigError> {
        let t = self.tensor(TOKEN_EMBD)?;
        match t.shape()[..] {
            [rows, cols] if rows > 0 => Ok((rows as usize, cols as usize)),
            _ => Err(ConfigError::ShapeMismatch {
                tensor: TOKEN_EMBD.to_string(),
                file: self.name(),
                found: t.shape(),
                expected: format!("[vocab, {HIDDEN}]"),
                reason: "the embedding must be a non-empty 2-D table".to_string(),
            }),
        }
    }

    fn tensor(&self, name: &str) -> Result<&TensorInfo, ConfigError> {
        self.file
            .tensor(name)
            .ok_or_else(|| ConfigError::MissingTensor {
                tensor: name.to_string(),
                file: self.name(),
            })
    }

    fn check_heads(&self, c: &Qwen3Config) -> Result<(), ConfigError> {
        if !c.heads.is_multiple_of(c.kv_heads) {
            return Err(ConfigError::HeadsNotDivisible {
                heads: c.heads,
                kv_heads: c.kv_heads,
                file: self.name(),
            });
        }
        if let Some(v) = self.optional(VALUE_LENGTH, self.file.get_u32(VALUE_LENGTH))? {
            if v as usize != c.head_dim {
                return Err(ConfigError::ValueLengthMismatch {
                    key_length: c.head_dim,
                    value_length: v as usize,
                    file: self.name(),
                });
            }
        }
        if !c.head_dim.is_multiple_of(2) {
            return Err(ConfigError::OddHeadDim {
                head_dim: c.head_dim,
                file: self.name(),
            });
        }
        if let Some(n) = self.optional(VOCAB_SIZE, self.file.get_u64(VOCAB_SIZE))? {
            if n != c.vocab as u64 {
                return Err(ConfigError::VocabMismatch {
                    vocab_size: n,
                    rows: c.vocab as u64,
                    file: self.name(),
                });
            }
        }
        Ok(())
    }

    fn check_tensors(&self, c: &Qwen3Config) -> Result<(), ConfigError> {
        for expected in expected_tensors(c, self.file.contains_key(KEY_LENGTH)) {
            match self.file.tensor(&expected.name) {
                Some(t) => self.check_tensor(t, &expected)?,
                // Tied embeddings: the output head is token_embd.weight, checked above.
                None if expected.name == OUTPUT => {}
                None => self.tensor(&expected.name).map(|_| ())?,
            }
        }
        self.check_no_extra_layers(c)
    }

    fn check_tensor(&self, t: &TensorInfo, expected: &Expected) -> Result<(), ConfigError> {
        let found = t.shape();
        let want: Vec<u64> = expected.dims.iter().map(|(n, _)| *n as u64).collect();
        if found != want {
            return Err(ConfigError::ShapeMismatch {
                tensor: t.name().to_string(),
                file: self.name(),
                expected: format!("{want:?}"),
                reason: mismatch_reason(&found, &expected.dims),
                found,
            });
        }
        let ty = t.ggml_type();
        if !ty.is_supported() {
            return Err(ConfigError::UnsupportedType {
                tensor: t.name().to_string(),
                ty,
                supported: supported_type_names(),
            });
        }
        if expected.is_norm && !matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
            return Err(ConfigError::NormNotFloat {
                tensor: t.name().to_string(),
                ty,
                file: self.name(),
            });
        }
        Ok(())
    }

    /// A `blk.{n}.` tensor with n >= block_count means the metadata understates the layers.
    fn check_no_extra_layers(&self, c: &Qwen3Config) -> Result<(), ConfigError> {
        for t in self.file.tensors() {
            if let Some(layer) = tensors::layer_of(t.name()) {
                if layer >= c.layers {
                    return Err(ConfigError::ExtraLayer {
                        tensor: t.name().to_string(),
                        layer,
                        layers: c.layers,
                        file: self.name(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Says which dimension differs and which metadata key sets it.
fn mismatch_reason(found: &[u64], dims: &[(usize, String)]) -> String {
    if found.len() != dims.len() {
        return format!("expected {} dimensions, found {}", dims.len(), found.len());
    }
    let differing = found
        .iter()
        .zip(dims)
        .enumerate()
        .find(|(_, (f, (n, _)))| **f != *n as u64);
    match differing {
        Some((i, (f, (n, from)))) => format!("dim {i} is {f} but {from} makes it {n}"),
        None => "shapes differ".to_string(),
    }
}

/// Every tensor a Qwen3 model needs, with its shape (outermost first) as the metadata implies.
/// Lazy, so that a corrupt `block_count` of billions stops at the first missing layer instead
/// of listing billions of tensors first.
fn expected_tensors(c: &Qwen3Config, has_key_length: bool) -> impl Iterator<Item = Expected> {
    let dims = ExpectedDims::new(c, has_key_length);
    let global: Vec<Expected> = tensors::GLOBAL
        .iter()
        .map(|(name, shape)| dims.expected(name.to_string(), shape))
        .collect();
    let layer = [&LayerTensor::ATTENTION[..], &LayerTensor::DENSE_FFN[..]].concat();
    global.into_iter().chain((0..c.layers).flat_map(move |i| {
        layer
            .iter()
            .map(|t| dims.expected(t.in_layer(i), t.shape()))
            .collect::<Vec<_>>()
    }))
}

/// Each dimension a tensor shape uses, with the metadata that sets it.
struct ExpectedDims {
    hidden: (usize, String),
    vocab: (usize, String),
    head_dim: (usize, String),
    q: (usize, String),
    kv: (usize, String),
    ffn: (usize, String),
}

impl ExpectedDims {
    fn new(c: &Qwen3Config, has_key_length: bool) -> ExpectedDims {
        let head_dim_from = if has_key_length {
            KEY_LENGTH.to_string()
        } else {
            format!("{HIDDEN} / {HEADS}")
        };
        ExpectedDims {
            hidden: (c.hidden, HIDDEN.to_string()),
            vocab: (c.vocab, format!("the rows of {TOKEN_EMBD}")),
            head_dim: (c.head_dim, head_dim_from.clone()),
            q: (c.q_dim(), format!("{HEADS} x {head_dim_from}")),
            kv: (c.kv_dim(), format!("{KV_HEADS} x {head_dim_from}")),
            ffn: (c.ffn, FFN.to_string()),
        }
    }

    fn of(&self, dim: Dim) -> &(usize, String) {
        match dim {
            Dim::Hidden => &self.hidden,
            Dim::Vocab => &self.vocab,
            Dim::HeadDim => &self.head_dim,
            Dim::QDim => &self.q,
            Dim::KvDim => &self.kv,
            Dim::Ffn => &self.ffn,
        }
    }

    /// Tensor `name` of the table's `shape`, sized by this file's metadata.
    fn expected(&self, name: String, shape: &[Dim]) -> Expected {
        Expected {
            name,
            dims: shape.iter().map(|&d| self.of(d).clone()).collect(),
            is_norm: shape.len() == 1,
        }
    }
}
