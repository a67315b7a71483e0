//! The Qwen3 model configuration, read from GGUF metadata and checked against the tensors.
//!
//! Key and tensor names are those llama.cpp's converter writes for `Qwen3ForCausalLM` and
//! `Qwen3MoeForCausalLM` (`qwen3.embedding_length`, `blk.{i}.attn_q.weight`, ...; a mixture of
//! experts, architecture `qwen3moe`, has the same keys under the `qwen3moe.` prefix plus its
//! expert counts, and a routed feed-forward). Decisions where a file may differ:
//! - `qwen3.rope.freq_base` absent: 10000, the default of llama.cpp and of transformers'
//!   `Qwen3Config`, so a file without it runs as they run it (every released Qwen3 sets 1e6).
//! - `qwen3.attention.key_length` absent: head_dim = hidden / heads, as llama.cpp does.
//! - `qwen3.attention.head_count_kv` absent: kv_heads = heads (no grouping), as llama.cpp does.
//! - Norm weights must be F32, F16 or BF16: they are tiny, and llama.cpp always writes them as
//!   F32; a block-quantized norm is a broken file, not a format to support.
//! - `qwen3moe.expert_feed_forward_length` absent: `feed_forward_length / expert_used_count`,
//!   llama.cpp's fallback; `feed_forward_length` is then needed, otherwise it is optional.

mod error;
mod expected;
mod keys;
mod meta;
mod mtp;
mod read;
mod types;

pub use error::ConfigError;
pub use expected::layer_tensors;
pub use mtp::MtpBlock;
pub use types::{
    Arch, DeltaProjections, HybridConfig, KeyHeads, MoeConfig, Qwen3Config, DEFAULT_ROPE_THETA,
};
