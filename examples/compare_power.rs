//! How many samples a side `qwen compare` needs to call a speed difference, by simulation of its
//! own verdict rule (median ratio, bootstrap interval, rank test, both must agree).
//!
//! Each simulated side is `n` independent rates, log-normal around its center with coefficient
//! of variation `cv` (the noise of one unit: a step, or a run); B's center is `effect` times A's.
//! The power is the share of trials that answer "faster"; the false-positive rate is the share
//! that answer anything but "no difference" when `effect` is 1. Trials and seeds are fixed, so
//! the table is the same on every machine.
//!
//! Usage: `cargo run --release --example compare_power` (the table of docs/compare.md), or
//! `... -- CV EFFECT` for one noise level and effect (e.g. `-- 0.08 1.05`).

use qwen::compare::stats::{estimate, Center, Resampling, Shift};
use qwen::rng::Xoshiro256;

/// Samples a side tried, smallest first.
const SIZES: [usize; 21] = [
    3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 150, 200, 300, 400,
];
const TRIALS: u64 = 400;
const HOW: Resampling = Resampling {
    seed: 1,
    resamples: 1000,
};
/// The power a size must reach.
const TARGET: f64 = 0.8;

fn main() {
    let args: Vec<f64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if let [cv, effect] = args[..] {
        println!("cv {cv}, effect {effect}x: {}", needed(cv, effect));
        return;
    }
    let cvs = [0.01, 0.02, 0.05, 0.10, 0.20];
    let effects = [1.02, 1.05, 1.10, 1.20, 1.50];
    print!("| noise (cv) |");
    for e in effects {
        print!(" B {:.0}% faster |", (e - 1.0) * 100.0);
    }
    println!("\n|--:|{}", "--:|".repeat(effects.len()));
    for cv in cvs {
        print!("| {:.0}% |", cv * 100.0);
        for e in effects {
            print!(" {} |", needed(cv, e));
        }
        println!();
    }
    // The rule sees only ranks and ratios: with no difference, its false positives do not
    // depend on the noise level.
    let fp: Vec<String> = [4, 5, 10, 30, 100]
        .iter()
        .map(|&n| {
            let rate = 1.0 - power(n, 0.05, 1.0, Outcome::NoDifference);
            format!("n = {n}: {:.1}%", rate * 100.0)
        })
        .collect();
    println!(
        "\nfalse positives (no difference, {TRIALS} trials): {}",
        fp.join(", ")
    );
}

/// The smallest size of [`SIZES`] with power of at least [`TARGET`], as text.
fn needed(cv: f64, effect: f64) -> String {
    // Power grows with the size: a binary search over the list.
    let (mut lo, mut hi) = (0, SIZES.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if power(SIZES[mid], cv, effect, Outcome::Faster) >= TARGET {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    match SIZES.get(lo) {
        Some(n) => n.to_string(),
        None => format!("> {}", SIZES[SIZES.len() - 1]),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Outcome {
    Faster,
    NoDifference,
}

/// The share of trials whose verdict is `outcome`.
fn power(n: usize, cv: f64, effect: f64, outcome: Outcome) -> f64 {
    let hits = (0..TRIALS)
        .filter(|&t| {
            let mut rng = Xoshiro256::new(0xC0FFEE + t);
            let a = rates(&mut rng, n, 100.0, cv);
            let b = rates(&mut rng, n, 100.0 * effect, cv);
            let shift = estimate(&a, &b, Center::Median, HOW).map_or(Shift::None, |e| e.shift);
            match outcome {
                Outcome::Faster => shift == Shift::Higher,
                Outcome::NoDifference => shift == Shift::None,
            }
        })
        .count();
    hits as f64 / TRIALS as f64
}

/// `n` log-normal rates around `center` with coefficient of variation `cv`.
fn rates(rng: &mut Xoshiro256, n: usize, center: f64, cv: f64) -> Vec<f64> {
    // The log-normal's sigma for a coefficient of variation cv.
    let sigma = (1.0 + cv * cv).ln().sqrt();
    (0..n)
        .map(|_| {
            let u = 1.0 - rng.next_f64();
            let v = rng.next_f64();
            let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
            center * (sigma * z).exp()
        })
        .collect()
}
