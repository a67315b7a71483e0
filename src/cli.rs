//! Command-line flags.

use std::path::PathBuf;

use clap::Parser;

/// Run Qwen3 GGUF models on luminal, streaming text and timing every decode step.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// Prompt text; `-` reads it from standard input.
    #[arg(short, long)]
    pub prompt: Option<String>,

    /// Number of tokens to generate (default: 256).
    #[arg(short = 't', long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub gen_tokens: u32,

    /// GGUF model file (default: setup/qwen3-4b.gguf).
    #[arg(
        short,
        long,
        default_value = "setup/qwen3-4b.gguf",
        hide_default_value = true
    )]
    pub model: PathBuf,

    /// tokenizer.json (default: setup/tokenizer.json).
    #[arg(
        long,
        default_value = "setup/tokenizer.json",
        hide_default_value = true
    )]
    pub tokenizer: PathBuf,

    /// Prompt as comma-separated token ids instead of text (for models without a tokenizer).
    #[arg(long, value_delimiter = ',', conflicts_with = "prompt")]
    pub token_ids: Option<Vec<u32>>,

    /// Keep generating after end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,

    /// Print one JSON object on stdout (streamed text and the summary go to stderr).
    #[arg(long)]
    pub json: bool,

    /// The enhanced compilation path: fused, multi-threaded SIMD kernels on the quantized weights.
    #[arg(long)]
    pub parallel: bool,

    /// Detailed timing report: per-token decode statistics, enhanced-feature status and a
    /// per-kernel profile.
    #[arg(long)]
    pub kernel_timing: bool,

    /// Positions the KV cache holds, prompt included (default: the model's context length).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub ctx_size: Option<u32>,

    /// Print what the model file holds and exit.
    #[arg(long)]
    pub inspect: bool,
}
