//! The tensors a configuration needs, with the shape each must have as the metadata implies,
//! checked against the file (shape, type, norms as floats, no layer beyond the count).

use super::super::tensors::{self, Dim, LayerTensor, MtpTensor, OUTPUT, TOKEN_EMBD};
use super::error::ConfigError;
use super::keys::Keys;
use super::meta::Meta;
use super::types::{DeltaProjections, Qwen3Config};
use crate::gguf::TensorInfo;
use crate::quant::{supported_type_names, GgmlType};

/// The expected shape of one tensor (outermost first), each dim with the metadata that sets it.
struct Expected {
    name: String,
    dims: Vec<(usize, String)>,
    /// A norm or another small vector that must be F32, F16 or BF16.
    float_only: bool,
    /// A file may leave it out (the optional tensors of a multi-token-prediction block).
    optional: bool,
}

impl Meta<'_> {
    pub(super) fn check_tensors(&self, c: &Qwen3Config) -> Result<(), ConfigError> {
        let has_key_length = self.file.contains_key(&self.keys.key_length);
        for expected in expected_tensors(c, &self.keys, has_key_length) {
            match self.file.tensor(&expected.name) {
                Some(t) => self.check_tensor(t, &expected)?,
                // Tied embeddings: the output head is token_embd.weight, checked above.
                None if expected.name == OUTPUT || expected.optional => {}
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
        if expected.float_only && !matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
            return Err(ConfigError::NormNotFloat {
                tensor: t.name().to_string(),
                ty,
                file: self.name(),
            });
        }
        Ok(())
    }

    /// A `blk.{n}.` tensor with n >= block_count means the metadata understates the layers
    /// (a multi-token-prediction block after the trunk counts in block_count).
    fn check_no_extra_layers(&self, c: &Qwen3Config) -> Result<(), ConfigError> {
        let blocks = c.layers + c.hybrid.as_ref().map_or(0, |h| h.mtp_layers);
        for t in self.file.tensors() {
            if let Some(layer) = tensors::layer_of(t.name()) {
                if layer >= blocks {
                    return Err(ConfigError::ExtraLayer {
                        tensor: t.name().to_string(),
                        layer,
                        layers: blocks,
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

/// Every tensor of the trunk and of its multi-token-prediction blocks, with its shape
/// (outermost first) as the metadata implies. Lazy, so that a corrupt `block_count` of billions
/// stops at the first missing layer instead of listing billions of tensors first. The
/// prediction blocks' tensors are optional here, as llama.cpp skips them unless it runs the
/// block: their shapes are checked where present, and `--mtp` asks for the block whole.
fn expected_tensors<'a>(
    c: &'a Qwen3Config,
    keys: &Keys,
    has_key_length: bool,
) -> impl Iterator<Item = Expected> + 'a {
    let dims = ExpectedDims::new(c, keys, has_key_length);
    let global: Vec<Expected> = tensors::GLOBAL
        .iter()
        .map(|(name, shape)| dims.expected(name.to_string(), shape, shape.len() == 1))
        .collect();
    let mtp_layers = c.hybrid.as_ref().map_or(0, |h| h.mtp_layers);
    let mtp_dims = dims.clone();
    let trunk = global.into_iter().chain((0..c.layers).flat_map(move |i| {
        layer_tensors(c, i)
            .into_iter()
            .map(|t| dims.expected(t.in_layer(i), t.shape(), t.is_float_only()))
            .collect::<Vec<_>>()
    }));
    let mtp = (c.layers..c.layers + mtp_layers).flat_map(move |i| {
        let dims = &mtp_dims;
        let nextn =
            MtpTensor::ALL.map(|t| dims.expected(t.in_layer(i), t.shape(), t.shape().len() == 1));
        layer_tensors(c, i)
            .into_iter()
            .map(|t| dims.expected(t.in_layer(i), t.shape(), t.is_float_only()))
            .chain(nextn)
            .map(|e| Expected {
                optional: true,
                ..e
            })
            .collect::<Vec<_>>()
    });
    trunk.chain(mtp)
}

/// The tensors of layer `i`: its mixer (attention, gated attention or gated DeltaNet) and its
/// feed-forward, each half's norm first.
pub fn layer_tensors(c: &Qwen3Config, i: usize) -> Vec<LayerTensor> {
    use LayerTensor::*;
    let mixer: Vec<LayerTensor> = match &c.hybrid {
        None => LayerTensor::ATTENTION.to_vec(),
        Some(_) if !c.is_recurrent(i) => LayerTensor::GATED_ATTENTION.to_vec(),
        Some(h) => match h.projections {
            DeltaProjections::Separate => LayerTensor::DELTA_NET.to_vec(),
            DeltaProjections::FusedBetaAlpha => LayerTensor::DELTA_NET
                .iter()
                .filter(|t| !matches!(t, SsmBeta | SsmAlpha))
                .copied()
                .chain([SsmBa])
                .collect(),
            DeltaProjections::LegacyIn => vec![
                AttnNorm, SsmIn, SsmBa, SsmConv1d, SsmDt, SsmA, SsmNorm, SsmOut,
            ],
        },
    };
    let ffn = match (c.hybrid.is_some(), c.moe.is_some()) {
        (false, false) => &LayerTensor::DENSE_FFN[..],
        (false, true) => &LayerTensor::MOE_FFN[..],
        (true, false) => &LayerTensor::HYBRID_DENSE_FFN[..],
        (true, true) => &LayerTensor::HYBRID_MOE_FFN[..],
    };
    [&mixer[..], ffn].concat()
}

/// Each dimension a tensor shape uses, with the metadata that sets it.
#[derive(Clone)]
struct ExpectedDims {
    hidden: (usize, String),
    vocab: (usize, String),
    head_dim: (usize, String),
    q: (usize, String),
    kv: (usize, String),
    ffn: (usize, String),
    experts: (usize, String),
    expert_ffn: (usize, String),
    shared_ffn: (usize, String),
    q_gate: (usize, String),
    conv: (usize, String),
    conv_kernel: (usize, String),
    value: (usize, String),
    v_heads: (usize, String),
    beta_alpha: (usize, String),
    state: (usize, String),
    qkvz: (usize, String),
    eh: (usize, String),
}

impl ExpectedDims {
    fn new(c: &Qwen3Config, k: &Keys, has_key_length: bool) -> ExpectedDims {
        let head_dim_from = if has_key_length {
            k.key_length.clone()
        } else {
            format!("{} / {}", k.hidden, k.heads)
        };
        let (experts, expert_ffn, shared_ffn) = c.moe.map_or((0, 0, 0), |m| {
            (m.experts, m.expert_ffn, m.shared_ffn.unwrap_or(0))
        });
        let h = c.hybrid.as_ref();
        let size = |f: fn(&super::types::HybridConfig) -> usize| h.map_or(0, f);
        let (vh, st, kh) = (&k.v_heads, &k.state_size, &k.k_heads);
        ExpectedDims {
            hidden: (c.hidden, k.hidden.clone()),
            vocab: (c.vocab, format!("the rows of {TOKEN_EMBD}")),
            head_dim: (c.head_dim, head_dim_from.clone()),
            q: (c.q_dim(), format!("{} x {head_dim_from}", k.heads)),
            kv: (c.kv_dim(), format!("{} x {head_dim_from}", k.kv_heads)),
            ffn: (c.ffn, k.ffn.clone()),
            experts: (experts, k.experts.clone()),
            expert_ffn: (expert_ffn, k.expert_ffn.clone()),
            shared_ffn: (shared_ffn, k.shared_ffn.clone()),
            q_gate: (2 * c.q_dim(), format!("2 x {} x {head_dim_from}", k.heads)),
            conv: (
                size(|h| h.conv_dim()),
                format!("2 x {kh} x {st} + {vh} x {st}"),
            ),
            conv_kernel: (size(|h| h.conv_kernel), k.conv_kernel.clone()),
            value: (size(|h| h.value_dim()), k.inner_size.clone()),
            v_heads: (size(|h| h.v_heads), vh.clone()),
            beta_alpha: (size(|h| 2 * h.v_heads), format!("2 x {vh}")),
            state: (size(|h| h.state_size), st.clone()),
            qkvz: (
                size(|h| 2 * h.key_dim() + 2 * h.value_dim()),
                format!("2 x {kh} x {st} + 2 x {}", k.inner_size),
            ),
            eh: (2 * c.hidden, format!("2 x {}", k.hidden)),
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
            Dim::SharedFfn => &self.shared_ffn,
            Dim::QGateDim => &self.q_gate,
            Dim::ConvDim => &self.conv,
            Dim::ConvKernel => &self.conv_kernel,
            Dim::ValueDim => &self.value,
            Dim::VHeads => &self.v_heads,
            Dim::BetaAlpha => &self.beta_alpha,
            Dim::StateSize => &self.state,
            Dim::QkvzDim => &self.qkvz,
            Dim::EhDim => &self.eh,
        }
    }

    /// Tensor `name` of the table's `shape`, sized by this file's metadata.
    fn expected(&self, name: String, shape: &[Dim], float_only: bool) -> Expected {
        Expected {
            name,
            dims: shape.iter().map(|&d| self.of(d).clone()).collect(),
            float_only,
            optional: false,
        }
    }
}
