//! The sizes and constants of a model, as read from its metadata, and what follows from them
//! (projection widths, parameter counts).

use serde::Serialize;

/// llama.cpp's and transformers' default when the file has no `rope.freq_base`.
pub const DEFAULT_ROPE_THETA: f32 = 10_000.0;

/// The architectures this program runs, as `general.architecture` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Dense Qwen3.
    Qwen3,
    /// Qwen3 with a mixture of experts (Qwen3-30B-A3B, Qwen3-235B-A22B).
    Qwen3Moe,
    /// Qwen3.5 / Qwen3.6 dense: gated DeltaNet and gated attention layers.
    Qwen35,
    /// Qwen3.5 / Qwen3.6 with a mixture of experts and a shared expert.
    Qwen35Moe,
    /// Qwen3-Next: as `qwen35moe` with fused beta/alpha projections, grouped key heads and plain
    /// rotary embeddings.
    Qwen3Next,
    /// Qwen3-VL's language model: Qwen3 with interleaved multi-section rotary embeddings (the
    /// image encoder is a separate file).
    Qwen3Vl,
    /// Qwen3-VL's mixture-of-experts language model (Qwen3-VL-30B-A3B, 235B-A22B).
    Qwen3VlMoe,
}

impl Arch {
    pub const ALL: [Arch; 7] = [
        Arch::Qwen3,
        Arch::Qwen3Moe,
        Arch::Qwen35,
        Arch::Qwen35Moe,
        Arch::Qwen3Next,
        Arch::Qwen3Vl,
        Arch::Qwen3VlMoe,
    ];

    /// The name `general.architecture` gives it (also the prefix of its metadata keys).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Qwen3 => "qwen3",
            Arch::Qwen3Moe => "qwen3moe",
            Arch::Qwen35 => "qwen35",
            Arch::Qwen35Moe => "qwen35moe",
            Arch::Qwen3Next => "qwen3next",
            Arch::Qwen3Vl => "qwen3vl",
            Arch::Qwen3VlMoe => "qwen3vlmoe",
        }
    }

    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    /// A routed feed-forward.
    pub fn is_moe(self) -> bool {
        matches!(
            self,
            Arch::Qwen3Moe | Arch::Qwen35Moe | Arch::Qwen3Next | Arch::Qwen3VlMoe
        )
    }

    /// Gated DeltaNet layers beside gated attention ones.
    pub fn is_hybrid(self) -> bool {
        matches!(self, Arch::Qwen35 | Arch::Qwen35Moe | Arch::Qwen3Next)
    }

    /// Interleaved multi-section rotary embeddings (ggml's IMROPE): the file must say its
    /// `rope.dimension_sections`.
    pub fn has_rope_sections(self) -> bool {
        matches!(
            self,
            Arch::Qwen35 | Arch::Qwen35Moe | Arch::Qwen3Vl | Arch::Qwen3VlMoe
        )
    }

    /// The language model of a vision-language model: text prompts only.
    pub fn is_vision_language(self) -> bool {
        matches!(self, Arch::Qwen3Vl | Arch::Qwen3VlMoe)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The sizes and constants of a model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Qwen3Config {
    /// `general.architecture`.
    pub arch: Arch,
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
    /// Leading dimensions of each head the rotary embedding turns (`rope.dimension_count`;
    /// the whole head where absent).
    pub rope_dims: usize,
    /// Rotary pairs per position axis (`rope.dimension_sections`, multi-axis RoPE of the
    /// hybrid models): for text every axis has the token's position, and a pair no section
    /// covers is not turned.
    pub rope_sections: Option<[usize; 4]>,
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
    /// Gated DeltaNet layers beside the attention ones (architectures `qwen35`, `qwen35moe`,
    /// `qwen3next`).
    #[serde(flatten)]
    pub hybrid: Option<HybridConfig>,
    /// Layers of a Qwen3-VL model that add image features to the hidden state
    /// (`n_deepstack_layers`). A text prompt brings none: they add nothing here.
    #[serde(skip_serializing_if = "is_zero")]
    pub deepstack_layers: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The gated DeltaNet side of a hybrid model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HybridConfig {
    /// Per layer of the trunk: a gated DeltaNet (recurrent) layer, else gated full attention.
    pub recurrent_layers: Vec<bool>,
    /// Taps of the causal convolution over the q/k/v channels (`ssm.conv_kernel`).
    pub conv_kernel: usize,
    /// Size of a DeltaNet head, key and value alike (`ssm.state_size`).
    pub state_size: usize,
    /// Key heads (`ssm.group_count`).
    pub k_heads: usize,
    /// Value heads (`ssm.time_step_rank`), a multiple of the key heads.
    pub v_heads: usize,
    /// Which key head a value head reads.
    pub key_heads: KeyHeads,
    /// How the file stores the DeltaNet's input projections.
    pub projections: DeltaProjections,
    /// Multi-token-prediction blocks after the trunk (`nextn_predict_layers`), not run.
    pub mtp_layers: usize,
}

/// Which key head value head `j` of `v_heads` reads, with `k_heads` key heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyHeads {
    /// `j mod k_heads` (qwen35, qwen35moe: the converter reorders the value heads so).
    Tiled,
    /// `j div (v_heads / k_heads)` (qwen3next).
    Grouped,
}

/// The DeltaNet input projections a file stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaProjections {
    /// `attn_qkv`, `attn_gate`, `ssm_beta`, `ssm_alpha` (qwen35, qwen35moe).
    Separate,
    /// `attn_qkv`, `attn_gate` and one `ssm_ba` (qwen3next).
    FusedBetaAlpha,
    /// One `ssm_in` (q, k, v and z per key head) and `ssm_ba`: qwen3next files converted
    /// before late 2025.
    LegacyIn,
}

impl HybridConfig {
    /// Channels of the q/k/v projection the convolution runs over: `2 * k_heads * state +
    /// v_heads * state`.
    pub fn conv_dim(&self) -> usize {
        2 * self.key_dim() + self.value_dim()
    }

    pub fn key_dim(&self) -> usize {
        self.k_heads * self.state_size
    }

    /// `ssm.inner_size`: `v_heads * state`.
    pub fn value_dim(&self) -> usize {
        self.v_heads * self.state_size
    }

    /// DeltaNet layers of the trunk.
    pub fn recurrent_count(&self) -> usize {
        self.recurrent_layers.iter().filter(|&&r| r).count()
    }

    /// f32 values of one layer's recurrent state: the convolution's last `conv_kernel - 1`
    /// inputs and one `state x state` matrix per value head.
    pub fn state_floats_per_layer(&self) -> usize {
        (self.conv_kernel - 1) * self.conv_dim() + self.v_heads * self.state_size * self.state_size
    }

    /// Bytes of recurrent state one sequence holds, over all DeltaNet layers.
    pub fn state_bytes(&self) -> u64 {
        4 * self.state_floats_per_layer() as u64 * self.recurrent_count() as u64
    }
}

/// The routed feed-forward of a mixture-of-experts block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MoeConfig {
    /// Experts per layer (`expert_count`).
    pub experts: usize,
    /// Experts each token is routed to (`expert_used_count`).
    pub experts_used: usize,
    /// Inner width of one expert (`expert_feed_forward_length`).
    pub expert_ffn: usize,
    /// Inner width of the shared expert every token also runs, scaled by a sigmoid gate
    /// (`expert_shared_feed_forward_length`; `qwen35moe`, `qwen3next`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_ffn: Option<usize>,
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

    /// Whether layer `i` of the trunk is a gated DeltaNet (recurrent) layer.
    pub fn is_recurrent(&self, i: usize) -> bool {
        self.hybrid
            .as_ref()
            .is_some_and(|h| h.recurrent_layers.get(i).copied().unwrap_or(false))
    }

    /// Layers that attend over a KV cache: all of Qwen3's, the gated-attention ones of a
    /// hybrid model.
    pub fn attention_layers(&self) -> usize {
        self.layers
            - self
                .hybrid
                .as_ref()
                .map_or(0, HybridConfig::recurrent_count)
    }

    /// Parameters of the trunk by this configuration (the file's element count, less any
    /// multi-token-prediction block).
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
        // A hybrid model's query projection also yields the gate.
        let q_proj = if self.hybrid.is_some() { 2 * q } else { q };
        let attention = q_proj * h + 2 * kv * h + h * q + 2 * hd;
        let ffn = match self.moe {
            // The router, then every expert's gate, up and down, and the shared expert.
            Some(m) => {
                let shared = m.shared_ffn.map_or(0, |s| h + 3 * s as u64 * h);
                m.experts as u64 * h + m.experts as u64 * self.expert_params() + shared
            }
            None => 3 * self.ffn as u64 * h,
        };
        let mixers: u64 = (0..self.layers)
            .map(|i| match &self.hybrid {
                Some(hy) if hy.recurrent_layers[i] => delta_net_params(hy, h),
                _ => attention,
            })
            .sum();
        v * h + heads_out + h + self.layers as u64 * (2 * h + ffn) + mixers
    }

    /// Parameters one token's forward pass uses: all of them for a dense model; for a mixture of
    /// experts, the routed experts' instead of every expert's (the embedding table counted whole,
    /// as the model cards count it).
    pub fn n_active_params(&self) -> u64 {
        self.n_params() - self.idle_expert_params()
    }

    /// Weights of the experts one token is not routed to, over all layers (0 for a dense model).
    pub fn idle_expert_params(&self) -> u64 {
        self.moe.map_or(0, |m| {
            let idle = (m.experts - m.experts_used) as u64 * self.expert_params();
            self.layers as u64 * idle
        })
    }

    /// Weights of one expert (gate, up and down), 0 for a dense model.
    pub fn expert_params(&self) -> u64 {
        self.moe
            .map_or(0, |m| 3 * m.expert_ffn as u64 * self.hidden as u64)
    }
}

/// Weights of one gated DeltaNet layer of width `h` (its norm counted with the block's).
fn delta_net_params(hy: &HybridConfig, h: u64) -> u64 {
    let [conv, value, v_heads, k, s] = [
        hy.conv_dim(),
        hy.value_dim(),
        hy.v_heads,
        hy.conv_kernel,
        hy.state_size,
    ]
    .map(|n| n as u64);
    // qkv and gate (or ssm_in, the same weights), beta and alpha, conv taps, dt and a, the
    // gated norm, the output.
    conv * h + value * h + 2 * v_heads * h + conv * k + 2 * v_heads + s + h * value
}
