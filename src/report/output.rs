//! Printing what a run reports, as the report settings ask: notices, the summary, the detailed
//! report, the decode-time chart and the JSON object.

use std::path::Path;

use anyhow::{bail, Result};

use crate::generate::context_full_notice;
use crate::settings::ReportSettings;

use super::{plot, RepeatReport, RunReport};

/// The chart is written after the run: a folder that does not exist or cannot be written to
/// must fail before it.
pub fn check_plot_path(file: &Path) -> Result<()> {
    plot::check_writable(file).map_err(|e| anyhow::anyhow!("{e}; choose another --plot path"))
}

/// Prints the first run's report, with the spread over all `runs`; returns whether a Ctrl-C
/// stopped one.
pub fn print(runs: Vec<RunReport>, settings: &ReportSettings, max_context: usize) -> Result<bool> {
    let interrupted = runs.iter().any(|r| r.interrupted);
    let context_full = runs.iter().any(|r| r.stop_reason == "context_full");
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
    if settings.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
    }
    // Best effort, after the report: a chart that cannot be drawn must not cost the figures.
    if let Some(path) = &settings.plot {
        if let Err(e) = write_plot(path, &report) {
            crate::errln!("warning: no plot: {e:#}");
        }
    }
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
        report
            .model_filename
            .rsplit('/')
            .next()
            .unwrap_or(&report.model_filename),
        report.features.mode,
        report.n_threads
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
