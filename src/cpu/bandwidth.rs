//! The machine's memory read bandwidth with the threads a run uses: what decode, which reads
//! every weight once per token, is bound by. A short read test (threads summing disjoint parts
//! of a buffer far larger than the caches, best of a few rounds) measured once per machine and
//! thread count and cached beside the kernel plans (`bandwidth.json`), so later runs pay nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::plans;
use super::pool::ThreadPool;
use crate::atomic_file;

/// Bytes the test reads per round: far beyond any last-level cache of today's CPUs.
const TEST_BYTES: usize = 256 << 20;

/// Rounds timed; the fastest counts (a busy machine only ever slows a round down).
const ROUNDS: usize = 8;

/// A measured read bandwidth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bandwidth {
    pub gb_per_s: f64,
    pub threads: usize,
    /// Read from the cache (measured by an earlier run) rather than now.
    pub cached: bool,
}

#[derive(Default, Serialize, Deserialize)]
struct CacheFile {
    /// Machine key (as the kernel plans') -> GB/s.
    machines: BTreeMap<String, f64>,
}

/// The read bandwidth with `threads` threads: cached in `cache_dir` (when given), else measured
/// now (and cached).
pub fn read_bandwidth(threads: usize, cache_dir: Option<&Path>) -> Bandwidth {
    let key = plans::machine_key(threads);
    let path = cache_dir.map(|d| d.join("bandwidth.json"));
    let cached = path
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice::<CacheFile>(&b).ok())
        .and_then(|f| f.machines.get(&key).copied())
        .filter(|gbs| gbs.is_finite() && *gbs > 0.0);
    if let Some(gb_per_s) = cached {
        return Bandwidth {
            gb_per_s,
            threads,
            cached: true,
        };
    }
    let gb_per_s = measure(threads);
    if let Some(path) = &path {
        save(path, &key, gb_per_s);
    }
    Bandwidth {
        gb_per_s,
        threads,
        cached: false,
    }
}

/// Runs the read test now: GB/s (10^9 bytes) of the fastest round.
pub fn measure(threads: usize) -> f64 {
    let Ok(pool) = ThreadPool::new(threads) else {
        return 0.0;
    };
    // Written first, so that every page is committed before a timed read.
    let buf: Vec<u64> = (0..(TEST_BYTES / 8) as u64).collect();
    let threads = pool.n_threads();
    let mut best = f64::INFINITY;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        pool.run(threads, |i| {
            let part = &buf[buf.len() * i / threads..buf.len() * (i + 1) / threads];
            std::hint::black_box(sum_words(part));
        });
        best = best.min(start.elapsed().as_secs_f64());
    }
    TEST_BYTES as f64 / best / 1e9
}

/// The wrapping sum of `words`: every byte read, with AVX2 where the CPU has it.
fn sum_words(words: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if super::cpu_features().avx2 {
        // SAFETY: AVX2 is present.
        return unsafe { sum_words_avx2(words) };
    }
    sum_words_body(words)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_words_avx2(words: &[u64]) -> u64 {
    sum_words_body(words)
}

/// Eight independent sums (so that the adds never wait on each other), which the compiler
/// turns into vector adds.
#[inline(always)]
fn sum_words_body(words: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let mut chunks = words.chunks_exact(8);
    for c in &mut chunks {
        for (a, w) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(*w);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0u64, |a, w| a.wrapping_add(*w));
    acc.iter().fold(tail, |a, w| a.wrapping_add(*w))
}

/// Adds this machine's figure to the cache file (best effort: a read-only home only costs the
/// next run another test), written whole as the plans are.
fn save(path: &Path, key: &str, gb_per_s: f64) {
    let mut file: CacheFile = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    file.machines.insert(key.to_string(), gb_per_s);
    let (Some(dir), Ok(json)) = (path.parent(), serde_json::to_vec_pretty(&file)) else {
        return;
    };
    if std::fs::create_dir_all(dir).is_ok() {
        let _ = atomic_file::write_bytes(path, &json);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_reads_every_word() {
        let words: Vec<u64> = (1..=1001).collect();
        assert_eq!(sum_words(&words), 1001 * 1002 / 2);
        assert_eq!(sum_words(&[u64::MAX, 2]), 1);
        assert_eq!(sum_words(&[]), 0);
    }
}
