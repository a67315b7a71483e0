//! Gated DeltaNet (GDN) kernels, the linear-attention layers of Qwen3.5/3.6 (`qwen35`,
//! `qwen35moe`) and Qwen3-Next: plain Rust, no luminal, for the operators to call.
//!
//! One GDN layer, per token (llama.cpp `qwen35.cpp` / `delta-net-base.cpp`; the kit's
//! HYBRID.md section 4.2): a causal depthwise convolution of the qkv projection over the last
//! `conv_kernel` inputs, SiLU; per-head L2 norms of q and k; per value head the decay
//! `g = ssm_a * softplus(alpha + dt_bias)` and `beta = sigmoid(beta)`; the delta rule on an
//! `S x S` state (`S *= exp(g)`, `delta = beta (v - S k)`, `S += delta kᵀ`, `o = S q /
//! sqrt(S)`, in the `[v][k]` storage of [`GdnState`]); the gated RMSNorm `rms_norm(o) *
//! ssm_norm * silu(z)`. The caller does the projections before and `ssm_out` after.
//!
//! Two paths, one geometry ([`shape`]) and one state layout, so a state can pass between them:
//! - [`standard`]: llama.cpp's order of operations, op by op, single-threaded (exact f32).
//! - [`fused`]: the `--parallel` path, everything after the projections fused per key-head
//!   group, groups across the thread pool, SIMD by run-time ISA (AVX-512, AVX2, NEON, and
//!   portable code elsewhere). Prompts run token by token on blocks of
//!   state rows ([`rows`]) or in chunks ([`chunked`]).
//!
//! Layouts: inputs and outputs are token-major `[n_tokens][channels]`; qkv channels are
//! `[q (k_heads x S) | k (k_heads x S) | v (v_heads x S)]`; value head `j` reads key head
//! [`GdnShape::key_head`] (`j % k_heads` tiled for qwen35, `j / (v_heads / k_heads)` grouped
//! for qwen3next).
//!
//! Prompts (`benches/delta.rs`, a Qwen3.5-4B-shaped layer, 256 tokens, AVX2 on a shared
//! 2-core Zen 3 under heavy load, variants taking turns call by call): token by token on row
//! blocks is as fast as or faster than every chunked form here: tiles of 16 to 256 tokens within
//! noise of each other, one-token tiles 0.88x, chunks of 16 0.95x, 32 0.81x, 64 0.64x, 128
//! 0.46x. The rows already keep the state in L1 across a tile, and the chunked form does the
//! same multiply-adds plus its solve, so [`fused::DEFAULT_PREFILL`] is token by token.

pub mod chunked;
pub mod fused;
pub mod rows;
pub mod shape;
mod simd;
pub mod standard;
mod vmath;

pub use fused::{FusedOptions, FusedScratch, FusedWeights, Prefill};
pub use shape::{GdnInputs, GdnShape, GdnState, GdnWeights, HeadMap, ShapeError};
pub use standard::StandardScratch;

#[cfg(test)]
mod tests;
