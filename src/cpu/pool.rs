//! A persistent thread pool for kernel calls: workers spin briefly between calls, then park.
//!
//! A decode step makes ~200 matmul calls of 20-200 µs each, so waking threads must cost far
//! less than a microsecond or two. Workers that finished a job spin on an epoch counter for
//! `spin` before parking on a condvar; the calling thread takes part as thread 0.
//! (benches/matmul.rs compares the per-call overhead with rayon's.)

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::error::KernelError;

type Job = dyn Fn(usize) + Sync;

struct Shared {
    epoch: AtomicU64,
    /// The job of the current epoch; its lifetime is erased (see `run`).
    job: UnsafeCell<Option<&'static Job>>,
    active: AtomicUsize,
    remaining: AtomicUsize,
    sleepers: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
    spin: Duration,
}

// SAFETY: `job` is written only by the thread in `run` before it publishes a new epoch
// (Release) and read by workers after they observe it (Acquire); `run` waits until every
// worker is done with it before it returns and the job can go away.
unsafe impl Sync for Shared {}

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

    /// As [`ThreadPool::new`], with the time idle workers spin before parking.
    pub fn with_spin(n_threads: usize, spin: Duration) -> Result<Self, KernelError> {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            active: AtomicUsize::new(0),
            remaining: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            spin,
        });
        let mut pool = ThreadPool {
            shared,
            workers: Vec::new(),
            busy: Mutex::new(()),
        };
        for index in 1..n_threads.max(1) {
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

    /// Runs `f(i)` for `i in 0..n` on `n` threads (capped at the pool size), `f(0)` on the
    /// calling thread, and returns when all are done. A nested or concurrent call runs
    /// everything on the calling thread instead of waiting.
    pub fn run<F: Fn(usize) + Sync>(&self, n: usize, f: F) {
        let n = n.clamp(1, self.n_threads());
        let _guard = match self.busy.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        if n == 1 || _guard.is_none() {
            (0..n).for_each(&f);
            return;
        }
        let s = &*self.shared;
        let job: &(dyn Fn(usize) + Sync + '_) = &f;
        // SAFETY: lifetime erased; `wait_workers` below outlasts every use of it.
        let job: &'static Job = unsafe { std::mem::transmute(job) };
        unsafe { *s.job.get() = Some(job) };
        s.active.store(n, Ordering::Relaxed);
        s.remaining.store(n - 1, Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _l = s.lock.lock().unwrap_or_else(|p| p.into_inner());
            s.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        wait_workers(s);
        unsafe { *s.job.get() = None };
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a kernel thread panicked");
        }
    }
}

fn wait_workers(s: &Shared) {
    let mut spins = 0u32;
    while s.remaining.load(Ordering::Acquire) != 0 {
        spins += 1;
        if spins < 1 << 16 {
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
        if index >= s.active.load(Ordering::Relaxed) {
            continue;
        }
        // SAFETY: published before the epoch we observed with Acquire; see `Shared`.
        if let Some(job) = unsafe { *s.job.get() } {
            if catch_unwind(AssertUnwindSafe(|| job(index))).is_err() {
                s.panicked.store(true, Ordering::Relaxed);
            }
        }
        s.remaining.fetch_sub(1, Ordering::Release);
    }
}

/// Waits for an epoch other than `seen`: spins for `s.spin`, then parks. `None` on shutdown.
fn wait_epoch(s: &Shared, seen: u64) -> Option<u64> {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let e = s.epoch.load(Ordering::Acquire);
        if e != seen {
            return Some(e);
        }
        if s.shutdown.load(Ordering::Relaxed) {
            return None;
        }
        spins += 1;
        if spins % 256 != 0 || start.elapsed() < s.spin {
            std::hint::spin_loop();
            continue;
        }
        let mut guard = s.lock.lock().unwrap_or_else(|p| p.into_inner());
        s.sleepers.fetch_add(1, Ordering::SeqCst);
        while s.epoch.load(Ordering::SeqCst) == seen && !s.shutdown.load(Ordering::SeqCst) {
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
                assert_eq!(h.load(Ordering::Relaxed), want, "thread {i} with n={n}");
            }
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
