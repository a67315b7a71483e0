//! One invocation of the program: load the model, compile, generate, report.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};

use crate::backend::{self, EngineOptions, Mode, Runner};
use crate::cli::Args;
use crate::generate::{generate, GenerateOptions, Generation, StopConditions, StopReason};
use crate::gguf::GgufFile;
use crate::inspect;
use crate::interactive;
use crate::load::context;
use crate::load::resolve::{self, Need};
use crate::model::config::Qwen3Config;
use crate::prompt::{self, Chat};
use crate::report::plot;
use crate::report::{RepeatReport, RunInfo, RunReport};
use crate::sampler::{Sampler, SamplerConfig};
use crate::text::display::TextOut;
use crate::text::tokenizer::{Specials, Tokenizer};

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

/// The model with its tokenizer, chat template and context size, ready to compile.
pub struct Loaded {
    pub file: GgufFile,
    pub config: Qwen3Config,
    pub tokenizer: Option<Tokenizer>,
    /// Set when the prompt goes through the chat template.
    pub chat: Option<Chat>,
    pub max_context: usize,
    pub load_ms: f64,
}

/// A prompt's ids and the text they came from (empty for `--token-ids`).
struct Prompt {
    ids: Vec<u32>,
    text: String,
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
    if let Some(path) = &args.plot {
        check_writable_folder(path)?;
    }
    let test_time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    // From here on a Ctrl-C stops the run at its next generation step, output and report kept.
    let interrupt = install_interrupt_handler()?;
    let loaded = load(args)?;
    if args.interactive {
        let first = prompt::read_text(args)?;
        let mut engine = compile(args, &loaded)?;
        let sampler = Sampler::new(sampler_config)?;
        let setup = interactive::Setup {
            args,
            loaded: &loaded,
            stop: stop_conditions(args, &loaded),
        };
        return interactive::run(&setup, engine.as_mut(), sampler, first, &interrupt);
    }
    let prompt = build_prompt(args, &loaded)?;
    check_fits(prompt.ids.len(), loaded.max_context)?;
    let mut engine = compile(args, &loaded)?;
    let stop = stop_conditions(args, &loaded);
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
        let generation = generate_once(
            args,
            &loaded,
            &prompt,
            engine.as_mut(),
            &mut sampler,
            &options,
            show,
        )?;
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
    finish(args, reports, loaded.max_context)
}

/// Reads the model, finds its tokenizer (and chat template) and chooses the context size.
fn load(args: &Args) -> Result<Loaded> {
    let started = Instant::now();
    let file = GgufFile::open(&args.model)?;
    let config = Qwen3Config::from_gguf(&file)?;
    let need = if args.token_ids.is_some() {
        Need::Optional
    } else {
        Need::Required
    };
    let tokenizer = resolve::tokenizer(args.tokenizer.as_deref(), &file, &config, need)?;
    let chat = match (&tokenizer, args.chat_mode()) {
        (Some(t), true) => Some(Chat::new(resolve::chat_template(&file, t)?, args)),
        _ => None,
    };
    let requested = args.ctx_size.map(|n| n as usize);
    let choice = context::choose(
        requested,
        &config,
        file.file_size(),
        context::available_memory(),
    )?;
    if let Some(notice) = &choice.notice {
        eprintln!("{notice}");
    }
    Ok(Loaded {
        file,
        config,
        tokenizer,
        chat,
        max_context: choice.size,
        load_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

fn build_prompt(args: &Args, loaded: &Loaded) -> Result<Prompt> {
    if let Some(ids) = &args.token_ids {
        if ids.is_empty() {
            bail!("--token-ids is empty: give at least one id");
        }
        let vocab = loaded.config.vocab;
        if let Some(id) = ids.iter().find(|&&id| id as usize >= vocab) {
            bail!(
                "--token-ids: id {id} is outside the model's vocabulary of {vocab} tokens (ids 0 \
                 to {})",
                vocab - 1
            );
        }
        return Ok(Prompt {
            ids: ids.clone(),
            text: String::new(),
        });
    }
    let mut text = prompt::required_text(args)?;
    let Some(tokenizer) = &loaded.tokenizer else {
        bail!("no tokenizer to encode the prompt: give --tokenizer FILE or --token-ids");
    };
    if let Some(chat) = &loaded.chat {
        text = chat.render(&[crate::text::chat::Message::user(text)])?;
    }
    let ids = prompt::encode(tokenizer, &text)?;
    Ok(Prompt { ids, text })
}

/// A prompt must fit in the context before anything is compiled.
fn check_fits(n_prompt: usize, max_context: usize) -> Result<()> {
    if n_prompt > max_context {
        bail!(
            "the prompt has {n_prompt} tokens but the context holds {max_context}: shorten it or \
             raise --ctx-size"
        );
    }
    Ok(())
}

fn compile(args: &Args, loaded: &Loaded) -> Result<Box<dyn Runner>> {
    let options = EngineOptions {
        mode: mode(args),
        max_context: loaded.max_context,
        profile: args.kernel_timing,
    };
    let (file, config) = (&loaded.file, &loaded.config);
    Ok(backend::open(args.backend, file, config, options)?)
}

/// End-of-sequence ids come from the tokenizer; without one (`--token-ids`), from the metadata.
pub fn stop_conditions(args: &Args, loaded: &Loaded) -> StopConditions {
    let eos_ids = match &loaded.tokenizer {
        Some(t) => t.eos_ids().to_vec(),
        None => loaded
            .file
            .get_u32("tokenizer.ggml.eos_token_id")
            .map_or_else(|_| vec![], |id| vec![id]),
    };
    StopConditions {
        eos_ids,
        ignore_eos: args.ignore_eos,
        stop_strings: args.stop.clone(),
    }
}

/// One generation, its text streamed to stdout (to stderr with `--json`) when `show` is set.
fn generate_once(
    args: &Args,
    loaded: &Loaded,
    prompt: &Prompt,
    engine: &mut dyn Runner,
    sampler: &mut Sampler,
    options: &GenerateOptions<'_>,
    show: bool,
) -> Result<Generation> {
    let mut out = show.then(|| TextOut::new(args.json, args.hide_think, &prompt.text));
    let mut sink = |piece: &str| {
        if let Some(out) = out.as_mut() {
            out.piece(piece);
        }
    };
    let generation = generate(
        engine,
        &prompt.ids,
        sampler,
        options,
        text_decoder(loaded.tokenizer.as_ref()),
        &mut sink,
    )?;
    if let Some(out) = out.as_mut() {
        out.finish();
    }
    Ok(generation)
}

/// Token ids to streamed text: the tokenizer's (special tokens left out), or the ids themselves
/// when there is no tokenizer (`--token-ids`).
pub fn text_decoder(
    tokenizer: Option<&Tokenizer>,
) -> impl Fn(&[u32]) -> Result<String, String> + '_ {
    move |ids: &[u32]| match tokenizer {
        Some(t) => t.decode(ids, Specials::Skip).map_err(|e| e.to_string()),
        None => Ok(ids.iter().map(|i| format!("{i} ")).collect()),
    }
}

/// The notice for a generation that filled the context.
pub fn context_full_notice(max_context: usize) -> String {
    format!(
        "notice: the context is full ({max_context} positions): generation stopped there; the \
         text above is kept (raise --ctx-size for more)"
    )
}

/// Prints the summary (and the detailed report, plot, JSON) of the first run, with the spread
/// over all runs.
fn finish(args: &Args, reports: Vec<RunReport>, max_context: usize) -> Result<Outcome> {
    let interrupted = reports.iter().any(|r| r.interrupted);
    let context_full = reports.iter().any(|r| r.stop_reason == "context_full");
    let repeat = (reports.len() > 1).then(|| RepeatReport::from_runs(&reports));
    let Some(mut report) = reports.into_iter().next() else {
        bail!("no run completed");
    };
    report.repeat = repeat;
    if interrupted {
        eprintln!("\ninterrupted: the text and timings above cover the completed steps");
    }
    if context_full {
        eprintln!("{}", context_full_notice(max_context));
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

fn write_plot(path: &Path, report: &RunReport) -> Result<()> {
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
    // The error names the file and the cause in its own message; its source would repeat it.
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The plot is written after the run: a folder that does not exist must fail before it.
fn check_writable_folder(file: &Path) -> Result<()> {
    let folder = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        bail!(
            "cannot write the plot {}: the folder {} does not exist; create it or choose another --plot path",
            file.display(),
            folder.display()
        );
    }
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
