//! The Qwen forward pass in luminal: one definition for every engine, every shape and every
//! architecture this program runs (Qwen3, Qwen3-MoE, and the hybrid Qwen3.5/3.6 models).
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
//! - [`HybridMixers`]: the hybrid models' gated attention and gated DeltaNet, ops that own their
//!   layer's cache or recurrent state (CPU only); which layer is which comes from the config
//!   ([`Mixer`]);
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
use super::dims::{self, Hidden, LogitRows, Seq, Vocab};
use super::ffn::{FeedForward, FfnRows, MixtureOfExperts};
pub use super::mixer::{Attention, HybridMixers};
use super::mixer::{Mixer, MixerParts};
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

/// The variation points an engine builds the graph with.
pub struct Parts<'a> {
    pub embedding: &'a mut dyn Embedding,
    pub attention: &'a mut dyn Attention,
    /// The hybrid models' mixers (`None`: the engine runs Qwen3 only).
    pub hybrid: Option<&'a mut dyn HybridMixers>,
    pub norm: NormKind,
    /// The routed experts of a mixture-of-experts feed-forward (`None`: the engine runs dense
    /// models only).
    pub moe: Option<&'a mut dyn MixtureOfExperts>,
    /// The rows of the last block the graph computes.
    pub rows: BlockRows,
}

/// Which positions the last block computes in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockRows {
    /// Every position: a multi-token-prediction block reads them all.
    Every,
    /// The logit rows only, past the mixer (whose cache or state takes every position).
    LogitRows,
}

/// The weights of one transformer block, each named for its tensor in the table
/// (`blk.N.<name>.weight`).
#[derive(Clone, Copy)]
pub struct LayerWeights {
    pub mixer: Mixer,
    /// The norm before the feed-forward: `ffn_norm` (Qwen3), `post_attention_norm` (hybrids).
    pub ffn_norm: GraphTensor<(Hidden,)>,
    pub ffn: FeedForward,
}

impl LayerWeights {
    /// Weight nodes for block `layer`, in the table's order.
    pub fn new(cx: &mut Graph, config: &Qwen3Config, layer: usize) -> Self {
        LayerWeights {
            mixer: Mixer::new(cx, config, layer),
            ffn_norm: cx.named_tensor(ffn_norm(config).name()),
            ffn: FeedForward::new(cx, config),
        }
    }

    /// Each weight node with the table entry whose tensor it takes.
    pub fn tensors(&self, config: &Qwen3Config) -> Vec<(LayerTensor, NodeIndex)> {
        let mut out = self.mixer.tensors();
        out.push((ffn_norm(config), self.ffn_norm.id));
        out.extend(self.ffn.tensors());
        out
    }
}

/// The norm before the feed-forward, by the architecture's name for it.
fn ffn_norm(config: &Qwen3Config) -> LayerTensor {
    match config.hybrid {
        Some(_) => LayerTensor::PostAttentionNorm,
        None => LayerTensor::FfnNorm,
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
    /// The config the graph was built for (names of the layers' tensors depend on it).
    pub config: Qwen3Config,
    /// `[logit_rows, vocab]`, retrieved after each step.
    pub logits: GraphTensor<(LogitRows, Vocab)>,
    /// The last block's output, every position (before the final norm), when the graph was
    /// built with [`BlockRows::Every`].
    pub last_block: Option<GraphTensor<(Seq, Hidden)>>,
    pub norm: Norm,
}

impl Qwen3Graph {
    /// Adds the final norm of every position's last hidden state, retrieved: what a
    /// multi-token-prediction block reads (llama.cpp's `h_nextn`). A second norm beside the one
    /// before the head, which normalises only the logit rows.
    ///
    /// `None` when the graph computes only the logit rows of the last block.
    pub fn normed_hidden(&self) -> Option<GraphTensor<(Seq, Hidden)>> {
        let last = self.last_block?;
        Some(self.norm.rows(last, self.output_norm).retrieve())
    }

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
                    .tensors(&self.config)
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
        .map(|i| LayerWeights::new(cx, config, i))
        .collect();
    let mut moe = parts.moe;
    let mut mixers = MixerParts {
        attention: parts.attention,
        hybrid: parts.hybrid,
    };
    let (last_layer, body) = layers
        .split_last()
        .expect("the config check refuses files without blocks");
    let mut x = x;
    for w in body {
        let moe = moe.as_mut().map(|m| &mut **m as &mut dyn MixtureOfExperts);
        x = block(x, w, rotary, norm, &mut mixers, moe);
    }
    let moe = moe.as_mut().map(|m| &mut **m as &mut dyn MixtureOfExperts);
    let x = mixer_half(x, last_layer, rotary, norm, &mut mixers);
    // Only the trailing `LogitRows` positions need logits. The last block's mixer runs on
    // every position (its KV cache or recurrent state takes them all); its feed-forward, as
    // llama.cpp's `inp_out_ids`, only on the logit rows, unless every position's output is
    // wanted.
    let (last, last_block) = match parts.rows {
        BlockRows::LogitRows => {
            // Copied out, so that the fused ops read the rows as they lie (the passes fold the
            // residual add only from a plain tensor).
            let x = logit_rows(x).contiguous();
            (feed_forward_half(x, last_layer, norm, moe), None)
        }
        BlockRows::Every => {
            let x = feed_forward_half(x, last_layer, norm, moe);
            (logit_rows(x), Some(x))
        }
    };
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
        config: config.clone(),
        logits,
        last_block,
        norm,
    }
}

/// One transformer block: the pre-norm mixer and the pre-norm feed-forward, each residual.
pub fn block(
    x: GraphTensor<(Seq, Hidden)>,
    w: &LayerWeights,
    rotary: Rotary,
    norm: Norm,
    mixers: &mut MixerParts<'_>,
    moe: Option<&mut dyn MixtureOfExperts>,
) -> GraphTensor<(Seq, Hidden)> {
    let x = mixer_half(x, w, rotary, norm, mixers);
    feed_forward_half(x, w, norm, moe)
}

/// `x + mixer(norm(x))`: attention, gated attention or gated DeltaNet, on every position.
fn mixer_half(
    x: GraphTensor<(Seq, Hidden)>,
    w: &LayerWeights,
    rotary: Rotary,
    norm: Norm,
    mixers: &mut MixerParts<'_>,
) -> GraphTensor<(Seq, Hidden)> {
    let h = norm.rows(x, w.mixer.norm_weight());
    x + w.mixer.forward(h, norm, rotary, mixers)
}

/// `x + ffn(norm(x))` on the rows of `x`.
fn feed_forward_half<R: FfnRows>(
    x: GraphTensor<(R, Hidden)>,
    w: &LayerWeights,
    norm: Norm,
    moe: Option<&mut dyn MixtureOfExperts>,
) -> GraphTensor<(R, Hidden)> {
    let h = norm.rows(x, w.ffn_norm);
    x + w.ffn.forward(h, moe)
}

/// The trailing `LogitRows` rows of `x`. Explicit ends: see LUMINAL-0.2-NOTES (5).
fn logit_rows(x: GraphTensor<(Seq, Hidden)>) -> GraphTensor<(LogitRows, Hidden)> {
    let seq = Expression::from(dims::SEQ);
    x.slice((seq - Expression::from(dims::LOGIT_ROWS)..seq, ..))
        .realize::<(LogitRows, Hidden)>()
}
