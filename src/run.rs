//! One invocation of the program: load the model, compile, generate, report.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};

use crate::cli::Args;
use crate::config::Qwen3Config;
use crate::engine::{EngineOptions, Mode};
use crate::generate::{generate, GenerateOptions, Generation, StopConditions, StopReason};
use crate::gguf::GgufFile;
use crate::inspect;
use crate::plot;
use crate::report::{RepeatReport, RunInfo, RunReport};
use crate::sampler::{Sampler, SamplerConfig};

/// How a run ended, for the exit code.
pub enum Outcome {
    Done,
    /// Ctrl-C: the output so far and the report were still printed.
    Interrupted,
}

impl Outcome {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Outcome::Done => ExitCode::SUCCESS,
            // 128 + SIGINT, as shells report it.
            Outcome::Interrupted => ExitCode::from(130),
        }
    }
}

/// The model, tokenizer and prompt, ready to compile.
struct Loaded {
    file: GgufFile,
    config: Qwen3Config,
    tokenizer: Option<tokenizers::Tokenizer>,
    prompt_ids: Vec<u32>,
    max_context: usize,
    load_ms: f64,
}

fn mode(args: &Args) -> Mode {
    if !args.parallel {
        return Mode::Standard;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Mode::Parallel {
        threads: args.threads.map_or(cores, |t| t as usize),
    }
}

pub fn run(args: &Args) -> Result<Outcome> {
    if args.inspect {
        inspect::run(&args.model, args.json, &mut std::io::stdout().lock())?;
        return Ok(Outcome::Done);
    }
    let sampler_config = sampler_config(args);
    sampler_config.validate()?;
    let test_time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let loaded = load(args)?;
    let options = EngineOptions {
        mode: mode(args),
        max_context: loaded.max_context,
        profile: args.kernel_timing,
    };
    let mut engine = crate::gpu::runner::open(
        args.backend,
        &loaded.file,
        &loaded.config,
        options,
        args.parallel,
    )?;
    let interrupt = install_interrupt_handler()?;
    let stop = StopConditions {
        eos_ids: eos_ids(loaded.tokenizer.as_ref()),
        ignore_eos: args.ignore_eos,
        stop_strings: args.stop.clone(),
    };
    let mut reports = Vec::new();
    for run in 0..args.repeat {
        engine.reset();
        let mut sampler = Sampler::new(sampler_config.clone())?;
        let options = GenerateOptions {
            max_new_tokens: args.gen_tokens as usize,
            stop: &stop,
            interrupt: Some(&interrupt),
        };
        let show = run == 0;
        let generation =
            generate_once(args, &loaded, engine.as_mut(), &mut sampler, &options, show)?;
        let info = RunInfo {
            model_filename: args.model.display().to_string(),
            model_size: loaded.file.file_size(),
            model_n_params: loaded.file.n_elements(),
            test_time: test_time.clone(),
            load_ms: loaded.load_ms,
            compile_ms: engine.compile_time().as_secs_f64() * 1e3,
            features: engine.features(),
        };
        reports.push(RunReport::new(info, &generation));
        if generation.stop == StopReason::Interrupted {
            break;
        }
    }
    finish(args, reports)
}

fn load(args: &Args) -> Result<Loaded> {
    let started = Instant::now();
    let file = GgufFile::open(&args.model)?;
    let config = Qwen3Config::from_gguf(&file)?;
    let tokenizer = load_tokenizer(args)?;
    let prompt_ids = prompt_ids(args, tokenizer.as_ref())?;
    let max_context = args.ctx_size.map_or(config.context_length, |n| n as usize);
    if prompt_ids.len() >= max_context {
        bail!(
            "the prompt has {} tokens but the context holds {max_context}: shorten it or raise --ctx-size",
            prompt_ids.len()
        );
    }
    Ok(Loaded {
        file,
        config,
        tokenizer,
        prompt_ids,
        max_context,
        load_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

/// One generation, its text streamed to stdout (to stderr with `--json`) when `show` is set.
fn generate_once(
    args: &Args,
    loaded: &Loaded,
    engine: &mut dyn crate::gpu::runner::Runner,
    sampler: &mut Sampler,
    options: &GenerateOptions<'_>,
    show: bool,
) -> Result<Generation> {
    let tokenizer = loaded.tokenizer.as_ref();
    let decode_text = |ids: &[u32]| -> Result<String, String> {
        match tokenizer {
            Some(t) => t.decode(ids, false).map_err(|e| e.to_string()),
            // Without a tokenizer (--token-ids), show the ids themselves.
            None => Ok(ids.iter().map(|i| format!("{i} ")).collect()),
        }
    };
    let to_stderr = args.json;
    let mut sink = |piece: &str| {
        if !show {
            return;
        }
        if to_stderr {
            eprint!("{piece}");
        } else {
            print!("{piece}");
            let _ = std::io::stdout().flush();
        }
    };
    let generation = generate(
        engine,
        &loaded.prompt_ids,
        sampler,
        options,
        decode_text,
        &mut sink,
    )?;
    if show {
        if to_stderr {
            eprintln!();
        } else {
            println!();
        }
    }
    Ok(generation)
}

/// Prints the summary (and the detailed report, plot, JSON) of the first run, with the spread
/// over all runs.
fn finish(args: &Args, reports: Vec<RunReport>) -> Result<Outcome> {
    let interrupted = reports.iter().any(|r| r.interrupted);
    let repeat = (reports.len() > 1).then(|| RepeatReport::from_runs(&reports));
    let Some(mut report) = reports.into_iter().next() else {
        bail!("no run completed");
    };
    report.repeat = repeat;
    if interrupted {
        eprintln!("\ninterrupted: the text and timings above cover the completed steps");
    }
    eprintln!("{}", report.summary());
    if args.kernel_timing {
        eprintln!("\n{}", report.detailed());
    }
    if let Some(path) = &args.plot {
        write_plot(path, &report)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if interrupted {
        Outcome::Interrupted
    } else {
        Outcome::Done
    })
}

fn write_plot(path: &std::path::Path, report: &RunReport) -> Result<()> {
    let Some(decode) = &report.decode else {
        bail!("no decode steps to plot: generate at least one token");
    };
    let title = format!(
        "{} decode, {} ({} mode, {} threads)",
        decode.test,
        report
            .model_filename
            .rsplit('/')
            .next()
            .unwrap_or(&report.model_filename),
        report.features.mode,
        report.n_threads
    );
    let note = report.prefill.as_ref().map(|p| {
        format!(
            "prompt {}: {:.1} ms, {:.1} tok/s",
            p.test,
            p.timing.avg_ns / 1e6,
            p.timing.avg_ts
        )
    });
    plot::write_latency_svg_with_note(
        path,
        &decode.timing.samples_ns,
        &decode.timing.stats(),
        &title,
        note.as_deref(),
    )
    .with_context(|| format!("cannot write the plot {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn sampler_config(args: &Args) -> SamplerConfig {
    let s = &args.sampling;
    SamplerConfig {
        temperature: s.temperature,
        top_k: s.top_k,
        top_p: s.top_p,
        min_p: s.min_p,
        repeat_penalty: s.repeat_penalty,
        repeat_last_n: s.repeat_last_n,
        seed: s.seed,
    }
}

/// Ctrl-C sets the flag (generation stops at the next step); a second Ctrl-C exits at once.
fn install_interrupt_handler() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    let installed = ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    // Only one handler per process: a second engine in the same process (tests) reuses nothing.
    if let Err(e) = installed {
        if !matches!(e, ctrlc::Error::MultipleHandlers) {
            return Err(e).context("cannot install the Ctrl-C handler");
        }
    }
    Ok(flag)
}

fn load_tokenizer(args: &Args) -> Result<Option<tokenizers::Tokenizer>> {
    if args.token_ids.is_some() {
        return Ok(None);
    }
    let t = tokenizers::Tokenizer::from_file(&args.tokenizer)
        .map_err(|e| anyhow::anyhow!("cannot load tokenizer {}: {e}", args.tokenizer.display()))?;
    Ok(Some(t))
}

fn prompt_text(args: &Args) -> Result<String> {
    let text = if let Some(path) = &args.prompt_file {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the prompt file {}", path.display()))?
    } else {
        match args.prompt.as_deref() {
            Some("-") => {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("cannot read the prompt from standard input")?;
                s
            }
            Some(p) => p.to_string(),
            None if !std::io::stdin().is_terminal() => {
                bail!("no prompt: give -p TEXT, or -p - to read standard input")
            }
            None => {
                bail!("no prompt: give -p TEXT (or --prompt-file FILE, or -p - for standard input)")
            }
        }
    };
    if text.is_empty() {
        bail!("the prompt is empty: give some text with -p");
    }
    Ok(text)
}

fn prompt_ids(args: &Args, tokenizer: Option<&tokenizers::Tokenizer>) -> Result<Vec<u32>> {
    if let Some(ids) = &args.token_ids {
        if ids.is_empty() {
            bail!("--token-ids is empty: give at least one id");
        }
        return Ok(ids.clone());
    }
    let text = prompt_text(args)?;
    let Some(t) = tokenizer else {
        bail!("no tokenizer to encode the prompt: give --tokenizer FILE or --token-ids");
    };
    let encoding = t
        .encode(text, false)
        .map_err(|e| anyhow::anyhow!("cannot tokenize the prompt: {e}"))?;
    Ok(encoding.get_ids().to_vec())
}

fn eos_ids(tokenizer: Option<&tokenizers::Tokenizer>) -> Vec<u32> {
    let Some(t) = tokenizer else { return vec![] };
    ["<|im_end|>", "<|endoftext|>"]
        .iter()
        .filter_map(|s| t.token_to_id(s))
        .collect()
}
