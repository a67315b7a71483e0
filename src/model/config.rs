//! The Qwen3 model configuration, read from GGUF metadata and checked against the tensors.
//!
//! Key and tensor names are those llama.cpp's converter writes for `Qwen3ForCausalLM` and
//! `Qwen3MoeForCausalLM` (`qwen3.embedding_length`, `blk.{i}.attn_q.weight`, ...; a mixture of
//! experts, architecture `qwen3moe`, has the same keys under the `qwen3moe.` prefix plus its
//! expert counts, and a routed feed-forward). Decisions where a file may differ:
//! - `qwen3.rope.freq_base` absent: 10000, the default of llama.cpp and of transformers'
//!   `Qwen3Config`, so a file without it runs as they run it (every released Qwen3 sets 1e6).
//! - `qwen3.attention.key_length` absent: head_dim = hidden / heads, as llama.cpp does.
//! - `qwen3.attention.head_count_kv` absent: kv_heads = heads (no grouping), as llama.cpp does.
//! - Norm weights must be F32, F16 or BF16: they are tiny, and llama.cpp always writes them as
//!   F32; a block-quantized norm is a broken file, not a format to support.
//! - `qwen3moe.expert_feed_forward_length` absent: `feed_forward_length / expert_used_count`,
//!   llama.cpp's fallback; `feed_forward_length` is then needed, otherwise it is optional.

use serde::Serialize;
use thiserror::Error;

use super::tensors::{self, Dim, LayerTensor, OUTPUT, TOKEN_EMBD};
use crate::gguf::{GgufError, GgufFile, TensorInfo};
use crate::quant::{supported_type_names, GgmlType};

const ARCH_KEY: &str = "general.architecture";
/// The architectures this program runs: dense Qwen3 and Qwen3-MoE.
const ARCHES: [&str; 2] = ["qwen3", "qwen3moe"];

/// The metadata keys of one architecture, `{arch}.embedding_length` and so on.
#[derive(Debug, Clone)]
struct Keys {
    hidden: String,
    layers: String,
    ffn: String,
    heads: String,
    kv_heads: String,
    key_length: String,
    value_length: String,
    rope_theta: String,
    rms_eps: String,
    context: String,
    vocab_size: String,
    experts: String,
    experts_used: String,
    expert_ffn: String,
}

impl Keys {
    fn new(arch: &str) -> Keys {
        let k = |suffix: &str| format!("{arch}.{suffix}");
        Keys {
            hidden: k("embedding_length"),
            layers: k("block_count"),
            ffn: k("feed_forward_length"),
            heads: k("attention.head_count"),
            kv_heads: k("attention.head_count_kv"),
            key_length: k("attention.key_length"),
            value_length: k("attention.value_length"),
            rope_theta: k("rope.freq_base"),
            rms_eps: k("attention.layer_norm_rms_epsilon"),
            context: k("context_length"),
            vocab_size: k("vocab_size"),
            experts: k("expert_count"),
            experts_used: k("expert_used_count"),
            expert_ffn: k("expert_feed_forward_length"),
        }
    }
}

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
    /// A mixture-of-experts feed-forward (architecture `qwen3moe`) instead of the dense one; its
    /// fields appear in the JSON config as `experts`, `experts_used`, `expert_ffn`.
    #[serde(flatten)]
    pub moe: Option<MoeConfig>,
}

/// The routed feed-forward of a Qwen3-MoE block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MoeConfig {
    /// Experts per layer (`expert_count`).
    pub experts: usize,
    /// Experts each token is routed to (`expert_used_count`).
    pub experts_used: usize,
    /// Inner width of one expert (`expert_feed_forward_length`).
    pub expert_ffn: usize,
}

/// A file that is not a usable Qwen3 model. Each error names the file and the key or tensor.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("architecture '{found}' is not supported (this program runs qwen3 and qwen3moe); {file} holds a different model")]
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
        let probe = Meta {
            file,
            keys: Keys::new(ARCHES[0]),
        };
        let arch = probe.required(ARCH_KEY, file.get_str(ARCH_KEY))?;
        if !ARCHES.contains(&arch) {
            return Err(ConfigError::WrongArchitecture {
                found: arch.to_string(),
                file: probe.name(),
            });
        }
        let meta = Meta {
            file,
            keys: Keys::new(arch),
        };
        let config = meta.read_config(arch == "qwen3moe")?;
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
        let [h, q, kv, v, hd] = [
            self.hidden,
            self.q_dim(),
            self.kv_dim(),
            self.vocab,
            self.head_dim,
        ]
        .map(|n| n as u64);
        let heads_out = if self.tied_embeddings { 0 } else { v * h };
        let attention = q * h + 2 * kv * h + h * q + 2 * hd;
        let ffn = match self.moe {
            // The router, then every expert's gate, up and down.
            Some(m) => m.experts as u64 * h + m.experts as u64 * self.expert_params(),
            None => 3 * self.ffn as u64 * h,
        };
        let layer = 2 * h + attention + ffn;
        v * h + heads_out + h + self.layers as u64 * layer
    }

    /// Parameters one token's forward pass uses: all of them for a dense model; for a mixture of
    /// experts, the routed experts' instead of every expert's (the embedding table counted whole,
    /// as the model cards count it).
    pub fn n_active_params(&self) -> u64 {
        match self.moe {
            Some(m) => {
                let idle = (m.experts - m.experts_used) as u64 * self.expert_params();
                self.n_params() - self.layers as u64 * idle
            }
            None => self.n_params(),
        }
    }

    /// Weights of one expert (gate, up and down), 0 for a dense model.
    pub fn expert_params(&self) -> u64 {
        self.moe
            .map_or(0, |m| 3 * m.expert_ffn as u64 * self.hidden as u64)
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
    keys: Keys,
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
        self.optional(key, read)?.ok_or_else(|| self.missing(key))
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

    fn read_config(&self, moe: bool) -> Result<Qwen3Config, ConfigError> {
        let (file, k) = (self.file, &self.keys);
        let hidden = self.size(&k.hidden)?;
        let heads = self.size(&k.heads)?;
        let kv_heads = match self.optional(&k.kv_heads, file.get_u32(&k.kv_heads))? {
            Some(n) => self.non_zero(&k.kv_heads, n as usize)?,
            None => heads,
        };
        let head_dim = match self.optional(&k.key_length, file.get_u32(&k.key_length))? {
            Some(n) => self.non_zero(&k.key_length, n as usize)?,
            None => self.non_zero(&format!("{} / {}", k.hidden, k.heads), hidden / heads)?,
        };
        let rope_theta = self.optional(&k.rope_theta, file.get_f32(&k.rope_theta))?;
        let rms_eps = self.required(&k.rms_eps, file.get_f32(&k.rms_eps))?;
        let (vocab, _) = self.embedding_size()?;
        let ffn = match self.optional(&k.ffn, file.get_u32(&k.ffn))? {
            Some(n) => self.non_zero(&k.ffn, n as usize)?,
            None if moe => 0,
            None => self.size(&k.ffn)?,
        };
        let moe = moe.then(|| self.read_moe(ffn)).transpose()?;
        Ok(Qwen3Config {
            hidden,
            layers: self.size(&k.layers)?,
            // A mixture of experts without feed_forward_length: the routed experts' width.
            ffn: match (ffn, moe) {
                (0, Some(m)) => m.expert_ffn * m.experts_used,
                _ => ffn,
            },
            heads,
            kv_heads,
            head_dim,
            rope_theta: self.positive(&k.rope_theta, rope_theta.unwrap_or(DEFAULT_ROPE_THETA))?,
            rms_eps: self.positive(&k.rms_eps, rms_eps)?,
            context_length: self.size(&k.context)?,
            vocab,
            tied_embeddings: file.tensor(OUTPUT).is_none(),
            moe,
        })
    }

    /// The expert counts and width; `ffn` is `feed_forward_length` (0 when absent), from which
    /// llama.cpp derives the expert width when `expert_feed_forward_length` is absent.
    fn read_moe(&self, ffn: usize) -> Result<MoeConfig, ConfigError> {
        let k = &self.keys;
        let experts = self.size(&k.experts)?;
        let experts_used = self.size(&k.experts_used)?;
        if experts_used > experts {
            return Err(ConfigError::TooManyExpertsUsed {
                used: experts_used,
                experts,
                used_key: k.experts_used.clone(),
                experts_key: k.experts.clone(),
                file: self.name(),
            });
        }
        let expert_ffn = match self.optional(&k.expert_ffn, self.file.get_u32(&k.expert_ffn))? {
            Some(n) => self.non_zero(&k.expert_ffn, n as usize)?,
            None if ffn == 0 => return Err(self.missing(&k.expert_ffn)),
            None => {
                let from = format!("{} / {}", k.ffn, k.experts_used);
                self.non_zero(&from, ffn / experts_used)?
            }
        };
        Ok(MoeConfig {
            experts,
            experts_used,
            expert_ffn,
        })
    }

    fn missing(&self, key: &str) -> ConfigError {
        ConfigError::MissingKey {
            key: key.to_string(),
            file: self.name(),
        }
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
                expected: format!("[vocab, {}]", self.keys.hidden),
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
        let k = &self.keys;
        if !c.heads.is_multiple_of(c.kv_heads) {
            return Err(ConfigError::HeadsNotDivisible {
                heads: c.heads,
                kv_heads: c.kv_heads,
                heads_key: k.heads.clone(),
                kv_heads_key: k.kv_heads.clone(),
                file: self.name(),
            });
        }
        if let Some(v) = self.optional(&k.value_length, self.file.get_u32(&k.value_length))? {
            if v as usize != c.head_dim {
                return Err(ConfigError::ValueLengthMismatch {
                    key_length: c.head_dim,
                    value_length: v as usize,
                    key_key: k.key_length.clone(),
                    value_key: k.value_length.clone(),
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
        if let Some(n) = self.optional(&k.vocab_size, self.file.get_u64(&k.vocab_size))? {
            if n != c.vocab as u64 {
                return Err(ConfigError::VocabMismatch {
                    vocab_size: n,
                    rows: c.vocab as u64,
                    key: k.vocab_size.clone(),
                    file: self.name(),
                });
            }
        }
        Ok(())
    }

    fn check_tensors(&self, c: &Qwen3Config) -> Result<(), ConfigError> {
        let has_key_length = self.file.contains_key(&self.keys.key_length);
        for expected in expected_tensors(c, &self.keys, has_key_length) {
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
                        key: self.keys.layers.clone(),
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
fn expected_tensors(
    c: &Qwen3Config,
    keys: &Keys,
    has_key_length: bool,
) -> impl Iterator<Item = Expected> {
    let dims = ExpectedDims::new(c, keys, has_key_length);
    let global: Vec<Expected> = tensors::GLOBAL
        .iter()
        .map(|(name, shape)| dims.expected(name.to_string(), shape))
        .collect();
    let ffn = match c.moe {
        Some(_) => &LayerTensor::MOE_FFN[..],
        None => &LayerTensor::DENSE_FFN[..],
    };
    let layer = [&LayerTensor::ATTENTION[..], ffn].concat();
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
    experts: (usize, String),
    expert_ffn: (usize, String),
}

impl ExpectedDims {
    fn new(c: &Qwen3Config, k: &Keys, has_key_length: bool) -> ExpectedDims {
        let head_dim_from = if has_key_length {
            k.key_length.clone()
        } else {
            format!("{} / {}", k.hidden, k.heads)
        };
        let moe = c.moe.unwrap_or(MoeConfig {
            experts: 0,
            experts_used: 0,
            expert_ffn: 0,
        });
        ExpectedDims {
            hidden: (c.hidden, k.hidden.clone()),
            vocab: (c.vocab, format!("the rows of {TOKEN_EMBD}")),
            head_dim: (c.head_dim, head_dim_from.clone()),
            q: (c.q_dim(), format!("{} x {head_dim_from}", k.heads)),
            kv: (c.kv_dim(), format!("{} x {head_dim_from}", k.kv_heads)),
            ffn: (c.ffn, k.ffn.clone()),
            experts: (moe.experts, k.experts.clone()),
            expert_ffn: (moe.expert_ffn, k.expert_ffn.clone()),
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
            Dim::Experts => &self.experts,
            Dim::ExpertFfn => &self.expert_ffn,
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
