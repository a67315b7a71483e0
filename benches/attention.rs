//! Decode attention benchmark: one thread's tiled attention of a GQA group over one KV head of
//! an f16 cache at long context, in GB/s of cache read, against the machine's one-thread read
//! bandwidth measured here. Prints figures, asserts nothing.
//!
//! `cargo bench --bench attention -- [POSITIONS] [HEAD_DIM] [GROUP] [HEADS]` (defaults: 4096
//! positions, head_dim 128, 2 query rows per KV head as Qwen3-0.6B, 224 KV heads = 28 layers x
//! 8, so the cache read per call matches one decode step of that model and stays out of the
//! caches).

use std::time::Duration;

#[path = "common/per_call.rs"]
mod per_call;
use per_call::per_call;

use qwen::cpu::flash::{self, FlashScratch, HeadCache, Partial};
use qwen::cpu::synth::{random_input, Rng};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
        .max(1)
}

fn main() {
    let (positions, hd, group, heads) = (arg(1, 4096), arg(2, 128), arg(3, 2), arg(4, 224));
    let mut rng = Rng::new(7);
    let bits = |rng: &mut Rng| -> Vec<u16> {
        random_input(rng, heads * positions * hd)
            .iter()
            .map(|v| half::f16::from_f32(*v).to_bits())
            .collect()
    };
    let (keys, values) = (bits(&mut rng), bits(&mut rng));
    let q = random_input(&mut rng, group * hd);
    let last = vec![positions - 1; group];
    let scale = 1.0 / (hd as f32).sqrt();
    let mut scratch = FlashScratch::default();
    let (mut m, mut l, mut o) = (vec![0.0; group], vec![0.0; group], vec![0.0; group * hd]);
    let segs = flash::segments(positions - 1);
    let secs = per_call(Duration::from_secs(3), || {
        for h in 0..heads {
            let run = h * positions * hd..(h + 1) * positions * hd;
            let kv = HeadCache {
                keys: &keys[run.clone()],
                values: &values[run],
                head_dim: hd,
            };
            for seg in 0..segs {
                let mut part = Partial {
                    m: &mut m,
                    l: &mut l,
                    o: &mut o,
                };
                flash::segment_partial(kv, &q, &last, seg, scale, &mut scratch, &mut part);
            }
        }
        std::hint::black_box(&o);
    });
    let bytes = (2 * heads * positions * hd * 2) as f64;
    let bandwidth = qwen::cpu::bandwidth::measure(1);
    println!(
        "attention {positions} positions, head_dim {hd}, {group} rows, {heads} heads: \
         {:.2} ms, {:.1} GB/s of cache read ({:.0}% of one thread's {bandwidth:.1} GB/s)",
        secs * 1e3,
        bytes / secs / 1e9,
        100.0 * bytes / secs / 1e9 / bandwidth,
    );
}
