//! The generation loop: prompt pass, then one decode step per generated token, each timed.
//!
//! Every kept token is fed back through the model (one decode step each), so the KV cache always
//! holds the whole conversation and `decode` has exactly one sample per generated token. An
//! end-of-sequence token ends generation without being kept or fed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::backend::{EngineError, Logits, Runner};
use crate::node_record::{NodeRecord, StepProfile};
use crate::progress::Phase;
use crate::sampler::Sampler;
use crate::settings::GenerationSettings;
use crate::speculative::stats::SpeculativeStats;
use crate::text::stream::{Decode, TextStreamer};
use crate::timing::Samples;
use crate::trace::{self, Category, StepKind, Tracer};

/// When to stop besides the token budget.
#[derive(Debug, Clone, Default)]
pub struct StopConditions {
    /// End-of-sequence ids (`<|im_end|>`, `<|endoftext|>`, ...).
    pub eos_ids: Vec<u32>,
    /// Keep generating through end-of-sequence tokens.
    pub ignore_eos: bool,
    /// Stop when the text contains one of these; the text ends before it.
    pub stop_strings: Vec<String>,
}

impl StopConditions {
    /// The model's end-of-sequence ids with the run's `--ignore-eos` and `--stop` strings.
    pub fn new(eos_ids: Vec<u32>, settings: &GenerationSettings) -> Self {
        StopConditions {
            eos_ids,
            ignore_eos: settings.ignore_eos,
            stop_strings: settings.stop_strings.clone(),
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The requested number of tokens was generated.
    MaxTokens,
    /// The model produced an end-of-sequence token.
    EndOfSequence { token: u32 },
    /// The text reached a `--stop` string.
    StopString(String),
    /// The KV cache is full; the text so far is kept.
    ContextFull,
    /// The user interrupted (Ctrl-C).
    Interrupted,
    /// Nobody reads the text anymore: its stream is a closed pipe (`qwen ... | head`).
    OutputClosed,
}

/// Why generation ended, without the details: what the JSON report's `stop_reason` says
/// (`max_tokens`, `eos`, `stop_string`, `context_full`, `interrupted`, `output_closed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopKind {
    MaxTokens,
    Eos,
    StopString,
    ContextFull,
    Interrupted,
    OutputClosed,
}

impl StopKind {
    /// The name the JSON report gives it.
    pub fn name(self) -> &'static str {
        match self {
            StopKind::MaxTokens => "max_tokens",
            StopKind::Eos => "eos",
            StopKind::StopString => "stop_string",
            StopKind::ContextFull => "context_full",
            StopKind::Interrupted => "interrupted",
            StopKind::OutputClosed => "output_closed",
        }
    }
}

impl StopReason {
    pub fn kind(&self) -> StopKind {
        match self {
            StopReason::MaxTokens => StopKind::MaxTokens,
            StopReason::EndOfSequence { .. } => StopKind::Eos,
            StopReason::StopString(_) => StopKind::StopString,
            StopReason::ContextFull => StopKind::ContextFull,
            StopReason::Interrupted => StopKind::Interrupted,
            StopReason::OutputClosed => StopKind::OutputClosed,
        }
    }
}

/// The notice for a generation that filled the context.
pub fn context_full_notice(max_context: usize) -> String {
    format!(
        "notice: the context is full ({max_context} positions): generation stopped there; the \
         text above is kept (raise --ctx-size for more)"
    )
}

/// What one generation produced, and how long each part took.
#[derive(Debug, Clone)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    pub generated_ids: Vec<u32>,
    pub text: String,
    /// The prompt pass, one sample.
    pub prefill: Samples,
    /// One sample per decode step (per generated token).
    pub decode: Samples,
    /// From the start of the prompt pass to the first token sampled (the prompt pass plus the
    /// sampling of its logits); `None` when no token was sampled (interrupted before).
    pub first_token: Option<Duration>,
    pub stop: StopReason,
    /// Per-node timings of the prompt pass and of the decode steps (these taken step by step),
    /// when profiling.
    pub prefill_profile: Option<Vec<NodeRecord>>,
    pub decode_profile: Option<StepProfile>,
    /// What speculative decoding did (`--mtp`); `decode` then holds each round's time split
    /// evenly over the tokens it kept.
    pub speculative: Option<SpeculativeStats>,
}

#[derive(Debug, Error)]
pub enum GenerateError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("could not decode generated tokens to text: {0}")]
    Detokenize(String),
}

/// Options of one generation.
pub struct GenerateOptions<'a> {
    pub max_new_tokens: usize,
    pub stop: &'a StopConditions,
    /// Set from a Ctrl-C handler; checked before every step.
    pub interrupt: Option<&'a AtomicBool>,
    /// Set when the stream the text goes to was found closed; checked before every step.
    pub output_closed: Option<&'a AtomicBool>,
    /// Where each step goes as a span, when the run is traced.
    pub trace: Option<&'a Tracer>,
}

/// Runs the prompt through `engine` (continuing after what its cache holds), then samples up to
/// `max_new_tokens` tokens, sending text to `sink` as soon as it is complete.
pub fn generate<D>(
    engine: &mut dyn Runner,
    prompt: &[u32],
    sampler: &mut Sampler,
    options: &GenerateOptions<'_>,
    decoder: D,
    sink: &mut dyn FnMut(&str),
) -> Result<Generation, GenerateError>
where
    D: Decode,
    D::Error: std::fmt::Display,
{
    let mut prefill = Samples::new();
    let interrupted = || options.interrupt.is_some_and(|f| f.load(Ordering::Relaxed));
    // Shown on a terminal only, and set up outside the pass's time.
    let shown = Phase::spinner(format!("prompt pass ({} tokens)", prompt.len()));
    let start = Instant::now();
    let position = engine.position();
    // A Ctrl-C before or during the prompt pass (between two of its ops): nothing generated.
    let first = match interrupted() {
        true => Err(EngineError::Interrupted),
        false => engine.forward(prompt, Logits::Last),
    };
    let took = start.elapsed();
    drop(shown);
    let mut logits = match first {
        Ok(logits) => logits,
        Err(EngineError::Interrupted) => {
            let _ = engine.take_profile();
            return Ok(Generation::interrupted_before_any_token(prompt));
        }
        Err(e) => return Err(e.into()),
    };
    prefill.record(took);
    if let Some(t) = options.trace {
        t.span(
            "prompt",
            Category::Step(StepKind::Prompt),
            start,
            took,
            step_args(prompt.len(), position),
        );
    }
    let prefill_profile = engine.take_profile();
    let mut first_token = None;

    let mut out = Output::new(TextStreamer::new(decoder), &options.stop.stop_strings);
    let mut history: Vec<u32> = prompt.to_vec();
    let mut generated = Vec::new();
    // Never more steps than the context has room for, however large the request (`-t 4000000000`).
    let room = engine.max_context().saturating_sub(engine.position());
    let mut decode = Samples::with_capacity(options.max_new_tokens.min(room));
    let mut decode_profile: Option<StepProfile> = None;
    let stop = loop {
        if generated.len() >= options.max_new_tokens {
            break StopReason::MaxTokens;
        }
        if interrupted() {
            break StopReason::Interrupted;
        }
        if options
            .output_closed
            .is_some_and(|f| f.load(Ordering::Relaxed))
        {
            break StopReason::OutputClosed;
        }
        let token = sampler.sample(&logits, &history);
        if first_token.is_none() {
            first_token = Some(start.elapsed());
        }
        if options.stop.eos_ids.contains(&token) && !options.stop.ignore_eos {
            break StopReason::EndOfSequence { token };
        }
        generated.push(token);
        history.push(token);
        if let Some(found) = out.push(token, sink)? {
            break StopReason::StopString(found);
        }
        if engine.position() >= engine.max_context() {
            break StopReason::ContextFull;
        }
        let step_start = Instant::now();
        let position = engine.position();
        logits = match engine.forward(&[token], Logits::Last) {
            Ok(logits) => logits,
            // Stopped between two ops: the token is shown but was not run, as at a stop string.
            Err(EngineError::Interrupted) => break StopReason::Interrupted,
            Err(e) => return Err(e.into()),
        };
        let took = step_start.elapsed();
        decode.record(took);
        // Taken after the clock stopped: the copy is not in the step's time.
        if let Some(step) = engine.take_profile() {
            decode_profile
                .get_or_insert_with(StepProfile::default)
                .add_step(step);
        }
        if let Some(t) = options.trace {
            let name = format!("decode {}", decode.len());
            t.span(
                name,
                Category::Step(StepKind::Decode),
                step_start,
                took,
                step_args(1, position),
            );
        }
    };
    out.finish(sink)?;
    if let Some(rest) = engine.take_profile() {
        decode_profile
            .get_or_insert_with(StepProfile::default)
            .add_rest(rest);
    }
    Ok(Generation {
        prompt_ids: prompt.to_vec(),
        generated_ids: generated,
        text: out.text,
        prefill,
        decode,
        first_token,
        stop,
        prefill_profile,
        decode_profile,
        speculative: None,
    })
}

impl Generation {
    /// A generation that a Ctrl-C stopped before its first token.
    pub fn interrupted_before_any_token(prompt: &[u32]) -> Generation {
        Generation {
            prompt_ids: prompt.to_vec(),
            generated_ids: vec![],
            text: String::new(),
            prefill: Samples::new(),
            decode: Samples::new(),
            first_token: None,
            stop: StopReason::Interrupted,
            prefill_profile: None,
            decode_profile: None,
            speculative: None,
        }
    }
}

/// A step span's arguments: the tokens it ran and the position of the first.
pub fn step_args(n_tokens: usize, position: usize) -> serde_json::Map<String, serde_json::Value> {
    trace::args([("n_tokens", n_tokens.into()), ("position", position.into())])
}

/// Streamed text with `--stop` strings: text that might begin a stop string is held back until it
/// is known not to, so nothing after a stop string is ever shown.
pub struct Output<'s, D> {
    streamer: TextStreamer<D>,
    stops: &'s [String],
    pending: String,
    /// The text emitted so far.
    pub text: String,
    stopped: bool,
}

impl<'s, D> Output<'s, D>
where
    D: Decode,
    D::Error: std::fmt::Display,
{
    pub fn new(streamer: TextStreamer<D>, stops: &'s [String]) -> Self {
        Self {
            streamer,
            stops,
            pending: String::new(),
            text: String::new(),
            stopped: false,
        }
    }

    /// Adds a token; returns the stop string if the text now contains one.
    pub fn push(
        &mut self,
        token: u32,
        sink: &mut dyn FnMut(&str),
    ) -> Result<Option<String>, GenerateError> {
        let piece = self
            .streamer
            .push(token)
            .map_err(|e| GenerateError::Detokenize(e.to_string()))?;
        if let Some(piece) = piece {
            self.pending.push_str(&piece);
        }
        Ok(self.release(sink))
    }

    /// Emits what is left (the end of a generation).
    pub fn finish(&mut self, sink: &mut dyn FnMut(&str)) -> Result<(), GenerateError> {
        if self.stopped {
            return Ok(());
        }
        let tail = self
            .streamer
            .finish()
            .map_err(|e| GenerateError::Detokenize(e.to_string()))?;
        if let Some(tail) = tail {
            self.pending.push_str(&tail);
        }
        if self.release(sink).is_none() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(&rest, sink);
        }
        Ok(())
    }

    /// Emits what can no longer be part of a stop string; stops at a complete one.
    fn release(&mut self, sink: &mut dyn FnMut(&str)) -> Option<String> {
        if let Some((at, stop)) = self.first_stop() {
            let before = self.pending[..at].to_string();
            self.emit(&before, sink);
            self.pending.clear();
            self.stopped = true;
            return Some(stop);
        }
        let keep_from = self.held_back_from();
        let ready: String = self.pending.drain(..keep_from).collect();
        self.emit(&ready, sink);
        None
    }

    fn first_stop(&self) -> Option<(usize, String)> {
        self.stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.pending.find(s.as_str()).map(|at| (at, s.clone())))
            .min_by_key(|(at, _)| *at)
    }

    /// Where the longest suffix of `pending` that begins some stop string starts.
    fn held_back_from(&self) -> usize {
        let p = &self.pending;
        (0..p.len())
            .filter(|&i| p.is_char_boundary(i))
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&p[i..])))
            .unwrap_or(p.len())
    }

    fn emit(&mut self, piece: &str, sink: &mut dyn FnMut(&str)) {
        if !piece.is_empty() {
            self.text.push_str(piece);
            sink(piece);
        }
    }
}
