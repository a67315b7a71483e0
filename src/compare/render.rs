//! The comparison as text (the report's table style) and as Markdown for an issue or a pull
//! request; one list of columns feeds both.

use std::fmt::Write;

use super::result::{Comparison, KernelRow, Method, PhaseRow, Report, SideInfo, Unit};

/// How a table is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Text,
    Markdown,
}

/// The whole report: each comparison, then the method.
pub fn render(report: &Report, style: Style) -> String {
    let mut out = String::new();
    for c in std::iter::once(&report.first).chain(&report.more) {
        comparison(&mut out, c, style);
        out.push('\n');
    }
    method(&mut out, &report.method, style);
    out
}

/// A table: a head row and rows of cells, numbers right-aligned, words (the columns in
/// `left`) left-aligned.
struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
    left: Vec<usize>,
}

impl Table {
    fn new(head: &[&str], left: &[usize]) -> Self {
        Table {
            head: head.iter().map(|h| h.to_string()).collect(),
            rows: vec![],
            left: left.to_vec(),
        }
    }

    fn draw(&self, out: &mut String, style: Style) {
        match style {
            Style::Text => self.draw_text(out),
            Style::Markdown => self.draw_markdown(out),
        }
    }

    fn widths(&self) -> Vec<usize> {
        (0..self.head.len())
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r[c].chars().count())
                    .chain(std::iter::once(self.head[c].chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    fn draw_text(&self, out: &mut String) {
        let widths = self.widths();
        for row in std::iter::once(&self.head).chain(&self.rows) {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, &w))| match self.left.contains(&c) {
                    true => format!("{cell:<w$}"),
                    false => format!("{cell:>w$}"),
                })
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
    }

    fn draw_markdown(&self, out: &mut String) {
        let _ = writeln!(out, "| {} |", self.head.join(" | "));
        let rule: Vec<&str> = (0..self.head.len())
            .map(|c| if self.left.contains(&c) { ":--" } else { "--:" })
            .collect();
        let _ = writeln!(out, "|{}|", rule.join("|"));
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
    }
}

/// A heading; `sub` for a section inside a comparison (Markdown: one level down).
fn heading(out: &mut String, text: &str, style: Style, sub: bool) {
    match (style, sub) {
        (Style::Text, _) => {
            let _ = writeln!(out, "== {text} ==");
        }
        (Style::Markdown, false) => {
            let _ = writeln!(out, "### {text}\n");
        }
        (Style::Markdown, true) => {
            let _ = writeln!(out, "#### {text}\n");
        }
    }
}

/// A line of notes: plain in text, a list item in Markdown.
fn item(out: &mut String, prefix: &str, text: &str, style: Style) {
    match style {
        Style::Text => {
            let _ = writeln!(out, "{prefix}: {text}");
        }
        Style::Markdown => {
            let _ = writeln!(out, "- {prefix}: {text}");
        }
    }
}

fn comparison(out: &mut String, c: &Comparison, style: Style) {
    heading(
        out,
        &format!("{} against {}", c.b.file, c.a.file),
        style,
        false,
    );
    for (tag, side) in [("A", &c.a), ("B", &c.b)] {
        item(out, tag, &describe(side), style);
    }
    if style == Style::Markdown {
        out.push('\n');
    }
    if !c.phases.is_empty() {
        phases(out, &c.phases, style);
        phase_notes(out, &c.phases, style);
    }
    // A blank line between sections.
    let gap = if c.phases.is_empty() { "" } else { "\n" };
    if !c.kernels.is_empty() {
        out.push_str(gap);
        kernels(out, &c.kernels, style);
    }
    if !c.sweep.is_empty() {
        out.push_str(gap);
        sweep(out, c, style);
    }
    let lines = c.warnings.len() + c.not_compared.len();
    if lines > 0 && (style == Style::Markdown || !c.kernels.is_empty()) {
        out.push('\n');
    }
    for w in &c.warnings {
        item(out, "warning", w, style);
    }
    for n in &c.not_compared {
        item(out, "not compared", n, style);
    }
}

/// Under the phases' table: each side's noise and why a phase shows no difference.
fn phase_notes(out: &mut String, rows: &[PhaseRow], style: Style) {
    if style == Style::Markdown {
        out.push('\n');
    }
    let cv: Vec<String> = rows
        .iter()
        .map(|p| {
            format!(
                "{} A {:.1}%, B {:.1}%",
                p.test_b,
                p.a.cv * 100.0,
                p.b.cv * 100.0
            )
        })
        .collect();
    item(out, "noise (cv of the units' rates)", &cv.join("; "), style);
    for p in rows {
        if let Some(note) = &p.note {
            item(
                out,
                &format!("note ({} {})", p.phase, p.test_b),
                note,
                style,
            );
        }
    }
}

fn describe(s: &SideInfo) -> String {
    let mut parts = vec![
        format!("{} ({})", s.file, s.engine),
        s.model_filename.clone(),
    ];
    if let Some(d) = &s.model_digest {
        parts.push(format!("digest {}", &d[..d.len().min(12)]));
    }
    if let Some(t) = &s.model_type {
        parts.push(t.clone());
    }
    match (&s.cpu, s.logical_cores) {
        (Some(cpu), Some(n)) => parts.push(format!("{cpu}, {n} logical cores")),
        (Some(cpu), None) => parts.push(cpu.clone()),
        _ => {}
    }
    parts.push(format!(
        "{} {}",
        s.items,
        match (s.engine, s.items) {
            ("llama-bench", 1) => "test entry",
            ("llama-bench", _) => "test entries",
            (_, 1) => "report",
            _ => "reports",
        }
    ));
    parts.join(", ")
}

fn ratio(r: f64) -> String {
    format!("{r:.3}x")
}

fn interval(ci: [f64; 2]) -> String {
    format!("[{:.3}, {:.3}]", ci[0], ci[1])
}

fn p_value(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

fn rate(v: f64) -> String {
    format!("{v:.2}")
}

fn phases(out: &mut String, rows: &[PhaseRow], style: Style) {
    let mut t = Table::new(
        &[
            "phase",
            "test A",
            "test B",
            "unit",
            "n A",
            "n B",
            "A median t/s",
            "A mean t/s",
            "B median t/s",
            "B mean t/s",
            "B/A",
            "95% CI",
            "p",
            "verdict",
        ],
        &[0, 1, 2, 3, 13],
    );
    for r in rows {
        t.rows.push(vec![
            r.phase.to_string(),
            r.test_a.clone(),
            r.test_b.clone(),
            match r.unit {
                Unit::Step => "step".into(),
                Unit::Run => "run".into(),
            },
            r.a.n.to_string(),
            r.b.n.to_string(),
            rate(r.a.median_ts),
            rate(r.a.mean_ts),
            rate(r.b.median_ts),
            rate(r.b.mean_ts),
            ratio(r.ratio),
            interval(r.ci95),
            p_value(r.p_value),
            r.verdict.words().into(),
        ]);
    }
    t.draw(out, style);
}

fn kernels(out: &mut String, rows: &[KernelRow], style: Style) {
    heading(
        out,
        "Kernels (decode, time per step; B/A below 1: B faster)",
        style,
        true,
    );
    let mut t = Table::new(
        &[
            "kernel",
            "A ms/step",
            "B ms/step",
            "B/A",
            "95% CI",
            "p",
            "A GB/s",
            "B GB/s",
            "verdict",
        ],
        &[0, 8],
    );
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for k in rows {
        let ms = |s: &Option<super::result::KernelSide>| {
            opt(s.as_ref().map(|s| format!("{:.4}", s.ms_per_step)))
        };
        let gbs = |s: &Option<super::result::KernelSide>| {
            opt(s
                .as_ref()
                .and_then(|s| s.gb_per_s)
                .map(|g| format!("{g:.2}")))
        };
        let verdict = match (&k.note, k.p_value) {
            (Some(note), None) => note.clone(),
            _ => k.verdict.words().into(),
        };
        t.rows.push(vec![
            k.name.clone(),
            ms(&k.a),
            ms(&k.b),
            opt(k.time_ratio.map(ratio)),
            opt(k.ci95.map(interval)),
            opt(k.p_value.map(p_value)),
            gbs(&k.a),
            gbs(&k.b),
            verdict,
        ]);
    }
    t.draw(out, style);
}

fn sweep(out: &mut String, c: &Comparison, style: Style) {
    heading(out, "Sweep (tokens/s per depth)", style, true);
    let mut t = Table::new(
        &[
            "N_KV",
            "A S_PP t/s",
            "B S_PP t/s",
            "B/A",
            "A S_TG t/s",
            "B S_TG t/s",
            "B/A",
        ],
        &[],
    );
    for r in &c.sweep {
        t.rows.push(vec![
            r.n_kv.to_string(),
            rate(r.pp_ts_a),
            rate(r.pp_ts_b),
            ratio(r.pp_ratio),
            rate(r.tg_ts_a),
            rate(r.tg_ts_b),
            ratio(r.tg_ratio),
        ]);
    }
    t.draw(out, style);
    if style == Style::Markdown {
        out.push('\n');
    }
    for s in &c.sweep_summary {
        let mut line = format!(
            "over {} depths, B/A {} {} (geometric mean, 95% CI), p {}: {}",
            s.depths,
            ratio(s.ratio),
            interval(s.ci95),
            p_value(s.p_value),
            s.verdict.words()
        );
        if let Some(n) = &s.note {
            let _ = write!(line, " ({n})");
        }
        item(out, s.phase, &line, style);
    }
}

fn method(out: &mut String, m: &Method, style: Style) {
    let text = format!(
        "B/A is B's median tok/s over A's (kernels: mean time per step), over runs when a side \
         has several, else over the steps of one run; 95% CI: percentile bootstrap, {} \
         resamples, seed {}; p: two-sided Mann-Whitney U; faster or slower only when p < {} and \
         the interval excludes 1",
        m.resamples, m.seed, m.alpha
    );
    item(out, "method", &text, style);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::result::{SideStats, Verdict};

    fn report() -> Report {
        let side = |file: &str| SideInfo {
            file: file.into(),
            engine: "qwen",
            model_filename: "m/tiny.gguf".into(),
            model_digest: Some("0123456789abcdef".into()),
            model_type: None,
            cpu: Some("CPU X".into()),
            logical_cores: Some(2),
            items: 1,
        };
        let stats = |m: f64| SideStats {
            median_ts: m,
            mean_ts: m + 1.0,
            n: 16,
            cv: 0.05,
        };
        Report {
            first: Comparison {
                a: side("a.json"),
                b: side("b|c.json"),
                phases: vec![PhaseRow {
                    phase: "decode",
                    test_a: "tg16".into(),
                    test_b: "tg16".into(),
                    unit: Unit::Step,
                    a: stats(100.0),
                    b: stats(110.0),
                    ratio: 1.1,
                    ci95: [1.05, 1.15],
                    p_value: 0.001,
                    exact: true,
                    verdict: Verdict::Faster,
                    note: None,
                }],
                kernels: vec![],
                sweep: vec![],
                sweep_summary: vec![],
                warnings: vec!["the machines differ".into()],
                not_compared: vec![],
            },
            more: vec![],
            method: Method::new(crate::compare::stats::Resampling {
                seed: 1,
                resamples: 100,
            }),
        }
    }

    #[test]
    fn text_is_aligned_columns() {
        let text = render(&report(), Style::Text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "== b|c.json against a.json ==");
        let head = lines.iter().position(|l| l.starts_with("phase")).unwrap();
        let row = lines[head + 1];
        // Columns line up: each head's right edge (numbers) is its cell's right edge.
        let edge = |line: &str, word: &str| line.find(word).unwrap() + word.len();
        assert_eq!(edge(lines[head], "B/A"), edge(row, "1.100x"));
        assert!(row.ends_with("  faster"), "{row}");
        assert_eq!(
            row.find("faster"),
            lines[head].find("verdict"),
            "left-aligned words"
        );
        assert!(text.contains("warning: the machines differ"));
        assert!(text.contains("resamples, seed 1"));
    }

    #[test]
    fn markdown_is_a_pipe_table_with_escaped_cells() {
        let md = render(&report(), Style::Markdown);
        assert!(md.starts_with("### b|c.json against a.json\n"), "{md}");
        let table: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(table.len(), 3, "{md}");
        assert_eq!(table[0].split(" | ").count(), 14);
        assert!(
            table[1].starts_with("|:--|:--|:--|:--|--:|"),
            "{}",
            table[1]
        );
        assert!(table[1].ends_with("|--:|:--|"), "{}", table[1]);
        assert_eq!(table[2].split(" | ").count(), 14, "{}", table[2]);
        assert!(md.contains("- warning: the machines differ"));
        assert!(md.contains("- A: a.json (qwen), m/tiny.gguf, digest 0123456789ab"));
    }
}
