//! The Qwen models themselves, as data and as a graph: the configuration read from a GGUF file,
//! the table of its tensor names, the graph's dynamic dimensions, and the one block definition
//! that every engine builds, with its variation points (embedding, the mixer: attention or the
//! hybrid models' gated attention and gated DeltaNet, norms, feed-forward), and the hybrid
//! models' multi-token-prediction block. Nothing here knows a
//! file's bytes or an engine's kernels.

pub mod config;
pub mod dims;
pub mod ffn;
pub mod mixer;
pub mod mtp;
pub mod norm;
pub mod qwen3;
pub mod rotary;
pub mod tensors;
