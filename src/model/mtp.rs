//! The multi-token-prediction ("nextn") block of the Qwen3.5/3.6 files as a graph of its own,
//! written as llama.cpp's `graph_mtp` computes it (`src/models/qwen35.cpp`).
//!
//! At position `p + 1` it reads the token `x[p+1]` and the trunk's final-normed hidden state
//! `h[p]` (or, while drafting, its own output row of the step before) and predicts `x[p+2]`:
//!
//! ```text
//! u = eh_proj · [RMSNorm(embed(x[p+1])) * enorm ; RMSNorm(h[p]) * hnorm]   (embedding first)
//! u = block(u)                  a trunk attention block: gated attention with its own KV
//!                               cache (rotary at p + 1), the feed-forward, both residual
//! h' = RMSNorm(u) * shared_head_norm       (output_norm when the file has none)
//! logits = head · h'            (nextn.shared_head_head, else the trunk's head)
//! ```
//!
//! `h'` of every position is retrieved: the next draft step reads it as its hidden state.
//! The block's own tensors and the trunk's it falls back to come from [`MtpBlock`].

use luminal::prelude::symbolic::Expression;
use luminal::prelude::*;

use super::config::{MtpBlock, Qwen3Config};
use super::dims::{self, EhDim, Hidden, LogitRows, Seq, Vocab};
use super::mixer::MixerParts;
use super::norm::Norm;
use super::qwen3::{block, Embedded, LayerWeights, Parts};
use super::rotary::Rotary;
use super::tensors::{stem, MtpTensor, OUTPUT, OUTPUT_NORM, TOKEN_EMBD};

/// The built prediction block: its inputs besides the token ids, and its outputs.
pub struct MtpGraph {
    pub rotary: Rotary,
    /// The hidden state paired with each token, `[seq, hidden]` (set per step).
    pub hidden_in: GraphTensor<(Seq, Hidden)>,
    /// `[logit_rows, vocab]` of the trailing positions.
    pub logits: GraphTensor<(LogitRows, Vocab)>,
    /// `h'` of every position, `[seq, hidden]`.
    pub hidden_out: GraphTensor<(Seq, Hidden)>,
    /// Every weight node with the GGUF name of the tensor it takes.
    pub weights: Vec<(String, NodeIndex)>,
}

/// The weight nodes of the block.
struct MtpWeights {
    eh_proj: GraphTensor<(Hidden, EhDim)>,
    enorm: GraphTensor<(Hidden,)>,
    hnorm: GraphTensor<(Hidden,)>,
    head_norm: GraphTensor<(Hidden,)>,
    head: GraphTensor<(Vocab, Hidden)>,
    layer: LayerWeights,
}

/// Builds the prediction block `mtp` of `config` into `cx` with the engine's `parts` (its
/// attention part holds one KV cache, the block's).
pub fn build(cx: &mut Graph, config: &Qwen3Config, mtp: &MtpBlock, parts: Parts<'_>) -> MtpGraph {
    dims::set_model_dims(cx, config);
    let Embedded { x: e, table } = parts.embedding.embed(cx);
    let rotary = Rotary::inputs(cx);
    let hidden_in = cx.named_tensor("mtp_hidden_in");
    let norm = Norm {
        eps: config.rms_eps,
        kind: parts.norm,
    };
    let (w, weights) = weights(cx, config, mtp, table);

    // [RMSNorm(e) * enorm ; RMSNorm(h) * hnorm] -> eh_proj
    let en = norm.rows(e, w.enorm);
    let hn = norm.rows(hidden_in, w.hnorm);
    let eh: GraphTensor<(Seq, EhDim)> = en.concat_along::<(Seq, EhDim), Axis<1>, _>(hn);
    let x = eh.matmul(w.eh_proj.permute()); // [seq, hidden]

    let mut mixers = MixerParts {
        attention: parts.attention,
        hybrid: parts.hybrid,
    };
    let x = block(x, &w.layer, rotary, norm, &mut mixers, parts.moe);

    // Every row's h' for the next draft step; the head on the trailing rows only, normed on
    // its own as the trunk's head is (the form the passes fuse).
    let hidden_out = norm.rows(x, w.head_norm).retrieve();
    let seq = Expression::from(dims::SEQ);
    let last = x
        .slice((seq - Expression::from(dims::LOGIT_ROWS)..seq, ..))
        .realize::<(LogitRows, Hidden)>();
    let logits = norm
        .rows(last, w.head_norm)
        .matmul(w.head.permute())
        .retrieve();
    MtpGraph {
        rotary,
        hidden_in,
        logits,
        hidden_out,
        weights,
    }
}

/// The block's weight nodes, and each with its tensor: its own where the file has them, the
/// trunk's otherwise. `table` is the node the embedding part made for the embedding table.
fn weights(
    cx: &mut Graph,
    config: &Qwen3Config,
    mtp: &MtpBlock,
    table: Option<GraphTensor<(Vocab, Hidden)>>,
) -> (MtpWeights, Vec<(String, NodeIndex)>) {
    let n = mtp.layer;
    let (eh_proj, eh_name) = named(cx, MtpTensor::EhProj, n);
    let (enorm, enorm_name) = named(cx, MtpTensor::ENorm, n);
    let (hnorm, hnorm_name) = named(cx, MtpTensor::HNorm, n);
    let head_norm_name = match mtp.own_head_norm {
        true => MtpTensor::SharedHeadNorm.in_layer(n),
        false => OUTPUT_NORM.to_string(),
    };
    let head_norm = cx.named_tensor(stem(&head_norm_name));
    let embed_name = match mtp.own_embedding {
        true => MtpTensor::EmbedTokens.in_layer(n),
        false => TOKEN_EMBD.to_string(),
    };
    // The head: its own, else the trunk's (`output`, or `token_embd` when tied, which is the
    // embedding node itself unless the block has its own table).
    let (head, head_name) = match (mtp.own_head, config.tied_embeddings, table) {
        (true, ..) => named(cx, MtpTensor::SharedHeadHead, n),
        (false, false, _) => (cx.named_tensor(stem(OUTPUT)), OUTPUT.to_string()),
        (false, true, Some(t)) if !mtp.own_embedding => (t, TOKEN_EMBD.to_string()),
        (false, true, _) => (cx.named_tensor(stem(TOKEN_EMBD)), TOKEN_EMBD.to_string()),
    };
    let layer = LayerWeights::new(cx, config, n);
    let mut names = vec![
        (eh_name, eh_proj.id),
        (enorm_name, enorm.id),
        (hnorm_name, hnorm.id),
        (head_norm_name, head_norm.id),
    ];
    if let Some(t) = table {
        names.push((embed_name, t.id));
    }
    if table.map(|t| t.id) != Some(head.id) {
        names.push((head_name, head.id));
    }
    names.extend(
        layer
            .tensors(config)
            .into_iter()
            .map(|(t, id)| (t.in_layer(n), id)),
    );
    let w = MtpWeights {
        eh_proj,
        enorm,
        hnorm,
        head_norm,
        head,
        layer,
    };
    (w, names)
}

/// The node for tensor `t` of block `layer`, and the tensor's GGUF name.
fn named<S: Shape>(cx: &mut Graph, t: MtpTensor, layer: usize) -> (GraphTensor<S>, String) {
    let name = t.in_layer(layer);
    (cx.named_tensor(stem(&name)), name)
}
