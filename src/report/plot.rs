//! `--plot FILE.svg`: a chart of per-token decode time with its mean and a ±1 sd band.
//!
//! Drawn with plotters' SVG backend and its built-in text-size estimate (no `ttf` feature), so it
//! needs no system fonts: the viewer renders the `<text>` elements with its own sans-serif.

use crate::atomic_file::{self, folder_of};
use crate::timing::Stats;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use thiserror::Error;

const SIZE: (u32, u32) = (960, 540);
const SERIES: RGBColor = RGBColor(31, 119, 180);
const MEAN: RGBColor = RGBColor(214, 39, 40);

#[derive(Debug, Error)]
pub enum PlotError {
    #[error("no decode samples to plot")]
    NoSamples,
    #[error("cannot draw the chart: {0}")]
    Render(String),
    #[error("cannot write the plot to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the plot {}: the folder {} does not exist", file.display(), folder.display())]
    NoFolder { file: PathBuf, folder: PathBuf },
    #[error("cannot write the plot {}: {} is a folder", path.display(), path.display())]
    IsFolder { path: PathBuf },
    #[error("cannot write the plot {}: cannot create a file in {} ({source})", file.display(), folder.display())]
    NotWritable {
        file: PathBuf,
        folder: PathBuf,
        source: std::io::Error,
    },
}

/// Checks that the plot can be written to `path`, by creating (and removing) a file in its
/// folder: existence alone says nothing of permissions or a read-only file system.
pub fn check_writable(path: &Path) -> Result<(), PlotError> {
    let folder = folder_of(path);
    if !folder.is_dir() {
        return Err(PlotError::NoFolder {
            file: path.to_path_buf(),
            folder: folder.to_path_buf(),
        });
    }
    if path.is_dir() {
        return Err(PlotError::IsFolder {
            path: path.to_path_buf(),
        });
    }
    match atomic_file::probe_writable(path) {
        Ok(()) => Ok(()),
        Err(source) => Err(PlotError::NotWritable {
            file: path.to_path_buf(),
            folder: folder.to_path_buf(),
            source,
        }),
    }
}

/// Writes the latency chart of `samples_ns` (one per decode step) to `path`, with the mean and sd of
/// `stats`. The samples are numbered from 1 on the x axis.
pub fn write_latency_svg(
    path: &Path,
    samples_ns: &[u64],
    stats: &Stats,
    title: &str,
) -> Result<(), PlotError> {
    write_latency_svg_with_note(path, samples_ns, stats, title, None)
}

/// As [`write_latency_svg`], with a line of text under the title (e.g. the prefill time).
pub fn write_latency_svg_with_note(
    path: &Path,
    samples_ns: &[u64],
    stats: &Stats,
    title: &str,
    note: Option<&str>,
) -> Result<(), PlotError> {
    let svg = render_latency_svg(samples_ns, stats, title, note)?;
    // Through a temporary file and a rename: a reader never sees half a chart, and a failed
    // write leaves the previous one in place.
    atomic_file::write_bytes(path, svg.as_bytes())
        .map(|_| ())
        .map_err(|source| PlotError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// The chart as an SVG document.
pub fn render_latency_svg(
    samples_ns: &[u64],
    stats: &Stats,
    title: &str,
    note: Option<&str>,
) -> Result<String, PlotError> {
    if samples_ns.is_empty() {
        return Err(PlotError::NoSamples);
    }
    let mut svg = String::new();
    draw(&mut svg, samples_ns, stats, title, note).map_err(|e| PlotError::Render(e.to_string()))?;
    Ok(svg)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(
    svg: &mut String,
    samples_ns: &[u64],
    stats: &Stats,
    title: &str,
    note: Option<&str>,
) -> DrawResult {
    let ms: Vec<(f64, f64)> = samples_ns
        .iter()
        .enumerate()
        .map(|(i, &ns)| ((i + 1) as f64, ns as f64 / 1e6))
        .collect();
    let (mean, sd) = (stats.avg_ns / 1e6, stats.stddev_ns / 1e6);
    let x = (0.5, samples_ns.len() as f64 + 0.5);
    let y = y_range(&ms, mean, sd);

    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let top = if note.is_some() { 70 } else { 45 };
    let (header, body) = root.split_vertically(top);
    header.titled(title, ("sans-serif", 22))?;
    if let Some(note) = note {
        header.draw_text(
            note,
            &("sans-serif", 15).into_font().color(&BLACK.mix(0.7)),
            (60, 40),
        )?;
    }

    let mut chart = ChartBuilder::on(&body)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)?;
    chart
        .configure_mesh()
        .x_desc("decode step (token index)")
        .y_desc("time per token (ms)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(BLACK.mix(0.04))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;

    let band = SERIES.mix(0.15).filled();
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(x.0, mean - sd), (x.1, mean + sd)],
            band,
        )))?
        .label(format!("±1 sd ({sd:.3} ms)"))
        .legend(move |(lx, ly)| Rectangle::new([(lx, ly - 6), (lx + 20, ly + 6)], band));

    chart
        .draw_series(LineSeries::new(ms.iter().copied(), SERIES.stroke_width(1)))?
        .label("per-token decode time")
        .legend(|(lx, ly)| PathElement::new(vec![(lx, ly), (lx + 20, ly)], SERIES.stroke_width(2)));
    chart.draw_series(ms.iter().map(|&p| Circle::new(p, 2, SERIES.filled())))?;

    chart
        .draw_series(LineSeries::new(
            [(x.0, mean), (x.1, mean)],
            MEAN.stroke_width(2),
        ))?
        .label(format!("mean ({mean:.3} ms)"))
        .legend(|(lx, ly)| PathElement::new(vec![(lx, ly), (lx + 20, ly)], MEAN.stroke_width(2)));

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Covers every sample and the ±1 sd band, with room at the top for the legend so that it never
/// hides a point (a flat series gets ±5% of its value).
fn y_range(ms: &[(f64, f64)], mean: f64, sd: f64) -> (f64, f64) {
    let lo = ms.iter().map(|p| p.1).fold(mean - sd, f64::min);
    let hi = ms.iter().map(|p| p.1).fold(mean + sd, f64::max);
    let span = hi - lo;
    let span = if span > 0.0 {
        span
    } else {
        (hi.abs() * 0.1).max(1e-3)
    };
    ((lo - span * 0.08).max(0.0), hi + span * 0.4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<u64> {
        (0..40u64)
            .map(|i| 20_000_000 + (i * 7919 % 13) * 300_000)
            .collect()
    }

    #[test]
    fn writes_well_formed_svg_with_series_and_mean() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latency.svg");
        let ns = samples();
        let stats = Stats::from_ns(&ns).unwrap();
        write_latency_svg_with_note(
            &path,
            &ns,
            &stats,
            "tg40 decode latency",
            Some("prefill: 12 ms"),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap();
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        // The series line has one vertex per sample; the mean line is a horizontal two-point line.
        let polylines: Vec<Vec<&str>> = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .filter_map(|n| n.attribute("points"))
            .map(|p| p.split_whitespace().collect())
            .collect();
        assert!(
            polylines.iter().any(|p| p.len() == ns.len()),
            "no series line"
        );
        let flat_two_point =
            |p: &Vec<&str>| p.len() == 2 && p[0].split(',').nth(1) == p[1].split(',').nth(1);
        assert!(polylines.iter().any(flat_two_point), "no mean line");
        let circles = doc
            .descendants()
            .filter(|n| n.has_tag_name("circle"))
            .count();
        assert!(circles >= ns.len(), "{circles} points");
        for label in [
            "tg40 decode latency",
            "prefill: 12 ms",
            "time per token (ms)",
            "mean (",
        ] {
            assert!(text.contains(label), "missing text {label:?}");
        }
    }

    #[test]
    fn single_and_flat_samples_render() {
        for ns in [vec![5_000_000], vec![5_000_000; 4]] {
            let stats = Stats::from_ns(&ns).unwrap();
            let svg = render_latency_svg(&ns, &stats, "flat", None).unwrap();
            assert!(roxmltree::Document::parse(&svg).is_ok());
        }
    }

    #[test]
    fn empty_samples_are_an_error() {
        let stats = Stats::from_ns(&[1]).unwrap();
        assert!(matches!(
            render_latency_svg(&[], &stats, "t", None),
            Err(PlotError::NoSamples)
        ));
    }

    #[test]
    fn unwritable_path_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("plot.svg");
        let ns = samples();
        let stats = Stats::from_ns(&ns).unwrap();
        let err = write_latency_svg(&path, &ns, &stats, "t").unwrap_err();
        assert!(matches!(err, PlotError::Write { .. }));
        assert!(err.to_string().contains("missing-dir"));
    }
}
