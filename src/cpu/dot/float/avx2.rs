//! AVX2 kernels for F32/F16/BF16 weights: 8 weights widened to f32 per vector, one FMA per
//! (row, token); the last `cols % 8` go through a zero-padded copy.

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::{weight, BF16, F16, F32};
use crate::cpu::dot::{tile_table, Tile, TileEntry};

pub fn tiles(c: u8) -> &'static [TileEntry] {
    macro_rules! shapes {
        ($ty:tt) => {
            tile_table!(tile, $ty; (1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (2, 4), (4, 1), (4, 2))
        };
    }
    match c {
        F32 => shapes!(F32),
        F16 => shapes!(F16),
        _ => shapes!(BF16),
    }
}

#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn weights<const TY: u8>(p: *const u8, c: usize) -> __m256 {
    match TY {
        F32 => _mm256_loadu_ps(p.add(4 * c) as *const f32),
        F16 => _mm256_cvtph_ps(_mm_loadu_si128(p.add(2 * c) as *const __m128i)),
        _ => {
            let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.add(2 * c) as *const __m128i));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h))
        }
    }
}

/// The last `cols - c` (< 8) weights of a row, zero-padded.
unsafe fn tail_weights<const TY: u8>(
    p: *const u8,
    row_bytes: usize,
    c: usize,
    cols: usize,
) -> [f32; 8] {
    let row = std::slice::from_raw_parts(p, row_bytes);
    let mut out = [0.0f32; 8];
    for (k, o) in out.iter_mut().enumerate().take(cols - c) {
        *o = weight::<TY>(row, c + k);
    }
    out
}

#[target_feature(enable = "avx2,f16c,fma")]
unsafe fn tile<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    let cols = a.cols;
    let mut xs = [std::ptr::null::<f32>(); T];
    for t in 0..T {
        xs[t] = a.x.as_ptr().add((a.t0 + t) * cols);
    }
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let mut w = [_mm256_setzero_ps(); R];
    let full = cols / 8 * 8;
    let mut c = 0;
    while c < full {
        for r in 0..R {
            w[r] = weights::<TY>(a.w.add(r * a.w_stride), c);
        }
        for t in 0..T {
            let xv = _mm256_loadu_ps(xs[t].add(c));
            for r in 0..R {
                acc[r][t] = _mm256_fmadd_ps(w[r], xv, acc[r][t]);
            }
        }
        c += 8;
    }
    if full < cols {
        for r in 0..R {
            let tw = tail_weights::<TY>(a.w.add(r * a.w_stride), a.row_bytes, full, cols);
            w[r] = _mm256_loadu_ps(tw.as_ptr());
        }
        for t in 0..T {
            let mut tx = [0.0f32; 8];
            tx[..cols - full]
                .copy_from_slice(std::slice::from_raw_parts(xs[t].add(full), cols - full));
            let xv = _mm256_loadu_ps(tx.as_ptr());
            for r in 0..R {
                acc[r][t] = _mm256_fmadd_ps(w[r], xv, acc[r][t]);
            }
        }
    }
    for r in 0..R {
        for t in 0..T {
            *a.y.add((a.t0 + t) * a.y_stride + a.r0 + r * a.y_step) = hsum(acc[r][t]);
        }
    }
}

/// Horizontal sum of 8 lanes, in a fixed order.
///
/// # Safety
/// The CPU must have AVX2.
#[inline]
#[target_feature(enable = "avx2")]
pub fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}
