//! The CPU engine's variation points of the one Qwen3 graph: token ids looked up in the graph by
//! our embedding op, one attention op per layer that owns that layer's KV cache, and for a
//! mixture of experts our router and experts ops.

use luminal::prelude::*;

use crate::model::config::Qwen3Config;
use crate::model::dims::{HeadDim, Heads, Hidden, KvDim, KvHeads, QDim, Routing, Seq};
use crate::model::ffn::{MixtureOfExperts, MoeFfn};
use crate::model::norm::NormKind;
use crate::model::qwen3::{self, Attention, Embedded, Embedding, Parts, Qwen3Graph};
use crate::model::tensors::{stem, TOKEN_EMBD};
use crate::ops::cached_attention::{cached_attention, AttentionShape, KvCache, KvCacheError};
use crate::ops::embedding::embed;
use crate::ops::moe_ffn::{moe_experts, moe_router, ExpertNodes};

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

/// Builds the Qwen3 graph for `config` with a KV cache of `max_context` positions per layer
/// (an error when memory refuses the caches, which are allocated before the graph is built).
pub fn build(
    cx: &mut Graph,
    config: &Qwen3Config,
    max_context: usize,
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
    let caches = (0..config.layers)
        .map(|_| KvCache::new(shape, config.layers))
        .collect::<Result<Vec<_>, _>>()?;
    let mut attention = OwnedCache {
        positions: cx.named_tensor("positions"),
        caches: caches.into_iter(),
    };
    let parts = Parts {
        embedding: &mut embedding,
        attention: &mut attention,
        norm: NormKind::Plain,
        moe: Some(&mut RoutedExperts),
    };
    let model = qwen3::build(cx, config, parts);
    Ok(CpuGraph {
        model,
        inputs: StepInputs {
            token_ids: embedding.token_ids,
            positions: attention.positions,
        },
    })
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

/// Mixture of experts: [`crate::ops::moe_ffn::MoeRouter`] picks each token's experts and their
/// weights, [`crate::ops::moe_ffn::MoeExperts`] sums those experts' feed-forwards (both exact
/// f32 in standard mode; `--parallel` swaps in its fused versions).
struct RoutedExperts;

impl MixtureOfExperts for RoutedExperts {
    fn experts(&mut self, h: GraphTensor<(Seq, Hidden)>, w: &MoeFfn) -> GraphTensor<(Seq, Hidden)> {
        let routing: GraphTensor<(Seq, Routing)> = moe_router(h, w.router, w.experts_used);
        let nodes = ExpertNodes {
            gate: w.gate,
            up: w.up,
            down: w.down,
        };
        moe_experts(h, routing, nodes, w.experts, w.experts_used)
    }
}
