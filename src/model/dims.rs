//! The graph's dynamic dimensions, all in one place.
//!
//! luminal 0.2 shapes are type-level, so every size that varies, per model or per step, is a
//! `Dyn<'c'>` named by one char and resolved from the graph's dimension map when it runs. Two
//! sizes given the same char would silently be one size; declaring them all here, through one
//! macro that also lists them, lets a test keep the chars apart.

use luminal::prelude::*;

use super::config::Qwen3Config;

/// Declares each dimension as a char constant and a `Dyn` type alias, and lists them in [`ALL`].
macro_rules! dims {
    ($($(#[$doc:meta])* $ty:ident, $name:ident = $c:literal;)*) => {
        $(
            $(#[$doc])*
            pub const $name: char = $c;
            $(#[$doc])*
            pub type $ty = Dyn<$name>;
        )*
        /// Every dynamic dimension: its char and its type's name.
        pub const ALL: &[(char, &str)] = &[$(($c, stringify!($ty))),*];
    };
}

dims! {
    /// Tokens in this step (set per step).
    Seq, SEQ = 's';
    /// Trailing positions of this step that get logits: 1 when generating, `Seq` for a
    /// full-logits pass (set per step).
    LogitRows, LOGIT_ROWS = 'l';
    /// Model width.
    Hidden, HIDDEN = 'h';
    /// Feed-forward inner width.
    Ffn, FFN = 'f';
    /// Vocabulary: rows of the embedding table and of the head.
    Vocab, VOCAB = 'v';
    /// Query heads.
    Heads, HEADS = 'a';
    /// Key/value heads.
    KvHeads, KV_HEADS = 'g';
    /// Width of one head.
    HeadDim, HEAD_DIM = 'd';
    /// Rotary pairs of a head: half the rotated dimensions (`rope.dimension_count`, the whole
    /// head for Qwen3), whose two halves NEOX rotary embedding pairs.
    HalfHeadDim, HALF_HEAD_DIM = 'e';
    /// `heads * head_dim`, which Qwen3 lets differ from `hidden`.
    QDim, Q_DIM = 'q';
    /// `kv_heads * head_dim`.
    KvDim, KV_DIM = 'c';
    /// Query heads per KV head.
    Group, GROUP = 'r';
    /// Graph-held caches (GPU engines): cache positions before this step, the sink included
    /// (set per step).
    Past, PAST = 'p';
    /// Graph-held caches: `past + seq`, cache positions after this step (set per step).
    Total, TOTAL = 't';
    /// Mixture of experts: experts per layer (the router's rows).
    Experts, EXPERTS = 'x';
    /// Inner width of one expert.
    ExpertFfn, EXPERT_FFN = 'w';
    /// `experts * expert_ffn`: the rows of the gate and up expert tensors seen as 2-D.
    ExpertRows, EXPERT_ROWS = 'y';
    /// `experts * hidden`: the rows of the down expert tensor seen as 2-D.
    ExpertDownRows, EXPERT_DOWN_ROWS = 'z';
    /// `2 * experts_used`: a token's routing, its expert ids then their weights.
    Routing, ROUTING = 'k';
    /// Inner width of the shared expert (hybrid mixtures of experts).
    SharedFfn, SHARED_FFN = 'b';
    /// Gated attention: query and gate, `2 * heads * head_dim`.
    QGateDim, Q_GATE_DIM = 'u';
    /// Gated DeltaNet: the q, k and v channels the convolution runs over.
    ConvDim, CONV_DIM = 'o';
    /// Gated DeltaNet: taps of the causal convolution.
    ConvKernel, CONV_KERNEL = 'n';
    /// Gated DeltaNet: value width, `v_heads * state_size`.
    ValueDim, VALUE_DIM = 'i';
    /// Gated DeltaNet: value heads.
    VHeads, V_HEADS = 'j';
    /// Gated DeltaNet: the head size.
    StateSize, STATE_SIZE = 'm';
    /// Multi-token prediction: an embedding and a hidden state side by side, `2 * hidden`.
    EhDim, EH_DIM = 'E';
    /// Gated DeltaNet: `2 * v_heads`, beta and alpha from one projection (`qwen3next`).
    BetaAlphaDim, BETA_ALPHA_DIM = 'B';
    /// Gated DeltaNet: `2 * key_dim + 2 * value_dim`, the legacy fused q/k/v/z projection.
    QkvzDim, QKVZ_DIM = 'Q';
}

/// Sets the model-size dimensions of `cx` from the config (the per-step ones are the engine's).
pub fn set_model_dims(cx: &mut Graph, c: &Qwen3Config) {
    for (dim, size) in [
        (HIDDEN, c.hidden),
        (FFN, c.ffn),
        (VOCAB, c.vocab),
        (HEADS, c.heads),
        (KV_HEADS, c.kv_heads),
        (HEAD_DIM, c.head_dim),
        (HALF_HEAD_DIM, c.rope_dims / 2),
        (Q_DIM, c.q_dim()),
        (KV_DIM, c.kv_dim()),
        (GROUP, c.heads / c.kv_heads),
    ] {
        cx.set_dyn_dim(dim, size);
    }
    if let Some(m) = c.moe {
        for (dim, size) in [
            (EXPERTS, m.experts),
            (EXPERT_FFN, m.expert_ffn),
            (EXPERT_ROWS, m.experts * m.expert_ffn),
            (EXPERT_DOWN_ROWS, m.experts * c.hidden),
            (ROUTING, 2 * m.experts_used),
            (SHARED_FFN, m.shared_ffn.unwrap_or(0)),
        ] {
            cx.set_dyn_dim(dim, size);
        }
    }
    if let Some(h) = &c.hybrid {
        for (dim, size) in [
            (Q_GATE_DIM, 2 * c.q_dim()),
            (CONV_DIM, h.conv_dim()),
            (CONV_KERNEL, h.conv_kernel),
            (VALUE_DIM, h.value_dim()),
            (V_HEADS, h.v_heads),
            (STATE_SIZE, h.state_size),
            (EH_DIM, 2 * c.hidden),
            (BETA_ALPHA_DIM, 2 * h.v_heads),
            (QKVZ_DIM, 2 * h.key_dim() + 2 * h.value_dim()),
        ] {
            cx.set_dyn_dim(dim, size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_dimensions_share_a_char() {
        for (i, (c, name)) in ALL.iter().enumerate() {
            if let Some((_, other)) = ALL[..i].iter().find(|(d, _)| d == c) {
                panic!("{name} and {other} are both Dyn<'{c}'>: they would be one size");
            }
        }
        assert_eq!(ALL.len(), 29);
    }
}
