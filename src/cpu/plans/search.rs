//! The kernel search of one matmul job: the plans worth timing (threads, work split, tile sizes,
//! panels, 8-bit activations or f32), each timed on the real weights, and the choice, which must
//! beat the default plan by a margin twice (a busy machine can crown a slow plan).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cpu::dot::panel;
use crate::cpu::matmul::{matmul_multi, MatmulPlan, Scratch, WeightMatrix};
use crate::cpu::pool::ThreadPool;
use crate::cpu::synth::{random_input, Rng};

/// Tokens a batch (prompt) plan is timed with.
pub const BATCH_TOKENS: usize = 64;

/// Tokens a short-batch plan is timed with: a speculative verification pass (the last token and
/// a few drafts) or a short prompt, where reading the weights once for all of its tokens
/// matters more than the arithmetic a prompt plan is chosen for (on a CPU without prompt panels
/// the 64-token plan can be the f32 path, whose cost grows with every token).
pub const SHORT_BATCH_TOKENS: usize = 4;

/// The most tokens a call takes the short-batch plan for.
pub const SHORT_BATCH_MAX: usize = 8;

/// Time spent on each candidate (at least three calls, one when a call is slow).
const PER_PLAN: Duration = Duration::from_millis(6);

/// Search time per job: candidates are tried in order (the default plan first) until it is
/// spent, so a large model's first compile stays within seconds.
const PER_JOB: Duration = Duration::from_millis(1500);

/// How much faster than the default plan another must be to replace it.
const DEFAULT_MARGIN: f64 = 0.9;

/// A call this slow is timed once: its duration is far above timer and scheduling noise.
const SLOW_CALL: Duration = Duration::from_millis(20);

/// Weights read per timed call above which a batch job is not searched (the LM head of a large
/// vocabulary: one call costs more than the search could save) and keeps the default plan.
const MAX_SEARCH_BYTES: usize = 64 << 20;

/// The plan used for one job and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Choice {
    pub plan: MatmulPlan,
    /// Median time of one call with this plan, when it was searched.
    pub micros: Option<f64>,
    /// Candidates timed (0: the default plan, not searched).
    pub candidates: usize,
    #[serde(skip)]
    pub from_cache: bool,
}

/// The plans a search of this job times on up to `threads` threads, the default first.
pub fn candidates(ws: &[WeightMatrix<'_>], n_tokens: usize, threads: usize) -> Vec<MatmulPlan> {
    let base = base_plan(ws, n_tokens);
    let mut candidates = vec![base];
    if base.repacked && !times_in_place(ws) {
        let copies = variants(&base, &ws[0], n_tokens, threads);
        candidates.extend(copies.into_iter().filter(|p| p.repacked && *p != base));
        return candidates;
    }
    if let Some(largest) = ws.iter().max_by_key(|w| w.data.len()) {
        candidates.extend(
            variants(&base, largest, n_tokens, threads)
                .into_iter()
                .filter(|p| *p != base),
        );
    }
    candidates
}

/// Mapped bytes above which matrices with repacked copies are not timed in place: the timing
/// would page their rows back in beside the copies (a large matrix, the LM head of a big
/// vocabulary, raised a run's peak memory to 1.5x its file), and a decode step over that many
/// bytes is bound by reading them either way.
const MAX_IN_PLACE_BYTES_WITH_COPIES: usize = 64 << 20;

/// Whether a job on `ws`, which have repacked copies, also times plans reading in place.
fn times_in_place(ws: &[WeightMatrix<'_>]) -> bool {
    ws.iter().map(|w| w.data.len()).sum::<usize>() <= MAX_IN_PLACE_BYTES_WITH_COPIES
}

/// Plans to try for `w` times `n_tokens` tokens on up to `threads` threads with `base`'s ISA.
fn variants(
    base: &MatmulPlan,
    w: &WeightMatrix<'_>,
    n_tokens: usize,
    threads: usize,
) -> Vec<MatmulPlan> {
    let mut out = Vec::new();
    // A batch is compute-bound: fewer threads can only look faster while other processes hold
    // the cores, and the choice is cached for every later run (seen on a busy host: three of
    // the 0.6B shape's five prompt jobs cached with one thread of two).
    let thread_counts: Vec<usize> = if threads > 1 && n_tokens == 1 {
        vec![threads, 1]
    } else {
        vec![threads.max(1)]
    };
    let quantized = !matches!(
        w.ty,
        crate::quant::GgmlType::F32 | crate::quant::GgmlType::F16 | crate::quant::GgmlType::BF16
    );
    for &t in &thread_counts {
        if base.repacked {
            let token_tiles: &[usize] = if n_tokens == 1 { &[8] } else { &[8, 6, 4] };
            out.extend(panel_variants(base, t, token_tiles));
        }
        let base = &MatmulPlan {
            repacked: false,
            panel: base.panel && n_tokens > 1,
            ..*base
        };
        if n_tokens == 1 {
            for row_tile in [1, 2, 4] {
                for chunk in [0, 32, 128, 512] {
                    out.push(MatmulPlan {
                        threads: t,
                        rows_per_chunk: chunk,
                        row_tile,
                        token_tile: 1,
                        quantize_activations: true,
                        panel: false,
                        ..*base
                    });
                }
            }
        } else {
            if base.panel {
                out.extend(panel_variants(base, t, &[8, 6, 4]));
            }
            for (row_tile, token_tile) in [(4, 4), (2, 4), (4, 2), (2, 2), (1, 4), (1, 8)] {
                for chunk in [0, 64] {
                    out.push(MatmulPlan {
                        threads: t,
                        rows_per_chunk: chunk,
                        row_tile,
                        token_tile,
                        quantize_activations: true,
                        panel: false,
                        ..*base
                    });
                }
            }
            if quantized {
                out.push(MatmulPlan {
                    threads: t,
                    quantize_activations: false,
                    panel: false,
                    ..*base
                });
            }
        }
    }
    if n_tokens > 1 && tiles_run() {
        let twins = amx_twins(&out, w);
        out.splice(0..0, twins);
    }
    out
}

/// Whether this process runs panels on AMX tiles.
fn tiles_run() -> bool {
    #[cfg(target_arch = "x86_64")]
    return panel::amx::usable();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The AMX twins of the panel plans among `plans` (one per work split and thread count, 16
/// tokens a call) where `w`'s panels take tiles; none elsewhere. They go first in the list:
/// where tiles run, they are a prompt's likeliest winners.
pub(crate) fn amx_twins(plans: &[MatmulPlan], w: &WeightMatrix<'_>) -> Vec<MatmulPlan> {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::cpu::features::Isa;
        if !panel::amx::supports_type(w.ty) {
            return Vec::new();
        }
        // Repacked panels in a compact layout (Q4_K) are not the tiles' byte-per-quant rows.
        let copies_take_tiles = w
            .repacked
            .is_some_and(|rp| panel::amx::supports(w.ty, &rp.panel(0)));
        plans
            .iter()
            .filter(|p| p.isa == Isa::Avx512Vnni && p.token_tile == 8)
            .filter(|p| (p.panel && !p.repacked) || (p.repacked && copies_take_tiles))
            .map(|p| MatmulPlan {
                amx: true,
                token_tile: panel::amx::MAX_TOKENS,
                ..*p
            })
            .collect()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (plans, w);
        Vec::new()
    }
}

/// Panel plans as `base` (packed per call or repacked once) on `threads` threads: each token
/// tile of `token_tiles` with each work split.
fn panel_variants(base: &MatmulPlan, threads: usize, token_tiles: &[usize]) -> Vec<MatmulPlan> {
    let mut out = Vec::new();
    for &token_tile in token_tiles {
        for chunk in [0, 32, 128] {
            out.push(MatmulPlan {
                threads,
                rows_per_chunk: chunk,
                token_tile,
                ..*base
            });
        }
    }
    out
}

/// Times the candidates of the job (within [`PER_JOB`], Ctrl-C ending it early with the default
/// plan) and returns the choice.
pub fn search(
    pool: &ThreadPool,
    ws: &[WeightMatrix<'_>],
    n_tokens: usize,
    threads: usize,
) -> Choice {
    let base = base_plan(ws, n_tokens);
    let bytes: usize = ws.iter().map(|w| w.data.len()).sum();
    if n_tokens > 1 && bytes > MAX_SEARCH_BYTES {
        return default_choice(base);
    }
    let candidates = candidates(ws, n_tokens, threads);
    let mut best: Option<(f64, MatmulPlan)> = None;
    let start = Instant::now();
    let mut tried = 0;
    for plan in &candidates {
        if start.elapsed() > PER_JOB {
            break;
        }
        // Ctrl-C: the default plan, not cached (a search cut short proves nothing).
        if crate::interrupt::requested() {
            return default_choice(base);
        }
        tried += 1;
        if let Some(t) = time_plan(pool, ws, n_tokens, plan) {
            // The default plan (all threads) must be beaten clearly: on a busy machine a
            // one-thread plan can look faster by chance, and the choice is cached.
            let better = |b: f64, p: &MatmulPlan| {
                if *p == base {
                    beats_default(t, b)
                } else {
                    t < b
                }
            };
            if best.is_none_or(|(b, p)| better(b, &p)) {
                best = Some((t, *plan));
            }
        }
    }
    if let Some((_, plan)) = best.filter(|(_, p)| *p != base) {
        best = confirm(pool, ws, n_tokens, &base, &plan);
    }
    match best {
        Some((seconds, plan)) => Choice {
            plan,
            micros: Some(seconds * 1e6),
            candidates: tried,
            from_cache: false,
        },
        None => default_choice(base),
    }
}

/// The default plan for a job: the repacked panels where every matrix has them (the search
/// reads in place only where that is clearly faster), else panels for batches (more than
/// [`SHORT_BATCH_MAX`] tokens) of types that have panel kernels, else tiles in place. A short
/// job (a verification pass) does not pay a per-call repack back: on cold weights 4 tokens
/// cost 1.5-3.7x a one-token call through per-call panels and 1.0-2.9x through tiles (`cargo
/// bench --bench matmul -- verify`, Zen 4), and the LM head, never searched, keeps this plan.
pub fn base_plan(ws: &[WeightMatrix<'_>], n_tokens: usize) -> MatmulPlan {
    let plan = MatmulPlan::new();
    let panels = ws.iter().all(|w| panel::supports(w.ty, plan.isa));
    let repacked = !ws.is_empty()
        && ws
            .iter()
            .all(|w| w.repacked.is_some_and(|rp| rp.isa == plan.isa));
    MatmulPlan {
        panel: plan.panel && (n_tokens > SHORT_BATCH_MAX || repacked) && panels,
        repacked,
        ..plan
    }
}

pub fn default_choice(plan: MatmulPlan) -> Choice {
    Choice {
        plan,
        micros: None,
        candidates: 0,
        from_cache: false,
    }
}

/// Median seconds per call of `plan` (None if the plan cannot run these weights).
fn time_plan(
    pool: &ThreadPool,
    ws: &[WeightMatrix<'_>],
    n_tokens: usize,
    plan: &MatmulPlan,
) -> Option<f64> {
    let cols = ws.first()?.cols;
    let x = random_input(&mut Rng::new(0x5eed ^ cols as u64), n_tokens * cols);
    let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| vec![0.0; n_tokens * w.rows]).collect();
    let mut scratch = Scratch::default();
    let mut call = |outs: &mut Vec<Vec<f32>>| {
        let mut ys: Vec<&mut [f32]> = outs.iter_mut().map(|y| y.as_mut_slice()).collect();
        matmul_multi(pool, ws, &x, n_tokens, &mut ys, plan, &mut scratch).ok()
    };
    call(&mut outs)?; // warm-up: caches, page faults
    let start = Instant::now();
    let mut samples = Vec::new();
    loop {
        let t = Instant::now();
        call(&mut outs)?;
        samples.push(t.elapsed().as_secs_f64());
        let slow = t.elapsed() > SLOW_CALL;
        let enough = samples.len() >= 3 && (start.elapsed() >= PER_PLAN || samples.len() >= 200);
        if slow || enough {
            break;
        }
    }
    samples.sort_by(f64::total_cmp);
    Some(samples[samples.len() / 2])
}

/// Rounds of the confirmation that a challenger beats the default plan.
const CONFIRM_ROUNDS: usize = 3;

/// Times the default plan and the search's winner again, alternately, and keeps the winner
/// only if the medians still show it `DEFAULT_MARGIN` faster: a single timing on a busy
/// machine can crown a slower plan, and the choice is cached for every later run.
fn confirm(
    pool: &ThreadPool,
    ws: &[WeightMatrix<'_>],
    n_tokens: usize,
    base: &MatmulPlan,
    challenger: &MatmulPlan,
) -> Option<(f64, MatmulPlan)> {
    let (mut b, mut c) = (Vec::new(), Vec::new());
    for _ in 0..CONFIRM_ROUNDS {
        b.push(time_plan(pool, ws, n_tokens, base)?);
        c.push(time_plan(pool, ws, n_tokens, challenger)?);
    }
    let (b, c) = (median(&mut b), median(&mut c));
    Some(if beats_default(c, b) {
        (c, *challenger)
    } else {
        (b, *base)
    })
}

/// Whether a challenger's time beats the default plan's by the required margin.
fn beats_default(challenger: f64, default: f64) -> bool {
    challenger < default * DEFAULT_MARGIN
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::synth::random_weights;
    use crate::quant::GgmlType;

    #[test]
    fn a_challenger_must_beat_the_default_by_the_margin() {
        assert!(beats_default(0.85, 1.0));
        assert!(!beats_default(0.95, 1.0));
        assert!(!beats_default(1.2, 1.0));
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    }

    #[test]
    fn batches_are_searched_on_every_thread_and_decode_also_on_one() {
        let data = random_weights(&mut Rng::new(1), GgmlType::Q4_K, 8, 256);
        let w = WeightMatrix::new(GgmlType::Q4_K, 8, 256, &data).unwrap();
        let decode = candidates(&[w], 1, 2);
        assert_eq!(
            decode[0],
            base_plan(&[w], 1),
            "the default plan comes first"
        );
        assert!(decode.len() >= 4 && decode.iter().any(|p| p.threads == 1));
        // After the default plan (threads 0: all of the pool's), every batch plan uses both.
        let batch = candidates(&[w], 64, 2);
        assert!(batch.len() >= 4 && batch[1..].iter().all(|p| p.threads == 2));
    }

    #[test]
    fn matrices_with_copies_default_to_them_and_are_searched_both_ways() {
        use crate::cpu::features::{cpu_features, Isa};
        use crate::cpu::pool::ThreadPool;
        if MatmulPlan::new().isa != Isa::Avx512Vnni || !cpu_features().supports(Isa::Avx512Vnni) {
            eprintln!("skipped: repacked panels are for AVX-512 VNNI, which this CPU lacks");
            return;
        }
        let data = random_weights(&mut Rng::new(2), GgmlType::Q8_0, 40, 256);
        let w = WeightMatrix::new(GgmlType::Q8_0, 40, 256, &data).unwrap();
        let pool = ThreadPool::new(2).unwrap();
        let rp = w.repack(&pool, Isa::Avx512Vnni, false).unwrap();
        let with = WeightMatrix {
            repacked: Some(&rp),
            ..w
        };
        for n in [1, 4, 64] {
            assert!(!base_plan(&[w], n).repacked, "no copy: read in place");
            let plans = candidates(&[with], n, 2);
            assert!(
                plans[0].repacked && plans[0].panel,
                "n={n}: the copy by default"
            );
            assert!(
                plans.iter().any(|p| !p.repacked),
                "n={n}: in place is timed too"
            );
            // A plan found for the copies is one the search could have chosen only with them.
            assert!(candidates(&[w], n, 2).iter().all(|p| !p.repacked));
        }
        // Past 64 MB, copies are not timed against their rows (which would be paged back in).
        assert!(times_in_place(&[with]));
        let rows = (64 << 20) / 272 + 1; // a Q8_0 row of 256 weights: 272 bytes
        let big = vec![0u8; rows * 272];
        let big = WeightMatrix::new(GgmlType::Q8_0, rows, 256, &big).unwrap();
        assert!(!times_in_place(&[big]));
    }

    #[test]
    fn amx_twins_are_the_panel_plans_of_the_types_tiles_take() {
        use crate::cpu::features::Isa;
        if !cfg!(target_arch = "x86_64") {
            return;
        }
        let q8 = random_weights(&mut Rng::new(3), GgmlType::Q8_0, 16, 256);
        let w = WeightMatrix::new(GgmlType::Q8_0, 16, 256, &q8).unwrap();
        let plans = variants(&MatmulPlan::for_isa(Isa::Avx512Vnni), &w, 64, 2);
        let twins = amx_twins(&plans, &w);
        let panels = plans
            .iter()
            .filter(|p| p.panel && p.token_tile == 8)
            .count();
        assert!(
            panels > 0 && twins.len() == panels,
            "one twin per panel plan"
        );
        assert!(twins.iter().all(|p| p.amx && p.panel && p.token_tile == 16));
        // Half-block scales (Q6_K) and tile plans have none.
        let q6 = random_weights(&mut Rng::new(4), GgmlType::Q6_K, 16, 256);
        let w6 = WeightMatrix::new(GgmlType::Q6_K, 16, 256, &q6).unwrap();
        assert!(amx_twins(&plans, &w6).is_empty());
        let tiles: Vec<_> = plans.iter().filter(|p| !p.panel).copied().collect();
        assert!(amx_twins(&tiles, &w).is_empty());
        // Only where this process runs tiles are they searched.
        let searched = candidates(&[w], 64, 2).iter().any(|p| p.amx);
        assert_eq!(searched, tiles_run());
    }
}
