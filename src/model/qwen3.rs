//! The Qwen3 forward pass in luminal: one definition for every engine and every dense Qwen3 shape.
//!
//! Sizes are the dynamic dimensions of [`super::dims`], set from the file's config, so nothing is
//! compiled in per model size. Per step the engine sets the step's length (`Seq`), how many
//! trailing positions get logits (`LogitRows`) and the rotary tables of the step's positions.
//!
//! What differs between engines comes in as named variation points ([`Parts`]), never as a
//! second copy of the block (llama.cpp builds each architecture once in the same way):
//! - [`Embedding`]: how the step's tokens become hidden states (CPU: a lookup op on the table in
//!   the graph; GPU: rows looked up on the host and fed in);
//! - [`Attention`]: attention over the layer's KV cache with this step's keys and values added
//!   (CPU: an op that owns the cache; GPU: the cache as graph tensors and a causal mask input);
//! - [`NormKind`]: plain RMSNorm, or the f16-safe form that f16 graphs need;
//! - [`FeedForward`]: dense SwiGLU, or a mixture of experts whose routed experts come from the
//!   engine ([`MixtureOfExperts`]; the CPU engine's ops, none on GPU engines).
//!
//! Fusion and the KV cache live below the model: the `--parallel` passes (`ops::parallel`)
//! recognise the op chain written here, and `tests/fusion_contract.rs` fails when an edit here
//! stops them from matching.

use luminal::prelude::symbolic::Expression;
use luminal::prelude::*;

use super::config::Qwen3Config;
use super::dims::{self, HeadDim, Heads, Hidden, KvDim, KvHeads, LogitRows, QDim, Seq, Vocab};
use super::ffn::{FeedForward, MixtureOfExperts};
use super::norm::{Norm, NormKind};
use super::rotary::Rotary;
use super::tensors::{stem, LayerTensor, OUTPUT, OUTPUT_NORM, TOKEN_EMBD};

/// Variation point: how the step's tokens become hidden states.
pub trait Embedding {
    /// Adds the lookup to `cx`: the hidden states `[seq, hidden]`, and the embedding table when it
    /// is a weight of the graph (a tied head then reads the same node).
    fn embed(&mut self, cx: &mut Graph) -> Embedded;
}

/// What an [`Embedding`] adds to the graph.
pub struct Embedded {
    pub x: GraphTensor<(Seq, Hidden)>,
    pub table: Option<GraphTensor<(Vocab, Hidden)>>,
}

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

/// The variation points an engine builds the graph with.
pub struct Parts<'a> {
    pub embedding: &'a mut dyn Embedding,
    pub attention: &'a mut dyn Attention,
    pub norm: NormKind,
    /// The routed experts of a mixture-of-experts feed-forward (`None`: the engine runs dense
    /// models only).
    pub moe: Option<&'a mut dyn MixtureOfExperts>,
}

/// The attention half of a block's weights.
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

/// The weights of one transformer block, each named for its tensor in the table
/// (`blk.N.<name>.weight`).
#[derive(Clone, Copy)]
pub struct LayerWeights {
    pub attention: AttentionWeights,
    pub ffn_norm: GraphTensor<(Hidden,)>,
    pub ffn: FeedForward,
}

impl LayerWeights {
    /// Weight nodes for one block, in the table's order.
    fn new(cx: &mut Graph, config: &Qwen3Config) -> Self {
        use LayerTensor::*;
        let attention = AttentionWeights {
            attn_norm: cx.named_tensor(AttnNorm.name()),
            attn_q: cx.named_tensor(AttnQ.name()),
            attn_k: cx.named_tensor(AttnK.name()),
            attn_v: cx.named_tensor(AttnV.name()),
            attn_q_norm: cx.named_tensor(AttnQNorm.name()),
            attn_k_norm: cx.named_tensor(AttnKNorm.name()),
            attn_output: cx.named_tensor(AttnOutput.name()),
        };
        LayerWeights {
            attention,
            ffn_norm: cx.named_tensor(FfnNorm.name()),
            ffn: FeedForward::new(cx, config),
        }
    }

    /// Each weight node with the table entry whose tensor it takes.
    pub fn tensors(&self) -> Vec<(LayerTensor, NodeIndex)> {
        use LayerTensor::*;
        let a = &self.attention;
        let mut out = vec![
            (AttnNorm, a.attn_norm.id),
            (AttnQ, a.attn_q.id),
            (AttnK, a.attn_k.id),
            (AttnV, a.attn_v.id),
            (AttnQNorm, a.attn_q_norm.id),
            (AttnKNorm, a.attn_k_norm.id),
            (AttnOutput, a.attn_output.id),
            (FfnNorm, self.ffn_norm.id),
        ];
        out.extend(self.ffn.tensors());
        out
    }
}

/// The built graph: where the weights and the rotary tables go, and where logits come out.
pub struct Qwen3Graph {
    pub rotary: Rotary,
    /// The embedding table, when the embedding part made it a weight of the graph.
    pub token_embd: Option<GraphTensor<(Vocab, Hidden)>>,
    pub output_norm: GraphTensor<(Hidden,)>,
    /// The head: `output.weight`, or `token_embd.weight` when the embeddings are tied.
    pub head: GraphTensor<(Vocab, Hidden)>,
    pub tied_embeddings: bool,
    pub layers: Vec<LayerWeights>,
    /// `[logit_rows, vocab]`, retrieved after each step.
    pub logits: GraphTensor<(LogitRows, Vocab)>,
}

impl Qwen3Graph {
    /// Every weight node with the GGUF name of the tensor it takes, each node once.
    pub fn weights(&self) -> Vec<(String, NodeIndex)> {
        let mut names = vec![];
        if let Some(table) = self.token_embd {
            names.push((TOKEN_EMBD.to_string(), table.id));
        }
        names.push((OUTPUT_NORM.to_string(), self.output_norm.id));
        // A tied head that reads the embedding node is bound once, as token_embd.
        if self.token_embd.map(|t| t.id) != Some(self.head.id) {
            let head = if self.tied_embeddings {
                TOKEN_EMBD
            } else {
                OUTPUT
            };
            names.push((head.to_string(), self.head.id));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            names.extend(
                layer
                    .tensors()
                    .into_iter()
                    .map(|(t, id)| (t.in_layer(i), id)),
            );
        }
        names
    }
}

/// Builds the Qwen3 forward pass for `config` into `cx`, with the engine's `parts`.
pub fn build(cx: &mut Graph, config: &Qwen3Config, parts: Parts<'_>) -> Qwen3Graph {
    dims::set_model_dims(cx, config);
    let Embedded { x, table } = parts.embedding.embed(cx);
    let rotary = Rotary::inputs(cx);
    let output_norm = cx.named_tensor(stem(OUTPUT_NORM));
    // Tied embeddings: the file has no output.weight, the head is the embedding table itself.
    let head = match (config.tied_embeddings, table) {
        (false, _) => cx.named_tensor(stem(OUTPUT)),
        (true, Some(table)) => table,
        (true, None) => cx.named_tensor(stem(TOKEN_EMBD)),
    };
    let norm = Norm {
        eps: config.rms_eps,
        kind: parts.norm,
    };

    let layers: Vec<LayerWeights> = (0..config.layers)
        .map(|_| LayerWeights::new(cx, config))
        .collect();
    let mut x = x;
    let mut moe = parts.moe;
    for w in &layers {
        let moe = moe.as_mut().map(|m| &mut **m as &mut dyn MixtureOfExperts);
        x = block(x, w, rotary, norm, parts.attention, moe);
    }

    // Only the trailing `LogitRows` positions need logits: slice before the final norm and the
    // head. Explicit ends: see LUMINAL-0.2-NOTES (5).
    let seq = Expression::from(dims::SEQ);
    let last = x
        .slice((seq - Expression::from(dims::LOGIT_ROWS)..seq, ..))
        .realize::<(LogitRows, Hidden)>();
    let logits = norm
        .rows(last, output_norm)
        .matmul(head.permute())
        .retrieve();
    Qwen3Graph {
        rotary,
        token_embd: table,
        output_norm,
        head,
        tied_embeddings: config.tied_embeddings,
        layers,
        logits,
    }
}

/// One transformer block: pre-norm attention and pre-norm feed-forward, each residual.
fn block(
    x: GraphTensor<(Seq, Hidden)>,
    w: &LayerWeights,
    rotary: Rotary,
    norm: Norm,
    attention: &mut dyn Attention,
    moe: Option<&mut dyn MixtureOfExperts>,
) -> GraphTensor<(Seq, Hidden)> {
    // self-attention
    let a = &w.attention;
    let h = norm.rows(x, a.attn_norm);
    let q = h
        .matmul(a.attn_q.permute())
        .reshape::<(Seq, Heads, HeadDim)>(); // [seq, heads, head_dim]
    let k = h
        .matmul(a.attn_k.permute())
        .reshape::<(Seq, KvHeads, HeadDim)>(); // [seq, kv_heads, head_dim]
    let v = h.matmul(a.attn_v.permute()); // [seq, kv_heads * head_dim]
    let q = rotary.apply(norm.heads(q, a.attn_q_norm));
    let k = rotary.apply(norm.heads(k, a.attn_k_norm));
    let attn = attention.attend(q, k, v);
    let x = x + attn.matmul(a.attn_output.permute());

    // feed-forward
    let h = norm.rows(x, w.ffn_norm);
    x + w.ffn.forward(h, moe)
}
