//! The CPU engine's variation points of the one model graph: token ids looked up in the graph by
//! our embedding op, one attention op per attention layer that owns that layer's KV cache, for
//! the hybrid models a gated attention op (with its cache) or a gated DeltaNet op (with its
//! recurrent state) per layer, and for a mixture of experts our router and experts ops.

use luminal::prelude::*;

use crate::cpu::delta::{GdnShape, HeadMap};
use crate::model::config::{HybridConfig, KeyHeads, MtpBlock, Qwen3Config};
use crate::model::dims::{
    ConvDim, HeadDim, Heads, Hidden, KvDim, KvHeads, LogitRows, QDim, Routing, Seq, VHeads,
    ValueDim,
};
use crate::model::ffn::{MixtureOfExperts, MoeFfn};
use crate::model::mixer::{
    BetaAlpha, DeltaNetWeights, DeltaProjectionsOut, GatedAttentionWeights, GatedProjections,
    HybridMixers, QkvZ,
};
use crate::model::mtp::{self, MtpGraph};
use crate::model::norm::NormKind;
use crate::model::qwen3::{self, Attention, BlockRows, Embedded, Embedding, Parts, Qwen3Graph};
use crate::model::rotary::Rotary;
use crate::model::tensors::{stem, TOKEN_EMBD};
use crate::ops::cached_attention::{cached_attention, AttentionShape, KvCache, KvCacheError};
use crate::ops::delta_net::{delta_net, DeltaNet, DeltaNetInputs};
use crate::ops::embedding::embed;
use crate::ops::gated_attention::{gated_attention, GatedAttention, GatedAttentionInputs};
use crate::ops::gather_columns::{gather_columns, FusedLayout};
use crate::ops::moe_ffn::{moe_experts, moe_router, ExpertNodes, SharedNodes};

/// Inputs the host sets before each step.
#[derive(Clone, Copy)]
pub struct StepInputs {
    /// Token ids as f32 (exact below 2^24).
    pub token_ids: GraphTensor<(Seq,)>,
    /// Absolute position of each token; consecutive.
    pub positions: GraphTensor<(Seq,)>,
}

/// The CPU graph: the Qwen3 graph and the inputs only the CPU parts have.
pub struct CpuGraph {
    pub model: Qwen3Graph,
    pub inputs: StepInputs,
}

/// Builds the model graph for `config` with a KV cache of `max_context` positions per
/// attention layer (an error when memory refuses the caches, which are allocated before the
/// graph is built), the last block on `rows`.
pub fn build(
    cx: &mut Graph,
    config: &Qwen3Config,
    max_context: usize,
    rows: BlockRows,
) -> Result<CpuGraph, KvCacheError> {
    let mut embedding = TableLookup {
        token_ids: cx.named_tensor("token_ids"),
    };
    let shape = AttentionShape {
        heads: config.heads,
        kv_heads: config.kv_heads,
        head_dim: config.head_dim,
        max_context,
    };
    let layers = config.attention_layers();
    let caches = (0..layers)
        .map(|_| KvCache::new(shape, layers))
        .collect::<Result<Vec<_>, _>>()?;
    let positions = cx.named_tensor("positions");
    // The caches go to the attention layers: Qwen3's through the attention part, a hybrid
    // model's gated attention layers through its mixers.
    let (plain, gated) = match config.hybrid {
        None => (caches, vec![]),
        Some(_) => (vec![], caches),
    };
    let mut attention = OwnedCache {
        positions,
        caches: plain.into_iter(),
    };
    let mut hybrid = config.hybrid.as_ref().map(|h| OwnedState {
        positions,
        caches: gated.into_iter(),
        shape: gdn_shape(h, config.rms_eps),
        eps: config.rms_eps,
        rope_dims: config.rope_dims,
    });
    let parts = Parts {
        embedding: &mut embedding,
        hybrid: hybrid.as_mut().map(|h| h as &mut dyn HybridMixers),
        attention: &mut attention,
        norm: NormKind::Plain,
        moe: Some(&mut RoutedExperts),
        rows,
    };
    let model = qwen3::build(cx, config, parts);
    Ok(CpuGraph {
        model,
        inputs: StepInputs {
            token_ids: embedding.token_ids,
            positions,
        },
    })
}

/// The CPU graph of a multi-token-prediction block.
pub struct CpuMtpGraph {
    pub model: MtpGraph,
    pub inputs: StepInputs,
}

/// Builds the prediction block `mtp` of `config`, with its own KV cache of `max_context`
/// positions, on the same parts as the trunk.
pub fn build_mtp(
    cx: &mut Graph,
    config: &Qwen3Config,
    hybrid: &HybridConfig,
    mtp: &MtpBlock,
    max_context: usize,
) -> Result<CpuMtpGraph, KvCacheError> {
    let mut embedding = TableLookup {
        token_ids: cx.named_tensor("token_ids"),
    };
    let shape = AttentionShape {
        heads: config.heads,
        kv_heads: config.kv_heads,
        head_dim: config.head_dim,
        max_context,
    };
    let cache = KvCache::new(shape, 1)?;
    let positions = cx.named_tensor("positions");
    let mut attention = OwnedCache {
        positions,
        caches: vec![].into_iter(),
    };
    // The block is a gated attention layer: the DeltaNet shape is never used.
    let mut hybrid = OwnedState {
        positions,
        caches: vec![cache].into_iter(),
        shape: gdn_shape(hybrid, config.rms_eps),
        eps: config.rms_eps,
        rope_dims: config.rope_dims,
    };
    let parts = Parts {
        embedding: &mut embedding,
        hybrid: Some(&mut hybrid),
        attention: &mut attention,
        norm: NormKind::Plain,
        moe: Some(&mut RoutedExperts),
        rows: BlockRows::Every,
    };
    let model = mtp::build(cx, config, mtp, parts);
    Ok(CpuMtpGraph {
        model,
        inputs: StepInputs {
            token_ids: embedding.token_ids,
            positions,
        },
    })
}

/// The DeltaNet kernels' geometry of a hybrid config.
pub fn gdn_shape(h: &HybridConfig, eps: f32) -> GdnShape {
    GdnShape {
        k_heads: h.k_heads,
        v_heads: h.v_heads,
        head_dim: h.state_size,
        conv_kernel: h.conv_kernel,
        map: match h.key_heads {
            KeyHeads::Tiled => HeadMap::Tiled,
            KeyHeads::Grouped => HeadMap::Grouped,
        },
        eps,
    }
}

/// Embedding: the table stays a weight of the graph (in its GGUF encoding, in the memory map)
/// and [`crate::ops::embedding::Embedding`] decodes the rows of the step's token ids.
struct TableLookup {
    token_ids: GraphTensor<(Seq,)>,
}

impl Embedding for TableLookup {
    fn embed(&mut self, cx: &mut Graph) -> Embedded {
        let table = cx.named_tensor(stem(TOKEN_EMBD));
        Embedded {
            x: embed(self.token_ids, table),
            table: Some(table),
        }
    }
}

/// Attention: one [`crate::ops::cached_attention::CachedAttention`] op per layer, which keeps
/// the layer's keys and values and writes them at the step's absolute positions.
struct OwnedCache {
    positions: GraphTensor<(Seq,)>,
    /// One per layer, made before the graph (their allocation can fail; the graph's cannot).
    caches: std::vec::IntoIter<KvCache>,
}

impl Attention for OwnedCache {
    fn attend(
        &mut self,
        q: GraphTensor<(Seq, Heads, HeadDim)>,
        k: GraphTensor<(Seq, KvHeads, HeadDim)>,
        v: GraphTensor<(Seq, KvDim)>,
    ) -> GraphTensor<(Seq, QDim)> {
        // Layers call in order, one each: the config's layer count made exactly that many.
        let cache = self.caches.next().expect("one KV cache per layer");
        cached_attention(q, k, v, self.positions, cache)
    }
}

/// The hybrid models' mixers: a [`GatedAttention`] op per gated attention layer, which keeps
/// that layer's KV cache, and a [`DeltaNet`] op per DeltaNet layer, which keeps its recurrent
/// state.
struct OwnedState {
    positions: GraphTensor<(Seq,)>,
    /// One per gated attention layer, made before the graph.
    caches: std::vec::IntoIter<KvCache>,
    shape: GdnShape,
    eps: f32,
    rope_dims: usize,
}

impl HybridMixers for OwnedState {
    fn gated_attention(
        &mut self,
        p: GatedProjections,
        w: &GatedAttentionWeights,
        rotary: Rotary,
    ) -> GraphTensor<(Seq, QDim)> {
        // Attention layers call in order, one each: the config made one cache per attention
        // layer.
        let cache = self
            .caches
            .next()
            .expect("one KV cache per attention layer");
        let inputs = GatedAttentionInputs {
            q_gate: p.q_gate,
            k: p.k,
            v: p.v,
            q_norm: w.attn_q_norm,
            k_norm: w.attn_k_norm,
            cos: rotary.cos,
            sin: rotary.sin,
            positions: self.positions,
        };
        let op = GatedAttention {
            cache,
            eps: self.eps,
            rope_dims: self.rope_dims,
        };
        gated_attention(inputs, op)
    }

    fn delta_net(
        &mut self,
        p: DeltaProjectionsOut,
        w: &DeltaNetWeights,
    ) -> GraphTensor<(Seq, ValueDim)> {
        // Qwen3-Next's fused projections, taken apart per key head.
        let layout = FusedLayout {
            k_heads: self.shape.k_heads,
            v_heads: self.shape.v_heads,
            state: self.shape.head_dim,
        };
        let (qkv, z) = match p.qkvz {
            QkvZ::Separate { qkv, z } => (qkv, z),
            QkvZ::Fused(x) => {
                let width = layout.qkvz_width();
                (
                    gather_columns::<_, _, ConvDim>(x, width, layout.qkv()),
                    gather_columns::<_, _, ValueDim>(x, width, layout.z()),
                )
            }
        };
        let (beta, alpha): (GraphTensor<(Seq, VHeads)>, _) = match p.beta_alpha {
            BetaAlpha::Separate { beta, alpha } => (beta, alpha),
            BetaAlpha::Fused(x) => {
                let width = layout.ba_width();
                (
                    gather_columns(x, width, layout.beta_alpha(false)),
                    gather_columns(x, width, layout.beta_alpha(true)),
                )
            }
        };
        let inputs = DeltaNetInputs {
            qkv,
            z,
            beta,
            alpha,
            conv: w.ssm_conv1d,
            dt: w.ssm_dt,
            a: w.ssm_a,
            norm: w.ssm_norm,
            positions: self.positions,
        };
        delta_net(inputs, DeltaNet::new(self.shape))
    }
}

/// Mixture of experts: [`crate::ops::moe_ffn::MoeRouter`] picks each token's experts and their
/// weights, [`crate::ops::moe_ffn::MoeExperts`] sums those experts' feed-forwards and adds the
/// gated shared expert where there is one (both exact f32 in standard mode; `--parallel` swaps
/// in its fused versions).
struct RoutedExperts;

impl MixtureOfExperts for RoutedExperts {
    fn experts(&mut self, h: GraphTensor<(Seq, Hidden)>, w: &MoeFfn) -> GraphTensor<(Seq, Hidden)> {
        routed_experts(h, w)
    }

    fn logit_rows_experts(
        &mut self,
        h: GraphTensor<(LogitRows, Hidden)>,
        w: &MoeFfn,
    ) -> GraphTensor<(LogitRows, Hidden)> {
        routed_experts(h, w)
    }
}

/// The router and the experts' op on the rows of `h`.
fn routed_experts<S: Dimension>(
    h: GraphTensor<(S, Hidden)>,
    w: &MoeFfn,
) -> GraphTensor<(S, Hidden)> {
    let routing: GraphTensor<(S, Routing)> = moe_router(h, w.router, w.experts_used);
    let nodes = ExpertNodes {
        gate: w.gate,
        up: w.up,
        down: w.down,
    };
    let shared = w.shared.map(|s| SharedNodes {
        gate_inp: s.gate_inp,
        gate: s.gate,
        up: s.up,
        down: s.down,
    });
    moe_experts(h, routing, nodes, shared, w.experts, w.experts_used)
}
