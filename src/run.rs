//! One invocation of the program: load the model, compile it, generate, report.

use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use anyhow::Result;

use crate::backend::{self, EngineOptions, Runner};
use crate::generate::{generate, GenerateOptions, Generation, StopConditions, StopReason};
use crate::inspect;
use crate::interactive;
use crate::interrupt::{self, Outcome};
use crate::load::{self, Loaded};
use crate::prompt::{self, Prompt};
use crate::report::{output, RunInfo, RunReport};
use crate::sampler::Sampler;
use crate::settings::Settings;
use crate::text::console;
use crate::text::display::TextOut;
use crate::text::tokenizer::text_decoder;

pub fn run(settings: &Settings) -> Result<Outcome> {
    if settings.inspect {
        let json = settings.report.json;
        let model = load::resolve::model(&settings.model.path)?;
        inspect::run(model, json, &mut std::io::stdout().lock())?;
        return Ok(Outcome::Done);
    }
    settings.generation.sampling.validate()?;
    if let Some(path) = &settings.report.plot {
        output::check_plot_path(path)?;
    }
    let test_time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    // From here on a Ctrl-C stops the run at its next op or step, output and report kept.
    let interrupt = interrupt::install()?;
    let loaded = load::load(settings)?;
    if interrupt::requested() {
        return Ok(stopped_before_generation("loading the model"));
    }
    if settings.interactive {
        let first = prompt::read_text(&settings.prompt, true)?;
        let mut engine = compile(settings, &loaded)?;
        return interactive::run(settings, &loaded, engine.as_mut(), first, interrupt);
    }
    let built = prompt::build(
        &settings.prompt,
        loaded.tokenizer.as_ref(),
        loaded.chat.as_ref(),
        loaded.config.vocab,
    );
    let prompt = match built {
        Err(prompt::PromptError::Interrupted) => {
            return Ok(stopped_before_generation("reading the prompt"));
        }
        prompt => prompt?,
    };
    check_fits(prompt.ids.len(), loaded.max_context)?;
    let mut engine = compile(settings, &loaded)?;
    let job = Job {
        settings,
        loaded: &loaded,
        prompt: &prompt,
        stop: StopConditions::new(loaded.eos_ids(), &settings.generation),
        interrupt,
    };
    let mut reports = Vec::new();
    for run in 0..settings.report.repeat {
        let generation = job.generate(engine.as_mut(), run == 0)?;
        let info = RunInfo {
            model_filename: settings.model.path.display().to_string(),
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
    let interrupted = output::print(reports, &settings.report, loaded.max_context)?;
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

/// Builds and compiles the engine the settings choose.
fn compile(settings: &Settings, loaded: &Loaded) -> Result<Box<dyn Runner>> {
    let options = EngineOptions {
        mode: settings.model.mode,
        max_context: loaded.max_context,
        profile: settings.report.kernel_timing,
    };
    let backend = settings.model.backend;
    Ok(backend::open(
        backend,
        &loaded.file,
        &loaded.config,
        options,
    )?)
}

/// What every repeat of a non-interactive run generates from.
struct Job<'a> {
    settings: &'a Settings,
    loaded: &'a Loaded,
    prompt: &'a Prompt,
    stop: StopConditions,
    interrupt: &'a AtomicBool,
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
