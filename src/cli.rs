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

    /// Threads for --parallel (default: all logical cores).
    #[arg(long, requires = "parallel", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,

    /// Detailed timing report: per-token decode statistics, enhanced-feature status and a
    /// per-kernel profile.
    #[arg(long)]
    pub kernel_timing: bool,

    /// Positions the KV cache holds, prompt included (default: the model's context length).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub ctx_size: Option<u32>,

    /// Read the prompt from this file.
    #[arg(long, conflicts_with_all = ["prompt", "token_ids"])]
    pub prompt_file: Option<PathBuf>,

    /// Run the same generation N times and report the run-to-run spread (as llama-bench -r).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,

    /// Write a chart of per-token decode time (with mean and ±1 sd band) to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    #[command(flatten)]
    pub sampling: SamplingArgs,

    /// Stop when the generated text contains this string (repeatable).
    #[arg(long = "stop", value_name = "STRING")]
    pub stop: Vec<String>,

    /// Where the model runs: cpu, cuda (built with --features cuda) or metal (--features metal).
    #[arg(long, value_enum, default_value_t = crate::gpu::runner::BackendChoice::Cpu)]
    pub backend: crate::gpu::runner::BackendChoice,

    /// Print what the model file holds and exit.
    #[arg(long)]
    pub inspect: bool,
}

/// Sampling flags; the defaults give greedy decoding.
#[derive(Debug, clap::Args)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 means greedy (default: 0).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,

    /// Keep only the K most likely tokens; 0 disables (default: 0).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,

    /// Keep the smallest set of tokens whose probability reaches P, in (0, 1] (default: 1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,

    /// Drop tokens less likely than P times the most likely one, in [0, 1] (default: 0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,

    /// Penalise tokens seen in the last --repeat-last-n tokens; 1 disables (default: 1).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,

    /// How many recent tokens the repeat penalty looks at (default: 64).
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,

    /// Random seed for sampling (default: from the clock; the report says which was used).
    #[arg(long)]
    pub seed: Option<u64>,
}
