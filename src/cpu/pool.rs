//! A persistent thread pool for kernel calls: workers spin briefly between calls, then park.
//!
//! A decode step makes ~200 matmul calls of 20-200 µs each, so starting a job must cost far
//! less than a microsecond or two. Workers that finished a job spin on the job word for
//! `spin` before parking on a condvar. Job indices are claimed, not assigned: the calling
//! thread claims them too, so a worker the OS has descheduled delays nobody (its share is
//! taken by whoever runs), and the caller waits only for indices already started.
//! (benches/matmul.rs compares the per-call overhead with rayon's.)
//!
//! For `--trace`, a pool built with [`ThreadPool::traced`] records each thread's share of each
//! job (first claimed index to the end of its last) on that thread's own lane; a pool built
//! without lanes takes the same path as ever, with no clock read.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::error::KernelError;
use crate::trace::{PoolLanes, Tracer};

type Job = dyn Fn(usize) + Sync;

/// The job word: epoch (32 bits) | index count (16) | next unclaimed index (16). One word, so
/// a claim can never mix one job's count or epoch with another's.
fn word(epoch: u64, n: u64, next: u64) -> u64 {
    (epoch << 32) | (n << 16) | next
}

fn epoch_of(w: u64) -> u64 {
    w >> 32
}

struct Shared {
    state: AtomicU64,
    /// The job of the current epoch; its lifetime is erased (see `run`).
    job: UnsafeCell<Option<&'static Job>>,
    done: AtomicUsize,
    sleepers: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
    spin: Duration,
    /// Set for a traced pool: where each thread records its shares.
    lanes: Option<Arc<PoolLanes>>,
}

// SAFETY: `job` is written only by the thread in `run`, before it publishes the epoch's job
// word (SeqCst), and read by a thread only after it claimed an index of that epoch (a CAS on
// the word); `run` waits until every claimed index is done before it returns or writes again.
unsafe impl Sync for Shared {}

impl Shared {
    /// Claims the next index of epoch `epoch`, if any is left.
    fn claim(&self, epoch: u64) -> Option<usize> {
        let mut w = self.state.load(Ordering::Acquire);
        loop {
            let (n, next) = ((w >> 16) & 0xFFFF, w & 0xFFFF);
            if epoch_of(w) != epoch || next >= n {
                return None;
            }
            match self
                .state
                .compare_exchange_weak(w, w + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(next as usize),
                Err(now) => w = now,
            }
        }
    }

    /// Runs claimed indices of `epoch` until none is left; `thread` is the caller's index in
    /// the pool (0: the thread that called `run`).
    fn work(&self, epoch: u64, thread: usize) {
        match &self.lanes {
            None => {
                while let Some(i) = self.claim(epoch) {
                    self.run_index(i);
                    self.done.fetch_add(1, Ordering::Release);
                }
            }
            Some(lanes) => self.work_traced(epoch, thread, lanes),
        }
    }

    /// As `work`, recording the share. Its end is read before the last index is counted done,
    /// so that it falls inside the job's `run` call (which returns once all are done).
    fn work_traced(&self, epoch: u64, thread: usize, lanes: &PoolLanes) {
        let start = Instant::now();
        let mut end = start;
        let mut jobs = 0u32;
        while let Some(i) = self.claim(epoch) {
            self.run_index(i);
            end = Instant::now();
            jobs += 1;
            self.done.fetch_add(1, Ordering::Release);
        }
        if jobs > 0 {
            lanes.record(thread, start, end, jobs);
        }
    }

    fn run_index(&self, i: usize) {
        // SAFETY: published before the epoch's word; see `Shared`.
        if let Some(job) = unsafe { *self.job.get() } {
            if catch_unwind(AssertUnwindSafe(|| job(i))).is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Threads for kernel calls; `run` broadcasts a job to the first `n` of them.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    busy: Mutex<()>,
}

impl ThreadPool {
    /// A pool of `n_threads` (the caller counts as one, so `n_threads - 1` are spawned).
    pub fn new(n_threads: usize) -> Result<Self, KernelError> {
        Self::with_spin(n_threads, Duration::from_micros(500))
    }

    /// As [`ThreadPool::new`], recording each thread's share of each job in `tracer`.
    pub fn traced(n_threads: usize, tracer: &Tracer) -> Result<Self, KernelError> {
        let lanes = tracer.pool_lanes(n_threads.clamp(1, 1 << 15));
        Self::build(n_threads, Duration::from_micros(500), Some(lanes))
    }

    /// As [`ThreadPool::new`], with the time idle workers spin before parking.
    pub fn with_spin(n_threads: usize, spin: Duration) -> Result<Self, KernelError> {
        Self::build(n_threads, spin, None)
    }

    fn build(
        n_threads: usize,
        spin: Duration,
        lanes: Option<Arc<PoolLanes>>,
    ) -> Result<Self, KernelError> {
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            done: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            spin,
            lanes,
        });
        let mut pool = ThreadPool {
            shared,
            workers: Vec::new(),
            busy: Mutex::new(()),
        };
        for index in 1..n_threads.clamp(1, 1 << 15) {
            let shared = Arc::clone(&pool.shared);
            let handle = std::thread::Builder::new()
                .name(format!("qwen-kernel-{index}"))
                .spawn(move || worker(&shared, index))
                .map_err(|e| KernelError::Spawn(e.to_string()))?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// Threads in the pool, the caller's included.
    pub fn n_threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(i)` once for each `i in 0..n` (`n` capped at the pool size) on the calling
    /// thread and the workers, and returns when all are done. Each index runs on one thread
    /// at a time, but which thread is not fixed. A nested or concurrent call runs everything
    /// on the calling thread instead of waiting.
    pub fn run<F: Fn(usize) + Sync>(&self, n: usize, f: F) {
        let n = n.clamp(1, self.n_threads());
        let guard = match self.busy.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        if n == 1 || guard.is_none() {
            (0..n).for_each(&f);
            return;
        }
        let s = &*self.shared;
        let job: &(dyn Fn(usize) + Sync + '_) = &f;
        // SAFETY: lifetime erased; `wait_done` below outlasts every use of it.
        let job: &'static Job = unsafe { std::mem::transmute(job) };
        // SAFETY: no worker reads `job` before the epoch below is published, and the busy lock
        // (or the single-thread path above) keeps any other `run` from writing it.
        unsafe { *s.job.get() = Some(job) };
        s.done.store(0, Ordering::Relaxed);
        let epoch = (epoch_of(s.state.load(Ordering::Relaxed)) + 1) & 0xFFFF_FFFF;
        s.state.store(word(epoch, n as u64, 0), Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _l = s.lock.lock().unwrap_or_else(|p| p.into_inner());
            s.wake.notify_all();
        }
        s.work(epoch, 0);
        wait_done(s, n);
        // SAFETY: every worker is done with this epoch's job (`wait_done`), and the busy lock
        // is still held: nothing else reads or writes it now.
        unsafe { *s.job.get() = None };
        if s.panicked.swap(false, Ordering::Relaxed) {
            resume_unwind(Box::new("a kernel job panicked"));
        }
    }
}

/// Waits until all `n` indices are done; they were all claimed, so only running work is left.
fn wait_done(s: &Shared, n: usize) {
    let mut spins = 0u32;
    while s.done.load(Ordering::Acquire) != n {
        spins += 1;
        if spins < 4096 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

fn worker(s: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        seen = match wait_epoch(s, seen) {
            Some(e) => e,
            None => return,
        };
        s.work(seen, index);
    }
}

/// Waits for an epoch other than `seen`: spins for `s.spin`, then parks. `None` on shutdown.
fn wait_epoch(s: &Shared, seen: u64) -> Option<u64> {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let e = epoch_of(s.state.load(Ordering::Acquire));
        if e != seen {
            return Some(e);
        }
        if s.shutdown.load(Ordering::Relaxed) {
            return None;
        }
        spins += 1;
        if !spins.is_multiple_of(256) || start.elapsed() < s.spin {
            std::hint::spin_loop();
            continue;
        }
        let mut guard = s.lock.lock().unwrap_or_else(|p| p.into_inner());
        s.sleepers.fetch_add(1, Ordering::SeqCst);
        while epoch_of(s.state.load(Ordering::SeqCst)) == seen && !s.shutdown.load(Ordering::SeqCst)
        {
            guard = s.wake.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
        s.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _l = self.shared.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// What tracing adds to one `run` of `n_threads` threads, in ns: a no-op job timed on a plain
/// and on a traced pool, many times each, best of a few rounds (the machine may be busy).
pub fn trace_overhead_per_job_ns(n_threads: usize) -> f64 {
    const CALLS: u32 = 5_000;
    let tracer = Tracer::new();
    let (Ok(plain), Ok(traced)) = (
        ThreadPool::new(n_threads),
        ThreadPool::traced(n_threads, &tracer),
    ) else {
        return 0.0;
    };
    let time = |pool: &ThreadPool| {
        let start = Instant::now();
        for _ in 0..CALLS {
            pool.run(n_threads, |i| {
                std::hint::black_box(i);
            });
        }
        start.elapsed().as_nanos() as f64 / f64::from(CALLS)
    };
    let (mut best_plain, mut best_traced) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..5 {
        best_plain = best_plain.min(time(&plain));
        best_traced = best_traced.min(time(&traced));
    }
    (best_traced - best_plain).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_runs_once_per_call() {
        let pool = ThreadPool::with_spin(3, Duration::from_micros(50)).unwrap();
        assert_eq!(pool.n_threads(), 3);
        for n in [1, 2, 3, 5] {
            let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
            for _ in 0..100 {
                pool.run(n, |i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
            }
            for (i, h) in hits.iter().enumerate() {
                let want = if i < n.min(3) { 100 } else { 0 };
                assert_eq!(h.load(Ordering::Relaxed), want, "index {i} with n={n}");
            }
        }
    }

    #[test]
    fn the_caller_takes_the_share_of_a_sleeping_worker() {
        // Workers park at once; the caller may finish before any of them wakes.
        let pool = ThreadPool::with_spin(4, Duration::ZERO).unwrap();
        for _ in 0..200 {
            let count = AtomicUsize::new(0);
            pool.run(4, |_| {
                count.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(count.load(Ordering::Relaxed), 4);
        }
    }

    #[test]
    fn parked_workers_wake_up() {
        let pool = ThreadPool::with_spin(2, Duration::ZERO).unwrap();
        let count = AtomicUsize::new(0);
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(1));
            pool.run(2, |_| {
                count.fetch_add(1, Ordering::Relaxed);
            });
        }
        assert_eq!(count.load(Ordering::Relaxed), 40);
    }

    #[test]
    fn nested_run_falls_back_to_the_calling_thread() {
        let pool = ThreadPool::new(2).unwrap();
        let count = AtomicUsize::new(0);
        pool.run(2, |_| {
            pool.run(2, |_| {
                count.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(count.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_traced_pool_records_each_share_inside_its_run() {
        let tracer = Tracer::new();
        let pool = ThreadPool::traced(2, &tracer).unwrap();
        let mut calls = vec![];
        for _ in 0..50 {
            let start = Instant::now();
            pool.run(2, |_| {
                std::hint::black_box((0..1000).sum::<u64>());
            });
            calls.push((tracer.ns(start), tracer.ns(Instant::now())));
        }
        let lanes = &tracer.pools()[0];
        let shares: Vec<_> = (0..2).flat_map(|t| lanes.shares(t)).collect();
        // Every index ran on some thread: 2 jobs per call.
        assert_eq!(shares.iter().map(|s| s.jobs).sum::<u32>(), 100);
        for s in &shares {
            assert!(s.start_ns <= s.end_ns);
            assert!(
                calls.iter().any(|&(a, b)| a <= s.start_ns && s.end_ns <= b),
                "share {s:?} outside every run call"
            );
        }
    }

    #[test]
    fn a_panicking_job_panics_the_caller_not_the_pool() {
        let pool = ThreadPool::new(2).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| pool.run(2, |i| assert!(i == 0))));
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        pool.run(2, |_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }
}
