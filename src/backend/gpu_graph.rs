//! The Qwen3 graph for GPU backends: stock luminal ops only, the KV cache held as graph tensors.
//!
//! luminal's CUDA and Metal compilers cannot run our CPU ops (`ops::*`), so this graph keeps
//! only what every backend lowers: matmuls, elementwise ops, reductions, views. Compared with
//! `model::build` it differs in three places:
//! - embedding rows are looked up on the host and fed in as `[seq, hidden]` (a stock gather needs
//!   `Equal`, which is wrong on luminal's CPU backend, and the table would cost GPU memory twice);
//! - attention reads per-layer cache inputs `[kv_heads, past, head_dim]` and produces the cache
//!   concatenated with this step's keys and values, `[kv_heads, total, head_dim]`, which the engine
//!   feeds back as the next step's input (outputs stay on the device between steps);
//! - the causal mask comes from the host, `[seq, total]`.
//!
//! Every cache starts with one masked "sink" position of zeros, so no tensor is ever empty (a
//! zero-byte device allocation fails on CUDA). The block structure mirrors `model::block`; the
//! pieces that are the same (weights, rotary embedding, dims) are `model`'s own.
//!
//! In f16 the plain RMSNorm overflows: `x²` passes 65504 once `|x|` passes 256, which the residual
//! stream of real Qwen3 models does. With `f16_safe_norms` each row is first divided by its largest
//! magnitude `m`; then `rms_norm(x) = y / sqrt(mean(y²) + eps / m²)` with `y = x / m`, `|y| <= 1`.

use luminal::prelude::symbolic::Expression;
use luminal::prelude::*;

use crate::model::config::Qwen3Config;
use crate::model::qwen3::{
    self, layer_weights, rope_with, Ffn, HalfHeadDim, HeadDim, Heads, Hidden, KvHeads,
    LayerWeights, LogitRows, QDim, Seq, Vocab,
};

/// Cache positions before this step, the sink included.
pub type Past = Dyn<'p'>;
/// `past + seq`: cache positions after this step.
pub type Total = Dyn<'t'>;
/// Query heads per KV head.
pub type Group = Dyn<'r'>;

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

/// Inputs the host sets before each step.
#[derive(Clone, Copy)]
pub struct GpuInputs {
    /// Embedding rows of the step's tokens.
    pub embeddings: GraphTensor<(Seq, Hidden)>,
    pub rope_cos: GraphTensor<(Seq, HalfHeadDim)>,
    pub rope_sin: GraphTensor<(Seq, HalfHeadDim)>,
    /// 0 where a query may attend a cache column, [`MASKED`] where not.
    pub mask: GraphTensor<(Seq, Total)>,
}

/// The built graph.
pub struct GpuGraph {
    pub inputs: GpuInputs,
    pub output_norm: GraphTensor<(Hidden,)>,
    /// The head: `output.weight`, or `token_embd.weight` for tied embeddings.
    pub head: GraphTensor<(Vocab, Hidden)>,
    pub layers: Vec<LayerWeights>,
    pub caches: Vec<LayerCache>,
    /// `[logit_rows, vocab]`, retrieved after each step.
    pub logits: GraphTensor<(LogitRows, Vocab)>,
}

impl GpuGraph {
    /// Every node id the engine touches after compiling, for the compilers' `remap`.
    pub fn ids_mut(&mut self) -> Vec<&mut NodeIndex> {
        let inputs = &mut self.inputs;
        let mut ids = vec![
            &mut inputs.embeddings.id,
            &mut inputs.rope_cos.id,
            &mut inputs.rope_sin.id,
            &mut inputs.mask.id,
            &mut self.logits.id,
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

/// How the graph computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GraphOptions {
    /// RMSNorms that stay inside f16's range (see the module doc); plain ones otherwise.
    pub f16_safe_norms: bool,
}

/// Builds the Qwen3 forward pass for `config` into `cx`.
pub fn build(cx: &mut Graph, config: &Qwen3Config, options: GraphOptions) -> GpuGraph {
    qwen3::set_model_dims(cx, config);
    cx.set_dyn_dim('r', config.heads / config.kv_heads);
    let inputs = GpuInputs {
        embeddings: cx.named_tensor("embeddings"),
        rope_cos: cx.named_tensor("rope_cos"),
        rope_sin: cx.named_tensor("rope_sin"),
        mask: cx.named_tensor("mask"),
    };
    let output_norm = cx.named_tensor("output_norm");
    // Tied embeddings: the head is `token_embd`, bound under that name.
    let head = cx.named_tensor(if config.tied_embeddings {
        "token_embd"
    } else {
        "output"
    });
    let norm = Norm {
        eps: config.rms_eps,
        f16_safe: options.f16_safe_norms,
    };
    let scale = 1.0 / (config.head_dim as f32).sqrt();

    let mut x = inputs.embeddings;
    let mut layers = Vec::with_capacity(config.layers);
    let mut caches = Vec::with_capacity(config.layers);
    for _ in 0..config.layers {
        let w = layer_weights(cx);
        let (k_in, v_in) = (cx.named_tensor("k_cache"), cx.named_tensor("v_cache"));
        let (next, k_out, v_out) = block(x, &w, (k_in, v_in), &inputs, norm, scale);
        x = next;
        cx.keep_tensors(vec![k_out.id, v_out.id]);
        layers.push(w);
        caches.push(LayerCache {
            k_in,
            v_in,
            k_out,
            v_out,
        });
    }

    // Only the trailing 'l' positions need logits. Explicit ends: see LUMINAL-0.2-NOTES (5).
    let seq = Expression::from('s');
    let last = x
        .slice((seq - Expression::from('l')..seq, ..))
        .realize::<(LogitRows, Hidden)>();
    let logits = norm
        .rows(last, output_norm)
        .matmul(head.permute())
        .retrieve();
    GpuGraph {
        inputs,
        output_norm,
        head,
        layers,
        caches,
        logits,
    }
}

type CacheIn = GraphTensor<(KvHeads, Past, HeadDim)>;
type CacheOut = GraphTensor<(KvHeads, Total, HeadDim)>;

/// One transformer block, as `model::block` but with graph-held KV caches: returns the block's
/// output and the layer's keys and values after this step.
fn block(
    x: GraphTensor<(Seq, Hidden)>,
    w: &LayerWeights,
    cache: (CacheIn, CacheIn),
    inputs: &GpuInputs,
    norm: Norm,
    scale: f32,
) -> (GraphTensor<(Seq, Hidden)>, CacheOut, CacheOut) {
    let (cos, sin) = (inputs.rope_cos, inputs.rope_sin);
    let h = norm.rows(x, w.attn_norm);
    let q = h
        .matmul(w.attn_q.permute())
        .reshape::<(Seq, Heads, HeadDim)>();
    let k = h
        .matmul(w.attn_k.permute())
        .reshape::<(Seq, KvHeads, HeadDim)>();
    let v = h
        .matmul(w.attn_v.permute())
        .reshape::<(Seq, KvHeads, HeadDim)>();
    let q = rope_with(norm.heads(q, w.attn_q_norm), cos, sin);
    let k = rope_with(norm.heads(k, w.attn_k_norm), cos, sin);
    let keys = cache
        .0
        .concat_along::<_, Axis<1>, _>(k.permute::<_, Axes3<1, 0, 2>>());
    let values = cache
        .1
        .concat_along::<_, Axis<1>, _>(v.permute::<_, Axes3<1, 0, 2>>());
    let attn = attention(q, keys, values, inputs.mask, scale);
    let x = x + attn.matmul(w.attn_output.permute());

    let h = norm.rows(x, w.ffn_norm);
    let gate = h.matmul(w.ffn_gate.permute());
    let up = h.matmul(w.ffn_up.permute());
    let ffn: GraphTensor<(Seq, Ffn)> = gate.swish() * up;
    (x + ffn.matmul(w.ffn_down.permute()), keys, values)
}

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

/// RMSNorm with its weight; in f16 mode computed on `x / max|x|` (see the module doc).
#[derive(Debug, Clone, Copy)]
struct Norm {
    eps: f32,
    f16_safe: bool,
}

/// Keeps the row maximum away from zero (an all-zero row) without moving real rows.
const TINY: f32 = 1e-4;

impl Norm {
    /// Over the hidden axis of `[rows, hidden]`.
    fn rows<R: Dimension>(
        self,
        x: GraphTensor<(R, Hidden)>,
        weight: GraphTensor<(Hidden,)>,
    ) -> GraphTensor<(R, Hidden)> {
        if !self.f16_safe {
            return x.std_norm::<1, f32>(self.eps) * weight.expand();
        }
        let m: GraphTensor<(R,)> = x.max_reduce::<_, Axis<1>>().max((-x).max_reduce()) + TINY;
        let y = x / m.expand();
        let mean = (y * y).mean_reduce::<_, Axis<1>>() + m.recip() * m.recip() * self.eps;
        y * mean.sqrt().recip().expand() * weight.expand()
    }

    /// Qwen3's per-head norm of queries and keys, over `head_dim`.
    fn heads<H: Dimension>(
        self,
        x: GraphTensor<(Seq, H, HeadDim)>,
        weight: GraphTensor<(HeadDim,)>,
    ) -> GraphTensor<(Seq, H, HeadDim)> {
        if !self.f16_safe {
            return x.std_norm::<2, f32>(self.eps) * weight.expand();
        }
        let m: GraphTensor<(Seq, H)> = x.max_reduce::<_, Axis<2>>().max((-x).max_reduce()) + TINY;
        let y = x / m.expand();
        let mean = (y * y).mean_reduce::<_, Axis<2>>() + m.recip() * m.recip() * self.eps;
        y * mean.sqrt().recip().expand() * weight.expand()
    }
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
