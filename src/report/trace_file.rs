//! `--trace FILE.json`: writes the run's timeline (`crate::trace`) and says what the tracer
//! itself cost: its decorator's measured cost per op call and the pool's per parallel job,
//! times how many of each a decode step made, against the mean decode step.

use std::path::Path;

use serde::Serialize;

use crate::outfile::{OutFile, OutFileError};
use crate::trace::{self, Category, StepKind, Tracer};

/// The file `path` as `--trace` names it, for checks and errors.
pub fn out_file(path: &Path) -> OutFile<'_> {
    OutFile {
        what: "trace",
        flag: "--trace",
        path,
    }
}

/// What was written, and what recording it cost.
#[derive(Debug, Clone, Serialize)]
pub struct TraceReport {
    pub file: String,
    pub bytes: u64,
    pub events: usize,
    pub op_calls: usize,
    pub thread_shares: usize,
    pub overhead: TraceOverhead,
}

/// The tracer's own cost, measured on this machine in this run.
#[derive(Debug, Clone, Serialize)]
pub struct TraceOverhead {
    /// What the trace decorator adds to one op call (a no-op op timed bare and traced).
    pub ns_per_op_call: f64,
    /// What recording the threads' shares adds to one pool job (`--parallel`).
    pub ns_per_pool_job: f64,
    /// Op calls and pool jobs per decode step, counted in the trace.
    pub op_calls_per_step: f64,
    pub pool_jobs_per_step: f64,
    /// Their cost together as a share of the mean decode step.
    pub share_of_step: f64,
}

/// What recording costs, measured by the run on this machine (the report only multiplies them by
/// what the trace counted).
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceCosts {
    /// What the trace decorator adds to one op call.
    pub ns_per_op_call: f64,
    /// What recording the threads' shares adds to one pool job (0 without a pool).
    pub ns_per_pool_job: f64,
}

/// Writes the trace of `tracer` to `path` (atomically), titled `title`, with what recording it
/// cost per decode step.
pub fn write(
    tracer: &Tracer,
    path: &Path,
    title: &str,
    costs: TraceCosts,
) -> Result<TraceReport, OutFileError> {
    let overhead = overhead(tracer, costs);
    let mut summary = trace::TraceSummary::default();
    let bytes = out_file(path).write(|out| {
        summary = trace::write(tracer, title, out)?;
        Ok(())
    })?;
    Ok(TraceReport {
        file: path.display().to_string(),
        bytes,
        events: summary.events,
        op_calls: summary.op_calls,
        thread_shares: summary.thread_shares,
        overhead,
    })
}

fn overhead(tracer: &Tracer, costs: TraceCosts) -> TraceOverhead {
    let TraceCosts {
        ns_per_op_call,
        ns_per_pool_job,
    } = costs;
    let counts = decode_counts(tracer);
    let cost = ns_per_op_call * counts.op_calls_per_step + ns_per_pool_job * counts.jobs_per_step;
    TraceOverhead {
        ns_per_op_call,
        ns_per_pool_job,
        op_calls_per_step: counts.op_calls_per_step,
        pool_jobs_per_step: counts.jobs_per_step,
        share_of_step: if counts.mean_step_ns > 0.0 {
            cost / counts.mean_step_ns
        } else {
            0.0
        },
    }
}

struct DecodeCounts {
    op_calls_per_step: f64,
    jobs_per_step: f64,
    mean_step_ns: f64,
}

/// Op calls and pool jobs (shares of the calling thread, which takes part in every job) per
/// decode step, and the mean decode step.
fn decode_counts(tracer: &Tracer) -> DecodeCounts {
    let steps: Vec<(u64, u64)> = tracer
        .spans()
        .iter()
        .filter(|s| s.cat == Category::Step(StepKind::Decode))
        .map(|s| (s.start_ns, s.start_ns + s.dur_ns))
        .collect();
    let mut calls: Vec<u64> = tracer.calls().iter().map(|c| c.start_ns).collect();
    calls.sort_unstable();
    let mut jobs: Vec<u64> = tracer
        .pools()
        .first()
        .map(|p| p.shares(0).iter().map(|s| s.start_ns).collect())
        .unwrap_or_default();
    jobs.sort_unstable();
    let within = |sorted: &[u64]| -> usize {
        steps
            .iter()
            .map(|&(a, b)| sorted.partition_point(|&t| t <= b) - sorted.partition_point(|&t| t < a))
            .sum()
    };
    let n = steps.len().max(1) as f64;
    DecodeCounts {
        op_calls_per_step: within(&calls) as f64 / n,
        jobs_per_step: within(&jobs) as f64 / n,
        mean_step_ns: steps.iter().map(|(a, b)| (b - a) as f64).sum::<f64>() / n,
    }
}

/// One line for the summary: where the trace went and what it cost.
pub fn describe(t: &TraceReport) -> String {
    let o = &t.overhead;
    let pool = if o.ns_per_pool_job > 0.0 {
        format!(
            " + {:.0} ns per pool job ({:.0}/step)",
            o.ns_per_pool_job, o.pool_jobs_per_step
        )
    } else {
        String::new()
    };
    format!(
        "trace: wrote {} ({} events, {:.1} MB); tracer overhead {:.0} ns per op call ({:.0}/step){pool}, about {:.2}% of a decode step",
        t.file,
        t.events,
        t.bytes as f64 / 1e6,
        o.ns_per_op_call,
        o.op_calls_per_step,
        o.share_of_step * 100.0
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::trace::{args, OpInfo};

    #[test]
    fn counts_only_what_falls_in_decode_steps() {
        let origin = Instant::now();
        let at = |us: u64| origin + Duration::from_micros(us);
        let tracer = Tracer::starting_at(origin);
        let d = Duration::from_micros(100);
        tracer.span(
            "prompt",
            Category::Step(StepKind::Prompt),
            at(0),
            d,
            args([]),
        );
        tracer.span(
            "decode 1",
            Category::Step(StepKind::Decode),
            at(200),
            d,
            args([]),
        );
        tracer.span(
            "decode 2",
            Category::Step(StepKind::Decode),
            at(400),
            d,
            args([]),
        );
        let op = tracer.register_op(OpInfo {
            name: "Op".into(),
            label: "Op".into(),
            weights: vec![],
            node: 0,
        });
        for start in [10, 20, 210, 220, 230, 410] {
            tracer.op_call(op, at(start), at(start + 5), None);
        }
        let lanes = tracer.pool_lanes(2);
        for start in [11, 211, 411, 412] {
            lanes.record(0, at(start), at(start + 1), 1);
        }
        lanes.record(1, at(212), at(213), 1);
        let c = decode_counts(&tracer);
        assert_eq!((c.op_calls_per_step, c.jobs_per_step), (2.0, 1.5));
        assert!((c.mean_step_ns - 100_000.0).abs() < 1e-9);
    }
}
