//! The reference quantizers of ggml (`quantize_row_q8_0_ref`, `quantize_row_q8_1_ref`,
//! `quantize_row_q8_K_ref`), one token row at a time: what the SIMD versions must equal.

use crate::quant::blocks::{round_f16, QK, QK_K};

/// `roundf`: nearest, ties away from zero (exact for |v| < 2^31, as the quantizers need).
#[inline(always)]
pub fn round_away(v: f32) -> i32 {
    let t = v as i32;
    let r = v - t as f32;
    if r >= 0.5 {
        t + 1
    } else if r <= -0.5 {
        t - 1
    } else {
        t
    }
}

/// ggml's `nearest_int`: round to nearest even through the 1.5 * 2^23 trick.
#[inline(always)]
pub fn nearest_int(v: f32) -> i32 {
    let val = v + 12_582_912.0;
    (val.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// One Q8_0 block: returns the unrounded scale `amax / 127` (the block stores it as f16).
pub fn q8_block(x: &[f32], qs: &mut [i8]) -> f32 {
    let amax = x
        .iter()
        .fold(0.0f32, |m, v| if m > v.abs() { m } else { v.abs() });
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = round_away(v * id) as i8;
    }
    d
}

/// `quantize_row_q8_0_ref`: `d` gets the f16-rounded scales, widened.
pub fn quantize_q8_0(x: &[f32], qs: &mut [i8], d: &mut [f32]) {
    for ((xb, qb), db) in x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)).zip(d) {
        *db = round_f16(q8_block(xb, qb));
    }
}

/// `quantize_row_q8_1_ref`: as Q8_0, plus `s = f16(d * sum(qs))` per block.
pub fn quantize_q8_1(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    let blocks = x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK));
    for ((xb, qb), (db, sb)) in blocks.zip(d.iter_mut().zip(s)) {
        let dd = q8_block(xb, qb);
        let sum: i32 = qb.iter().map(|&q| q as i32).sum();
        *db = round_f16(dd);
        *sb = round_f16(sum as f32 * dd);
    }
}

/// `quantize_row_q8_K_ref`: scale `-max/127` of the largest-magnitude value (the first one
/// on ties), quants clamped to 127, sums per 16.
pub fn quantize_q8_k(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    let blocks = x.chunks_exact(QK_K).zip(qs.chunks_exact_mut(QK_K));
    for ((xb, qb), (db, bs)) in blocks.zip(d.iter_mut().zip(bsums.chunks_exact_mut(16))) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *db = 0.0;
            qb.fill(0);
            bs.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in qb.iter_mut().zip(xb) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (b, q16) in bs.iter_mut().zip(qb.chunks_exact(16)) {
            *b = q16.iter().map(|&q| q as i16).sum();
        }
        *db = 1.0 / iscale;
    }
}
