//! Prints the cost of one `Sampler::sample` call over a Qwen3-sized vocabulary (151,936 logits).
//! Usage: `cargo run --release --example sampler_cost`

use qwen::sampler::{Sampler, SamplerConfig};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    // LM-like logits: a flat bulk in [-3, 3] and a few dozen strong candidates in [8, 14].
    let logits: Vec<f32> = (0..151_936u32)
        .map(|i| match i % 4999 {
            0 => 8.0 + (i % 7) as f32,
            _ => ((i as f32) * 0.618).sin() * 3.0,
        })
        .collect();
    let history: Vec<u32> = (0..64).map(|i| i * 997).collect();
    let configs = [
        ("greedy", SamplerConfig::default()),
        (
            "T=0.7",
            SamplerConfig {
                temperature: 0.7,
                ..Default::default()
            },
        ),
        (
            "T=0.7 top-k 40",
            SamplerConfig {
                temperature: 0.7,
                top_k: 40,
                ..Default::default()
            },
        ),
        (
            "T=0.6 top-k 20 top-p 0.95 (Qwen3)",
            SamplerConfig {
                temperature: 0.6,
                top_k: 20,
                top_p: 0.95,
                ..Default::default()
            },
        ),
        (
            "T=0.7 top-p 0.9",
            SamplerConfig {
                temperature: 0.7,
                top_p: 0.9,
                ..Default::default()
            },
        ),
        (
            "T=0.7 min-p 0.05 rep 1.1",
            SamplerConfig {
                temperature: 0.7,
                min_p: 0.05,
                repeat_penalty: 1.1,
                ..Default::default()
            },
        ),
    ];
    for (name, config) in configs {
        let mut s = Sampler::new(SamplerConfig {
            seed: Some(1),
            ..config
        })?;
        let n = 50;
        let t = Instant::now();
        let mut acc = 0u64;
        for _ in 0..n {
            acc += u64::from(s.sample(&logits, &history));
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!("{name:<36} {us:>8.0} µs/token  (checksum {acc})");
    }
    Ok(())
}
