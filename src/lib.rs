//! qwen-luminal: run Qwen3 GGUF models on the luminal deep-learning crate.

pub mod cpu;
pub mod gguf;
pub mod quant;
