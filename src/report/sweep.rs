//! What `--sweep` reports: a row per depth (as ik_llama.cpp's sweep-bench prints them, rates as
//! tokens over the total time of the chunk or of the `-t` steps), printed as each completes, and
//! one JSON object with the run's identity and `sweep: [{n_kv, pp_tokens, pp_ts, tg_tokens,
//! tg_ts}]`.

use serde::Serialize;

use crate::backend::Features;
use crate::sweep::{Plan, Row, Sweep};

use super::{RunHeader, RunInfo, TraceReport};

/// One depth of the sweep.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SweepRow {
    /// Positions in the KV cache before the row's steps.
    pub n_kv: usize,
    pub pp_tokens: usize,
    pub pp_ms: f64,
    /// Prompt tokens per second: `pp_tokens` over the chunk's pass.
    pub pp_ts: f64,
    pub tg_tokens: usize,
    pub tg_ms: f64,
    /// Decode tokens per second: `tg_tokens` over the steps' total time.
    pub tg_ts: f64,
}

impl From<&Row> for SweepRow {
    fn from(r: &Row) -> Self {
        let rate = |tokens: usize, ns: u64| tokens as f64 * 1e9 / ns.max(1) as f64;
        SweepRow {
            n_kv: r.n_kv,
            pp_tokens: r.pp_tokens,
            pp_ms: r.pp_ns as f64 / 1e6,
            pp_ts: rate(r.pp_tokens, r.pp_ns),
            tg_tokens: r.tg_tokens,
            tg_ms: r.tg_ns as f64 / 1e6,
            tg_ts: rate(r.tg_tokens, r.tg_ns),
        }
    }
}

/// Everything a sweep reports.
#[derive(Debug, Serialize)]
pub struct SweepReport {
    #[serde(flatten)]
    pub header: RunHeader,
    /// `--sweep MAX`.
    pub n_kv_max: usize,
    /// Prompt tokens per chunk (`--ubatch`).
    pub n_ubatch: usize,
    /// Decode steps per depth (`-t`).
    pub n_gen: usize,
    pub interrupted: bool,
    pub sweep: Vec<SweepRow>,
    /// The timeline written (with `--trace`).
    pub trace: Option<TraceReport>,
}

impl SweepReport {
    pub fn new(info: RunInfo, plan: &Plan, n_kv_max: usize, sweep: &Sweep) -> Self {
        SweepReport {
            header: RunHeader::from(info),
            n_kv_max,
            n_ubatch: plan.ubatch,
            n_gen: plan.tg,
            interrupted: sweep.interrupted,
            sweep: sweep.rows.iter().map(SweepRow::from).collect(),
            trace: None,
        }
    }
}

/// The table's title and column heads, printed before the first row.
pub fn header(plan: &Plan, features: &Features) -> String {
    format!(
        "== Sweep ({} mode, {} thread{}; ubatch {}, tg {}) ==\n\
         |    PP |    TG |   N_KV |   T_PP s |  S_PP t/s |   T_TG s |  S_TG t/s |\n\
         |-------|-------|--------|----------|-----------|----------|-----------|",
        features.mode,
        features.threads,
        if features.threads == 1 { "" } else { "s" },
        plan.ubatch,
        plan.tg
    )
}

/// One row of the table.
pub fn row_line(r: &SweepRow) -> String {
    format!(
        "| {:>5} | {:>5} | {:>6} | {:>8.3} | {:>9.2} | {:>8.3} | {:>9.2} |",
        r.pp_tokens,
        r.tg_tokens,
        r.n_kv,
        r.pp_ms / 1e3,
        r.pp_ts,
        r.tg_ms / 1e3,
        r.tg_ts
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_tokens_over_the_total_time() {
        let row = SweepRow::from(&Row {
            n_kv: 512,
            pp_tokens: 512,
            pp_ns: 2_000_000_000,
            tg_tokens: 32,
            tg_ns: 400_000_000,
        });
        assert_eq!((row.pp_ts, row.tg_ts), (256.0, 80.0));
        assert_eq!((row.pp_ms, row.tg_ms), (2000.0, 400.0));
        let line = row_line(&row);
        assert_eq!(
            line,
            "|   512 |    32 |    512 |    2.000 |    256.00 |    0.400 |     80.00 |"
        );
    }
}
