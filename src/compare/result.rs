//! The comparison of two files, computed once from their paired tests and typed until it is
//! printed: the rows of the text, Markdown and JSON outputs alike.

use serde::Serialize;

use super::input::{Content, Engine, Kernel, Phase, Source, Sweep, Test};
use super::pairing::Pairing;
use super::stats::{self, Center, Estimate, Resampling, Shift, ALPHA};

/// What `qwen compare --json` prints: the first comparison (B with A) at the top, those of
/// further files with A in `more`, and how every figure was computed.
#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub first: Comparison,
    pub more: Vec<Comparison>,
    pub method: Method,
}

/// How the figures were computed, stated in the output itself.
#[derive(Debug, Clone, Serialize)]
pub struct Method {
    pub seed: u64,
    pub resamples: usize,
    pub alpha: f64,
    pub ratio: &'static str,
    pub ci95: &'static str,
    pub p_value: &'static str,
    pub verdict: &'static str,
}

impl Method {
    pub fn new(how: Resampling) -> Self {
        Method {
            seed: how.seed,
            resamples: how.resamples,
            alpha: ALPHA,
            ratio: "phases: B's median tok/s over A's, over runs when either side has several \
                    (each run's tokens over its time), else over the steps of the one run; \
                    kernels: B's mean time per step over A's",
            ci95: "percentile bootstrap, each side resampled on its own",
            p_value: "two-sided Mann-Whitney U, exact (ties at mean ranks) up to about 60 \
                      units a side, else normal with tie correction; sweeps: exact Wilcoxon \
                      signed-rank over depths",
            verdict: "faster or slower only when p < alpha and the interval excludes 1",
        }
    }
}

/// B compared with A.
#[derive(Debug, Serialize)]
pub struct Comparison {
    pub a: SideInfo,
    pub b: SideInfo,
    pub phases: Vec<PhaseRow>,
    pub kernels: Vec<KernelRow>,
    pub sweep: Vec<DepthRow>,
    pub sweep_summary: Vec<SweepSummary>,
    pub warnings: Vec<String>,
    pub not_compared: Vec<String>,
}

/// One file, as the output names it.
#[derive(Debug, Serialize)]
pub struct SideInfo {
    pub file: String,
    pub engine: &'static str,
    pub model_filename: String,
    pub model_digest: Option<String>,
    pub model_type: Option<String>,
    pub cpu: Option<String>,
    pub logical_cores: Option<usize>,
    /// Reports (qwen) or test entries (llama-bench) the file holds.
    pub items: usize,
}

impl SideInfo {
    fn of(s: &Source) -> Self {
        SideInfo {
            file: s.path.clone(),
            engine: s.engine.name(),
            model_filename: s.model.filename.clone(),
            model_digest: s.model.digest.clone(),
            model_type: s.model.kind.clone(),
            cpu: s.machine.as_ref().map(|m| m.cpu.clone()),
            logical_cores: s.machine.as_ref().and_then(|m| m.cores),
            items: s.items,
        }
    }
}

/// The verdict, as the JSON spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    #[serde(rename = "faster")]
    Faster,
    #[serde(rename = "slower")]
    Slower,
    #[serde(rename = "no difference")]
    NoDifference,
}

impl Verdict {
    /// For rates: higher is faster.
    fn of_rates(shift: Shift) -> Self {
        match shift {
            Shift::Higher => Verdict::Faster,
            Shift::Lower => Verdict::Slower,
            Shift::None => Verdict::NoDifference,
        }
    }

    /// For times: lower is faster.
    fn of_times(shift: Shift) -> Self {
        match shift {
            Shift::Higher => Verdict::Slower,
            Shift::Lower => Verdict::Faster,
            Shift::None => Verdict::NoDifference,
        }
    }

    /// As the text and Markdown outputs say it.
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Faster => "faster",
            Verdict::Slower => "slower",
            Verdict::NoDifference => "no difference the data can show",
        }
    }
}

/// Whether a phase's units are the steps of one run per side or the runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Step,
    Run,
}

/// One side's rates in a phase.
#[derive(Debug, Clone, Serialize)]
pub struct SideStats {
    pub median_ts: f64,
    pub mean_ts: f64,
    pub n: usize,
    /// Coefficient of variation of the units' rates (sample sd over mean; 0 for one unit):
    /// the noise docs/compare.md's table of sample sizes is read with.
    pub cv: f64,
}

/// One phase: B's rate against A's.
#[derive(Debug, Serialize)]
pub struct PhaseRow {
    pub phase: &'static str,
    pub test_a: String,
    pub test_b: String,
    pub unit: Unit,
    pub a: SideStats,
    pub b: SideStats,
    pub ratio: f64,
    pub ci95: [f64; 2],
    pub p_value: f64,
    /// Whether the p-value is from the exact null distribution.
    pub exact: bool,
    pub verdict: Verdict,
    /// Why no difference is reported, when none is.
    pub note: Option<String>,
}

/// One side of a kernel row.
#[derive(Debug, Clone, Serialize)]
pub struct KernelSide {
    pub ms_per_step: f64,
    pub gb_per_s: Option<f64>,
    pub n_steps: usize,
}

/// One decode kernel kind: B's time per step against A's (a ratio below 1: B is faster).
#[derive(Debug, Serialize)]
pub struct KernelRow {
    pub name: String,
    pub a: Option<KernelSide>,
    pub b: Option<KernelSide>,
    pub time_ratio: Option<f64>,
    pub ci95: Option<[f64; 2]>,
    pub p_value: Option<f64>,
    pub verdict: Verdict,
    pub note: Option<String>,
}

impl KernelRow {
    /// How much the kernel's time per step changed (the order of the table).
    fn change_ms(&self) -> f64 {
        let ms = |s: &Option<KernelSide>| s.as_ref().map_or(0.0, |k| k.ms_per_step);
        (ms(&self.b) - ms(&self.a)).abs()
    }
}

/// One depth of two sweeps.
#[derive(Debug, Serialize)]
pub struct DepthRow {
    pub n_kv: usize,
    pub pp_ts_a: f64,
    pub pp_ts_b: f64,
    pub pp_ratio: f64,
    pub tg_ts_a: f64,
    pub tg_ts_b: f64,
    pub tg_ratio: f64,
}

/// A sweep's phase over every depth both sides reached.
#[derive(Debug, Serialize)]
pub struct SweepSummary {
    pub phase: &'static str,
    pub depths: usize,
    /// Geometric mean of the per-depth ratios.
    pub ratio: f64,
    pub ci95: [f64; 2],
    pub p_value: f64,
    pub verdict: Verdict,
    pub note: Option<String>,
}

/// Compares `b` with `a` over the tests `pairing` matched.
pub fn compare(a: &Source, b: &Source, pairing: Pairing, how: Resampling) -> Comparison {
    let mut out = Comparison {
        a: SideInfo::of(a),
        b: SideInfo::of(b),
        phases: vec![],
        kernels: vec![],
        sweep: vec![],
        sweep_summary: vec![],
        warnings: pairing.warnings,
        not_compared: pairing.not_compared,
    };
    match (&a.content, &b.content) {
        (Content::Tests(ta), Content::Tests(tb)) => {
            for &(i, j) in &pairing.pairs {
                let (x, y) = (&ta[i], &tb[j]);
                if let Some(row) = phase_row(x, y, how) {
                    out.phases.push(row);
                }
                if x.phase == Phase::Decode {
                    kernels(x, y, a, b, how, &mut out);
                }
            }
        }
        (Content::Sweep(sa), Content::Sweep(sb)) => sweep(sa, sb, how, &mut out),
        _ => {}
    }
    out
}

/// The units a phase is compared over: the runs when either side has several (or is
/// llama-bench, whose samples are whole repetitions), else the one run's steps.
fn units(x: &Test, y: &Test) -> Unit {
    let runs = |t: &Test| t.runs.len() >= 2 || t.engine == Engine::LlamaBench;
    if runs(x) || runs(y) {
        Unit::Run
    } else {
        Unit::Step
    }
}

fn rates(t: &Test, unit: Unit) -> Vec<f64> {
    match unit {
        Unit::Run => t.runs.iter().map(|r| r.rate()).collect(),
        Unit::Step => t.runs.iter().flat_map(|r| r.sample_rates()).collect(),
    }
}

fn side_stats(v: &[f64]) -> SideStats {
    let (mean, sd) = crate::timing::mean_sd(v).unwrap_or((0.0, 0.0));
    SideStats {
        median_ts: stats::median_in_place(&mut v.to_vec()),
        mean_ts: mean,
        n: v.len(),
        cv: if mean > 0.0 { sd / mean } else { 0.0 },
    }
}

fn phase_row(x: &Test, y: &Test, how: Resampling) -> Option<PhaseRow> {
    let unit = units(x, y);
    let (ra, rb) = (rates(x, unit), rates(y, unit));
    let e = stats::estimate(&ra, &rb, Center::Median, how)?;
    let note = phase_note(&e, unit, x.phase);
    Some(PhaseRow {
        phase: x.phase.name(),
        test_a: x.label(),
        test_b: y.label(),
        unit,
        a: side_stats(&ra),
        b: side_stats(&rb),
        ratio: e.ratio,
        ci95: e.ci95,
        p_value: e.p_value,
        exact: e.exact,
        verdict: Verdict::of_rates(e.shift),
        note,
    })
}

/// Why no difference is shown, with what would let one show.
fn phase_note(e: &Estimate, unit: Unit, phase: Phase) -> Option<String> {
    let why = e.why_none()?;
    if e.min_p < ALPHA {
        return Some(why);
    }
    let hint = match (unit, phase) {
        (Unit::Step, Phase::Prefill) => {
            "one prompt pass a side: run each side with --repeat 5 or more"
        }
        (Unit::Step, Phase::Decode) => "run more decode steps (-t)",
        (Unit::Run, _) => "5 or more runs a side can show a difference (--repeat, llama-bench -r)",
    };
    Some(format!("{why}; {hint}"))
}

fn kernels(x: &Test, y: &Test, a: &Source, b: &Source, how: Resampling, out: &mut Comparison) {
    match (x.kernels.is_empty(), y.kernels.is_empty()) {
        (true, true) => return,
        (false, true) | (true, false) => {
            let (has, lacks) = if x.kernels.is_empty() { (b, a) } else { (a, b) };
            out.not_compared.push(format!(
                "kernels of {} ({} has no --kernel-timing profile)",
                has.path, lacks.path
            ));
            return;
        }
        (false, false) => {}
    }
    let mut names: Vec<&str> = x.kernels.iter().map(|k| k.name.as_str()).collect();
    for k in &y.kernels {
        if !names.contains(&k.name.as_str()) {
            names.push(&k.name);
        }
    }
    let find = |t: &'_ Test, name: &str| t.kernels.iter().find(|k| k.name == name).cloned();
    let mut rows: Vec<KernelRow> = names
        .iter()
        .map(|name| kernel_row(name, find(x, name), find(y, name), how))
        .collect();
    rows.sort_by(|p, q| q.change_ms().total_cmp(&p.change_ms()));
    out.kernels = rows;
}

fn kernel_side(k: &Kernel) -> KernelSide {
    let seconds = k.total_ns as f64 / 1e9;
    KernelSide {
        ms_per_step: match &k.samples_ns {
            Some(s) if !s.is_empty() => {
                s.iter().map(|&ns| ns as f64).sum::<f64>() / s.len() as f64 / 1e6
            }
            _ => k.total_ns as f64 / k.steps.max(1) as f64 / 1e6,
        },
        gb_per_s: k
            .bytes_read
            .filter(|_| seconds > 0.0)
            .map(|b| b as f64 / seconds / 1e9),
        n_steps: k.steps,
    }
}

fn kernel_row(name: &str, ka: Option<Kernel>, kb: Option<Kernel>, how: Resampling) -> KernelRow {
    let (sa, sb) = (ka.as_ref().map(kernel_side), kb.as_ref().map(kernel_side));
    let mut row = KernelRow {
        name: name.to_string(),
        a: sa.clone(),
        b: sb.clone(),
        time_ratio: None,
        ci95: None,
        p_value: None,
        verdict: Verdict::NoDifference,
        note: None,
    };
    let (Some(sa), Some(sb)) = (sa, sb) else {
        row.note = Some(format!(
            "only in {}",
            if row.a.is_some() { "A" } else { "B" }
        ));
        return row;
    };
    if sa.ms_per_step <= 0.0 {
        row.note = Some("no time in A".into());
        return row;
    }
    row.time_ratio = Some(sb.ms_per_step / sa.ms_per_step);
    let samples = |k: &Option<Kernel>| -> Option<Vec<f64>> {
        let s = k.as_ref()?.samples_ns.as_ref()?;
        Some(s.iter().map(|&ns| ns as f64).collect())
    };
    let (Some(xa), Some(xb)) = (samples(&ka), samples(&kb)) else {
        row.note = Some("no per-step samples (a report from before kernels[].samples_ns)".into());
        return row;
    };
    if let Some(e) = stats::estimate(&xa, &xb, Center::Mean, how) {
        row.time_ratio = Some(e.ratio);
        row.ci95 = Some(e.ci95);
        row.p_value = Some(e.p_value);
        row.verdict = Verdict::of_times(e.shift);
        row.note = e.why_none();
    }
    row
}

fn sweep(sa: &Sweep, sb: &Sweep, how: Resampling, out: &mut Comparison) {
    for ra in &sa.rows {
        if let Some(rb) = sb.rows.iter().find(|r| r.n_kv == ra.n_kv) {
            out.sweep.push(DepthRow {
                n_kv: ra.n_kv,
                pp_ts_a: ra.pp_ts,
                pp_ts_b: rb.pp_ts,
                pp_ratio: rb.pp_ts / ra.pp_ts,
                tg_ts_a: ra.tg_ts,
                tg_ts_b: rb.tg_ts,
                tg_ratio: rb.tg_ts / ra.tg_ts,
            });
        }
    }
    let unmatched = |x: &Sweep, y: &Sweep| {
        x.rows
            .iter()
            .filter(|r| !y.rows.iter().any(|o| o.n_kv == r.n_kv))
            .count()
    };
    let (ua, ub) = (unmatched(sa, sb), unmatched(sb, sa));
    if ua + ub > 0 {
        out.not_compared.push(format!(
            "{} depths of A and {} of B that the other sweep did not reach",
            ua, ub
        ));
    }
    let mut summaries = Vec::new();
    for phase in ["prefill", "decode"] {
        let (xa, xb): (Vec<f64>, Vec<f64>) = out
            .sweep
            .iter()
            .map(|r| match phase {
                "prefill" => (r.pp_ts_a, r.pp_ts_b),
                _ => (r.tg_ts_a, r.tg_ts_b),
            })
            .unzip();
        if let Some(e) = stats::estimate_paired(&xa, &xb, how) {
            summaries.push(SweepSummary {
                phase,
                depths: xa.len(),
                ratio: e.ratio,
                ci95: e.ci95,
                p_value: e.p_value,
                verdict: Verdict::of_rates(e.shift),
                note: e.why_none(),
            });
        }
    }
    out.sweep_summary = summaries;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::input::parse;
    use crate::compare::pairing::pair;

    const HOW: Resampling = Resampling {
        seed: 7,
        resamples: 2000,
    };

    /// A qwen report of `runs` runs whose decode steps take `step_ms` (with a small spread).
    fn report(runs: usize, step_ms: f64, kernels: bool) -> String {
        let steps = |r: usize| -> Vec<u64> {
            (0..20)
                .map(|i| ((step_ms + 0.01 * ((i * 7 + r * 3) % 11) as f64) * 1e6) as u64)
                .collect()
        };
        let runs_json: Vec<String> = (0..runs)
            .map(|r| {
                format!(
                    r#"{{"prefill_ns":[{}],"decode_ns":{:?}}}"#,
                    (10.0 * step_ms * 1e6) as u64 + r as u64 * 1000,
                    steps(r)
                )
            })
            .collect();
        let k = if kernels {
            let s: Vec<u64> = steps(0).iter().map(|ns| ns / 2).collect();
            format!(
                r#"[{{"name":"MatMul","total_ns":{},"bytes_read":{},"samples_ns":{s:?}}}]"#,
                s.iter().sum::<u64>(),
                1_000_000_000u64
            )
        } else {
            "null".into()
        };
        format!(
            r#"{{"model_filename":"tiny.gguf","model_digest":"d","n_threads":4,"n_prompt":8,
            "prefill":{{"n_tokens":8,"n_tokens_per_sample":8,"samples_ns":[{}]}},
            "decode":{{"n_tokens":20,"n_tokens_per_sample":1,"samples_ns":{:?}}},
            "kernels":{k},"repeat":{{"runs":[{}]}}}}"#,
            (10.0 * step_ms * 1e6) as u64,
            steps(0),
            runs_json.join(",")
        )
    }

    fn compared(a: &str, b: &str) -> Comparison {
        let (a, b) = (parse("a.json", a).unwrap(), parse("b.json", b).unwrap());
        let pairing = pair(&a, &b, false).unwrap();
        compare(&a, &b, pairing, HOW)
    }

    #[test]
    fn steps_of_single_runs_show_a_clear_speed_up() {
        let c = compared(&report(1, 2.0, false), &report(1, 1.0, false));
        let decode = &c.phases[1];
        assert_eq!((decode.phase, decode.unit), ("decode", Unit::Step));
        assert_eq!((decode.a.n, decode.b.n), (20, 20));
        assert!((decode.ratio - 2.0).abs() < 0.05, "{}", decode.ratio);
        assert_eq!(decode.verdict, Verdict::Faster);
        // One prompt pass a side: never a verdict, and the note says what to do.
        let prefill = &c.phases[0];
        assert_eq!((prefill.a.n, prefill.verdict), (1, Verdict::NoDifference));
        assert!(
            prefill.note.as_deref().unwrap().contains("--repeat"),
            "{:?}",
            prefill.note
        );
    }

    #[test]
    fn runs_are_the_units_when_repeated() {
        let c = compared(&report(6, 1.0, false), &report(6, 1.25, false));
        let decode = &c.phases[1];
        assert_eq!((decode.unit, decode.a.n), (Unit::Run, 6));
        assert!((decode.ratio - 0.8).abs() < 0.01, "{}", decode.ratio);
        assert_eq!(decode.verdict, Verdict::Slower);
        assert_eq!(c.phases[0].verdict, Verdict::Slower);
    }

    #[test]
    fn kernels_are_compared_per_step_largest_change_first() {
        let c = compared(&report(1, 2.0, true), &report(1, 1.0, true));
        assert_eq!(c.kernels.len(), 1);
        let k = &c.kernels[0];
        assert!((k.time_ratio.unwrap() - 0.5).abs() < 0.02);
        assert_eq!(k.verdict, Verdict::Faster);
        let ci = k.ci95.unwrap();
        assert!(ci[0] < 0.51 && ci[1] > 0.49 && ci[1] < 1.0, "{ci:?}");
        assert!(k.a.as_ref().unwrap().gb_per_s.is_some());

        // Only one side profiled: said, not compared.
        let c = compared(&report(1, 2.0, true), &report(1, 1.0, false));
        assert!(c.kernels.is_empty());
        assert!(c.not_compared.iter().any(|n| n.contains("--kernel-timing")));
    }
}
