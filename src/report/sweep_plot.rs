//! `--sweep MAX --plot FILE.svg`: prompt and decode speed against KV-cache depth, one panel
//! each (their scales differ by an order of magnitude), drawn like the latency chart
//! (`plot.rs`: plotters' SVG backend, no system fonts needed).

use plotters::prelude::*;

use super::plot::PlotError;
use super::sweep::SweepRow;

const SIZE: (u32, u32) = (960, 640);
const PROMPT: RGBColor = RGBColor(31, 119, 180);
const DECODE: RGBColor = RGBColor(214, 39, 40);

/// The chart as an SVG document.
pub fn render_sweep_svg(rows: &[SweepRow], title: &str) -> Result<String, PlotError> {
    if rows.is_empty() {
        return Err(PlotError::NoSamples);
    }
    let mut svg = String::new();
    draw(&mut svg, rows, title).map_err(|e| PlotError::Render(e.to_string()))?;
    Ok(svg)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(svg: &mut String, rows: &[SweepRow], title: &str) -> DrawResult {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(45);
    header.titled(title, ("sans-serif", 22))?;
    let (top, bottom) = body.split_vertically((SIZE.1 - 45) / 2);
    let prompt: Vec<(f64, f64)> = rows.iter().map(|r| (r.n_kv as f64, r.pp_ts)).collect();
    let decode: Vec<(f64, f64)> = rows.iter().map(|r| (r.n_kv as f64, r.tg_ts)).collect();
    let last = rows.last().map_or(0, |r| r.n_kv);
    let step = rows.first().map_or(1, |r| r.pp_tokens.max(1));
    let x = (-(step as f64) * 0.25, last as f64 + step as f64 * 0.25);
    let label = format!("prompt, {step}-token chunks (tokens/s)");
    panel(&top, &prompt, x, &label, PROMPT, false)?;
    let label = format!("decode, {} steps (tokens/s)", rows[0].tg_tokens);
    panel(&bottom, &decode, x, &label, DECODE, true)?;
    root.present()?;
    Ok(())
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    points: &[(f64, f64)],
    x: (f64, f64),
    label: &str,
    color: RGBColor,
    x_axis_title: bool,
) -> DrawResult {
    let hi = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let y = (0.0, if hi > 0.0 { hi * 1.2 } else { 1.0 });
    let mut chart = ChartBuilder::on(area)
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)?;
    let mut mesh = chart.configure_mesh();
    mesh.y_desc("tokens/s")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(BLACK.mix(0.04))
        .axis_desc_style(("sans-serif", 15));
    if x_axis_title {
        mesh.x_desc("KV-cache depth before the step (n_kv)");
    }
    mesh.draw()?;
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        ))?
        .label(label)
        .legend(move |(lx, ly)| {
            PathElement::new(vec![(lx, ly), (lx + 20, ly)], color.stroke_width(2))
        });
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n_kv: usize, pp_ts: f64, tg_ts: f64) -> SweepRow {
        SweepRow {
            n_kv,
            pp_tokens: 256,
            pp_ms: 1.0,
            pp_ts,
            tg_tokens: 8,
            tg_ms: 1.0,
            tg_ts,
        }
    }

    #[test]
    fn draws_both_rates_against_depth() {
        let rows = [
            row(0, 400.0, 50.0),
            row(256, 380.0, 45.0),
            row(512, 350.0, 41.0),
        ];
        let svg = render_sweep_svg(&rows, "sweep").unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let lines: Vec<usize> = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .filter_map(|n| n.attribute("points"))
            .map(|p| p.split_whitespace().count())
            .collect();
        assert_eq!(
            lines.iter().filter(|&&n| n == rows.len()).count(),
            2,
            "{lines:?}"
        );
        for text in [
            "sweep",
            "prompt, 256-token chunks",
            "decode, 8 steps",
            "n_kv",
        ] {
            assert!(svg.contains(text), "missing {text:?}");
        }
        assert!(matches!(
            render_sweep_svg(&[], "t"),
            Err(PlotError::NoSamples)
        ));
    }
}
