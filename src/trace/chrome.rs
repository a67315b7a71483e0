//! The trace as Chrome trace-event JSON (the format of chrome://tracing, read by Perfetto):
//! `{"traceEvents": [...]}` with complete events (`"ph": "X"`, `ts` and `dur` in microseconds
//! since the tracer's origin) and metadata events naming the process and its threads.
//!
//! Track 1 holds the main thread's nested spans (phases > kernel searches; steps > op calls);
//! each pool thread has its own track, where its share of a parallel op is named after the op
//! (or search) whose span holds it in time: the pool runs a job inside the op that started it,
//! so the innermost span around a share is that op.

use std::io::Write;

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::tracer::{args, OpCall, OpInfo, Span, Tracer};

const PID: u32 = 1;
const MAIN_TID: u32 = 1;

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceSummary {
    pub events: usize,
    pub op_calls: usize,
    pub thread_shares: usize,
}

#[derive(Serialize)]
struct Complete<'a> {
    name: &'a str,
    cat: &'a str,
    ph: &'static str,
    ts: f64,
    dur: f64,
    pid: u32,
    tid: u32,
    args: &'a Map<String, Value>,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

/// Writes the tracer's records to `out`; `title` names the process (the model file).
pub fn write(tracer: &Tracer, title: &str, out: &mut dyn Write) -> std::io::Result<TraceSummary> {
    let mut spans = tracer.spans();
    spans.sort_by_key(|s| (s.start_ns, std::cmp::Reverse(s.dur_ns)));
    let ops = tracer.ops();
    let mut calls = tracer.calls();
    calls.sort_by_key(|c| c.start_ns);
    let pools = tracer.pools();

    let mut events = Events::new(out)?;
    let mut summary = TraceSummary::default();
    events.meta("process_name", MAIN_TID, json!({ "name": title }))?;
    events.meta("thread_name", MAIN_TID, json!({ "name": "main" }))?;
    events.meta("thread_sort_index", MAIN_TID, json!({ "sort_index": 0 }))?;
    for s in &spans {
        events.complete(&Complete {
            name: &s.name,
            cat: s.cat.name(),
            ph: "X",
            ts: us(s.start_ns),
            dur: us(s.dur_ns),
            pid: PID,
            tid: MAIN_TID,
            args: &s.args,
        })?;
    }
    let op_args: Vec<Map<String, Value>> = ops.iter().map(op_args).collect();
    for c in &calls {
        let Some(info) = ops.get(c.op as usize) else {
            continue;
        };
        let mut args = op_args[c.op as usize].clone();
        if let (Some(bytes), Some(flops)) = (c.bytes_read, c.flops) {
            args.insert("bytes_read".into(), bytes.into());
            args.insert("flops".into(), flops.into());
        }
        events.complete(&Complete {
            name: &info.name,
            cat: "op",
            ph: "X",
            ts: us(c.start_ns),
            dur: us(c.dur_ns),
            pid: PID,
            tid: MAIN_TID,
            args: &args,
        })?;
        summary.op_calls += 1;
    }
    let mut tid = MAIN_TID;
    for (p, pool) in pools.iter().enumerate() {
        for thread in 0..pool.n_threads() {
            tid += 1;
            let name = thread_name(p, thread, pools.len());
            events.meta("thread_name", tid, json!({ "name": name }))?;
            events.meta("thread_sort_index", tid, json!({ "sort_index": tid }))?;
            for share in pool.shares(thread) {
                let owner = owner(&calls, &ops, &spans, share.start_ns, share.end_ns);
                let args = args([
                    ("op", owner.into()),
                    ("thread", thread.into()),
                    ("jobs", share.jobs.into()),
                ]);
                events.complete(&Complete {
                    name: owner,
                    cat: "thread",
                    ph: "X",
                    ts: us(share.start_ns),
                    dur: us(share.end_ns.saturating_sub(share.start_ns)),
                    pid: PID,
                    tid,
                    args: &args,
                })?;
                summary.thread_shares += 1;
            }
        }
    }
    summary.events = events.finish()?;
    Ok(summary)
}

fn op_args(info: &OpInfo) -> Map<String, Value> {
    args([
        ("label", info.label.clone().into()),
        ("weights", info.weights.clone().into()),
        ("node", info.node.into()),
    ])
}

fn thread_name(pool: usize, thread: usize, n_pools: usize) -> String {
    let prefix = if n_pools > 1 {
        format!("pool {pool} thread {thread}")
    } else {
        format!("pool thread {thread}")
    };
    if thread == 0 {
        format!("{prefix} (the calling thread)")
    } else {
        prefix
    }
}

/// The name of the op call, else the innermost span, that holds `start..end` in time.
fn owner<'a>(
    calls: &[OpCall],
    ops: &'a [OpInfo],
    spans: &'a [Span],
    start: u64,
    end: u64,
) -> &'a str {
    let before = calls.partition_point(|c| c.start_ns <= start);
    if let Some(c) = before.checked_sub(1).map(|i| &calls[i]) {
        if c.start_ns + c.dur_ns >= end {
            if let Some(info) = ops.get(c.op as usize) {
                return &info.name;
            }
        }
    }
    spans
        .iter()
        .filter(|s| s.start_ns <= start && s.start_ns + s.dur_ns >= end)
        .min_by_key(|s| s.dur_ns)
        .map_or("pool job", |s| s.name.as_str())
}

/// The `traceEvents` array, written one event at a time (a long run has 10^5 and more).
struct Events<'w> {
    out: &'w mut dyn Write,
    count: usize,
}

impl<'w> Events<'w> {
    fn new(out: &'w mut dyn Write) -> std::io::Result<Self> {
        out.write_all(b"{\"traceEvents\":[\n")?;
        Ok(Events { out, count: 0 })
    }

    fn separator(&mut self) -> std::io::Result<()> {
        if self.count > 0 {
            self.out.write_all(b",\n")?;
        }
        self.count += 1;
        Ok(())
    }

    fn complete(&mut self, e: &Complete<'_>) -> std::io::Result<()> {
        self.separator()?;
        serde_json::to_writer(&mut *self.out, e)?;
        Ok(())
    }

    fn meta(&mut self, name: &str, tid: u32, args: Value) -> std::io::Result<()> {
        self.separator()?;
        let event = json!({ "name": name, "ph": "M", "pid": PID, "tid": tid, "args": args });
        serde_json::to_writer(&mut *self.out, &event)?;
        Ok(())
    }

    fn finish(self) -> std::io::Result<usize> {
        self.out.write_all(b"\n],\"displayTimeUnit\":\"ms\"}\n")?;
        Ok(self.count)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::tracer::{args, Category, OpInfo, StepKind, Tracer};
    use super::*;

    #[test]
    fn shares_are_named_after_the_op_that_holds_them() {
        let origin = Instant::now();
        let at = |us: u64| origin + Duration::from_micros(us);
        let tracer = Tracer::starting_at(origin);
        tracer.span(
            "compile",
            Category::Phase,
            at(0),
            Duration::from_micros(100),
            args([]),
        );
        tracer.span(
            "search Q8_0:8x32 decode",
            Category::Search,
            at(10),
            Duration::from_micros(20),
            args([]),
        );
        tracer.span(
            "decode 1",
            Category::Step(StepKind::Decode),
            at(200),
            Duration::from_micros(50),
            args([]),
        );
        let op = tracer.register_op(OpInfo {
            name: "FusedMatMul(MatMul)".into(),
            label: "FusedMatMul(MatMul) blk.0.attn_output".into(),
            weights: vec!["blk.0.attn_output".into()],
            node: 3,
        });
        tracer.op_call(op, at(210), at(230), Some((1000, 2000)));
        let lanes = tracer.pool_lanes(2);
        lanes.record(0, at(211), at(228), 1);
        lanes.record(1, at(212), at(229), 1);
        lanes.record(1, at(12), at(25), 2);
        lanes.record(1, at(400), at(401), 1);

        let mut out = Vec::new();
        let summary = write(&tracer, "m.gguf", &mut out).unwrap();
        assert_eq!((summary.op_calls, summary.thread_shares), (1, 4));
        let v: Value = serde_json::from_slice(&out).unwrap();
        let events = v["traceEvents"].as_array().unwrap();
        assert_eq!(events.len(), summary.events);
        let named = |tid: u64| -> Vec<&str> {
            events
                .iter()
                .filter(|e| e["ph"] == "X" && e["tid"] == tid)
                .map(|e| e["name"].as_str().unwrap())
                .collect()
        };
        assert_eq!(named(2), ["FusedMatMul(MatMul)"]);
        assert_eq!(
            named(3),
            ["FusedMatMul(MatMul)", "search Q8_0:8x32 decode", "pool job"]
        );
        let call = events.iter().find(|e| e["cat"] == "op").unwrap();
        assert_eq!(
            (call["ts"].as_f64(), call["dur"].as_f64()),
            (Some(210.0), Some(20.0))
        );
        assert_eq!(call["args"]["weights"][0], "blk.0.attn_output");
        assert_eq!(call["args"]["bytes_read"], 1000);
        let thread_names: Vec<&str> = events
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| e["args"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            thread_names,
            [
                "main",
                "pool thread 0 (the calling thread)",
                "pool thread 1"
            ]
        );
    }
}
