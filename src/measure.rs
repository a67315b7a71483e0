//! What a run measures besides generation, before its report is built: the machine it ran on,
//! what timing and tracing cost per call, the read bandwidth the roofline compares with. The
//! report only formats these figures.

use std::path::Path;

use crate::cpu::bandwidth::{self, Bandwidth};
use crate::ops::instrument::{self, Instruments};
use crate::report::trace_file::TraceCosts;
use crate::report::Machine;
use crate::trace::Tracer;

/// The CPU (its model name where the OS says it), the logical cores, the OS and architecture.
pub fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    Machine {
        cpu,
        logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        os: std::env::consts::OS,
        arch: std::env::consts::ARCH,
    }
}

/// What the profiling decorator adds to one op call, on this machine now.
pub fn profiler_ns_per_call() -> f64 {
    instrument::overhead_per_call_ns(&Instruments {
        profile: true,
        trace: None,
    })
}

/// What the trace decorator adds to one op call, and the pool's lanes to one job of a pool of
/// `threads` threads (when the run's tracer recorded a pool).
pub fn trace_costs(tracer: &Tracer, threads: usize) -> TraceCosts {
    let ns_per_op_call = instrument::overhead_per_call_ns(&Instruments {
        profile: false,
        trace: Some(Tracer::new()),
    });
    let pooled = !tracer.pools().is_empty() && threads > 1;
    TraceCosts {
        ns_per_op_call,
        ns_per_pool_job: if pooled {
            crate::cpu::pool::trace_overhead_per_job_ns(threads)
        } else {
            0.0
        },
    }
}

/// The machine's read bandwidth with `threads` threads (cached per machine in `cache_dir`).
pub fn read_bandwidth(threads: usize, cache_dir: Option<&Path>) -> Bandwidth {
    bandwidth::read_bandwidth(threads, cache_dir)
}
