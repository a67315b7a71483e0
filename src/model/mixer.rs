//! The token-mixing half of a block, a variation point of the one block definition: Qwen3's
//! attention, or one of the hybrid models' two layer kinds (Qwen3.5/3.6, Qwen3-Next), gated
//! full attention and the gated DeltaNet, chosen per layer by the config.
//!
//! - Attention (Qwen3): q/k/v projections, per-head q/k RMSNorm, NEOX rotary embedding,
//!   grouped-query attention over the KV cache, output projection. The norms and rotation are
//!   written here in stock ops; the engine's [`Attention`] part attends.
//! - Gated attention: the query projection is twice as wide and yields, per head, the query and
//!   a gate; the attention output is multiplied by `sigmoid(gate)`. The rotary embedding turns
//!   only the first `rope.dimension_count` dimensions of a head. The engine's
//!   [`HybridMixers::gated_attention`] does norms, rotation, attention and gate in one op.
//! - Gated DeltaNet: the q/k/v, gate (`z`), beta and alpha projections; a causal convolution,
//!   the delta rule on a recurrent state per value head and a gated RMSNorm, all in the
//!   engine's [`HybridMixers::delta_net`] op, which owns the layer's state; then `ssm_out`.
//!   Files store the input projections three ways ([`DeltaProjections`]): separate (qwen35,
//!   qwen35moe), beta and alpha fused in `ssm_ba` (qwen3next), and also q, k, v and z fused in
//!   `ssm_in` (qwen3next files converted before late 2025); each stored matrix is one matmul
//!   here, and the engine takes the fused outputs apart (per key head, see [`QkvZ`] and
//!   [`BetaAlpha`]).
//!
//! The projections stay matmuls of the graph, so both compilation paths run them on their own
//! kernels (and `--parallel` fuses them with the norm before).

use luminal::prelude::*;

use super::config::{DeltaProjections, Qwen3Config};
use super::dims::{
    BetaAlphaDim, ConvDim, ConvKernel, HeadDim, Heads, Hidden, KvDim, KvHeads, QDim, QGateDim,
    QkvzDim, Seq, StateSize, VHeads, ValueDim,
};
use super::norm::Norm;
use super::rotary::Rotary;
use super::tensors::LayerTensor;

/// Variation point: causal attention over one layer's KV cache.
pub trait Attention {
    /// Appends this step's keys `k [seq, kv_heads, head_dim]` and values `v [seq, kv_heads *
    /// head_dim]` to the cache of the next layer (layers call in order) and attends to it with
    /// the queries `q [seq, heads, head_dim]`; q and k are normed and rotated. Returns
    /// `[seq, heads * head_dim]`.
    fn attend(
        &mut self,
        q: GraphTensor<(Seq, Heads, HeadDim)>,
        k: GraphTensor<(Seq, KvHeads, HeadDim)>,
        v: GraphTensor<(Seq, KvDim)>,
    ) -> GraphTensor<(Seq, QDim)>;
}

/// Variation point: the hybrid models' two layer kinds, each an op that owns its layer's cache
/// or state (layers call in order).
pub trait HybridMixers {
    /// Gated attention from the raw projections: `q_gate [seq, 2 * q_dim]` (per head, the query
    /// then its gate), `k`, `v [seq, kv_dim]`; q/k norms, partial rotation with `rotary`'s
    /// tables, the KV cache, attention and the sigmoid gate. Returns `[seq, q_dim]`.
    fn gated_attention(
        &mut self,
        projections: GatedProjections,
        w: &GatedAttentionWeights,
        rotary: Rotary,
    ) -> GraphTensor<(Seq, QDim)>;

    /// The gated DeltaNet from the raw projections, through the gated RMSNorm: `[seq,
    /// value_dim]` (the output projection is the block's).
    fn delta_net(
        &mut self,
        projections: DeltaProjectionsOut,
        w: &DeltaNetWeights,
    ) -> GraphTensor<(Seq, ValueDim)>;
}

/// A gated attention layer's projections of the normed input.
#[derive(Clone, Copy)]
pub struct GatedProjections {
    pub q_gate: GraphTensor<(Seq, QGateDim)>,
    pub k: GraphTensor<(Seq, KvDim)>,
    pub v: GraphTensor<(Seq, KvDim)>,
}

/// A gated DeltaNet layer's projections of the normed input, as the file's matrices give them.
#[derive(Clone, Copy)]
pub struct DeltaProjectionsOut {
    pub qkvz: QkvZ,
    pub beta_alpha: BetaAlpha,
}

/// The convolution's channels and the output gate.
// Graph tensors carry their shape trackers (~5 KB each): the variants differ by one of them, one
// value per layer while the graph is built, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy)]
pub enum QkvZ {
    /// `qkv [seq, conv_dim]` (`[q | k | v]`, each all heads) and `z [seq, value_dim]`.
    Separate {
        qkv: GraphTensor<(Seq, ConvDim)>,
        z: GraphTensor<(Seq, ValueDim)>,
    },
    /// `ssm_in`'s `[seq, 2 key_dim + 2 value_dim]`: per key head `g`, its q and k (`state`
    /// each), then the v and z of its `v_heads / k_heads` value heads.
    Fused(GraphTensor<(Seq, QkvzDim)>),
}

/// Per value head: beta (before its sigmoid) and alpha (before the decay).
// Graph tensors carry their shape trackers (~5 KB each): the variants differ by one of them, one
// value per layer while the graph is built, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy)]
pub enum BetaAlpha {
    Separate {
        beta: GraphTensor<(Seq, VHeads)>,
        alpha: GraphTensor<(Seq, VHeads)>,
    },
    /// `ssm_ba`'s `[seq, 2 v_heads]`: per key head `g`, the betas of its `r = v_heads /
    /// k_heads` value heads `g r .. g r + r`, then their alphas.
    Fused(GraphTensor<(Seq, BetaAlphaDim)>),
}

/// The weights of Qwen3's attention half.
#[derive(Clone, Copy)]
pub struct AttentionWeights {
    pub attn_norm: GraphTensor<(Hidden,)>,
    pub attn_q: GraphTensor<(QDim, Hidden)>,
    pub attn_k: GraphTensor<(KvDim, Hidden)>,
    pub attn_v: GraphTensor<(KvDim, Hidden)>,
    pub attn_q_norm: GraphTensor<(HeadDim,)>,
    pub attn_k_norm: GraphTensor<(HeadDim,)>,
    pub attn_output: GraphTensor<(Hidden, QDim)>,
}

/// The weights of a gated attention layer.
#[derive(Clone, Copy)]
pub struct GatedAttentionWeights {
    pub attn_norm: GraphTensor<(Hidden,)>,
    /// Query and gate, `[2 * q_dim, hidden]`, interleaved per head.
    pub attn_q: GraphTensor<(QGateDim, Hidden)>,
    pub attn_k: GraphTensor<(KvDim, Hidden)>,
    pub attn_v: GraphTensor<(KvDim, Hidden)>,
    pub attn_q_norm: GraphTensor<(HeadDim,)>,
    pub attn_k_norm: GraphTensor<(HeadDim,)>,
    pub attn_output: GraphTensor<(Hidden, QDim)>,
}

/// The weights of a gated DeltaNet layer.
#[derive(Clone, Copy)]
pub struct DeltaNetWeights {
    pub attn_norm: GraphTensor<(Hidden,)>,
    pub qkvz: QkvZWeights,
    pub beta_alpha: BetaAlphaWeights,
    /// The causal convolution's taps, `[conv_dim, conv_kernel]`.
    pub ssm_conv1d: GraphTensor<(ConvDim, ConvKernel)>,
    /// `dt_bias`, added to alpha before the softplus.
    pub ssm_dt: GraphTensor<(VHeads,)>,
    /// `-exp(A_log)`: the decay rate per value head.
    pub ssm_a: GraphTensor<(VHeads,)>,
    /// The gated RMSNorm's weight, shared by every head.
    pub ssm_norm: GraphTensor<(StateSize,)>,
    pub ssm_out: GraphTensor<(Hidden, ValueDim)>,
}

/// The q/k/v and gate projections as stored.
// Graph tensors carry their shape trackers (~5 KB each): the variants differ by one of them, one
// value per layer while the graph is built, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy)]
pub enum QkvZWeights {
    Separate {
        attn_qkv: GraphTensor<(ConvDim, Hidden)>,
        attn_gate: GraphTensor<(ValueDim, Hidden)>,
    },
    /// `ssm_in`, see [`QkvZ::Fused`].
    Fused {
        ssm_in: GraphTensor<(QkvzDim, Hidden)>,
    },
}

/// The beta and alpha projections as stored.
// Graph tensors carry their shape trackers (~5 KB each): the variants differ by one of them, one
// value per layer while the graph is built, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy)]
pub enum BetaAlphaWeights {
    Separate {
        ssm_beta: GraphTensor<(VHeads, Hidden)>,
        ssm_alpha: GraphTensor<(VHeads, Hidden)>,
    },
    /// `ssm_ba`, see [`BetaAlpha::Fused`].
    Fused {
        ssm_ba: GraphTensor<(BetaAlphaDim, Hidden)>,
    },
}

impl QkvZWeights {
    fn project(&self, h: GraphTensor<(Seq, Hidden)>) -> QkvZ {
        match self {
            QkvZWeights::Separate {
                attn_qkv,
                attn_gate,
            } => QkvZ::Separate {
                qkv: h.matmul(attn_qkv.permute()), // [seq, conv_dim]
                z: h.matmul(attn_gate.permute()),  // [seq, value_dim]
            },
            QkvZWeights::Fused { ssm_in } => QkvZ::Fused(h.matmul(ssm_in.permute())),
        }
    }

    fn tensors(&self) -> Vec<(LayerTensor, NodeIndex)> {
        match self {
            QkvZWeights::Separate {
                attn_qkv,
                attn_gate,
            } => vec![
                (LayerTensor::AttnQkv, attn_qkv.id),
                (LayerTensor::AttnGate, attn_gate.id),
            ],
            QkvZWeights::Fused { ssm_in } => vec![(LayerTensor::SsmIn, ssm_in.id)],
        }
    }
}

impl BetaAlphaWeights {
    fn project(&self, h: GraphTensor<(Seq, Hidden)>) -> BetaAlpha {
        match self {
            BetaAlphaWeights::Separate {
                ssm_beta,
                ssm_alpha,
            } => BetaAlpha::Separate {
                beta: h.matmul(ssm_beta.permute()), // [seq, v_heads]
                alpha: h.matmul(ssm_alpha.permute()),
            },
            BetaAlphaWeights::Fused { ssm_ba } => BetaAlpha::Fused(h.matmul(ssm_ba.permute())),
        }
    }

    fn tensors(&self) -> Vec<(LayerTensor, NodeIndex)> {
        match self {
            BetaAlphaWeights::Separate {
                ssm_beta,
                ssm_alpha,
            } => vec![
                (LayerTensor::SsmBeta, ssm_beta.id),
                (LayerTensor::SsmAlpha, ssm_alpha.id),
            ],
            BetaAlphaWeights::Fused { ssm_ba } => vec![(LayerTensor::SsmBa, ssm_ba.id)],
        }
    }
}

/// One block's mixer weights, by kind.
// A graph tensor carries its shape tracker (~5 KB): every variant is large, one value per layer
// while the graph is built, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy)]
pub enum Mixer {
    Attention(AttentionWeights),
    GatedAttention(GatedAttentionWeights),
    DeltaNet(DeltaNetWeights),
}

/// The engine parts a mixer may need.
pub struct MixerParts<'a> {
    pub attention: &'a mut dyn Attention,
    /// `None`: the engine runs Qwen3 only (it refuses hybrid files when it opens).
    pub hybrid: Option<&'a mut dyn HybridMixers>,
}

impl Mixer {
    /// The mixer weight nodes of layer `layer` of `config`.
    pub fn new(cx: &mut Graph, config: &Qwen3Config, layer: usize) -> Self {
        use LayerTensor::*;
        match &config.hybrid {
            None => Mixer::Attention(AttentionWeights {
                attn_norm: cx.named_tensor(AttnNorm.name()),
                attn_q: cx.named_tensor(AttnQ.name()),
                attn_k: cx.named_tensor(AttnK.name()),
                attn_v: cx.named_tensor(AttnV.name()),
                attn_q_norm: cx.named_tensor(AttnQNorm.name()),
                attn_k_norm: cx.named_tensor(AttnKNorm.name()),
                attn_output: cx.named_tensor(AttnOutput.name()),
            }),
            Some(_) if !config.is_recurrent(layer) => {
                Mixer::GatedAttention(GatedAttentionWeights {
                    attn_norm: cx.named_tensor(AttnNorm.name()),
                    attn_q: cx.named_tensor(AttnQGate.name()),
                    attn_k: cx.named_tensor(AttnK.name()),
                    attn_v: cx.named_tensor(AttnV.name()),
                    attn_q_norm: cx.named_tensor(AttnQNorm.name()),
                    attn_k_norm: cx.named_tensor(AttnKNorm.name()),
                    attn_output: cx.named_tensor(AttnOutput.name()),
                })
            }
            Some(h) => Mixer::DeltaNet(DeltaNetWeights {
                attn_norm: cx.named_tensor(AttnNorm.name()),
                qkvz: match h.projections {
                    DeltaProjections::LegacyIn => QkvZWeights::Fused {
                        ssm_in: cx.named_tensor(SsmIn.name()),
                    },
                    _ => QkvZWeights::Separate {
                        attn_qkv: cx.named_tensor(AttnQkv.name()),
                        attn_gate: cx.named_tensor(AttnGate.name()),
                    },
                },
                beta_alpha: match h.projections {
                    DeltaProjections::Separate => BetaAlphaWeights::Separate {
                        ssm_beta: cx.named_tensor(SsmBeta.name()),
                        ssm_alpha: cx.named_tensor(SsmAlpha.name()),
                    },
                    _ => BetaAlphaWeights::Fused {
                        ssm_ba: cx.named_tensor(SsmBa.name()),
                    },
                },
                ssm_conv1d: cx.named_tensor(SsmConv1d.name()),
                ssm_dt: cx.named_tensor(SsmDt.name()),
                ssm_a: cx.named_tensor(SsmA.name()),
                ssm_norm: cx.named_tensor(SsmNorm.name()),
                ssm_out: cx.named_tensor(SsmOut.name()),
            }),
        }
    }

    /// The norm before the mixer.
    pub fn norm_weight(&self) -> GraphTensor<(Hidden,)> {
        match self {
            Mixer::Attention(a) => a.attn_norm,
            Mixer::GatedAttention(a) => a.attn_norm,
            Mixer::DeltaNet(d) => d.attn_norm,
        }
    }

    /// The mixer of the normed hidden state `h`, through its output projection (the residual
    /// add is the block's).
    pub fn forward(
        &self,
        h: GraphTensor<(Seq, Hidden)>,
        norm: Norm,
        rotary: Rotary,
        parts: &mut MixerParts<'_>,
    ) -> GraphTensor<(Seq, Hidden)> {
        match self {
            Mixer::Attention(a) => {
                let q = h
                    .matmul(a.attn_q.permute())
                    .reshape::<(Seq, Heads, HeadDim)>(); // [seq, heads, head_dim]
                let k = h
                    .matmul(a.attn_k.permute())
                    .reshape::<(Seq, KvHeads, HeadDim)>(); // [seq, kv_heads, head_dim]
                let v = h.matmul(a.attn_v.permute()); // [seq, kv_heads * head_dim]
                let q = rotary.apply(norm.heads(q, a.attn_q_norm));
                let k = rotary.apply(norm.heads(k, a.attn_k_norm));
                let attn = parts.attention.attend(q, k, v);
                attn.matmul(a.attn_output.permute())
            }
            Mixer::GatedAttention(a) => {
                let projections = GatedProjections {
                    q_gate: h.matmul(a.attn_q.permute()), // [seq, heads * 2 * head_dim]
                    k: h.matmul(a.attn_k.permute()),
                    v: h.matmul(a.attn_v.permute()),
                };
                let attn = hybrid(parts).gated_attention(projections, a, rotary);
                attn.matmul(a.attn_output.permute())
            }
            Mixer::DeltaNet(d) => {
                let projections = DeltaProjectionsOut {
                    qkvz: d.qkvz.project(h),
                    beta_alpha: d.beta_alpha.project(h),
                };
                let o = hybrid(parts).delta_net(projections, d);
                o.matmul(d.ssm_out.permute())
            }
        }
    }

    /// Each weight node with the table entry whose tensor it takes.
    pub fn tensors(&self) -> Vec<(LayerTensor, NodeIndex)> {
        use LayerTensor::*;
        match self {
            Mixer::Attention(a) => vec![
                (AttnNorm, a.attn_norm.id),
                (AttnQ, a.attn_q.id),
                (AttnK, a.attn_k.id),
                (AttnV, a.attn_v.id),
                (AttnQNorm, a.attn_q_norm.id),
                (AttnKNorm, a.attn_k_norm.id),
                (AttnOutput, a.attn_output.id),
            ],
            Mixer::GatedAttention(a) => vec![
                (AttnNorm, a.attn_norm.id),
                (AttnQGate, a.attn_q.id),
                (AttnK, a.attn_k.id),
                (AttnV, a.attn_v.id),
                (AttnQNorm, a.attn_q_norm.id),
                (AttnKNorm, a.attn_k_norm.id),
                (AttnOutput, a.attn_output.id),
            ],
            Mixer::DeltaNet(d) => {
                let mut out = vec![(AttnNorm, d.attn_norm.id)];
                out.extend(d.qkvz.tensors());
                out.extend(d.beta_alpha.tensors());
                out.extend([
                    (SsmConv1d, d.ssm_conv1d.id),
                    (SsmDt, d.ssm_dt.id),
                    (SsmA, d.ssm_a.id),
                    (SsmNorm, d.ssm_norm.id),
                    (SsmOut, d.ssm_out.id),
                ]);
                out
            }
        }
    }
}

/// The engine's hybrid part, which an engine that builds a hybrid graph supplies.
///
/// # Panics
/// Without one: engines that have none refuse hybrid files at `open`.
fn hybrid<'b>(parts: &'b mut MixerParts<'_>) -> &'b mut dyn HybridMixers {
    parts
        .hybrid
        .as_deref_mut()
        .expect("an engine that builds a hybrid graph supplies its hybrid mixers")
}
