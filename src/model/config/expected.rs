//! The tensors a configuration needs, with the shape each must have as the metadata implies,
//! checked against the file (shape, type, norms as floats, no layer beyond the count).

use super::super::tensors::{self, Dim, LayerTensor, OUTPUT, TOKEN_EMBD};
use super::error::ConfigError;
use super::keys::Keys;
use super::meta::Meta;
use super::types::{MoeConfig, Qwen3Config};
use crate::gguf::TensorInfo;
use crate::quant::{supported_type_names, GgmlType};

/// The expected shape of one tensor (outermost first), each dim with the metadata that sets it.
struct Expected {
    name: String,
    dims: Vec<(usize, String)>,
    is_norm: bool,
}

impl Meta<'_> {
    pub(super) fn check_tensors(&self, c: &Qwen3Config) -> Result<(), ConfigError> {
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
