//! Command-line flags, parsed once into the run's typed [`Settings`], and clap's errors turned
//! into one-line messages.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use crate::cpu::plans::PlanOptions;
use crate::sampler::SamplerConfig;
use crate::settings::{
    BackendChoice, ChatSettings, Command, CompareOutput, CompareSettings, GenerationSettings, Mode,
    ModelSettings, PromptSource, ReportSettings, Settings, SweepSettings,
};

/// `--ubatch` when not given, as llama.cpp's.
const DEFAULT_UBATCH: usize = 512;

/// Run Qwen3 GGUF models on luminal, streaming text and timing every decode step.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    allow_negative_numbers = true,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Args {
    /// A command other than running the model (none: run it, with the flags below).
    #[command(subcommand)]
    pub command: Option<Subcommand>,

    /// Prompt text; `-` reads it from standard input. Special-token text such as
    /// `<|im_start|>` is read as that token.
    #[arg(short, long, value_name = "TEXT")]
    pub prompt: Option<String>,

    /// Number of tokens to generate, at least 1 (default: 256).
    #[arg(short = 't', long, value_name = "N", default_value_t = 256, hide_default_value = true,
          value_parser = at_least_one)]
    pub gen_tokens: u32,

    /// GGUF model file (default: setup/qwen3-4b.gguf).
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = crate::load::resolve::DEFAULT_MODEL,
        hide_default_value = true
    )]
    pub model: PathBuf,

    /// Hugging Face tokenizer.json (default: the tokenizer embedded in the model, else
    /// setup/tokenizer.json if it exists).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,

    /// Prompt as comma-separated token ids instead of text (for models without a tokenizer).
    #[arg(
        long,
        value_name = "IDS",
        value_delimiter = ',',
        conflicts_with = "prompt"
    )]
    pub token_ids: Option<Vec<u32>>,

    /// Wrap the prompt in the model's chat template as a user turn, ending with the assistant's
    /// header (template: the model's tokenizer.chat_template, else the tokenizer_config.json next
    /// to the tokenizer).
    #[arg(long, conflicts_with = "token_ids")]
    pub chat: bool,

    /// System message of the chat (implies --chat; default: none).
    #[arg(long, value_name = "TEXT", conflicts_with = "token_ids")]
    pub system: Option<String>,

    /// Ask the model to answer without reasoning (Qwen3's enable_thinking=false; implies --chat).
    #[arg(long, conflicts_with = "token_ids")]
    pub no_think: bool,

    /// Leave the model's reasoning (<think>...</think>) out of the printed text; the JSON report
    /// keeps it. Without this flag it is shown dimmed on a terminal (plain when NO_COLOR is set;
    /// CLICOLOR_FORCE=1 dims it in a pipe too).
    #[arg(long)]
    pub hide_think: bool,

    /// Chat in the terminal: each line of standard input is a user turn, answered in turn; the KV
    /// cache is kept between turns, so only the new tokens are processed. The end of input
    /// (Ctrl-D) or /exit ends the session. A prompt (-p, --prompt-file) is the first turn.
    #[arg(
        short,
        long,
        conflicts_with_all = ["token_ids", "json", "repeat", "plot", "inspect", "trace"]
    )]
    pub interactive: bool,

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

    /// Positions the KV cache holds, prompt included, at least 1 (default: the model's context
    /// length, lowered with a notice when its KV cache would not fit in available memory).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub ctx_size: Option<u32>,

    /// Read the prompt from this file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["prompt", "token_ids"])]
    pub prompt_file: Option<PathBuf>,

    /// Run the same generation N times and report the run-to-run spread (as llama-bench -r;
    /// default: 1).
    #[arg(long, value_name = "N", default_value_t = 1, hide_default_value = true,
          value_parser = at_least_one)]
    pub repeat: u32,

    /// Write a chart of per-token decode time (with mean and ±1 sd band) to this SVG file; with
    /// --sweep, a chart of prompt and decode speed against KV-cache depth.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// Write the run's timeline as Chrome trace-event JSON (open it in Perfetto or
    /// chrome://tracing): load, compile and kernel searches, every step, every op call, and each
    /// --parallel pool thread's share of each op.
    #[arg(long, value_name = "FILE.json")]
    pub trace: Option<PathBuf>,

    /// Prompt and decode speed against context depth (as ik_llama.cpp's sweep-bench): fill the
    /// KV cache in chunks of --ubatch tokens up to MAX positions; at each depth 0, N, 2N, ...
    /// time -t decode steps and the next chunk's prompt pass. Random tokens; no prompt needed.
    #[arg(
        long,
        value_name = "MAX",
        value_parser = at_least_one,
        conflicts_with_all = ["prompt", "prompt_file", "token_ids", "chat", "system", "no_think",
                              "interactive", "repeat", "kernel_timing", "stop", "ignore_eos"]
    )]
    pub sweep: Option<u32>,

    /// Tokens per prompt chunk of --sweep, at least 1 (default: 512).
    #[arg(long, value_name = "N", requires = "sweep", value_parser = at_least_one)]
    pub ubatch: Option<u32>,

    #[command(flatten)]
    pub sampling: SamplingArgs,

    /// Stop when the generated text contains this string (repeatable; default: none). The text
    /// ends before it.
    #[arg(long = "stop", value_name = "STRING")]
    pub stop: Vec<String>,

    /// Where the model runs: cpu, cuda (built with --features cuda) or metal (--features metal).
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    pub backend: BackendChoice,

    /// Print what the model file holds and exit.
    #[arg(long)]
    pub inspect: bool,

    /// Speculative decoding with the file's multi-token-prediction block (Qwen3.5/3.6): draft up
    /// to N tokens per step and verify them in one pass of the model, at least 1 (default when
    /// given without N: 3, as llama.cpp's; default: off). Greedy output is the same as without.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "3",
          value_parser = at_least_one,
          conflicts_with_all = ["interactive", "sweep", "inspect"])]
    pub mtp: Option<u32>,
}

impl Args {
    /// Whether the prompt goes through the chat template.
    pub fn chat_mode(&self) -> bool {
        self.chat || self.interactive || self.system.is_some() || self.no_think
    }

    /// The typed settings of the run these flags describe.
    pub fn settings(self) -> Settings {
        let chat = self.chat_mode().then(|| ChatSettings {
            system: self.system.clone(),
            enable_thinking: self.no_think.then_some(false),
        });
        let mode = match (self.parallel, self.threads) {
            (false, _) => Mode::Standard,
            (true, Some(t)) => Mode::Parallel {
                threads: t as usize,
            },
            (true, None) => Mode::Parallel {
                threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
        };
        let prompt = match (self.prompt, self.prompt_file, self.token_ids) {
            // clap lets at most one of them through.
            (_, Some(file), _) => PromptSource::File(file),
            (_, _, Some(ids)) => PromptSource::TokenIds(ids),
            (Some(p), ..) if p == "-" => PromptSource::Stdin,
            (Some(p), ..) => PromptSource::Text(p),
            (None, None, None) => PromptSource::None,
        };
        let command = match (self.inspect, self.interactive, self.sweep) {
            (true, ..) => Command::Inspect,
            (_, true, _) => Command::Interactive,
            (_, _, Some(max)) => Command::Sweep(SweepSettings {
                max: max as usize,
                ubatch: self.ubatch.map_or(DEFAULT_UBATCH, |n| n as usize),
            }),
            _ => Command::Generate,
        };
        Settings {
            command,
            model: ModelSettings {
                path: self.model,
                tokenizer: self.tokenizer,
                backend: self.backend,
                mode,
                ctx_size: self.ctx_size.map(|n| n as usize),
                plans: plan_options(|key| std::env::var_os(key)),
            },
            prompt,
            chat,
            generation: GenerationSettings {
                max_new_tokens: self.gen_tokens as usize,
                sampling: self.sampling.config(),
                ignore_eos: self.ignore_eos,
                stop_strings: self.stop,
                mtp: self.mtp.map(|n| n as usize),
            },
            report: ReportSettings {
                json: self.json,
                kernel_timing: self.kernel_timing,
                repeat: self.repeat,
                plot: self.plot,
                hide_think: self.hide_think,
                trace: self.trace,
            },
        }
    }
}

/// The kernel search as the environment asks: `QWEN_PLAN_SEARCH=off` keeps every matmul on its
/// default plan, `QWEN_PLAN_CACHE=off` caches nothing; the cache folder is
/// `$XDG_CACHE_HOME/qwen-luminal`, else `$HOME/.cache/qwen-luminal`. A relative or empty
/// variable counts as unset, so the cache never lands in whatever folder the program was
/// started from; with neither, nothing is cached.
pub fn plan_options(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> PlanOptions {
    let off = |key: &str| var(key).is_some_and(|v| v == "off");
    let absolute = |key: &str| var(key).map(PathBuf::from).filter(|p| p.is_absolute());
    let base = absolute("XDG_CACHE_HOME").or_else(|| Some(absolute("HOME")?.join(".cache")));
    PlanOptions {
        search: !off("QWEN_PLAN_SEARCH"),
        cache_dir: base
            .filter(|_| !off("QWEN_PLAN_CACHE"))
            .map(|b| b.join("qwen-luminal")),
    }
}

/// What `qwen` can do besides running the model.
#[derive(Debug, clap::Subcommand)]
pub enum Subcommand {
    /// Is B faster than A? Compare runs' JSON reports, with statistics.
    ///
    /// Reads reports of qwen --json (with or without --repeat, --kernel-timing, --sweep) and
    /// llama-bench -o json. Per phase: the ratio B/A of median tok/s with a 95% bootstrap
    /// interval, a rank test and a verdict (faster, slower, or no difference the data can show);
    /// per kernel and per sweep depth alike. See docs/compare.md.
    Compare(CompareArgs),
}

/// `qwen compare` flags.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Reports to compare: the first is the baseline A, each other one is compared with it. A
    /// file may hold several reports of one set-up (a JSON array, or one per line): their
    /// runs are pooled.
    #[arg(value_name = "FILE.json", num_args = 2.., required = true)]
    pub files: Vec<PathBuf>,

    /// Compare even files that differ in model, thread count, prompt length or decode count
    /// (each difference becomes a warning).
    #[arg(long)]
    pub force: bool,

    /// Print one JSON object (phases, kernels, sweep, warnings, method).
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,

    /// Print Markdown tables, for an issue or a pull request.
    #[arg(long)]
    pub markdown: bool,

    /// Draw each file's decode time per token (every step, or every run) side by side.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// Seed of the bootstrap resampling (default: 1); the same seed gives the same intervals.
    #[arg(long, value_name = "N", default_value_t = 1, hide_default_value = true)]
    pub seed: u64,

    /// Bootstrap resamples per interval, at least 1000 (default: 10000).
    #[arg(long, value_name = "N", default_value_t = 10_000, hide_default_value = true,
          value_parser = clap::value_parser!(u32).range(1000..=10_000_000))]
    pub resamples: u32,
}

impl CompareArgs {
    /// The typed settings of the comparison these flags describe.
    pub fn settings(self) -> CompareSettings {
        CompareSettings {
            files: self.files,
            force: self.force,
            output: match (self.json, self.markdown) {
                (true, _) => CompareOutput::Json,
                (_, true) => CompareOutput::Markdown,
                _ => CompareOutput::Text,
            },
            plot: self.plot,
            seed: self.seed,
            resamples: self.resamples as usize,
        }
    }
}

/// Sampling flags; the defaults give greedy decoding.
#[derive(Debug, clap::Args)]
pub struct SamplingArgs {
    /// Sampling temperature, >= 0; 0 means greedy (default: 0).
    #[arg(
        long,
        value_name = "T",
        default_value_t = 0.0,
        hide_default_value = true
    )]
    pub temperature: f32,

    /// Keep only the K most likely tokens; 0 disables (default: 0).
    #[arg(long, value_name = "K", default_value_t = 0, hide_default_value = true)]
    pub top_k: usize,

    /// Keep the smallest set of tokens whose probability reaches P, in (0, 1] (default: 1 = off).
    #[arg(
        long,
        value_name = "P",
        default_value_t = 1.0,
        hide_default_value = true
    )]
    pub top_p: f32,

    /// Drop tokens less likely than P times the most likely one, in [0, 1] (default: 0 = off).
    #[arg(
        long,
        value_name = "P",
        default_value_t = 0.0,
        hide_default_value = true
    )]
    pub min_p: f32,

    /// Penalise tokens seen in the last --repeat-last-n tokens, > 0; 1 disables (default: 1).
    #[arg(
        long,
        value_name = "X",
        default_value_t = 1.0,
        hide_default_value = true
    )]
    pub repeat_penalty: f32,

    /// How many recent tokens the repeat penalty looks at; 0 disables (default: 64).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 64,
        hide_default_value = true
    )]
    pub repeat_last_n: usize,

    /// Random seed for sampling (default: from the clock; the report says which was used).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    fn config(&self) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed: self.seed,
        }
    }
}

/// A count that must be at least 1 (`-t`, `--ctx-size`, `--repeat`).
fn at_least_one(s: &str) -> Result<u32, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n >= 1 => u32::try_from(n).map_err(|_| format!("must be at most {}", u32::MAX)),
        Ok(_) => Err("must be at least 1".to_string()),
        Err(_) => Err("must be a whole number, at least 1".to_string()),
    }
}

/// Prints a command-line error as one line (clap's own format spans several) and returns the
/// exit code; `--help` and `--version` print as usual and succeed.
pub fn report_parse_error(err: clap::Error) -> ExitCode {
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    crate::errln!("error: {} (see qwen --help)", one_line(&err.to_string()));
    ExitCode::from(2)
}

/// clap's message (its first paragraph: some messages list the flags on the lines that follow)
/// and its tips (a similar flag, how to pass a value starting with '-'), on one line.
fn one_line(rendered: &str) -> String {
    let mut paragraphs = rendered.split("\n\n").map(|p| {
        p.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    });
    let first = paragraphs.next().unwrap_or_default();
    let mut out = first.strip_prefix("error: ").unwrap_or(&first).to_string();
    if out.is_empty() {
        out.push_str("invalid command line");
    }
    for tip in paragraphs.filter(|p| p.starts_with("tip:")) {
        out.push_str("; ");
        out.push_str(&tip);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_below_one_are_refused_with_a_reason() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert_eq!(at_least_one("0"), Err("must be at least 1".into()));
        assert_eq!(at_least_one("-2"), Err("must be at least 1".into()));
        assert!(at_least_one("x").is_err());
        assert!(at_least_one("99999999999").is_err());
    }

    #[test]
    fn the_plan_cache_follows_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let home = plan_options(env(&[("HOME", "/nonexistent/h")]));
        assert_eq!(
            home.cache_dir,
            Some(PathBuf::from("/nonexistent/h/.cache/qwen-luminal"))
        );
        assert!(home.search);
        let xdg = plan_options(env(&[
            ("HOME", "/nonexistent/h"),
            ("XDG_CACHE_HOME", "/nonexistent/x"),
        ]));
        assert_eq!(
            xdg.cache_dir,
            Some(PathBuf::from("/nonexistent/x/qwen-luminal"))
        );
        let relative = plan_options(env(&[("HOME", "h"), ("XDG_CACHE_HOME", "")]));
        assert_eq!(relative.cache_dir, None);
        let off = plan_options(env(&[
            ("HOME", "/nonexistent/h"),
            ("QWEN_PLAN_CACHE", "off"),
            ("QWEN_PLAN_SEARCH", "off"),
        ]));
        assert_eq!((off.cache_dir, off.search), (None, false));
    }

    #[test]
    fn clap_errors_fold_into_one_line() {
        let text = "error: unexpected argument '--tmp' found\n\n  tip: a similar argument \
                    exists: '--temperature'\n\nUsage: qwen [OPTIONS]\n\nFor more information, \
                    try '--help'.\n";
        assert_eq!(
            one_line(text),
            "unexpected argument '--tmp' found; tip: a similar argument exists: '--temperature'"
        );
        let text = "error: the following required arguments were not provided:\n  --parallel\n\n\
                    Usage: qwen --parallel --threads <THREADS>\n\nFor more information, try \
                    '--help'.\n";
        assert_eq!(
            one_line(text),
            "the following required arguments were not provided: --parallel"
        );
    }
}
