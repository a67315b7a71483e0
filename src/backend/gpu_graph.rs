//! The GPU engines' variation points of the one Qwen3 graph: stock luminal ops only, the KV cache
//! held as graph tensors.
//!
//! luminal's CUDA and Metal compilers cannot run our CPU ops (`ops::*`), so these parts keep to
//! what every backend lowers: matmuls, elementwise ops, reductions, views.
//! - Embedding: rows are looked up on the host and fed in as `[seq, hidden]` (a stock gather
//!   needs `Equal`, which is wrong on luminal's CPU backend, and the table would cost GPU memory
//!   twice).
//! - Attention: each layer reads cache inputs `[kv_heads, past, head_dim]` and produces the cache
//!   concatenated with this step's keys and values, `[kv_heads, total, head_dim]`, which the
//!   engine feeds back as the next step's input (outputs stay on the device between steps); the
//!   causal mask comes from the host, `[seq, total]`.
//!
//! Every cache starts with one masked "sink" position of zeros, so no tensor is ever empty (a
//! zero-byte device allocation fails on CUDA). Norms are the model's, plain or f16-safe
//! ([`crate::model::norm`]).

use luminal::prelude::*;

use crate::model::config::Qwen3Config;
use crate::model::dims::{Group, HeadDim, Heads, Hidden, KvDim, KvHeads, Past, QDim, Seq, Total};
use crate::model::norm::NormKind;
use crate::model::qwen3::{self, Attention, BlockRows, Embedded, Embedding, Parts, Qwen3Graph};

/// A mask entry that removes a key from the softmax (`-inf` once rounded to f16).
pub const MASKED: f32 = -1e9;

/// One layer's cache tensors.
#[derive(Clone, Copy)]
pub struct LayerCache {
    /// Set by the host (first step) or moved from `*_out` (later steps).
    pub k_in: GraphTensor<(KvHeads, Past, HeadDim)>,
    pub v_in: GraphTensor<(KvHeads, Past, HeadDim)>,
    /// Kept on the device after each execution.
    pub k_out: GraphTensor<(KvHeads, Total, HeadDim)>,
    pub v_out: GraphTensor<(KvHeads, Total, HeadDim)>,
}

/// Inputs the host sets before each step, besides the rotary tables.
#[derive(Clone, Copy)]
pub struct GpuInputs {
    /// Embedding rows of the step's tokens.
    pub embeddings: GraphTensor<(Seq, Hidden)>,
    /// 0 where a query may attend a cache column, [`MASKED`] where not.
    pub mask: GraphTensor<(Seq, Total)>,
}

/// The GPU graph: the Qwen3 graph, the host inputs and the caches of the GPU parts.
pub struct GpuGraph {
    pub model: Qwen3Graph,
    pub inputs: GpuInputs,
    pub caches: Vec<LayerCache>,
}

impl GpuGraph {
    /// Every node id the engine touches after compiling, for the compilers' `remap`.
    pub fn ids_mut(&mut self) -> Vec<&mut NodeIndex> {
        let inputs = &mut self.inputs;
        let rotary = &mut self.model.rotary;
        let mut ids = vec![
            &mut inputs.embeddings.id,
            &mut rotary.cos.id,
            &mut rotary.sin.id,
            &mut inputs.mask.id,
            &mut self.model.logits.id,
        ];
        for cache in &mut self.caches {
            ids.extend([
                &mut cache.k_in.id,
                &mut cache.v_in.id,
                &mut cache.k_out.id,
                &mut cache.v_out.id,
            ]);
        }
        ids
    }
}

/// Builds the Qwen3 graph for `config` with the GPU parts and RMSNorms of kind `norm`.
pub fn build(cx: &mut Graph, config: &Qwen3Config, norm: NormKind) -> GpuGraph {
    let mut embedding = HostRows {
        embeddings: cx.named_tensor("embeddings"),
    };
    let mut attention = GraphCache {
        mask: cx.named_tensor("mask"),
        scale: 1.0 / (config.head_dim as f32).sqrt(),
        caches: Vec::with_capacity(config.layers),
    };
    // Dense Qwen3 only: `backend::open` refuses mixture-of-experts files for GPU engines.
    let parts = Parts {
        hybrid: None,
        embedding: &mut embedding,
        attention: &mut attention,
        norm,
        moe: None,
        // Every row as before: computing only the logit rows is unmeasured on GPUs.
        rows: BlockRows::Every,
    };
    let model = qwen3::build(cx, config, parts);
    GpuGraph {
        model,
        inputs: GpuInputs {
            embeddings: embedding.embeddings,
            mask: attention.mask,
        },
        caches: attention.caches,
    }
}

/// Embedding: the rows come from the host; the graph holds no table (a tied head gets a
/// `token_embd` weight node of its own).
struct HostRows {
    embeddings: GraphTensor<(Seq, Hidden)>,
}

impl Embedding for HostRows {
    fn embed(&mut self, _: &mut Graph) -> Embedded {
        Embedded {
            x: self.embeddings,
            table: None,
        }
    }
}

/// Attention: graph-held caches, a host mask and stock broadcast matmuls.
struct GraphCache {
    mask: GraphTensor<(Seq, Total)>,
    scale: f32,
    caches: Vec<LayerCache>,
}

impl Attention for GraphCache {
    fn attend(
        &mut self,
        q: GraphTensor<(Seq, Heads, HeadDim)>,
        k: GraphTensor<(Seq, KvHeads, HeadDim)>,
        v: GraphTensor<(Seq, KvDim)>,
    ) -> GraphTensor<(Seq, QDim)> {
        let (k_in, v_in) = {
            let cx = q.graph();
            (cx.named_tensor("k_cache"), cx.named_tensor("v_cache"))
        };
        let v = v.reshape::<(Seq, KvHeads, HeadDim)>(); // [seq, kv_heads, head_dim]
        let keys = k_in.concat_along::<_, Axis<1>, _>(k.permute::<_, Axes3<1, 0, 2>>());
        let values = v_in.concat_along::<_, Axis<1>, _>(v.permute::<_, Axes3<1, 0, 2>>());
        q.graph().keep_tensors(vec![keys.id, values.id]);
        self.caches.push(LayerCache {
            k_in,
            v_in,
            k_out: keys,
            v_out: values,
        });
        attention(q, keys, values, self.mask, self.scale)
    }
}

type CacheOut = GraphTensor<(KvHeads, Total, HeadDim)>;

/// Causal grouped-query attention of this step's queries over all keys and values so far.
///
/// Query head `h` reads KV head `h / group` (as llama.cpp and transformers): the queries are
/// viewed as `[kv_heads, group, seq, head_dim]` and the keys broadcast over `group`.
fn attention(
    q: GraphTensor<(Seq, Heads, HeadDim)>,
    keys: CacheOut,
    values: CacheOut,
    mask: GraphTensor<(Seq, Total)>,
    scale: f32,
) -> GraphTensor<(Seq, QDim)> {
    let q = q
        .reshape::<(Seq, KvHeads, Group, HeadDim)>()
        .permute::<(KvHeads, Group, Seq, HeadDim), Axes4<1, 2, 0, 3>>();
    let scores: GraphTensor<(KvHeads, Group, Seq, Total)> = q.matmul(
        keys.permute::<(KvHeads, HeadDim, Total), Axes3<0, 2, 1>>()
            .expand::<(KvHeads, Group, HeadDim, Total), Axis<1>>(),
    );
    let scores = scores * scale + mask.expand::<(KvHeads, Group, Seq, Total), Axes2<0, 1>>();
    scores
        .softmax::<3>()
        .matmul(values.expand::<(KvHeads, Group, Total, HeadDim), Axis<1>>())
        .permute::<(Seq, KvHeads, Group, HeadDim), Axes4<2, 0, 1, 3>>()
        .reshape::<(Seq, QDim)>()
}

/// The host-side inputs of one step: `past` cache positions (sink included) before it, `seq`
/// new tokens. Column 0 is the sink; column `c >= 1` holds absolute position `c - 1`.
pub fn causal_mask(past: usize, seq: usize) -> Vec<f32> {
    let total = past + seq;
    let mut mask = vec![MASKED; seq * total];
    for (i, row) in mask.chunks_exact_mut(total).enumerate() {
        // Query i sits at absolute position past - 1 + i, i.e. column past + i.
        for v in &mut row[1..=past + i] {
            *v = 0.0;
        }
    }
    mask
}

/// Width of the zeroed sink that every cache starts with: `[kv_heads, 1, head_dim]`.
pub fn sink_len(config: &Qwen3Config) -> usize {
    config.kv_heads * config.head_dim
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_hides_the_sink_and_the_future() {
        // One real position cached (past = sink + 1), two new tokens at positions 1 and 2.
        let m = causal_mask(2, 2);
        let row = |i: usize| &m[i * 4..(i + 1) * 4];
        assert_eq!(row(0), &[MASKED, 0.0, 0.0, MASKED]);
        assert_eq!(row(1), &[MASKED, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn first_step_sees_only_itself_and_earlier_tokens() {
        let m = causal_mask(1, 3);
        assert_eq!(&m[0..4], &[MASKED, 0.0, MASKED, MASKED]);
        assert_eq!(&m[8..12], &[MASKED, 0.0, 0.0, 0.0]);
    }
}
