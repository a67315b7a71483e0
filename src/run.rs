//! One invocation of the program: the command the settings name, each step of it in order
//! (load, compile, generate or sweep, measure, report).

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
use crate::measure;
use crate::progress::{self, Phase};
use crate::prompt::{self, Prompt};
use crate::report::output::{self, Traced};
use crate::report::{self, RunInfo, RunReport};
use crate::sampler::Sampler;
use crate::settings::{Command, Settings, SweepSettings};
use crate::speculative::{self, Drafter, SpeculativeOptions};
use crate::sweep;
use crate::text::console;
use crate::text::display::TextOut;
use crate::text::tokenizer::text_decoder;
use crate::trace::{self, Category, Tracer};

pub fn run(settings: &Settings) -> Result<Outcome> {
    if settings.command == Command::Inspect {
        let model = load::resolve::model(&settings.model.path)?;
        inspect::run(model, settings.report.json, &mut std::io::stdout().lock())?;
        return Ok(Outcome::Done);
    }
    settings.generation.sampling.validate()?;
    output::check_paths(&settings.report)?;
    // Progress on a terminal's stderr; never beside a JSON report.
    progress::allow(!settings.report.json);
    // The trace's clock starts before anything is loaded.
    let tracer = settings.report.trace.as_ref().map(|_| Tracer::new());
    let run = Run {
        settings,
        tracer: tracer.as_ref(),
        test_time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        // From here on a Ctrl-C stops the run at its next op or step, output and report kept.
        interrupt: interrupt::install()?,
    };
    let loaded = run.phase("load", || {
        let _shown = Phase::spinner("loading the model");
        load::load(settings)
    })?;
    if interrupt::requested() {
        return Ok(stopped_before_generation("loading the model"));
    }
    match settings.command {
        Command::Interactive => run.interactive(&loaded),
        Command::Sweep(sweep) => run.sweep(&loaded, sweep),
        Command::Generate | Command::Inspect => run.generate(&loaded),
    }
}

/// What every command of one invocation shares.
struct Run<'a> {
    settings: &'a Settings,
    tracer: Option<&'a Arc<Tracer>>,
    /// When the run started, RFC 3339.
    test_time: String,
    interrupt: &'static AtomicBool,
}

impl Run<'_> {
    /// `-i`: turns over one engine.
    fn interactive(&self, loaded: &Loaded) -> Result<Outcome> {
        let first = prompt::read_text(&self.settings.prompt, true)?;
        let mut engine = self.compile(loaded, false)?;
        interactive::run(
            self.settings,
            loaded,
            engine.as_mut(),
            first,
            self.interrupt,
        )
    }

    /// One prompt, generated `--repeat` times, then measured and reported.
    fn generate(&self, loaded: &Loaded) -> Result<Outcome> {
        let settings = self.settings;
        let built = self.phase("encode prompt", || {
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
        let (mut engine, mut drafter) = match settings.generation.mtp {
            Some(_) => {
                let (engine, drafter) = self.phase("compile", || self.compile_drafting(loaded))?;
                (engine, Some(drafter))
            }
            None => (self.phase("compile", || self.compile(loaded, true))?, None),
        };
        let job = Job {
            settings,
            loaded,
            prompt: &prompt,
            stop: StopConditions::new(loaded.eos_ids(), &settings.generation),
            interrupt: self.interrupt,
            trace: self.tracer.map(|t| t.as_ref()),
        };
        let mut generations = Vec::new();
        let repeat = settings.report.repeat;
        // The first run streams its text; the others show how many have run.
        let mut runs = None;
        for run in 0..repeat {
            if run == 1 {
                runs = Some(Phase::steps("--repeat", repeat as u64, "runs"));
            }
            if let Some(runs) = &runs {
                runs.set(run as u64);
            }
            let generation = job.generate(engine.as_mut(), drafter.as_mut(), run == 0)?;
            let stopped = generation.stop == StopReason::Interrupted;
            generations.push(generation);
            if stopped {
                break;
            }
        }
        drop(runs);
        let mut reports = self.measure_and_report(loaded, engine.as_ref(), &prompt, generations);
        // The roofline's reference: measured (or cached) once the run is done, so that the test
        // never competes with generation; only where there is a CPU kernel profile to compare.
        let profiled = reports.first_mut().filter(|r| r.kernels.is_some());
        if let Some(first) = profiled.filter(|_| !interrupt::requested()) {
            let threads = settings.model.mode.threads();
            let cache = settings.model.plans.cache_dir.as_deref();
            let bandwidth = self.phase("read bandwidth test", || {
                let _shown = Phase::spinner("read bandwidth test");
                measure::read_bandwidth(threads, cache)
            });
            first.add_bandwidth(bandwidth);
        }
        let interrupted =
            output::print(reports, &settings.report, loaded.max_context, self.traced())?;
        Ok(outcome(interrupted))
    }

    /// The report of each generation, with what the run measures beside them.
    fn measure_and_report(
        &self,
        loaded: &Loaded,
        engine: &dyn Runner,
        prompt: &Prompt,
        generations: Vec<Generation>,
    ) -> Vec<RunReport> {
        let profiler_ns_per_call = self
            .settings
            .report
            .kernel_timing
            .then(measure::profiler_ns_per_call);
        let machine = measure::machine();
        generations
            .iter()
            .map(|generation| {
                let info = RunInfo {
                    prompt_encode_ms: prompt.encode_time.as_secs_f64() * 1e3,
                    profiler_ns_per_call,
                    ..self.info(loaded, engine, machine.clone())
                };
                RunReport::new(info, generation)
            })
            .collect()
    }

    /// `--sweep`: prompt and decode speed at each depth, printed row by row, then reported.
    fn sweep(&self, loaded: &Loaded, sweep: SweepSettings) -> Result<Outcome> {
        let tg = self.settings.generation.max_new_tokens;
        let plan = sweep::Plan::new(&sweep, tg, loaded.max_context)?;
        let mut engine = self.phase("compile", || self.compile(loaded, true))?;
        let engine = engine.as_mut();
        if !engine.can_cut_cache() {
            return Err(sweep::SweepError::CannotCut {
                backend: engine.features().backend.to_string(),
            }
            .into());
        }
        let print = |line: &str| match self.settings.report.json {
            true => crate::errln!("{line}"),
            false => crate::outln!("{line}"),
        };
        if plan.left_over > 0 {
            crate::errln!(
                "notice: --sweep {} is not a multiple of --ubatch {}: the sweep ends at {} positions",
                sweep.max,
                plan.ubatch,
                plan.depths.len() * plan.ubatch
            );
        }
        print(&report::sweep::header(&plan, &engine.features()));
        let options = sweep::SweepOptions {
            vocab: loaded.config.vocab,
            seed: self.settings.generation.sampling.seed.unwrap_or(SWEEP_SEED),
            interrupt: Some(self.interrupt),
            trace: self.tracer.map(|t| t.as_ref()),
        };
        let depths = Phase::steps("--sweep", plan.depths.len() as u64, "depths");
        let mut done = 0;
        let result = sweep::run(engine, &plan, &options, &mut |row| {
            print(&report::sweep::row_line(&row.into()));
            done += 1;
            depths.set(done);
        })?;
        drop(depths);
        let info = self.info(loaded, engine, measure::machine());
        let report = report::sweep::SweepReport::new(info, &plan, sweep.max, &result);
        output::print_sweep(report, &self.settings.report, self.traced())?;
        Ok(outcome(result.interrupted))
    }

    /// The run's identity and set-up times (no prompt, no profiler figures).
    fn info(&self, loaded: &Loaded, engine: &dyn Runner, machine: report::Machine) -> RunInfo {
        RunInfo {
            model_filename: self.settings.model.path.display().to_string(),
            model_digest: loaded.model_digest.clone(),
            model_size: loaded.file.file_size(),
            model_n_params: loaded.file.n_elements(),
            test_time: self.test_time.clone(),
            load_ms: loaded.load_ms,
            compile_ms: engine.compile_time().as_secs_f64() * 1e3,
            prompt_encode_ms: 0.0,
            features: engine.features(),
            machine,
            profiler_ns_per_call: None,
        }
    }

    /// The trace and what recording it cost, measured now (after the run, so that the
    /// measurement never competes with it).
    fn traced(&self) -> Option<Traced<'_>> {
        let tracer = self.tracer?;
        let threads = self.settings.model.mode.threads();
        Some(Traced {
            tracer,
            costs: measure::trace_costs(tracer, threads),
        })
    }

    /// Builds and compiles the engine the settings choose, traced when `traced` and the run
    /// has a tracer.
    fn compile(&self, loaded: &Loaded, traced: bool) -> Result<Box<dyn Runner>> {
        let _shown = Phase::spinner("compiling");
        let model = &self.settings.model;
        let options = self.engine_options(loaded, traced);
        Ok(backend::open(
            model.backend,
            &loaded.file,
            &loaded.config,
            options,
        )?)
    }

    fn engine_options(&self, loaded: &Loaded, traced: bool) -> EngineOptions {
        let model = &self.settings.model;
        EngineOptions {
            mode: model.mode,
            max_context: loaded.max_context,
            profile: self.settings.report.kernel_timing,
            trace: self.tracer.filter(|_| traced).cloned(),
            plans: model.plans.clone(),
        }
    }

    /// `--mtp`: the engine keeping its hidden rows, and the drafter over the file's block.
    fn compile_drafting(&self, loaded: &Loaded) -> Result<(Box<dyn Runner>, Drafter)> {
        let model = &self.settings.model;
        let options = self.engine_options(loaded, true);
        Ok(speculative::setup::open(
            model.backend,
            &loaded.file,
            &loaded.config,
            options,
        )?)
    }

    /// Runs `f` as a phase of the run: a span of the trace, when there is one.
    fn phase<T>(&self, name: &str, f: impl FnOnce() -> T) -> T {
        let Some(tracer) = self.tracer else {
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
}

fn outcome(interrupted: bool) -> Outcome {
    if interrupted {
        Outcome::Interrupted
    } else {
        Outcome::Done
    }
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
    /// `--json`) when `show` is set; speculative when there is a drafter (`--mtp`).
    fn generate(
        &self,
        engine: &mut dyn Runner,
        drafter: Option<&mut Drafter>,
        show: bool,
    ) -> Result<Generation> {
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
        let decoder = text_decoder(self.loaded.tokenizer.as_ref());
        let generation = match (drafter, self.settings.generation.mtp) {
            (Some(drafter), Some(draft_max)) => speculative::generate(
                engine,
                drafter,
                &prompt.ids,
                &mut sampler,
                &options,
                SpeculativeOptions { draft_max },
                decoder,
                &mut sink,
            )?,
            _ => generate(
                engine,
                &prompt.ids,
                &mut sampler,
                &options,
                decoder,
                &mut sink,
            )?,
        };
        if let Some(out) = out.as_mut() {
            out.finish();
        }
        Ok(generation)
    }
}
