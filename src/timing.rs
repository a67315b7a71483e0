//! Raw per-step timing samples and the statistics computed from them, named as llama-bench names them.
//!
//! Conventions, so numbers here line up with llama-bench's (`examples/llama-bench/llama-bench.cpp`):
//! - Samples are kept raw, in nanoseconds, one per step.
//! - The standard deviation is the sample standard deviation (divides by N−1); 0 for a single sample.
//! - Percentiles (median, p90, p99) use linear interpolation between closest ranks, numpy's default
//!   (`method="linear"`, Hyndman–Fan type 7): for sorted `x[0..n]` and fraction `q`, `h = (n−1)·q`,
//!   `p = x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋])`. The median is the 0.5 percentile.
//! - Throughput is computed per sample (`ts_i = n_tokens·1e9 / ns_i`), then averaged: `avg_ts` is the
//!   mean of the per-sample rates and `stddev_ts` their sample standard deviation. This is not
//!   `1e9 / avg_ns` (the mean of rates differs from the rate of the mean when samples vary).
//! - The first decode step: counted like every other (see [`WarmupPolicy`]); the report shows the
//!   first 10 step times on their own, so a slow first step is visible rather than hidden.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Raw per-step durations in nanoseconds, in the order they were recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Samples {
    ns: Vec<u64>,
}

impl Samples {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self {
            ns: Vec::with_capacity(n),
        }
    }

    /// Records one step. Durations beyond u64 nanoseconds (584 years) saturate.
    pub fn record(&mut self, d: Duration) {
        self.record_ns(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn record_ns(&mut self, ns: u64) {
        self.ns.push(ns);
    }

    /// Runs `step`, records how long it took and returns its result.
    pub fn time<T>(&mut self, step: impl FnOnce() -> T) -> T {
        let watch = Stopwatch::start();
        let out = step();
        watch.stop_into(self);
        out
    }

    pub fn as_ns(&self) -> &[u64] {
        &self.ns
    }

    pub fn len(&self) -> usize {
        self.ns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ns.is_empty()
    }
}

impl From<Vec<u64>> for Samples {
    fn from(ns: Vec<u64>) -> Self {
        Self { ns }
    }
}

/// A started clock for one step; monotonic (`Instant`), so wall-clock adjustments cannot skew it.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    start: Instant,
}

impl Stopwatch {
    pub fn start() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Stops the clock and records the elapsed time as one sample.
    pub fn stop_into(self, samples: &mut Samples) {
        samples.record(self.elapsed());
    }
}

/// Summary statistics of a set of durations (see the module docs for the methods).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub n: usize,
    /// Sum of all samples; u128 so that no realistic input overflows.
    pub total_ns: u128,
    pub avg_ns: f64,
    /// Sample standard deviation (N−1); 0 for one sample.
    pub stddev_ns: f64,
    pub min_ns: u64,
    pub max_ns: u64,
    pub median_ns: f64,
    pub p90_ns: f64,
    pub p99_ns: f64,
}

impl Stats {
    /// Statistics of `ns`; `None` when there are no samples.
    pub fn from_ns(ns: &[u64]) -> Option<Self> {
        let mut sorted = ns.to_vec();
        sorted.sort_unstable();
        let (&min_ns, &max_ns) = (sorted.first()?, sorted.last()?);
        let total_ns: u128 = ns.iter().map(|&x| u128::from(x)).sum();
        let values: Vec<f64> = ns.iter().map(|&x| x as f64).collect();
        let (avg_ns, stddev_ns) = mean_sd(&values)?;
        Some(Self {
            n: ns.len(),
            total_ns,
            avg_ns,
            stddev_ns,
            min_ns,
            max_ns,
            median_ns: percentile_sorted(&sorted, 0.5)?,
            p90_ns: percentile_sorted(&sorted, 0.9)?,
            p99_ns: percentile_sorted(&sorted, 0.99)?,
        })
    }
}

/// Mean and sample standard deviation (N−1; 0 for one value); `None` for no values.
///
/// Two passes (mean first, then squared deviations) rather than llama-bench's one-pass
/// `Σx² − n·mean²`, which loses precision when the spread is small next to the mean.
pub fn mean_sd(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() == 1 {
        return Some((mean, 0.0));
    }
    let sq: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
    Some((mean, (sq / (n - 1.0)).sqrt()))
}

/// Percentile `q` in [0, 1] of ascending `sorted` by linear interpolation (numpy's default).
pub fn percentile_sorted(sorted: &[u64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let h = last as f64 * q.clamp(0.0, 1.0);
    let lo = (h.floor() as usize).min(last);
    let hi = (lo + 1).min(last);
    let (a, b) = (sorted[lo] as f64, sorted[hi] as f64);
    Some(a + (h - lo as f64) * (b - a))
}

/// Per-sample throughput and its mean ± sample standard deviation, as llama-bench's
/// `samples_ts`, `avg_ts`, `stddev_ts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub avg_ts: f64,
    pub stddev_ts: f64,
    pub samples_ts: Vec<f64>,
}

impl Throughput {
    /// Rates for steps that each processed `n_tokens` tokens (1 for a decode step, the prompt length for
    /// a prefill pass). A zero-length sample counts as 1 ns so that the rate stays finite.
    pub fn from_ns(ns: &[u64], n_tokens: u64) -> Option<Self> {
        let samples_ts: Vec<f64> = ns
            .iter()
            .map(|&t| n_tokens as f64 * 1e9 / t.max(1) as f64)
            .collect();
        let (avg_ts, stddev_ts) = mean_sd(&samples_ts)?;
        Some(Self {
            avg_ts,
            stddev_ts,
            samples_ts,
        })
    }
}

/// Whether the first decode step counts in the statistics.
///
/// The first step after prefill can pay one-off costs (cold caches, lazy allocation). The product
/// wants per-token timing of the first tokens visible, so by default every step counts (the report
/// lists the first 10 step times and says the first is included); `ExcludeFirst` leaves it out and
/// reports it as `warmup_ns`. With a single step there is nothing else to report, so that step is
/// counted either way ([`PhaseTiming::warmup_excluded`] is false).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmupPolicy {
    /// The first step is left out of the statistics and reported as `warmup_ns`.
    ExcludeFirst,
    /// Every step counts, the first included.
    #[default]
    IncludeAll,
}

/// Everything reported for one phase (prefill or decode), with llama-bench's field names.
///
/// `samples_ns` holds exactly the samples the statistics were computed from, so every statistic can be
/// recomputed from the JSON; an excluded warm-up step is in `warmup_ns` instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseTiming {
    /// Tokens processed per sample (1 for decode steps, the prompt length for prefill).
    pub n_tokens_per_sample: u64,
    pub warmup_excluded: bool,
    pub warmup_ns: Option<u64>,
    pub n: usize,
    pub total_ns: u128,
    pub avg_ns: f64,
    pub stddev_ns: f64,
    pub min_ns: u64,
    pub max_ns: u64,
    pub median_ns: f64,
    pub p90_ns: f64,
    pub p99_ns: f64,
    pub avg_ts: f64,
    pub stddev_ts: f64,
    pub samples_ns: Vec<u64>,
    pub samples_ts: Vec<f64>,
}

impl PhaseTiming {
    /// Decode steps (one token each) under `policy`; `None` when there are no steps.
    pub fn decode(samples: &Samples, policy: WarmupPolicy) -> Option<Self> {
        let ns = samples.as_ns();
        match (policy, ns) {
            (WarmupPolicy::ExcludeFirst, [first, rest @ ..]) if !rest.is_empty() => {
                Self::build(rest, 1, Some(*first))
            }
            _ => Self::build(ns, 1, None),
        }
    }

    /// Prefill passes of `n_tokens` tokens each (one sample per pass; no warm-up exclusion).
    pub fn prefill(samples: &Samples, n_tokens: u64) -> Option<Self> {
        Self::build(samples.as_ns(), n_tokens, None)
    }

    fn build(ns: &[u64], n_tokens: u64, warmup_ns: Option<u64>) -> Option<Self> {
        let s = Stats::from_ns(ns)?;
        let t = Throughput::from_ns(ns, n_tokens)?;
        Some(Self {
            n_tokens_per_sample: n_tokens,
            warmup_excluded: warmup_ns.is_some(),
            warmup_ns,
            n: s.n,
            total_ns: s.total_ns,
            avg_ns: s.avg_ns,
            stddev_ns: s.stddev_ns,
            min_ns: s.min_ns,
            max_ns: s.max_ns,
            median_ns: s.median_ns,
            p90_ns: s.p90_ns,
            p99_ns: s.p99_ns,
            avg_ts: t.avg_ts,
            stddev_ts: t.stddev_ts,
            samples_ns: ns.to_vec(),
            samples_ts: t.samples_ts,
        })
    }

    /// The duration statistics alone (e.g. for a plot).
    pub fn stats(&self) -> Stats {
        Stats {
            n: self.n,
            total_ns: self.total_ns,
            avg_ns: self.avg_ns,
            stddev_ns: self.stddev_ns,
            min_ns: self.min_ns,
            max_ns: self.max_ns,
            median_ns: self.median_ns,
            p90_ns: self.p90_ns,
            p99_ns: self.p99_ns,
        }
    }
}

/// Run-to-run spread for `--repeat N` (as `llama-bench -r`): one throughput figure per run (e.g. each
/// run's `avg_ts`), then mean ± sample standard deviation across runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpread {
    pub n_runs: usize,
    pub avg_ts: f64,
    pub stddev_ts: f64,
    pub min_ts: f64,
    pub max_ts: f64,
    pub samples_ts: Vec<f64>,
}

impl RunSpread {
    /// `None` when there are no runs.
    pub fn from_runs(per_run_ts: &[f64]) -> Option<Self> {
        let (avg_ts, stddev_ts) = mean_sd(per_run_ts)?;
        let min_ts = per_run_ts.iter().copied().fold(f64::INFINITY, f64::min);
        let max_ts = per_run_ts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Self {
            n_runs: per_run_ts.len(),
            avg_ts,
            stddev_ts,
            min_ts,
            max_ts,
            samples_ts: per_run_ts.to_vec(),
        })
    }
}

/// llama-bench's test label: `pp128` for a 128-token prompt pass, `tg256` for 256 generated tokens.
pub fn phase_label(prefix: &str, n_tokens: usize) -> String {
    format!("{prefix}{n_tokens}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn empty_input_gives_none() {
        assert!(Stats::from_ns(&[]).is_none());
        assert!(Throughput::from_ns(&[], 1).is_none());
        assert!(PhaseTiming::decode(&Samples::new(), WarmupPolicy::default()).is_none());
        assert!(RunSpread::from_runs(&[]).is_none());
        assert!(percentile_sorted(&[], 0.5).is_none());
    }

    #[test]
    fn one_sample_has_zero_sd() {
        let s = Stats::from_ns(&[7 * MS]).unwrap();
        assert_eq!(
            (s.n, s.min_ns, s.max_ns, s.total_ns),
            (1, 7 * MS, 7 * MS, 7 * MS as u128)
        );
        assert_eq!(s.stddev_ns, 0.0);
        assert_eq!(
            (s.avg_ns, s.median_ns, s.p90_ns, s.p99_ns),
            (7e6, 7e6, 7e6, 7e6)
        );
        let t = Throughput::from_ns(&[7 * MS], 1).unwrap();
        assert_eq!(t.stddev_ts, 0.0);
        assert!(close(t.avg_ts, 1e9 / 7e6, 1e-9));
    }

    #[test]
    fn identical_samples_have_zero_sd() {
        let s = Stats::from_ns(&[5 * MS; 9]).unwrap();
        assert_eq!(s.stddev_ns, 0.0);
        assert_eq!((s.avg_ns, s.median_ns, s.p99_ns), (5e6, 5e6, 5e6));
        assert_eq!(Throughput::from_ns(&[5 * MS; 9], 1).unwrap().stddev_ts, 0.0);
    }

    #[test]
    fn known_set_one_to_five_ms() {
        // Unordered on purpose: percentiles must sort.
        let s = Stats::from_ns(&[3 * MS, MS, 5 * MS, 2 * MS, 4 * MS]).unwrap();
        assert_eq!(
            (s.n, s.min_ns, s.max_ns, s.total_ns),
            (5, MS, 5 * MS, 15 * MS as u128)
        );
        assert!(close(s.avg_ns, 3e6, 1e-6));
        assert!(close(s.stddev_ns, 2.5f64.sqrt() * 1e6, 1e-3));
        assert!(close(s.median_ns, 3e6, 1e-6));
        // numpy.percentile([1,2,3,4,5], 90) == 4.6, (.., 99) == 4.96
        assert!(close(s.p90_ns, 4.6e6, 1e-3));
        assert!(close(s.p99_ns, 4.96e6, 1e-3));
    }

    #[test]
    fn even_count_median_interpolates() {
        let s = Stats::from_ns(&[10, 20, 30, 40]).unwrap();
        assert!(close(s.median_ns, 25.0, 1e-12));
        // numpy.percentile([10,20,30,40], 90) == 37.0
        assert!(close(s.p90_ns, 37.0, 1e-12));
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let s = Stats::from_ns(&[u64::MAX, u64::MAX, u64::MAX]).unwrap();
        assert_eq!(s.total_ns, 3 * u128::from(u64::MAX));
        assert!(close(s.avg_ns / u64::MAX as f64, 1.0, 1e-12));
        assert_eq!(s.stddev_ns, 0.0);
        let s = Stats::from_ns(&[0, u64::MAX]).unwrap();
        assert!(s.avg_ns.is_finite() && s.stddev_ns.is_finite());
    }

    #[test]
    fn throughput_is_mean_of_per_sample_rates() {
        // 1 ms and 4 ms per token: rates 1000 and 250 tok/s, mean 625 (not 1e9/2.5ms = 400).
        let t = Throughput::from_ns(&[MS, 4 * MS], 1).unwrap();
        assert_eq!(t.samples_ts, vec![1000.0, 250.0]);
        assert!(close(t.avg_ts, 625.0, 1e-9));
        assert!(close(t.stddev_ts, (2.0 * 375.0f64 * 375.0).sqrt(), 1e-9));
    }

    #[test]
    fn prefill_rate_counts_all_tokens() {
        let p = PhaseTiming::prefill(&Samples::from(vec![64 * MS]), 128).unwrap();
        assert!(close(p.avg_ts, 2000.0, 1e-9));
        assert!(!p.warmup_excluded && p.warmup_ns.is_none());
    }

    #[test]
    fn zero_duration_sample_gives_finite_rate() {
        let t = Throughput::from_ns(&[0], 1).unwrap();
        assert_eq!(t.samples_ts, vec![1e9]);
    }

    #[test]
    fn warmup_excluded_when_asked_and_reported() {
        let samples = Samples::from(vec![50 * MS, 2 * MS, 4 * MS]);
        let d = PhaseTiming::decode(&samples, WarmupPolicy::ExcludeFirst).unwrap();
        assert!(d.warmup_excluded);
        assert_eq!(d.warmup_ns, Some(50 * MS));
        assert_eq!(d.samples_ns, vec![2 * MS, 4 * MS]);
        assert_eq!((d.n, d.max_ns), (2, 4 * MS));
        assert!(close(d.avg_ns, 3e6, 1e-6));
    }

    #[test]
    fn every_step_counts_by_default() {
        assert_eq!(WarmupPolicy::default(), WarmupPolicy::IncludeAll);
        let samples = Samples::from(vec![50 * MS, 2 * MS, 4 * MS]);
        let d = PhaseTiming::decode(&samples, WarmupPolicy::default()).unwrap();
        assert!(!d.warmup_excluded && d.warmup_ns.is_none());
        assert_eq!((d.n, d.max_ns), (3, 50 * MS));
    }

    #[test]
    fn single_step_is_counted_even_when_excluding() {
        let d =
            PhaseTiming::decode(&Samples::from(vec![9 * MS]), WarmupPolicy::ExcludeFirst).unwrap();
        assert!(!d.warmup_excluded && d.warmup_ns.is_none());
        assert_eq!((d.n, d.samples_ns.clone()), (1, vec![9 * MS]));
    }

    #[test]
    fn json_uses_llama_bench_names_and_recomputes() {
        let samples = Samples::from(vec![9 * MS, MS, 2 * MS, 3 * MS, 4 * MS, 5 * MS]);
        let d = PhaseTiming::decode(&samples, WarmupPolicy::ExcludeFirst).unwrap();
        let v: serde_json::Value = serde_json::to_value(&d).unwrap();
        for key in [
            "n",
            "avg_ns",
            "stddev_ns",
            "min_ns",
            "max_ns",
            "median_ns",
            "p90_ns",
            "p99_ns",
            "avg_ts",
            "stddev_ts",
            "samples_ns",
            "samples_ts",
            "warmup_ns",
            "total_ns",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        let back: PhaseTiming = serde_json::from_value(v).unwrap();
        assert_eq!(back, d);
        let again = Stats::from_ns(&back.samples_ns).unwrap();
        assert_eq!(again, back.stats());
    }

    #[test]
    fn run_spread_across_runs() {
        let r = RunSpread::from_runs(&[10.0, 12.0, 14.0]).unwrap();
        assert_eq!(r.n_runs, 3);
        assert!(close(r.avg_ts, 12.0, 1e-12));
        assert!(close(r.stddev_ts, 2.0, 1e-12));
        assert_eq!((r.min_ts, r.max_ts), (10.0, 14.0));
        assert_eq!(RunSpread::from_runs(&[8.0]).unwrap().stddev_ts, 0.0);
    }

    #[test]
    fn recording_helpers_keep_order() {
        let mut s = Samples::with_capacity(3);
        s.record(Duration::from_nanos(5));
        s.record_ns(7);
        let v = s.time(|| 42);
        assert_eq!(v, 42);
        assert_eq!(s.len(), 3);
        assert_eq!(&s.as_ns()[..2], &[5, 7]);
        s.record(Duration::MAX);
        assert_eq!(s.as_ns()[3], u64::MAX);
    }

    #[test]
    fn labels_match_llama_bench() {
        assert_eq!(phase_label("pp", 128), "pp128");
        assert_eq!(phase_label("tg", 256), "tg256");
    }
}
