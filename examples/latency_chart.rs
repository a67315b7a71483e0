//! Renders the terminal charts and the SVG latency plot for synthetic decode samples, to look at them.
//! Usage: `cargo run --example latency_chart -- OUT.svg`

use qwen::report::plot::write_latency_svg_with_note;
use qwen::report::sparkline::{histogram, sparkline};
use qwen::timing::{PhaseTiming, Samples, WarmupPolicy};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "latency.svg".into()),
    );
    // A warm-up spike, a slow drift as the KV cache grows, and a periodic hiccup.
    let ns: Vec<u64> = (0..64u64)
        .map(|i| match i {
            0 => 95_000_000,
            _ => {
                40_000_000
                    + i * 120_000
                    + (i * 7919 % 11) * 400_000
                    + if i % 17 == 0 { 9_000_000 } else { 0 }
            }
        })
        .collect();
    let decode = PhaseTiming::decode(&Samples::from(ns), WarmupPolicy::ExcludeFirst)
        .ok_or_else(|| anyhow::anyhow!("no samples"))?;
    let ms: Vec<f64> = decode.samples_ns.iter().map(|&t| t as f64 / 1e6).collect();
    println!("latency {}", sparkline(&ms, 60));
    print!("{}", histogram(&ms, 6, 30, "ms"));
    println!(
        "{}",
        serde_json::to_string_pretty(&decode)?
            .lines()
            .take(14)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let note = "prefill: pp128 in 812.4 ms (157.6 tok/s); warm-up step 95.0 ms excluded";
    write_latency_svg_with_note(
        &out,
        &decode.samples_ns,
        &decode.stats(),
        "tg64 decode latency per token",
        Some(note),
    )?;
    println!("wrote {}", out.display());
    Ok(())
}
