//! Qwen3 itself: the configuration read from a GGUF file and the luminal graph built from it.

pub mod config;
pub mod qwen3;
