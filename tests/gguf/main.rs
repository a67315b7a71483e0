//! The GGUF reader and writer, the model config check, and the reader fuzzed for panics and oversized allocations.

#[path = "../common/mod.rs"]
mod common;

mod config;
mod props;
mod reader;
mod writer;
