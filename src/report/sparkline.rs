//! Terminal charts of per-token latency: a one-line sparkline and a small horizontal histogram.
//!
//! Pure functions from values to `String`s; the caller picks the unit (e.g. milliseconds).

const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One block character per column, scaled from the smallest (▁) to the largest (█) value.
///
/// More values than `max_width` are resampled into `max_width` equal buckets, each shown by its
/// largest value, so that a single slow step is never averaged away. All-equal input draws a flat
/// line of ▁. Non-finite values draw as a space. Empty input or zero width gives an empty string.
pub fn sparkline(values: &[f64], max_width: usize) -> String {
    let columns = resample_max(values, max_width);
    let Some((lo, hi)) = finite_range(&columns) else {
        return " ".repeat(columns.len());
    };
    columns.iter().map(|&v| block(v, lo, hi)).collect()
}

fn block(v: f64, lo: f64, hi: f64) -> char {
    if !v.is_finite() {
        return ' ';
    }
    if hi <= lo {
        return BLOCKS[0];
    }
    let top = (BLOCKS.len() - 1) as f64;
    let level = ((v - lo) / (hi - lo) * top).round() as usize;
    BLOCKS[level.min(BLOCKS.len() - 1)]
}

/// Splits `values` into `width` contiguous buckets (sizes differing by at most one) and keeps each
/// bucket's largest finite value (NaN when a bucket has none).
fn resample_max(values: &[f64], width: usize) -> Vec<f64> {
    if values.len() <= width {
        return values.to_vec();
    }
    (0..width)
        .map(|i| {
            let (a, b) = (i * values.len() / width, (i + 1) * values.len() / width);
            values[a..b]
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(f64::NAN, f64::max)
        })
        .collect()
}

fn finite_range(values: &[f64]) -> Option<(f64, f64)> {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let lo = finite.clone().fold(f64::INFINITY, f64::min);
    let hi = finite.fold(f64::NEG_INFINITY, f64::max);
    (lo <= hi).then_some((lo, hi))
}

/// A horizontal histogram: `bins` equal-width bins from the smallest to the largest value, one line
/// each: `"{lo}–{hi} {unit} │{bar} {count}"`, bars scaled so the fullest bin is `bar_width` long (a
/// non-empty bin shows at least one █). The last bin includes the maximum. All-equal input gives one
/// line. Non-finite values are ignored; no finite values (or zero bins) gives an empty string.
pub fn histogram(values: &[f64], bins: usize, bar_width: usize, unit: &str) -> String {
    let Some((lo, hi)) = finite_range(values) else {
        return String::new();
    };
    if bins == 0 {
        return String::new();
    }
    let bins = if hi > lo { bins } else { 1 };
    let counts = bin_counts(values, lo, hi, bins);
    let step = (hi - lo) / bins as f64;
    let decimals = label_decimals(step, hi);
    let labels: Vec<String> = (0..bins)
        .map(|i| {
            let a = lo + step * i as f64;
            let b = if i + 1 == bins { hi } else { a + step };
            format!("{a:.decimals$}–{b:.decimals$} {unit}")
        })
        .collect();
    let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let peak = counts.iter().copied().max().unwrap_or(0).max(1);
    labels
        .iter()
        .zip(&counts)
        .map(|(label, &count)| {
            let bar = bar_len(count, peak, bar_width);
            format!("{label:>label_width$} │{} {count}\n", "█".repeat(bar))
        })
        .collect()
}

fn bin_counts(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<usize> {
    let mut counts = vec![0usize; bins];
    for &v in values.iter().filter(|v| v.is_finite()) {
        let i = if hi > lo {
            // Multiply before dividing so that values on a bin edge land exactly on it.
            ((v - lo) * bins as f64 / (hi - lo)) as usize
        } else {
            0
        };
        counts[i.min(bins - 1)] += 1;
    }
    counts
}

fn bar_len(count: usize, peak: usize, width: usize) -> usize {
    if count == 0 {
        return 0;
    }
    let len = (count as f64 / peak as f64 * width as f64).round() as usize;
    len.max(1)
}

/// Enough decimals that adjacent bin edges print differently: two significant digits of the bin
/// width, or three of the value itself when all values are equal; at most 6.
fn label_decimals(step: f64, value: f64) -> usize {
    let (unit, digits) = if step > 0.0 {
        (step, 1.0)
    } else {
        (value.abs(), 2.0)
    };
    if unit <= 0.0 || !unit.is_finite() {
        return 0;
    }
    (digits - unit.log10().floor()).clamp(0.0, 6.0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_min_to_max() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        assert_eq!(sparkline(&v, 80), "▁▂▃▄▅▆▇█");
        assert_eq!(sparkline(&[10.0, 0.0, 5.0], 80), "█▁▅");
    }

    #[test]
    fn sparkline_degenerate_inputs() {
        assert_eq!(sparkline(&[], 10), "");
        assert_eq!(sparkline(&[1.0, 2.0], 0), "");
        assert_eq!(sparkline(&[42.0], 10), "▁");
        assert_eq!(sparkline(&[3.0, 3.0, 3.0], 10), "▁▁▁");
        assert_eq!(sparkline(&[1.0, f64::NAN, 2.0], 10), "▁ █");
        assert_eq!(sparkline(&[f64::NAN, f64::INFINITY], 10), "  ");
    }

    #[test]
    fn sparkline_resamples_keeping_peaks() {
        // 8 values into 4 columns: bucket maxima 1, 9, 1, 5.
        let v = [1.0, 1.0, 1.0, 9.0, 1.0, 1.0, 5.0, 1.0];
        assert_eq!(sparkline(&v, 4), "▁█▁▅");
        let long: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let s = sparkline(&long, 60);
        assert_eq!(s.chars().count(), 60);
        assert!(s.starts_with('▁') && s.ends_with('█'));
    }

    #[test]
    fn histogram_exact_output() {
        // Bins [1,2) [2,3) [3,4]: the edge value 2.0 goes up, the maximum into the last bin.
        let v = [1.0, 1.5, 2.0, 2.0, 2.5, 4.0];
        let expected = "1.0–2.0 ms │████ 2\n2.0–3.0 ms │██████ 3\n3.0–4.0 ms │██ 1\n";
        assert_eq!(histogram(&v, 3, 6, "ms"), expected);
    }

    #[test]
    fn histogram_aligns_labels_and_keeps_small_bins_visible() {
        let v = [0.0, 0.0, 0.0, 0.0, 10.0];
        let expected = " 0.0–5.0 ms │████ 4\n5.0–10.0 ms │█ 1\n";
        assert_eq!(histogram(&v, 2, 4, "ms"), expected);
        let v = [0.0; 100].iter().copied().chain([1.0]).collect::<Vec<_>>();
        assert!(histogram(&v, 2, 10, "ms").ends_with("│█ 1\n"));
    }

    #[test]
    fn histogram_degenerate_inputs() {
        assert_eq!(histogram(&[], 5, 10, "ms"), "");
        assert_eq!(histogram(&[1.0], 0, 10, "ms"), "");
        assert_eq!(histogram(&[f64::NAN], 5, 10, "ms"), "");
        assert_eq!(histogram(&[2.5, 2.5], 5, 4, "ms"), "2.50–2.50 ms │████ 2\n");
    }
}
