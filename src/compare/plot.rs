//! `qwen compare --plot FILE.svg`: each file's decode time per token side by side, every sample
//! a point (spread sideways so that equal values stay visible), its middle half a box and its
//! median a bar; drawn as the run's charts are (plotters' SVG backend, no system fonts).

use plotters::prelude::*;

use crate::report::plot::PlotError;

use super::stats::{median_in_place, quantile};

const SIZE: (u32, u32) = (960, 600);
const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// One file's distribution.
#[derive(Debug, Clone)]
pub struct Column {
    /// Under the column: the file and what a point is.
    pub label: String,
    /// Milliseconds per token, one per sample.
    pub ms: Vec<f64>,
}

/// The chart as an SVG document.
pub fn render_svg(columns: &[Column], title: &str) -> Result<String, PlotError> {
    if columns.is_empty() || columns.iter().any(|c| c.ms.is_empty()) {
        return Err(PlotError::NoSamples);
    }
    let mut svg = String::new();
    draw(&mut svg, columns, title).map_err(|e| PlotError::Render(e.to_string()))?;
    Ok(svg)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(svg: &mut String, columns: &[Column], title: &str) -> DrawResult {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(45);
    header.titled(title, ("sans-serif", 20))?;
    let all = columns.iter().flat_map(|c| c.ms.iter().copied());
    let (lo, hi) = all.fold((f64::INFINITY, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
    let span = if hi > lo { hi - lo } else { hi.max(1e-3) * 0.1 };
    // Room over the highest point for the columns' labels.
    let y = ((lo - span * 0.05).max(0.0), hi + span * 0.15);
    let x = (-0.5, columns.len() as f64 - 0.5);
    let mut chart = ChartBuilder::on(&body)
        .margin(15)
        .x_label_area_size(10)
        .y_label_area_size(70)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc("decode time per token (ms)")
        .light_line_style(BLACK.mix(0.04))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;
    for (i, column) in columns.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let cx = i as f64;
        let mut sorted = column.ms.clone();
        sorted.sort_by(f64::total_cmp);
        let (q1, q3) = (quantile(&sorted, 0.25), quantile(&sorted, 0.75));
        let median = median_in_place(&mut sorted.clone());
        chart.draw_series(std::iter::once(Rectangle::new(
            [(cx - 0.2, q1), (cx + 0.2, q3)],
            color.mix(0.15).filled(),
        )))?;
        chart.draw_series(column.ms.iter().enumerate().map(|(k, &v)| {
            // A low-discrepancy spread over the middle of the column.
            let dx = ((k as f64 * 0.618_034) % 1.0 - 0.5) * 0.3;
            Circle::new((cx + dx, v), 2, color.mix(0.7).filled())
        }))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(cx - 0.25, median), (cx + 0.25, median)],
            color.stroke_width(3),
        )))?;
        let text = format!("{} (median {median:.3} ms)", column.label);
        let style = ("sans-serif", 14).into_font().color(&BLACK);
        chart.draw_series(std::iter::once(Text::new(
            text,
            (cx - 0.45, hi + span * 0.12),
            style,
        )))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_point_per_sample_a_box_and_a_median_bar_per_file() {
        let columns = vec![
            Column {
                label: "a.json (steps)".into(),
                ms: vec![2.0, 2.1, 2.2, 2.0, 5.0],
            },
            Column {
                label: "b.json (steps)".into(),
                ms: vec![1.0, 1.1, 1.05],
            },
        ];
        let svg = render_svg(&columns, "decode, tg5").unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let count = |tag: &str| doc.descendants().filter(|n| n.has_tag_name(tag)).count();
        assert_eq!(count("circle"), 8);
        assert!(svg.contains("a.json (steps) (median 2.100 ms)"), "{svg}");
        assert!(svg.contains("b.json (steps) (median 1.050 ms)"));
        assert!(svg.contains("decode time per token (ms)"));
        assert!(count("rect") >= 2);
    }

    #[test]
    fn nothing_to_draw_is_an_error() {
        assert!(render_svg(&[], "t").is_err());
        let empty = Column {
            label: "x".into(),
            ms: vec![],
        };
        assert!(render_svg(&[empty], "t").is_err());
        let flat = Column {
            label: "x".into(),
            ms: vec![3.0; 4],
        };
        assert!(render_svg(&[flat], "t").is_ok());
    }
}
