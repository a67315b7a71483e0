//! The sizes and constants of a model, as read from its metadata, and what follows from them
//! (projection widths, parameter counts).

use serde::Serialize;

/// llama.cpp's and transformers' default when the file has no `rope.freq_base`.
pub const DEFAULT_ROPE_THETA: f32 = 10_000.0;

/// The sizes and constants of a Qwen3 model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Qwen3Config {
    /// Model width (`embedding_length`).
    pub hidden: usize,
    /// Transformer blocks (`block_count`).
    pub layers: usize,
    /// Feed-forward inner width (`feed_forward_length`).
    pub ffn: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention: `heads` is a multiple of it).
    pub kv_heads: usize,
    /// Width of one head; Qwen3 may have heads * head_dim != hidden.
    pub head_dim: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
    /// Context length the model was trained for.
    pub context_length: usize,
    /// Rows of `token_embd.weight`.
    pub vocab: usize,
    /// No `output.weight`: the output head reuses `token_embd.weight`.
    pub tied_embeddings: bool,
    /// A mixture-of-experts feed-forward (architecture `qwen3moe`) instead of the dense one; its
    /// fields appear in the JSON config as `experts`, `experts_used`, `expert_ffn`.
    #[serde(flatten)]
    pub moe: Option<MoeConfig>,
}

/// The routed feed-forward of a Qwen3-MoE block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MoeConfig {
    /// Experts per layer (`expert_count`).
    pub experts: usize,
    /// Experts each token is routed to (`expert_used_count`).
    pub experts_used: usize,
    /// Inner width of one expert (`expert_feed_forward_length`).
    pub expert_ffn: usize,
}

impl Qwen3Config {
    /// Query projection width: heads * head_dim.
    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Key (and value) projection width: kv_heads * head_dim.
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Parameters the model has by this configuration (equals the file's element count).
    pub fn n_params(&self) -> u64 {
        let [h, q, kv, v, hd] = [
            self.hidden,
            self.q_dim(),
            self.kv_dim(),
            self.vocab,
            self.head_dim,
        ]
        .map(|n| n as u64);
        let heads_out = if self.tied_embeddings { 0 } else { v * h };
        let attention = q * h + 2 * kv * h + h * q + 2 * hd;
        let ffn = match self.moe {
            // The router, then every expert's gate, up and down.
            Some(m) => m.experts as u64 * h + m.experts as u64 * self.expert_params(),
            None => 3 * self.ffn as u64 * h,
        };
        let layer = 2 * h + attention + ffn;
        v * h + heads_out + h + self.layers as u64 * layer
    }

    /// Parameters one token's forward pass uses: all of them for a dense model; for a mixture of
    /// experts, the routed experts' instead of every expert's (the embedding table counted whole,
    /// as the model cards count it).
    pub fn n_active_params(&self) -> u64 {
        match self.moe {
            Some(m) => {
                let idle = (m.experts - m.experts_used) as u64 * self.expert_params();
                self.n_params() - self.layers as u64 * idle
            }
            None => self.n_params(),
        }
    }

    /// Weights of one expert (gate, up and down), 0 for a dense model.
    pub fn expert_params(&self) -> u64 {
        self.moe
            .map_or(0, |m| 3 * m.expert_ffn as u64 * self.hidden as u64)
    }
}
