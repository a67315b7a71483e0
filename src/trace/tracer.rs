//! The tracer: spans, op calls and pool-thread shares recorded on one monotonic clock while a
//! traced run goes.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// What kind of span: the trace-event `cat` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Load, compile: once per run.
    Phase,
    /// A kernel search of one matmul job, inside the compile.
    Search,
    /// One forward pass: the prompt, a decode step, a sweep chunk.
    Step(StepKind),
}

/// Which forward pass a [`Category::Step`] span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Prompt,
    Decode,
    /// A `--sweep` chunk of prompt tokens or its decode steps.
    Sweep,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Phase => "phase",
            Category::Search => "search",
            Category::Step(_) => "step",
        }
    }
}

/// A span on the main thread (not an op call: those are [`OpCall`]s).
#[derive(Debug, Clone)]
pub struct Span {
    pub name: String,
    pub cat: Category,
    pub start_ns: u64,
    pub dur_ns: u64,
    pub args: Map<String, Value>,
}

/// An operator of the traced graph, registered once when the decorators are installed.
#[derive(Debug, Clone, PartialEq)]
pub struct OpInfo {
    /// As the kernel profile's table names it (`FusedMatMul(RmsNorm+MatMulx3)`, `LM head: ...`).
    pub name: String,
    /// As the profile's slowest-node table names it (`FusedMatMul(RmsNorm+MatMulx3) blk.3`).
    pub label: String,
    /// The GGUF tensors it reads, without `.weight`.
    pub weights: Vec<String>,
    /// Its graph node.
    pub node: usize,
}

/// One call of a registered op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpCall {
    pub op: u32,
    pub start_ns: u64,
    pub dur_ns: u64,
    /// From the op's cost model; `None` for an op without one.
    pub bytes_read: Option<u64>,
    pub flops: Option<u64>,
}

/// One pool thread's part of one parallel job: from its first claimed index to the end of its
/// last, in ns since the trace's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub start_ns: u64,
    pub end_ns: u64,
    /// Job indices the thread ran.
    pub jobs: u32,
}

/// Per-thread records of one thread pool: thread `i` writes only lane `i`, so threads never
/// wait for each other to record.
#[derive(Debug)]
pub struct PoolLanes {
    origin: Instant,
    lanes: Vec<Mutex<Vec<Share>>>,
}

/// Shares reserved per lane up front, so that recording rarely reallocates.
const LANE_RESERVE: usize = 1 << 14;

impl PoolLanes {
    /// Records thread `thread`'s share from `start` to `end` (ignored for a thread the pool did
    /// not announce).
    pub fn record(&self, thread: usize, start: Instant, end: Instant, jobs: u32) {
        if let Some(lane) = self.lanes.get(thread) {
            let share = Share {
                start_ns: ns_since(self.origin, start),
                end_ns: ns_since(self.origin, end),
                jobs,
            };
            lock(lane).push(share);
        }
    }

    pub fn n_threads(&self) -> usize {
        self.lanes.len()
    }

    /// Thread `thread`'s shares so far.
    pub fn shares(&self, thread: usize) -> Vec<Share> {
        self.lanes
            .get(thread)
            .map(|l| lock(l).clone())
            .unwrap_or_default()
    }
}

/// The timeline of one run.
#[derive(Debug)]
pub struct Tracer {
    origin: Instant,
    spans: Mutex<Vec<Span>>,
    ops: Mutex<Vec<OpInfo>>,
    calls: Mutex<Vec<OpCall>>,
    pools: Mutex<Vec<Arc<PoolLanes>>>,
}

impl Tracer {
    /// A tracer whose clock starts now: every timestamp is measured from this instant.
    pub fn new() -> Arc<Self> {
        Self::starting_at(Instant::now())
    }

    /// A tracer whose clock starts at `origin` (the run's start, taken before anything else).
    pub fn starting_at(origin: Instant) -> Arc<Self> {
        Arc::new(Tracer {
            origin,
            spans: Mutex::default(),
            ops: Mutex::default(),
            calls: Mutex::new(Vec::with_capacity(1 << 16)),
            pools: Mutex::default(),
        })
    }

    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Nanoseconds from the origin to `t` (0 for an instant before it).
    pub fn ns(&self, t: Instant) -> u64 {
        ns_since(self.origin, t)
    }

    /// Records a span that started at `start` and lasted `dur`.
    pub fn span(
        &self,
        name: impl Into<String>,
        cat: Category,
        start: Instant,
        dur: Duration,
        args: Map<String, Value>,
    ) {
        let span = Span {
            name: name.into(),
            cat,
            start_ns: self.ns(start),
            dur_ns: saturating_ns(dur),
            args,
        };
        lock(&self.spans).push(span);
    }

    /// Registers an op; its calls are recorded under the returned id.
    pub fn register_op(&self, info: OpInfo) -> u32 {
        let mut ops = lock(&self.ops);
        ops.push(info);
        u32::try_from(ops.len() - 1).unwrap_or(u32::MAX)
    }

    /// Records one call of op `op`.
    pub fn op_call(&self, op: u32, start: Instant, end: Instant, cost: Option<(u64, u64)>) {
        let start_ns = self.ns(start);
        let call = OpCall {
            op,
            start_ns,
            dur_ns: self.ns(end).saturating_sub(start_ns),
            bytes_read: cost.map(|c| c.0),
            flops: cost.map(|c| c.1),
        };
        lock(&self.calls).push(call);
    }

    /// Lanes for a pool of `n_threads` threads (the calling thread is thread 0).
    pub fn pool_lanes(&self, n_threads: usize) -> Arc<PoolLanes> {
        let lanes = Arc::new(PoolLanes {
            origin: self.origin,
            lanes: (0..n_threads)
                .map(|_| Mutex::new(Vec::with_capacity(LANE_RESERVE)))
                .collect(),
        });
        lock(&self.pools).push(lanes.clone());
        lanes
    }

    pub fn spans(&self) -> Vec<Span> {
        lock(&self.spans).clone()
    }

    pub fn ops(&self) -> Vec<OpInfo> {
        lock(&self.ops).clone()
    }

    pub fn calls(&self) -> Vec<OpCall> {
        lock(&self.calls).clone()
    }

    pub fn pools(&self) -> Vec<Arc<PoolLanes>> {
        lock(&self.pools).clone()
    }
}

/// A tracer's lock is only ever held to push or copy records: a poisoned one still holds them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ns_since(origin: Instant, t: Instant) -> u64 {
    saturating_ns(t.saturating_duration_since(origin))
}

fn saturating_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Arguments of a span, from `(key, value)` pairs.
pub fn args<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_the_clock_of_the_origin() {
        let origin = Instant::now();
        let tracer = Tracer::starting_at(origin);
        let t1 = origin + Duration::from_micros(5);
        tracer.span(
            "load",
            Category::Phase,
            t1,
            Duration::from_micros(3),
            args([("file", "m.gguf".into())]),
        );
        let op = tracer.register_op(OpInfo {
            name: "MatMul".into(),
            label: "MatMul blk.0.attn_q".into(),
            weights: vec!["blk.0.attn_q".into()],
            node: 7,
        });
        tracer.op_call(op, t1, t1 + Duration::from_nanos(1500), Some((64, 128)));
        let lanes = tracer.pool_lanes(2);
        lanes.record(1, t1, t1 + Duration::from_nanos(900), 1);
        lanes.record(5, t1, t1, 1);

        let spans = tracer.spans();
        assert_eq!((spans[0].start_ns, spans[0].dur_ns), (5_000, 3_000));
        assert_eq!(spans[0].args["file"], "m.gguf");
        let calls = tracer.calls();
        assert_eq!(
            calls,
            vec![OpCall {
                op: 0,
                start_ns: 5_000,
                dur_ns: 1_500,
                bytes_read: Some(64),
                flops: Some(128)
            }]
        );
        let pools = tracer.pools();
        assert_eq!(pools[0].n_threads(), 2);
        assert!(pools[0].shares(0).is_empty());
        assert_eq!(
            pools[0].shares(1),
            vec![Share {
                start_ns: 5_000,
                end_ns: 5_900,
                jobs: 1
            }]
        );
        assert!(pools[0].shares(5).is_empty());
    }

    #[test]
    fn instants_before_the_origin_clamp_to_zero() {
        let early = Instant::now();
        let tracer = Tracer::starting_at(early + Duration::from_millis(1));
        assert_eq!(tracer.ns(early), 0);
    }
}
