//! Printing what a run reports, as the report settings ask: notices, the summary, the detailed
//! report, the decode-time chart, the trace and the JSON object.

use std::path::Path;

use anyhow::{bail, Result};

use crate::generate::{context_full_notice, StopKind};
use crate::settings::ReportSettings;
use crate::trace::Tracer;

use super::sweep::SweepReport;
use super::trace_file::{self, TraceCosts};
use super::{plot, sweep_plot, RepeatReport, RunHeader, RunReport, TraceReport};
use crate::outfile::OutFile;

/// The chart is written after the run: a folder that does not exist or cannot be written to
/// must fail before it.
pub fn check_plot_path(file: &Path) -> Result<()> {
    plot::check_writable(file).map_err(|e| anyhow::anyhow!("{e}; choose another --plot path"))
}

/// The files a run will write must be writable before it starts.
pub fn check_paths(settings: &ReportSettings) -> Result<()> {
    if let Some(path) = &settings.plot {
        check_plot_path(path)?;
    }
    if let Some(path) = &settings.trace {
        trace_file::out_file(path).check()?;
    }
    Ok(())
}

/// A run's trace and what recording it cost (measured by the run).
#[derive(Clone, Copy)]
pub struct Traced<'a> {
    pub tracer: &'a Tracer,
    pub costs: TraceCosts,
}

/// Prints the first run's report, with the spread over all `runs`, and writes the trace;
/// returns whether a Ctrl-C stopped a run.
pub fn print(
    runs: Vec<RunReport>,
    settings: &ReportSettings,
    max_context: usize,
    traced: Option<Traced<'_>>,
) -> Result<bool> {
    let interrupted = runs.iter().any(|r| r.interrupted);
    let context_full = runs.iter().any(|r| r.stop_reason == StopKind::ContextFull);
    let repeat = (runs.len() > 1).then(|| RepeatReport::from_runs(&runs));
    let Some(mut report) = runs.into_iter().next() else {
        bail!("no run completed");
    };
    report.repeat = repeat;
    if interrupted {
        crate::errln!("\ninterrupted: the text and timings above cover the completed steps");
    }
    if context_full {
        crate::errln!("{}", context_full_notice(max_context));
    }
    crate::errln!("{}", report.summary());
    if settings.kernel_timing {
        crate::errln!("\n{}", report.detailed());
    }
    report.trace = write_trace(settings, traced, &report.header);
    emit(&report, settings, write_plot)?;
    Ok(interrupted)
}

/// The per-token decode chart, titled with the run's test, model file, mode and threads.
fn write_plot(path: &Path, report: &RunReport) -> Result<()> {
    let Some(decode) = &report.decode else {
        bail!("no decode steps to plot: generate at least one token");
    };
    let title = format!(
        "{} decode, {} ({} mode, {} threads)",
        decode.test,
        file_name(&report.header.model_filename),
        report.header.features.mode,
        report.header.n_threads
    );
    let note = report.prefill.as_ref().map(|p| {
        format!(
            "prompt {}: {:.1} ms, {:.1} tok/s",
            p.test,
            p.timing.avg_ns / 1e6,
            p.timing.avg_ts
        )
    });
    plot::write_latency_svg_with_note(
        path,
        &decode.timing.samples_ns,
        &decode.timing.stats(),
        &title,
        note.as_deref(),
    )
    // The error names the file and the cause in its own message; its source would repeat it.
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::errln!("wrote {}", path.display());
    Ok(())
}

/// The last part of a path, for titles.
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Writes the trace when the run asked for one, before the JSON (which says what was written).
/// Best effort, as the chart: a trace that cannot be written must not cost the figures.
fn write_trace(
    settings: &ReportSettings,
    traced: Option<Traced<'_>>,
    header: &RunHeader,
) -> Option<TraceReport> {
    let (path, traced) = (settings.trace.as_ref()?, traced?);
    let name = file_name(&header.model_filename);
    match trace_file::write(traced.tracer, path, name, traced.costs) {
        Ok(written) => {
            crate::errln!("{}", trace_file::describe(&written));
            Some(written)
        }
        Err(e) => {
            crate::errln!("warning: no trace: {e}");
            None
        }
    }
}

/// The JSON object (with `--json`) and then, best effort, the chart (with `--plot`): a chart
/// that cannot be drawn must not cost the figures.
fn emit<R: serde::Serialize>(
    report: &R,
    settings: &ReportSettings,
    write_plot: fn(&Path, &R) -> Result<()>,
) -> Result<()> {
    if settings.json {
        crate::outln!("{}", serde_json::to_string_pretty(report)?);
    }
    if let Some(path) = &settings.plot {
        if let Err(e) = write_plot(path, report) {
            crate::errln!("warning: no plot: {e:#}");
        }
    }
    Ok(())
}

/// Prints what `--sweep` reports after its table (printed row by row): the trace, the JSON
/// object and the chart.
pub fn print_sweep(
    mut report: SweepReport,
    settings: &ReportSettings,
    traced: Option<Traced<'_>>,
) -> Result<()> {
    if report.interrupted {
        crate::errln!("\ninterrupted: the rows above are the depths completed");
    }
    report.trace = write_trace(settings, traced, &report.header);
    emit(&report, settings, write_sweep_plot)
}

/// The chart of both rates against depth, written atomically.
fn write_sweep_plot(path: &Path, report: &SweepReport) -> Result<()> {
    if report.sweep.is_empty() {
        bail!("no sweep rows to plot: the sweep stopped before its first depth");
    }
    let title = format!(
        "speed against depth, {} ({} mode, {} threads)",
        file_name(&report.header.model_filename),
        report.header.features.mode,
        report.header.n_threads
    );
    let svg =
        sweep_plot::render_sweep_svg(&report.sweep, &title).map_err(|e| anyhow::anyhow!("{e}"))?;
    let file = OutFile {
        what: "plot",
        flag: "--plot",
        path,
    };
    file.write(|out| out.write_all(svg.as_bytes()))?;
    crate::errln!("wrote {}", path.display());
    Ok(())
}
