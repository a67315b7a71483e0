//! The speculative generation loop (`--mtp N`): the prompt pass, then rounds of draft, verify,
//! judge and roll back, each kept token streamed and checked against the stop conditions as
//! plain generation checks them.
//!
//! One round, with `t` the token sampled last (kept, not yet run by the trunk):
//! 1. the block drafts up to `N` tokens after `t` ([`Drafter::draft`]);
//! 2. the trunk runs `[t, drafts...]` in one pass, keeping its recurrent states after each
//!    token, and gives logits and hidden rows for every position;
//! 3. [`judge`] keeps a prefix of the drafts and gives the trunk's own next token;
//! 4. the trunk is cut back to `t` and the accepted drafts (KV cache by position, recurrent
//!    states by restoring the kept step); the block gets the hidden rows of what was kept.
//!
//! `decode` in the [`Generation`] holds one sample per token a round keeps (the round's time
//! split evenly over them), so tokens per second compare with plain decoding; the rounds
//! themselves are in [`SpeculativeStats`].

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::backend::{EngineError, Logits, Runner};
use crate::generate::{step_args, GenerateError, GenerateOptions, Generation, Output, StopReason};
use crate::node_record::StepProfile;
use crate::sampler::Sampler;
use crate::text::stream::{Decode, TextStreamer};
use crate::timing::Samples;
use crate::trace::{Category, StepKind};

use super::accept::{judge, Verdict};
use super::draft::Drafter;
use super::stats::SpeculativeStats;

/// How speculative decoding runs.
#[derive(Debug, Clone, Copy)]
pub struct SpeculativeOptions {
    /// Tokens drafted per round at most (`--mtp N`).
    pub draft_max: usize,
}

/// What one round did.
struct Round {
    drafts: Vec<u32>,
    verdict: Verdict,
    draft_time: Duration,
    verify_time: Duration,
}

/// [`crate::generate::generate`] with speculative decoding: runs `prompt` through `engine`
/// from an empty cache (the engine keeps hidden rows), then samples up to `max_new_tokens`
/// tokens, `drafter` proposing up to `spec.draft_max` per round.
#[allow(clippy::too_many_arguments)]
pub fn generate<D>(
    engine: &mut dyn Runner,
    drafter: &mut Drafter,
    prompt: &[u32],
    sampler: &mut Sampler,
    options: &GenerateOptions<'_>,
    spec: SpeculativeOptions,
    decoder: D,
    sink: &mut dyn FnMut(&str),
) -> Result<Generation, GenerateError>
where
    D: Decode,
    D::Error: std::fmt::Display,
{
    let interrupted = || options.interrupt.is_some_and(|f| f.load(Ordering::Relaxed));
    let closed = || {
        options
            .output_closed
            .is_some_and(|f| f.load(Ordering::Relaxed))
    };
    let start = Instant::now();
    let first = match interrupted() {
        true => Err(EngineError::Interrupted),
        false => engine.forward(prompt, Logits::Last),
    };
    let logits = match first {
        Ok(logits) => logits,
        Err(EngineError::Interrupted) => {
            let _ = engine.take_profile();
            return Ok(Generation::interrupted_before_any_token(prompt));
        }
        Err(e) => return Err(e.into()),
    };
    let mut prefill = Samples::new();
    prefill.record(start.elapsed());
    if let Some(t) = options.trace {
        let took = start.elapsed();
        let args = step_args(prompt.len(), 0);
        t.span(
            "prompt",
            Category::Step(StepKind::Prompt),
            start,
            took,
            args,
        );
    }
    let prefill_profile = engine.take_profile();
    drafter.start(prompt, &hidden_rows(engine));

    let mut out = Output::new(TextStreamer::new(decoder), &options.stop.stop_strings);
    let mut history: Vec<u32> = prompt.to_vec();
    let mut generated = Vec::new();
    let mut decode = Samples::new();
    let mut decode_profile: Option<StepProfile> = None;
    let mut stats = SpeculativeStats::new(spec.draft_max);
    let mut emit = vec![sampler.sample(&logits, &history)];
    let first_token = Some(start.elapsed());
    let stop = 'generation: loop {
        for &token in &emit {
            if generated.len() >= options.max_new_tokens {
                break 'generation StopReason::MaxTokens;
            }
            if interrupted() {
                break 'generation StopReason::Interrupted;
            }
            if closed() {
                break 'generation StopReason::OutputClosed;
            }
            if options.stop.eos_ids.contains(&token) && !options.stop.ignore_eos {
                break 'generation StopReason::EndOfSequence { token };
            }
            generated.push(token);
            history.push(token);
            if let Some(found) = out.push(token, sink)? {
                break 'generation StopReason::StopString(found);
            }
        }
        // The last token wanted is shown, never run (plain generation runs it, to no use).
        if generated.len() >= options.max_new_tokens {
            break StopReason::MaxTokens;
        }
        if engine.position() >= engine.max_context() {
            break StopReason::ContextFull;
        }
        let t = emit[emit.len() - 1];
        // Never draft past the context or past the tokens still wanted (the round keeps its
        // accepted drafts and one token more).
        let room = engine.max_context() - engine.position() - 1;
        let wanted = options.max_new_tokens - generated.len() - 1;
        let n = spec.draft_max.min(room).min(wanted);
        let round_start = Instant::now();
        let position = engine.position();
        let round = match run_round(engine, drafter, sampler, &history, t, n) {
            Ok(round) => round,
            Err(EngineError::Interrupted) => break StopReason::Interrupted,
            Err(e) => return Err(e.into()),
        };
        let took = round_start.elapsed();
        let kept = round.verdict.accepted + 1;
        stats.round(
            round.drafts.len(),
            round.verdict.accepted,
            round.draft_time,
            round.verify_time,
        );
        for _ in 0..kept {
            decode.record(took / kept as u32);
        }
        if let Some(step) = engine.take_profile() {
            decode_profile
                .get_or_insert_with(StepProfile::default)
                .add_step(step);
        }
        if let Some(tr) = options.trace {
            let mut args = step_args(round.drafts.len() + 1, position);
            args.insert("accepted".into(), round.verdict.accepted.into());
            let name = format!("verify {}", stats.rounds);
            tr.span(
                name,
                Category::Step(StepKind::Decode),
                round_start,
                took,
                args,
            );
        }
        emit = round.drafts[..round.verdict.accepted].to_vec();
        emit.push(round.verdict.next);
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
        text: std::mem::take(&mut out.text),
        prefill,
        decode,
        first_token,
        stop,
        prefill_profile,
        decode_profile,
        speculative: Some(stats),
    })
}

/// Drafts `n` tokens after `t`, verifies them, judges them and rolls back what was rejected.
fn run_round(
    engine: &mut dyn Runner,
    drafter: &mut Drafter,
    sampler: &mut Sampler,
    history: &[u32],
    t: u32,
    n: usize,
) -> Result<Round, EngineError> {
    let start = Instant::now();
    let drafts = drafter.draft(t, n)?;
    let draft_time = start.elapsed();
    let position = engine.position();
    let run: Vec<u32> = std::iter::once(t).chain(drafts.iter().copied()).collect();
    let verify = Instant::now();
    engine.keep_steps();
    let rows = engine.forward(&run, Logits::All)?;
    let verify_time = verify.elapsed();
    let hidden = hidden_rows(engine);
    let verdict = judge(&drafts, &rows, sampler, history);
    let kept = verdict.accepted + 1;
    engine.truncate(position + kept);
    drafter.verified(&run[..kept], &hidden);
    Ok(Round {
        drafts,
        verdict,
        draft_time,
        verify_time,
    })
}

/// The hidden rows of the engine's last pass.
///
/// # Panics
/// When the engine keeps none: `backend::open_drafting` builds one that does.
fn hidden_rows(engine: &mut dyn Runner) -> Vec<f32> {
    engine
        .hidden_rows()
        .expect("a speculative run's engine keeps its hidden rows")
}
