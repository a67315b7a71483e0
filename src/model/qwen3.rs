//! The Qwen3 graph in luminal: one builder for every dense Qwen3 shape.
//!
//! luminal 0.2 shapes are type-level, so model sizes are dynamic dimensions (`Dyn<'h'>` for the
//! hidden size, ...) resolved from the file's config before the first run ([`set_model_dims`]).
//! Per step the host sets the sequence length `'s'`, how many trailing positions get logits `'l'`,
//! the token ids, their absolute positions and the rotary tables for those positions.

use luminal::prelude::symbolic::Expression;
use luminal::prelude::*;

use crate::model::config::Qwen3Config;
use crate::ops::cached_attention::{cached_attention, AttentionShape};
use crate::ops::embedding::embed;

/// Tokens in this step.
pub type Seq = Dyn<'s'>;
/// Trailing positions of this step that get logits (1 when generating, `Seq` for a full-logits pass).
pub type LogitRows = Dyn<'l'>;
pub type Hidden = Dyn<'h'>;
pub type Ffn = Dyn<'f'>;
pub type Vocab = Dyn<'v'>;
pub type Heads = Dyn<'a'>;
pub type KvHeads = Dyn<'g'>;
pub type HeadDim = Dyn<'d'>;
/// Half the head dim: NEOX rotary embedding rotates the two halves of each head.
pub type HalfHeadDim = Dyn<'e'>;
/// `heads * head_dim`, which Qwen3 lets differ from `hidden`.
pub type QDim = Dyn<'q'>;
/// `kv_heads * head_dim`.
pub type KvDim = Dyn<'c'>;

/// Sets the model-size dimensions of `cx` from the config.
pub fn set_model_dims(cx: &mut Graph, c: &Qwen3Config) {
    for (dim, size) in [
        ('h', c.hidden),
        ('f', c.ffn),
        ('v', c.vocab),
        ('a', c.heads),
        ('g', c.kv_heads),
        ('d', c.head_dim),
        ('e', c.head_dim / 2),
        ('q', c.heads * c.head_dim),
        ('c', c.kv_heads * c.head_dim),
    ] {
        cx.set_dyn_dim(dim, size);
    }
}

/// The weights of one transformer block, named as in the GGUF file (`blk.N.<name>.weight`; the
/// loader binds them).
#[derive(Clone, Copy)]
pub struct LayerWeights {
    pub attn_norm: GraphTensor<(Hidden,)>,
    pub attn_q: GraphTensor<(QDim, Hidden)>,
    pub attn_k: GraphTensor<(KvDim, Hidden)>,
    pub attn_v: GraphTensor<(KvDim, Hidden)>,
    pub attn_q_norm: GraphTensor<(HeadDim,)>,
    pub attn_k_norm: GraphTensor<(HeadDim,)>,
    pub attn_output: GraphTensor<(Hidden, QDim)>,
    pub ffn_norm: GraphTensor<(Hidden,)>,
    pub ffn_gate: GraphTensor<(Ffn, Hidden)>,
    pub ffn_up: GraphTensor<(Ffn, Hidden)>,
    pub ffn_down: GraphTensor<(Hidden, Ffn)>,
}

/// Inputs the host sets before each step.
#[derive(Clone, Copy)]
pub struct StepInputs {
    /// Token ids as f32 (exact below 2^24).
    pub token_ids: GraphTensor<(Seq,)>,
    /// Absolute position of each token; consecutive.
    pub positions: GraphTensor<(Seq,)>,
    /// cos and sin of each position's rotary angles, `[seq, head_dim / 2]`.
    pub rope_cos: GraphTensor<(Seq, HalfHeadDim)>,
    pub rope_sin: GraphTensor<(Seq, HalfHeadDim)>,
}

/// The built graph: where to put inputs and weights, and where logits come out.
pub struct Qwen3Graph {
    pub inputs: StepInputs,
    pub token_embd: GraphTensor<(Vocab, Hidden)>,
    pub output_norm: GraphTensor<(Hidden,)>,
    /// `None` for tied embeddings: the head reuses `token_embd`.
    pub output: Option<GraphTensor<(Vocab, Hidden)>>,
    pub layers: Vec<LayerWeights>,
    /// `[logit_rows, vocab]`, retrieved after each step.
    pub logits: GraphTensor<(LogitRows, Vocab)>,
}

/// Builds the Qwen3 forward pass for `config` into `cx`, with a KV cache of `max_context` positions.
pub fn build(cx: &mut Graph, config: &Qwen3Config, max_context: usize) -> Qwen3Graph {
    set_model_dims(cx, config);
    let inputs = StepInputs {
        token_ids: cx.named_tensor("token_ids"),
        positions: cx.named_tensor("positions"),
        rope_cos: cx.named_tensor("rope_cos"),
        rope_sin: cx.named_tensor("rope_sin"),
    };
    let token_embd = cx.named_tensor("token_embd");
    let output_norm = cx.named_tensor("output_norm");
    // Tied embeddings: the file has no separate head, the LM head is the embedding table itself.
    let output = (!config.tied_embeddings).then(|| cx.named_tensor("output"));
    let attention = AttentionShape {
        heads: config.heads,
        kv_heads: config.kv_heads,
        head_dim: config.head_dim,
        max_context,
    };
    let eps = config.rms_eps;

    let mut x = embed(inputs.token_ids, token_embd);
    let layers: Vec<LayerWeights> = (0..config.layers).map(|_| layer_weights(cx)).collect();
    for w in &layers {
        x = block(x, w, &inputs, attention, eps);
    }

    // Only the trailing 'l' positions need logits: slice before the final norm and the head.
    let seq = Expression::from('s');
    let last = x
        .slice((seq - Expression::from('l')..seq, ..))
        .realize::<(LogitRows, Hidden)>();
    let head = output.unwrap_or(token_embd);
    let logits = rms_norm(last, output_norm, eps)
        .matmul(head.permute())
        .retrieve();
    Qwen3Graph {
        inputs,
        token_embd,
        output_norm,
        output,
        layers,
        logits,
    }
}

/// Weight nodes for one block (shared with the GPU graph, `gpu::graph`).
pub fn layer_weights(cx: &mut Graph) -> LayerWeights {
    LayerWeights {
        attn_norm: cx.named_tensor("attn_norm"),
        attn_q: cx.named_tensor("attn_q"),
        attn_k: cx.named_tensor("attn_k"),
        attn_v: cx.named_tensor("attn_v"),
        attn_q_norm: cx.named_tensor("attn_q_norm"),
        attn_k_norm: cx.named_tensor("attn_k_norm"),
        attn_output: cx.named_tensor("attn_output"),
        ffn_norm: cx.named_tensor("ffn_norm"),
        ffn_gate: cx.named_tensor("ffn_gate"),
        ffn_up: cx.named_tensor("ffn_up"),
        ffn_down: cx.named_tensor("ffn_down"),
    }
}

/// One transformer block: pre-norm attention and pre-norm SwiGLU feed-forward, each residual.
fn block(
    x: GraphTensor<(Seq, Hidden)>,
    w: &LayerWeights,
    inputs: &StepInputs,
    attention: AttentionShape,
    eps: f32,
) -> GraphTensor<(Seq, Hidden)> {
    // self-attention
    let h = rms_norm(x, w.attn_norm, eps);
    let q = h
        .matmul(w.attn_q.permute())
        .reshape::<(Seq, Heads, HeadDim)>(); // [seq, heads, head_dim]
    let k = h
        .matmul(w.attn_k.permute())
        .reshape::<(Seq, KvHeads, HeadDim)>(); // [seq, kv_heads, head_dim]
    let v = h.matmul(w.attn_v.permute()); // [seq, kv_heads * head_dim]
    let q = rope(head_rms_norm(q, w.attn_q_norm, eps), inputs);
    let k = rope(head_rms_norm(k, w.attn_k_norm, eps), inputs);
    let attn: GraphTensor<(Seq, QDim)> = cached_attention(q, k, v, inputs.positions, attention);
    let x = x + attn.matmul(w.attn_output.permute());

    // feed-forward
    let h = rms_norm(x, w.ffn_norm, eps);
    let gate = h.matmul(w.ffn_gate.permute());
    let up = h.matmul(w.ffn_up.permute());
    x + (gate.swish() * up).matmul(w.ffn_down.permute())
}

/// RMSNorm over the hidden axis: `x / sqrt(mean(x²) + eps) * weight`.
fn rms_norm<R: Dimension>(
    x: GraphTensor<(R, Hidden)>,
    weight: GraphTensor<(Hidden,)>,
    eps: f32,
) -> GraphTensor<(R, Hidden)> {
    x.std_norm::<1, f32>(eps) * weight.expand()
}

/// Qwen3's per-head RMSNorm of queries and keys, over `head_dim`.
fn head_rms_norm<H: Dimension>(
    x: GraphTensor<(Seq, H, HeadDim)>,
    weight: GraphTensor<(HeadDim,)>,
    eps: f32,
) -> GraphTensor<(Seq, H, HeadDim)> {
    x.std_norm::<2, f32>(eps) * weight.expand()
}

/// NEOX-style rotary embedding (rotate-half), as llama.cpp applies it to qwen3: the first and
/// second halves of each head form the (real, imaginary) pairs.
fn rope<H: Dimension>(
    x: GraphTensor<(Seq, H, HeadDim)>,
    inputs: &StepInputs,
) -> GraphTensor<(Seq, H, HeadDim)> {
    rope_with(x, inputs.rope_cos, inputs.rope_sin)
}

/// [`rope`] with the rotary tables given directly (the GPU graph has no `StepInputs`).
pub fn rope_with<H: Dimension>(
    x: GraphTensor<(Seq, H, HeadDim)>,
    rope_cos: GraphTensor<(Seq, HalfHeadDim)>,
    rope_sin: GraphTensor<(Seq, HalfHeadDim)>,
) -> GraphTensor<(Seq, H, HeadDim)> {
    let halves = x.reshape::<(Seq, H, Const<2>, HalfHeadDim)>(); // [seq, heads, 2, head_dim / 2]
    let x1 = halves
        .slice((.., .., ..Expression::from(1), ..))
        .realize::<(Seq, H, Const<1>, HalfHeadDim)>();
    let x2 = halves
        .slice((.., .., Expression::from(1).., ..))
        .realize::<(Seq, H, Const<1>, HalfHeadDim)>();
    let cos = rope_cos.expand::<(Seq, H, Const<1>, HalfHeadDim), _>();
    let sin = rope_sin.expand::<(Seq, H, Const<1>, HalfHeadDim), _>();
    let first = x1 * cos - x2 * sin;
    let second = x2 * cos + x1 * sin;
    first
        .concat_along::<(Seq, H, Const<2>, HalfHeadDim), Axis<2>, _>(second)
        .reshape()
}

/// The rotary tables for `positions`: `cos` and `sin` of each position's angles, `[seq, head_dim / 2]`.
///
/// Computed on the host the way ggml does (`ggml_rope_cache_init`): the angle starts at the
/// position and is multiplied by `theta^(-2/head_dim)` in f32 for each successive pair, then
/// `cosf`/`sinf`. Doing it in the graph would cost luminal's `cos(x) = sin(pi/2 - x)`, which loses
/// precision at large positions.
pub fn rope_tables(positions: &[usize], head_dim: usize, theta: f32) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let theta_scale = theta.powf(-2.0 / head_dim as f32);
    let mut cos = Vec::with_capacity(positions.len() * half);
    let mut sin = Vec::with_capacity(positions.len() * half);
    for &p in positions {
        let mut angle = p as f32;
        for _ in 0..half {
            cos.push(angle.cos());
            sin.push(angle.sin());
            angle *= theta_scale;
        }
    }
    (cos, sin)
}
