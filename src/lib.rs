//! qwen-luminal: run Qwen3 GGUF models on the luminal deep-learning crate.

pub mod backend;
pub mod cli;
pub mod compare;
pub mod cpu;
pub mod generate;
pub mod gguf;
pub mod inspect;
pub mod interactive;
pub mod interrupt;
pub mod load;
pub mod model;
pub mod ops;
pub mod outfile;
pub mod prompt;
pub mod quant;
pub mod report;
pub mod rng;
pub mod run;
pub mod sampler;
pub mod settings;
pub mod sweep;
pub mod text;
pub mod timing;
pub mod trace;
