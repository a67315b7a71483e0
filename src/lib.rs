//! qwen-luminal: run Qwen3 GGUF models on the luminal deep-learning crate.

pub mod config;
pub mod gguf;
pub mod inspect;
pub mod kernels;
pub mod model;
pub mod plot;
pub mod quant;
pub mod sampler;
pub mod sparkline;
pub mod stream;
pub mod timing;
