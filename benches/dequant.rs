//! Dequantization throughput per type, row by row into one reused buffer, as the single-thread
//! inference path does for every matmul. Prints figures; checks nothing.
//!
//!   cargo bench --bench dequant
//!
//! Each type dequantizes the same number of weights (rows of 4096) from a buffer larger than the
//! caches, so weight bytes stream from memory as in decoding. The baseline is copying the same
//! number of f32 values (the cost of just writing the output). Best of a few passes.

use std::hint::black_box;
use std::time::Instant;

use qwen::quant::{dequantize_row, GgmlType, SUPPORTED_TYPES};

const ROW_LEN: usize = 4096;
const N_ROWS: usize = 4096;
const PASSES: usize = 20;

/// Deterministic bytes (xorshift64) standing in for weights.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

/// Random bytes with every f16/bf16 value finite, so timings are not those of NaN arithmetic.
/// Clearing bit 6 of every odd byte keeps the top exponent bit of each f16 and bf16 clear; the
/// quants are changed too, which does not matter for timing.
fn weights(ty: GgmlType) -> Vec<u8> {
    let n_bytes = N_ROWS * ROW_LEN / ty.block_size() * ty.type_size();
    let mut bytes = random_bytes(n_bytes, u64::from(ty.id()) + 1);
    if ty != GgmlType::F32 {
        for b in bytes.iter_mut().skip(1).step_by(2) {
            *b &= 0b1011_1111;
        }
    }
    bytes
}

/// Best seconds over `PASSES` runs of `pass`.
fn best_of(mut pass: impl FnMut()) -> f64 {
    (0..PASSES)
        .map(|_| {
            let start = Instant::now();
            pass();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let n_weights = (N_ROWS * ROW_LEN) as f64;
    let mut row = vec![0.0f32; ROW_LEN];

    let source = vec![1.0f32; N_ROWS * ROW_LEN];
    let copy_s = best_of(|| {
        for src in source.chunks_exact(ROW_LEN) {
            row.copy_from_slice(black_box(src));
            black_box(&mut row);
        }
    });
    drop(source);
    println!("{N_ROWS} rows x {ROW_LEN} weights, best of {PASSES} passes, one thread");
    println!(
        "{:<6} {:>10} {:>12} {:>14} {:>10}",
        "type", "bytes/w", "GB/s (in)", "Gweights/s", "vs copy"
    );
    println!(
        "{:<6} {:>10} {:>12.2} {:>14.2} {:>10.2}",
        "copy",
        4.0,
        4.0 * n_weights / copy_s / 1e9,
        n_weights / copy_s / 1e9,
        1.0
    );

    for ty in SUPPORTED_TYPES {
        let bytes = weights(ty);
        let row_bytes = bytes.len() / N_ROWS;
        let mut failed = None;
        let secs = best_of(|| {
            for src in bytes.chunks_exact(row_bytes) {
                if let Err(e) = dequantize_row(ty, black_box(src), &mut row) {
                    failed = Some(e);
                }
                black_box(&mut row);
            }
        });
        if let Some(e) = failed {
            eprintln!("{ty}: {e}");
            continue;
        }
        println!(
            "{:<6} {:>10.4} {:>12.2} {:>14.2} {:>10.2}",
            ty.name(),
            ty.type_size() as f64 / ty.block_size() as f64,
            bytes.len() as f64 / secs / 1e9,
            n_weights / secs / 1e9,
            copy_s / secs
        );
    }
}
