//! The benchmarks' timer: seconds per call of a closure, the median of many calls.

use std::time::{Duration, Instant};

/// The median, or the minimum when `QWEN_BENCH_MIN` is set (steadier on a busy machine).
pub fn stat(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if std::env::var_os("QWEN_BENCH_MIN").is_some() {
        v[0]
    } else {
        v[v.len() / 2]
    }
}

/// Median (see [`stat`]) seconds per call of `f` over at least `min_time` (and 5 calls), after a warm-up.
pub fn per_call(min_time: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < 5 || (start.elapsed() < min_time && samples.len() < 20_000) {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64());
    }
    stat(samples)
}
