//! `--sweep MAX`: prompt and decode speed against KV-cache depth, as ik_llama.cpp's sweep-bench
//! measures it. The cache is filled in chunks of `--ubatch N` tokens up to `MAX` positions; at
//! each depth `n_kv = 0, N, 2N, ...` the engine first decodes `-t` tokens one step at a time
//! (positions `n_kv ..`), those are cut from the cache again, and then the next chunk of `N`
//! tokens runs as one prompt pass. Tokens are drawn at random from the vocabulary: speed does
//! not depend on which tokens they are, and no prompt or sampling is involved.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use thiserror::Error;

use crate::backend::{EngineError, Logits, Runner};
use crate::cpu::synth::Rng;
use crate::generate::step_args;
use crate::settings::SweepSettings;
use crate::trace::{Category, StepKind, Tracer};

#[derive(Debug, Error)]
pub enum SweepError {
    #[error(
        "--sweep {max} is smaller than one chunk of --ubatch {ubatch}: give --sweep at least {ubatch} or a smaller --ubatch"
    )]
    BelowOneChunk { max: usize, ubatch: usize },
    #[error(
        "--sweep {max} needs {max} KV-cache positions but the context holds {context}: lower --sweep or raise --ctx-size"
    )]
    BeyondContext { max: usize, context: usize },
    #[error(
        "--sweep decodes -t {tg} tokens at depth {depth}, which needs {needed} KV-cache positions but the context holds {context}: lower -t or --sweep, or raise --ctx-size"
    )]
    DecodeBeyondContext {
        tg: usize,
        depth: usize,
        needed: usize,
        context: usize,
    },
    #[error(
        "--sweep cuts the decoded tokens from the KV cache after each depth, which the {backend} backend cannot do: run the sweep on the CPU backend"
    )]
    CannotCut { backend: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The depths a sweep measures, checked against the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub ubatch: usize,
    /// Decode steps timed at each depth.
    pub tg: usize,
    /// `0, N, 2N, ...`: each depth's chunk ends at or before `--sweep MAX`.
    pub depths: Vec<usize>,
    /// Positions of `MAX` no whole chunk reaches (`MAX` not a multiple of `N`).
    pub left_over: usize,
}

impl Plan {
    /// The plan for `settings` with `tg` decode steps per depth in a context of `context`
    /// positions; the one-line error when they do not fit together.
    pub fn new(settings: &SweepSettings, tg: usize, context: usize) -> Result<Plan, SweepError> {
        let SweepSettings { max, ubatch } = *settings;
        if max < ubatch {
            return Err(SweepError::BelowOneChunk { max, ubatch });
        }
        if max > context {
            return Err(SweepError::BeyondContext { max, context });
        }
        let depths: Vec<usize> = (0..max / ubatch).map(|i| i * ubatch).collect();
        let last = depths.last().copied().unwrap_or(0);
        if last + tg > context {
            return Err(SweepError::DecodeBeyondContext {
                tg,
                depth: last,
                needed: last + tg,
                context,
            });
        }
        Ok(Plan {
            ubatch,
            tg,
            depths,
            left_over: max % ubatch,
        })
    }
}

/// One depth's measurements, raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Positions in the KV cache when the row was measured.
    pub n_kv: usize,
    pub pp_tokens: usize,
    /// The chunk's prompt pass.
    pub pp_ns: u64,
    pub tg_tokens: usize,
    /// The `tg_tokens` decode steps together.
    pub tg_ns: u64,
}

/// What a sweep needs besides the engine.
pub struct SweepOptions<'a> {
    pub vocab: usize,
    pub seed: u64,
    /// Checked before every step: a Ctrl-C ends the sweep after the rows completed.
    pub interrupt: Option<&'a AtomicBool>,
    pub trace: Option<&'a Tracer>,
}

/// The rows measured, and whether a Ctrl-C cut the sweep short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sweep {
    pub rows: Vec<Row>,
    pub interrupted: bool,
}

/// Runs `plan` on `engine` from an empty cache; `on_row` sees each row as it completes. A
/// Ctrl-C (before a step, or between two ops of one) ends the sweep with the rows completed.
pub fn run(
    engine: &mut dyn Runner,
    plan: &Plan,
    options: &SweepOptions<'_>,
    on_row: &mut dyn FnMut(&Row),
) -> Result<Sweep, SweepError> {
    let mut rows = vec![];
    match measure(engine, plan, options, &mut |row| {
        on_row(&row);
        rows.push(row);
    }) {
        Ok(()) => Ok(Sweep {
            rows,
            interrupted: false,
        }),
        Err(SweepError::Engine(EngineError::Interrupted)) => Ok(Sweep {
            rows,
            interrupted: true,
        }),
        Err(e) => Err(e),
    }
}

fn measure(
    engine: &mut dyn Runner,
    plan: &Plan,
    options: &SweepOptions<'_>,
    on_row: &mut dyn FnMut(Row),
) -> Result<(), SweepError> {
    let mut rng = Rng::new(options.seed);
    let mut token = || (rng.next_u64() % options.vocab.max(1) as u64) as u32;
    let check = || match options.interrupt.is_some_and(|f| f.load(Ordering::Relaxed)) {
        true => Err(SweepError::Engine(EngineError::Interrupted)),
        false => Ok(()),
    };
    engine.reset();
    for &n_kv in &plan.depths {
        let mut tg_ns = 0u64;
        for i in 0..plan.tg {
            check()?;
            let name = format!("decode n_kv={n_kv} {}", i + 1);
            tg_ns += timed_step(engine, &[token()], options.trace, name)?;
        }
        cut_to(engine, n_kv)?;
        check()?;
        let chunk: Vec<u32> = (0..plan.ubatch).map(|_| token()).collect();
        let pp_ns = timed_step(engine, &chunk, options.trace, format!("prompt n_kv={n_kv}"))?;
        on_row(Row {
            n_kv,
            pp_tokens: plan.ubatch,
            pp_ns,
            tg_tokens: plan.tg,
            tg_ns,
        });
    }
    Ok(())
}

/// One forward pass, timed (and traced as a step).
fn timed_step(
    engine: &mut dyn Runner,
    tokens: &[u32],
    trace: Option<&Tracer>,
    name: String,
) -> Result<u64, SweepError> {
    let position = engine.position();
    let start = Instant::now();
    engine.forward(tokens, Logits::Last)?;
    let took = start.elapsed();
    if let Some(t) = trace {
        t.span(
            name,
            Category::Step(StepKind::Sweep),
            start,
            took,
            step_args(tokens.len(), position),
        );
    }
    Ok(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX))
}

/// Cuts the cache back to `len` positions, which the sweep's rows rely on.
fn cut_to(engine: &mut dyn Runner, len: usize) -> Result<(), SweepError> {
    if engine.truncate(len) != len {
        return Err(SweepError::CannotCut {
            backend: engine.features().backend.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max: usize, ubatch: usize) -> SweepSettings {
        SweepSettings { max, ubatch }
    }

    #[test]
    fn depths_are_whole_chunks_up_to_max() {
        let plan = Plan::new(&settings(2048, 512), 32, 4096).unwrap();
        assert_eq!(plan.depths, [0, 512, 1024, 1536]);
        assert_eq!(plan.left_over, 0);
        let plan = Plan::new(&settings(1000, 256), 8, 1000).unwrap();
        assert_eq!((plan.depths, plan.left_over), (vec![0, 256, 512], 232));
    }

    #[test]
    fn combinations_that_cannot_run_are_refused() {
        let err = |max, ubatch, tg, ctx| Plan::new(&settings(max, ubatch), tg, ctx).unwrap_err();
        assert!(matches!(
            err(100, 512, 8, 4096),
            SweepError::BelowOneChunk { .. }
        ));
        assert!(matches!(
            err(8192, 512, 8, 4096),
            SweepError::BeyondContext { .. }
        ));
        // The last depth is 3584; decoding 600 tokens there needs 4184 positions.
        let e = err(4096, 512, 600, 4096);
        assert!(
            matches!(
                e,
                SweepError::DecodeBeyondContext {
                    depth: 3584,
                    needed: 4184,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.to_string().lines().count(), 1);
    }
}
