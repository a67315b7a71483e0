//! Plan search: the candidate plans worth timing for a matrix shape, and a timer that picks
//! the fastest on this machine (the caller caches the choice per machine and model).

use std::time::{Duration, Instant};

use super::error::KernelError;
use super::matmul::{matmul, MatmulPlan, Scratch, WeightMatrix};
use super::pool::ThreadPool;
use super::synth::{random_input, Rng};

/// Plans to try for `w` times `n_tokens` tokens on up to `threads` threads with `base`'s ISA.
pub fn candidates(
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
                for token_tile in [8, 6, 4] {
                    for chunk in [0, 32, 128] {
                        out.push(MatmulPlan {
                            threads: t,
                            rows_per_chunk: chunk,
                            token_tile,
                            ..*base
                        });
                    }
                }
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
    out
}

/// One candidate's measured time.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub plan: MatmulPlan,
    /// Median seconds per call.
    pub seconds: f64,
}

/// Times each plan on `w` with `n_tokens` random tokens (median of at least 3 calls, about
/// `per_plan` each) and returns all timings, fastest first.
pub fn tune(
    pool: &ThreadPool,
    w: &WeightMatrix<'_>,
    n_tokens: usize,
    plans: &[MatmulPlan],
    per_plan: Duration,
) -> Result<Vec<Timing>, KernelError> {
    let mut rng = Rng::new(0x7u64 ^ (w.rows as u64) << 20 ^ w.cols as u64);
    let x = random_input(&mut rng, n_tokens * w.cols);
    let mut y = vec![0.0f32; n_tokens * w.rows];
    let mut scratch = Scratch::default();
    let mut out = Vec::with_capacity(plans.len());
    for plan in plans {
        matmul(pool, w, &x, n_tokens, &mut y, plan, &mut scratch)?;
        let start = Instant::now();
        let mut samples = Vec::new();
        while samples.len() < 3 || (start.elapsed() < per_plan && samples.len() < 1000) {
            let t = Instant::now();
            matmul(pool, w, &x, n_tokens, &mut y, plan, &mut scratch)?;
            samples.push(t.elapsed().as_secs_f64());
        }
        samples.sort_by(f64::total_cmp);
        out.push(Timing {
            plan: *plan,
            seconds: samples[samples.len() / 2],
        });
    }
    out.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::synth::random_weights;
    use crate::quant::GgmlType;

    #[test]
    fn tune_returns_every_candidate_sorted() {
        let pool = ThreadPool::new(2).unwrap();
        let mut rng = Rng::new(1);
        let data = random_weights(&mut rng, GgmlType::Q4_K, 8, 256);
        let w = WeightMatrix::new(GgmlType::Q4_K, 8, 256, &data).unwrap();
        for n in [1, 3] {
            let plans = candidates(&MatmulPlan::new(), &w, n, 2);
            assert!(plans.len() >= 4);
            let t = tune(&pool, &w, n, &plans, Duration::ZERO).unwrap();
            assert_eq!(t.len(), plans.len());
            assert!(t.windows(2).all(|p| p[0].seconds <= p[1].seconds));
        }
        // Batches are searched on every thread; decode also tries one.
        let batch = candidates(&MatmulPlan::new(), &w, 64, 2);
        assert!(batch.iter().all(|p| p.threads == 2));
        assert!(candidates(&MatmulPlan::new(), &w, 1, 2)
            .iter()
            .any(|p| p.threads == 1));
    }
}
