//! What a run was asked to do, typed: the command line is parsed once (`cli`) into these settings,
//! and each room below reads only the part it needs; none of them sees the command line itself.

use std::path::PathBuf;

use crate::cpu::plans::PlanOptions;
use crate::sampler::SamplerConfig;

/// Everything one invocation was asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    pub command: Command,
    pub model: ModelSettings,
    pub prompt: PromptSource,
    /// Set when the prompt goes through the chat template.
    pub chat: Option<ChatSettings>,
    pub generation: GenerationSettings,
    pub report: ReportSettings,
}

/// What the invocation does; the flags of the others are refused by the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Generate from one prompt, `--repeat` times, and report.
    Generate,
    /// `--inspect`: print what the model file holds.
    Inspect,
    /// `-i`: a chat in the terminal, one turn per line of standard input.
    Interactive,
    /// `--sweep MAX`: prompt and decode speed against KV-cache depth.
    Sweep(SweepSettings),
}

/// `--sweep MAX --ubatch N`, as ik_llama.cpp's sweep-bench: fill the KV cache in chunks of
/// `ubatch` tokens up to `max`; at each depth `0, N, 2N, ...` time `-t` decode steps (then drop
/// them from the cache) and the next chunk's prompt pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepSettings {
    pub max: usize,
    pub ubatch: usize,
}

/// Which model runs where, and how it is compiled.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    pub path: PathBuf,
    /// `--tokenizer`: must load when given.
    pub tokenizer: Option<PathBuf>,
    pub backend: BackendChoice,
    pub mode: Mode,
    /// `--ctx-size`: KV-cache positions asked for.
    pub ctx_size: Option<usize>,
    /// The kernel search and its cache (`QWEN_PLAN_SEARCH`, `QWEN_PLAN_CACHE`, the cache folder).
    pub plans: PlanOptions,
}

/// Where the prompt comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptSource {
    /// None given (an interactive session starts at its first line).
    None,
    /// `-p TEXT`.
    Text(String),
    /// `-p -`.
    Stdin,
    /// `--prompt-file FILE`.
    File(PathBuf),
    /// `--token-ids 1,2,3`: no tokenizer needed.
    TokenIds(Vec<u32>),
}

/// How the chat template renders a prompt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatSettings {
    /// `--system`.
    pub system: Option<String>,
    /// Qwen3's `enable_thinking`: unset (the template's default, thinking on) unless `--no-think`.
    pub enable_thinking: Option<bool>,
}

/// How many tokens to generate, how to pick them, and when to stop.
#[derive(Debug, Clone)]
pub struct GenerationSettings {
    pub max_new_tokens: usize,
    pub sampling: SamplerConfig,
    /// Keep generating after end-of-sequence tokens.
    pub ignore_eos: bool,
    /// Stop when the text contains one of these; the text ends before it.
    pub stop_strings: Vec<String>,
    /// Speculative decoding with the file's multi-token-prediction block, drafting up to this
    /// many tokens per round (`--mtp N`; `None`: off).
    pub mtp: Option<usize>,
}

/// What is printed and written about the run.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// One JSON object on stdout; the streamed text and the summary go to stderr.
    pub json: bool,
    /// The detailed timing report, with the engine's per-kernel profile.
    pub kernel_timing: bool,
    /// Runs of the same generation, for the run-to-run spread.
    pub repeat: u32,
    /// Where to write the per-token decode chart (SVG).
    pub plot: Option<PathBuf>,
    /// Leave the model's reasoning out of the printed text.
    pub hide_think: bool,
    /// Where to write the Chrome trace-event timeline (`--trace`).
    pub trace: Option<PathBuf>,
}

/// Which compilation path to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// GenericCompiler plus the minimum of our ops: one thread, f32 math on dequantized weights.
    /// On a GPU: f32.
    Standard,
    /// The standard passes plus fused, multi-threaded SIMD kernels on the quantized weights.
    /// On a GPU: f16 (the enhanced path there).
    Parallel { threads: usize },
}

impl Mode {
    pub fn threads(&self) -> usize {
        match self {
            Mode::Standard => 1,
            Mode::Parallel { threads } => *threads,
        }
    }
}

/// Where the model runs (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BackendChoice {
    /// The CPU engine (always built).
    #[default]
    Cpu,
    /// NVIDIA GPU 0 (built with `--features cuda`).
    Cuda,
    /// The Apple GPU (built with `--features metal`, macOS).
    Metal,
    /// The GPU graph on luminal's stock CPU ops: checks the GPU path without a GPU (slow).
    #[value(hide = true)]
    Reference,
}

impl BackendChoice {
    /// The name `--backend` takes.
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Cpu => "cpu",
            BackendChoice::Cuda => "cuda",
            BackendChoice::Metal => "metal",
            BackendChoice::Reference => "reference",
        }
    }

    /// The backends this binary was built with.
    pub fn available() -> Vec<BackendChoice> {
        let mut out = vec![BackendChoice::Cpu, BackendChoice::Reference];
        if cfg!(feature = "cuda") {
            out.push(BackendChoice::Cuda);
        }
        if cfg!(all(feature = "metal", target_os = "macos")) {
            out.push(BackendChoice::Metal);
        }
        out
    }
}

/// `qwen compare`: the files to compare (the first is the baseline) and how to print the
/// comparison.
#[derive(Debug, Clone)]
pub struct CompareSettings {
    pub files: Vec<PathBuf>,
    /// Compare files that differ in model, threads, prompt length or decode count.
    pub force: bool,
    pub output: CompareOutput,
    /// Where to draw the per-step decode distributions (SVG).
    pub plot: Option<PathBuf>,
    /// The bootstrap's seed and resample count.
    pub seed: u64,
    pub resamples: usize,
}

/// The form `qwen compare` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOutput {
    Text,
    Json,
    Markdown,
}
