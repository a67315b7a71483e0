//! One invocation of the program: load the model, compile it, generate (or sweep), report.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Result;

use crate::backend::{self, EngineOptions, Runner};
use crate::generate::{generate, GenerateOptions, Generation, StopConditions, StopReason};
use crate::inspect;
use crate::interactive;
use crate::interrupt::{self, Outcome};
use crate::load::{self, Loaded};
use crate::prompt::{self, Prompt};
use crate::report::{self, output, RunInfo, RunReport};
use crate::sampler::Sampler;
use crate::settings::Settings;
use crate::sweep;
use crate::text::console;
use crate::text::display::TextOut;
use crate::text::tokenizer::text_decoder;
use crate::trace::{self, Category, Tracer};

pub fn run(settings: &Settings) -> Result<Outcome> {
    if settings.inspect {
        let json = settings.report.json;
        let model = load::resolve::model(&settings.model.path)?;
        inspect::run(model, json, &mut std::io::stdout().lock())?;
        return Ok(Outcome::Done);
    }
    settings.generation.sampling.validate()?;
    output::check_paths(&settings.report)?;
    // The trace's clock starts before anything is loaded.
    let tracer = settings.report.trace.as_ref().map(|_| Tracer::new());
    let tracer = tracer.as_ref();
    let test_time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    // From here on a Ctrl-C stops the run at its next op or step, output and report kept.
    let interrupt = interrupt::install()?;
    let loaded = phase(tracer, "load", || load::load(settings))?;
    if interrupt::requested() {
        return Ok(stopped_before_generation("loading the model"));
    }
    if settings.interactive {
        let first = prompt::read_text(&settings.prompt, true)?;
        let mut engine = compile(settings, &loaded, None)?;
        return interactive::run(settings, &loaded, engine.as_mut(), first, interrupt);
    }
    if let Some(sweep) = &settings.sweep {
        let tg = settings.generation.max_new_tokens;
        let plan = sweep::Plan::new(sweep, tg, loaded.max_context)?;
        let mut engine = phase(tracer, "compile", || compile(settings, &loaded, tracer))?;
        let job = SweepJob {
            settings,
            loaded: &loaded,
            plan,
            test_time,
            interrupt,
            trace: tracer.map(|t| t.as_ref()),
        };
        return job.run(engine.as_mut());
    }
    let built = phase(tracer, "encode prompt", || {
        prompt::build(
            &settings.prompt,
            loaded.tokenizer.as_ref(),
            loaded.chat.as_ref(),
            loaded.config.vocab,
        )
    });
    let prompt = match built {
        Err(prompt::PromptError::Interrupted) => {
            return Ok(stopped_before_generation("reading the prompt"));
        }
        prompt => prompt?,
    };
    check_fits(prompt.ids.len(), loaded.max_context)?;
    let mut engine = phase(tracer, "compile", || compile(settings, &loaded, tracer))?;
    let job = Job {
        settings,
        loaded: &loaded,
        prompt: &prompt,
        stop: StopConditions::new(loaded.eos_ids(), &settings.generation),
        interrupt,
        trace: tracer.map(|t| t.as_ref()),
    };
    let mut reports = Vec::new();
    for run in 0..settings.report.repeat {
        let generation = job.generate(engine.as_mut(), run == 0)?;
        let info = RunInfo {
            model_filename: settings.model.path.display().to_string(),
            model_digest: loaded.model_digest.clone(),
            model_size: loaded.file.file_size(),
            model_n_params: loaded.file.n_elements(),
            test_time: test_time.clone(),
            load_ms: loaded.load_ms,
            compile_ms: engine.compile_time().as_secs_f64() * 1e3,
            prompt_encode_ms: prompt.encode_time.as_secs_f64() * 1e3,
            features: engine.features(),
        };
        reports.push(RunReport::new(info, &generation));
        if generation.stop == StopReason::Interrupted {
            break;
        }
    }
    // The roofline's reference: measured (or cached) once the run is done, so that the test
    // never competes with generation; only where there is a CPU kernel profile to compare.
    let profiled = reports.first_mut().filter(|r| r.kernels.is_some());
    if let Some(first) = profiled.filter(|_| !interrupt::requested()) {
        let threads = settings.model.mode.threads();
        let bandwidth = phase(tracer, "read bandwidth test", || {
            crate::cpu::bandwidth::read_bandwidth(threads)
        });
        first.add_bandwidth(bandwidth);
    }
    let interrupted = output::print(
        reports,
        &settings.report,
        loaded.max_context,
        tracer.map(|t| t.as_ref()),
    )?;
    Ok(if interrupted {
        Outcome::Interrupted
    } else {
        Outcome::Done
    })
}

/// A prompt must fit in the context before anything is compiled.
fn check_fits(n_prompt: usize, max_context: usize) -> Result<()> {
    if n_prompt > max_context {
        anyhow::bail!(
            "the prompt has {n_prompt} tokens but the context holds {max_context}: shorten it or \
             raise --ctx-size"
        );
    }
    Ok(())
}

/// The line for a Ctrl-C that came before the model ran (there is nothing to report).
fn stopped_before_generation(phase: &str) -> Outcome {
    crate::errln!("interrupted while {phase}: nothing was run");
    Outcome::Interrupted
}

/// Runs `f` as a phase of the run: a span of the trace, when there is one.
fn phase<T>(tracer: Option<&Arc<Tracer>>, name: &str, f: impl FnOnce() -> T) -> T {
    let Some(tracer) = tracer else {
        return f();
    };
    let start = std::time::Instant::now();
    let out = f();
    tracer.span(
        name,
        Category::Phase,
        start,
        start.elapsed(),
        trace::args([]),
    );
    out
}

/// Builds and compiles the engine the settings choose, traced when `tracer` is given.
fn compile(
    settings: &Settings,
    loaded: &Loaded,
    tracer: Option<&Arc<Tracer>>,
) -> Result<Box<dyn Runner>> {
    let options = EngineOptions {
        mode: settings.model.mode,
        max_context: loaded.max_context,
        profile: settings.report.kernel_timing,
        trace: tracer.cloned(),
    };
    let backend = settings.model.backend;
    Ok(backend::open(
        backend,
        &loaded.file,
        &loaded.config,
        options,
    )?)
}

/// A `--sweep` run, once the engine is compiled.
struct SweepJob<'a> {
    settings: &'a Settings,
    loaded: &'a Loaded,
    plan: sweep::Plan,
    test_time: String,
    interrupt: &'a AtomicBool,
    trace: Option<&'a Tracer>,
}

impl SweepJob<'_> {
    /// Runs the sweep, printing each row as it completes, then the report.
    fn run(self, engine: &mut dyn Runner) -> Result<Outcome> {
        if !engine.can_cut_cache() {
            return Err(sweep::SweepError::CannotCut {
                backend: engine.features().backend.to_string(),
            }
            .into());
        }
        let (settings, plan) = (self.settings, &self.plan);
        let features = engine.features();
        let json = settings.report.json;
        let print = |line: &str| match json {
            true => crate::errln!("{line}"),
            false => crate::outln!("{line}"),
        };
        if plan.left_over > 0 {
            crate::errln!(
                "notice: --sweep {} is not a multiple of --ubatch {}: the sweep ends at {} positions",
                plan.left_over + plan.depths.len() * plan.ubatch,
                plan.ubatch,
                plan.depths.len() * plan.ubatch
            );
        }
        print(&report::sweep::header(plan, &features));
        let options = sweep::SweepOptions {
            vocab: self.loaded.config.vocab,
            seed: settings.generation.sampling.seed.unwrap_or(SWEEP_SEED),
            interrupt: Some(self.interrupt),
            trace: self.trace,
        };
        let result = sweep::run(engine, plan, &options, &mut |row| {
            print(&report::sweep::row_line(&row.into()));
        })?;
        let info = RunInfo {
            model_filename: settings.model.path.display().to_string(),
            model_digest: self.loaded.model_digest.clone(),
            model_size: self.loaded.file.file_size(),
            model_n_params: self.loaded.file.n_elements(),
            test_time: self.test_time,
            load_ms: self.loaded.load_ms,
            compile_ms: engine.compile_time().as_secs_f64() * 1e3,
            prompt_encode_ms: 0.0,
            features,
        };
        let max = settings.sweep.map_or(0, |s| s.max);
        let report = report::sweep::SweepReport::new(info, plan, max, &result);
        output::print_sweep(report, &settings.report, self.trace)?;
        Ok(if result.interrupted {
            Outcome::Interrupted
        } else {
            Outcome::Done
        })
    }
}

/// The sweep's random tokens without `--seed`: the same tokens every run.
const SWEEP_SEED: u64 = 0x5eed_5eed;

/// What every repeat of a non-interactive run generates from.
struct Job<'a> {
    settings: &'a Settings,
    loaded: &'a Loaded,
    prompt: &'a Prompt,
    stop: StopConditions,
    interrupt: &'a AtomicBool,
    trace: Option<&'a Tracer>,
}

impl Job<'_> {
    /// One generation from an empty cache, its text streamed to stdout (to stderr with
    /// `--json`) when `show` is set.
    fn generate(&self, engine: &mut dyn Runner, show: bool) -> Result<Generation> {
        engine.reset();
        let mut sampler = Sampler::new(self.settings.generation.sampling.clone())?;
        let options = GenerateOptions {
            max_new_tokens: self.settings.generation.max_new_tokens,
            stop: &self.stop,
            interrupt: Some(self.interrupt),
            // The text goes to stderr with --json; the report must still reach stdout then.
            output_closed: (!self.settings.report.json).then(console::stdout_closed),
            trace: self.trace,
        };
        let report = &self.settings.report;
        let prompt = self.prompt;
        let mut out = show.then(|| TextOut::new(report.json, report.hide_think, &prompt.text));
        let mut sink = |piece: &str| {
            if let Some(out) = out.as_mut() {
                out.piece(piece);
            }
        };
        let generation = generate(
            engine,
            &prompt.ids,
            &mut sampler,
            &options,
            text_decoder(self.loaded.tokenizer.as_ref()),
            &mut sink,
        )?;
        if let Some(out) = out.as_mut() {
            out.finish();
        }
        Ok(generation)
    }
}
