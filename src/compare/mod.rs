//! `qwen compare A.json B.json [C.json ...]`: is B really faster than A? Each file after the
//! first is compared with the first, phase by phase (and kernel by kernel, depth by depth),
//! with a ratio, its 95% interval, a rank test and a verdict that says "no difference" when the
//! data cannot show one.
//!
//! One file per job: `input` reads qwen's and llama-bench's JSON, `pairing` decides what may be
//! compared, `stats` holds the statistics, `result` computes the typed comparison, `render`
//! prints it as text or Markdown, `plot` draws the per-step distributions.

pub mod input;
pub mod pairing;
pub mod plot;
pub mod render;
pub mod result;
pub mod stats;

use thiserror::Error;

use crate::outfile::{OutFile, OutFileError};
use crate::report::plot::PlotError;
use crate::settings::{CompareOutput, CompareSettings};

use input::{Content, InputError, Phase, Source, Test};
use pairing::{Pairing, Refusal};
use result::{Method, Report};
use stats::Resampling;

/// Why a comparison could not be made or written; each a single line.
#[derive(Debug, Error)]
pub enum CompareError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    OutFile(#[from] OutFileError),
    #[error("cannot draw --plot {path}: {source}")]
    Plot { path: String, source: PlotError },
    #[error("cannot draw --plot {path}: {what}")]
    NothingToPlot { path: String, what: String },
    #[error("cannot write the JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Reads the files, compares each with the first and prints the comparison as asked.
pub fn run(settings: &CompareSettings) -> Result<(), CompareError> {
    let plot_file = settings.plot.as_deref().map(|path| OutFile {
        what: "plot",
        flag: "--plot",
        path,
    });
    if let Some(f) = &plot_file {
        f.check()?;
    }
    let sources: Vec<Source> = settings
        .files
        .iter()
        .map(|p| input::read(p))
        .collect::<Result<_, _>>()?;
    let how = Resampling {
        seed: settings.seed,
        resamples: settings.resamples,
    };
    let (a, others) = sources
        .split_first()
        .expect("clap asks for two files or more");
    let pairings: Vec<Pairing> = others
        .iter()
        .map(|b| pairing::pair(a, b, settings.force))
        .collect::<Result<_, _>>()?;
    let mut comparisons = others
        .iter()
        .zip(&pairings)
        .map(|(b, p)| result::compare(a, b, p.clone(), how));
    let first = comparisons.next().expect("at least one other file");
    let report = Report {
        first,
        more: comparisons.collect(),
        method: Method::new(how),
    };
    match settings.output {
        CompareOutput::Text => crate::outln!("{}", render::render(&report, render::Style::Text)),
        CompareOutput::Markdown => {
            crate::outln!("{}", render::render(&report, render::Style::Markdown))
        }
        CompareOutput::Json => {
            for c in std::iter::once(&report.first).chain(&report.more) {
                for w in &c.warnings {
                    crate::errln!("warning: {w}");
                }
            }
            crate::outln!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    if let Some(file) = plot_file {
        write_plot(file, &sources, &pairings)?;
    }
    Ok(())
}

/// The decode test of each file that the comparisons used.
fn decode_tests<'a>(sources: &'a [Source], pairings: &[Pairing]) -> Vec<Option<&'a Test>> {
    let tests = |s: &'a Source| match &s.content {
        Content::Tests(t) => Some(t),
        Content::Sweep(_) => None,
    };
    let decode =
        |s: &'a Source, i: usize| tests(s).map(|t| &t[i]).filter(|t| t.phase == Phase::Decode);
    let mut out = vec![None; sources.len()];
    for (k, p) in pairings.iter().enumerate() {
        for &(i, j) in &p.pairs {
            if let (Some(x), Some(y)) = (decode(&sources[0], i), decode(&sources[k + 1], j)) {
                out[0].get_or_insert(x);
                out[k + 1] = Some(y);
            }
        }
    }
    out
}

fn write_plot(
    file: OutFile<'_>,
    sources: &[Source],
    pairings: &[Pairing],
) -> Result<(), CompareError> {
    let path = file.path.display().to_string();
    let tests = decode_tests(sources, pairings);
    let mut columns = Vec::new();
    for (k, (s, t)) in sources.iter().zip(&tests).enumerate() {
        let Some(t) = t else {
            return Err(CompareError::NothingToPlot {
                path,
                what: format!(
                    "{} has no decode samples compared (a sweep has none)",
                    s.path
                ),
            });
        };
        let ms: Vec<f64> = t
            .runs
            .iter()
            .flat_map(|r| {
                r.samples_ns
                    .iter()
                    .map(move |&ns| ns as f64 / r.tokens_per_sample as f64 / 1e6)
            })
            .collect();
        let what = match t.runs.first().map_or(1, |r| r.tokens_per_sample) {
            1 => format!("{} steps", ms.len()),
            _ => format!("{} runs, per token", ms.len()),
        };
        let tag = if k == 0 {
            'A'
        } else {
            (b'A' + k as u8) as char
        };
        columns.push(plot::Column {
            label: format!("{tag}: {} ({what})", file_name(&s.path)),
            ms,
        });
    }
    let title = format!(
        "decode time per token, {}",
        tests[0].map_or(String::new(), |t| t.label())
    );
    let svg = plot::render_svg(&columns, &title).map_err(|source| CompareError::Plot {
        path: path.clone(),
        source,
    })?;
    file.write(|out| out.write_all(svg.as_bytes()))?;
    crate::errln!("wrote {path}");
    Ok(())
}

fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}
