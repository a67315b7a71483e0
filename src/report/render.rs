//! The report as text for a person: the short summary and the `--kernel-timing` report.

use std::fmt::Write;

use super::kernels::KernelTime;
use super::{PhaseReport, RunReport};
use crate::report::sparkline::{histogram, sparkline};

const MS: f64 = 1e6;

impl RunReport {
    /// The short summary printed after generation.
    pub fn summary(&self) -> String {
        summary(self)
    }

    /// The `--kernel-timing` report.
    pub fn detailed(&self) -> String {
        detailed(self)
    }
}

/// load, compile, prompt tok/s, time to first token, decode tok/s ± sd, and (with a kernel
/// profile) the share of the machine's read bandwidth decode used.
fn summary(r: &RunReport) -> String {
    let h = &r.header;
    let mut out = format!(
        "load {:.0} ms, compile {:.0} ms ({} mode, {} thread{})\n",
        h.load_ms,
        h.compile_ms,
        h.features.mode,
        h.n_threads,
        if h.n_threads == 1 { "" } else { "s" }
    );
    if let Some(p) = &r.prefill {
        let _ = writeln!(
            out,
            "prompt   {:>5} tokens in {:>9.2} ms: {:>9.2} tok/s",
            p.n_tokens,
            p.timing.avg_ns / MS,
            p.timing.avg_ts
        );
    }
    if let Some(ttft) = r.ttft_ms {
        let _ = writeln!(
            out,
            "first token after {ttft:.2} ms (prompt encoding {:.2} ms + prompt pass + sampling)",
            r.prompt_encode_ms
        );
    }
    match &r.decode {
        Some(d) => {
            let _ = write!(
                out,
                "generate {:>5} tokens in {:>9.2} ms: {:>9.2} ± {:.2} tok/s ({:.2} ms/token)",
                d.n_tokens,
                d.timing.total_ns as f64 / MS,
                d.timing.avg_ts,
                d.timing.stddev_ts,
                d.timing.avg_ns / MS
            );
        }
        None => {
            let _ = write!(out, "generate {:>5} tokens", r.n_gen);
        }
    }
    if let Some(m) = &r.mtp {
        let _ = write!(out, "\n{}", m.lines());
    }
    if let Some(b) = &r.memory_bandwidth {
        let _ = write!(
            out,
            "\ndecode read {:.1} GB/s ({:.1} MB/token): {:.0}% of the {:.1} GB/s this machine reads with {} thread{} ({})",
            b.decode_gb_per_s,
            b.decode_bytes_per_step / 1e6,
            b.decode_share * 100.0,
            b.measured_gb_per_s,
            b.threads,
            if b.threads == 1 { "" } else { "s" },
            if b.cached { "cached read test" } else { "read test run now" }
        );
    }
    if let Some(rep) = &r.repeat {
        for (name, spread) in [("prompt", &rep.prefill), ("generate", &rep.decode)] {
            if let Some(s) = spread {
                let _ = write!(
                    out,
                    "\n{name} over {} runs: {:.2} ± {:.2} tok/s (min {:.2}, max {:.2})",
                    s.n_runs, s.avg_ts, s.stddev_ts, s.min_ts, s.max_ts
                );
            }
        }
    }
    out
}

/// Everything: decode statistics, first tokens, latency chart, features, kernel profile.
fn detailed(r: &RunReport) -> String {
    let mut out = String::new();
    if let Some(d) = &r.decode {
        decode_section(&mut out, d);
    }
    if let Some(p) = &r.prefill {
        let _ = writeln!(
            out,
            "\n== Prompt ({}) ==\n{} tokens in {:.2} ms: {:.2} tok/s",
            p.test,
            p.n_tokens,
            p.timing.avg_ns / MS,
            p.timing.avg_ts
        );
    }
    features_section(&mut out, r);
    if let Some(kinds) = &r.kernels {
        profile_section(&mut out, r, kinds);
    }
    out
}

fn decode_section(out: &mut String, d: &PhaseReport) {
    let t = &d.timing;
    let ms: Vec<f64> = t.samples_ns.iter().map(|&ns| ns as f64 / MS).collect();
    let _ = writeln!(out, "== Decode timing ({}, {} steps) ==", d.test, t.n);
    let _ = writeln!(
        out,
        "mean   {:>9.3} ms/token   {:.2} ± {:.2} tok/s",
        t.avg_ns / MS,
        t.avg_ts,
        t.stddev_ts
    );
    let _ = writeln!(
        out,
        "min    {:>9.3} ms   max {:>9.3} ms   sd {:.3} ms",
        t.min_ns as f64 / MS,
        t.max_ns as f64 / MS,
        t.stddev_ns / MS
    );
    let _ = writeln!(
        out,
        "median {:>9.3} ms   p90 {:>9.3} ms   p99 {:.3} ms",
        t.median_ns / MS,
        t.p90_ns / MS,
        t.p99_ns / MS
    );
    let warmup = match t.warmup_ns {
        Some(ns) => format!("first step excluded as warm-up: {:.3} ms", ns as f64 / MS),
        None => "every step counted, the first included".into(),
    };
    let _ = writeln!(out, "{warmup}; sd is the sample sd (N-1)");
    let first: Vec<String> = ms.iter().take(10).map(|v| format!("{v:.2}")).collect();
    let _ = writeln!(out, "first {} (ms): {}", first.len(), first.join(" "));
    let _ = writeln!(out, "per token:  {}", sparkline(&ms, 64));
    let _ = write!(out, "{}", histogram(&ms, 6, 30, "ms"));
    if !out.ends_with('\n') {
        out.push('\n');
    }
}

fn features_section(out: &mut String, r: &RunReport) {
    let (f, machine) = (&r.header.features, &r.header.machine);
    let _ = writeln!(out, "\n== Enhanced features ==");
    let _ = writeln!(
        out,
        "backend    {} ({}, {} logical cores)",
        f.backend, machine.cpu, machine.logical_cores
    );
    let _ = writeln!(
        out,
        "mode       {}{}",
        f.mode,
        if r.header.parallel {
            " (--parallel)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "threads    {}", f.threads);
    let _ = writeln!(out, "simd       {}", f.simd);
    let _ = writeln!(out, "passes     {}", f.compiler_passes.join(" -> "));
    let _ = writeln!(out, "kv cache   {}", f.kv_cache);
    if let Some(experts) = &f.experts {
        let _ = writeln!(out, "experts    {experts}");
    }
    let _ = writeln!(out, "graph      {} nodes", f.graph_nodes);
    for k in &f.kernels {
        let _ = writeln!(out, "kernel     {k}");
    }
    for p in &f.kernel_plans {
        let _ = writeln!(out, "plan       {p}");
    }
    if let Some(repacked) = &f.repacked {
        let _ = writeln!(out, "repacked   {repacked}");
    }
    if let Some(cache) = &f.plan_cache {
        let _ = writeln!(out, "plan cache {cache}");
    }
}

fn profile_section(out: &mut String, r: &RunReport, kinds: &[KernelTime]) {
    let steps = r.decode.as_ref().map_or(1, |d| d.n_tokens.max(1)) as f64;
    let _ = writeln!(out, "\n== Kernel profile (decode, {steps} steps) ==");
    kernel_table(out, kinds, steps);
    let accounted: f64 = kinds.iter().map(|k| k.share).sum();
    let _ = writeln!(
        out,
        "{:<40} {:>7} {:>10} {:>9} {:>6.1}%",
        "(graph executor, between ops)",
        "",
        "",
        "",
        (1.0 - accounted).max(0.0) * 100.0
    );
    let _ = writeln!(
        out,
        "MB/step: bytes read per step (weights as stored, KV cache, activations); GB/s and \
         GFLOP/s: achieved, over the kernel's own time (a multiply-add counts 2)"
    );
    if let Some(nodes) = &r.kernel_nodes {
        let _ = writeln!(out, "\nslowest nodes:");
        kernel_table(out, nodes, steps);
    }
    if let Some(o) = &r.profiler_overhead {
        let _ = writeln!(
            out,
            "\nprofiler overhead: {:.0} ns per op call, about {:.2}% of a decode step",
            o.ns_per_call,
            o.share_of_step * 100.0
        );
    }
}

fn kernel_table(out: &mut String, lines: &[KernelTime], steps: f64) {
    let _ = writeln!(
        out,
        "{:<40} {:>7} {:>10} {:>9} {:>7} {:>9} {:>7} {:>8}",
        "kernel", "calls", "total ms", "ms/step", "share", "MB/step", "GB/s", "GFLOP/s"
    );
    for k in lines {
        let total = k.total_ns as f64 / MS;
        let figure = |v: Option<f64>, width: usize, digits: usize| {
            v.map_or_else(
                || format!("{:>width$}", "-"),
                |v| format!("{v:>width$.digits$}"),
            )
        };
        let mb_per_step = k.bytes_read.map(|b| b as f64 / 1e6 / steps);
        let _ = writeln!(
            out,
            "{:<40} {:>7} {:>10.2} {:>9.3} {:>6.1}% {} {} {}",
            truncate(&k.name, 40),
            k.calls,
            total,
            total / steps,
            k.share * 100.0,
            figure(mb_per_step, 9, 3),
            figure(k.gb_per_s, 7, 1),
            figure(k.gflop_per_s, 8, 1)
        );
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}
