//! qwen-luminal: run Qwen3 GGUF models on the luminal deep-learning crate.

pub mod chat;
pub mod cli;
pub mod config;
pub mod context;
pub mod cpu;
pub mod display;
pub mod engine;
pub mod generate;
pub mod gguf;
pub mod inspect;
pub mod interactive;
pub mod kernels;
pub mod loader;
pub mod model;
pub mod plot;
pub mod prompt;
pub mod quant;
pub mod report;
pub mod resolve;
pub mod run;
pub mod sampler;
pub mod sparkline;
pub mod stream;
pub mod think;
pub mod timing;
pub mod tokenizer;
