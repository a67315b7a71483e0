//! AVX-512 kernels for F32/F16/BF16 weights: 16 weights widened to f32 per vector, one FMA
//! per (row, token); a masked step for the last `cols % 16`.

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::{BF16, F16, F32};
use crate::cpu::dot::{tile_table, Tile, TileEntry, PREFETCH};

pub fn tiles(c: u8) -> &'static [TileEntry] {
    macro_rules! shapes {
        ($ty:tt) => {
            tile_table!(tile, $ty; (1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (2, 4), (4, 1), (4, 2), (4, 4))
        };
    }
    match c {
        F32 => shapes!(F32),
        F16 => shapes!(F16),
        _ => shapes!(BF16),
    }
}

/// 16 weights from column `c` of the row at `p`, lanes outside `k` zero (and not read).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
unsafe fn weights<const TY: u8>(p: *const u8, c: usize, k: __mmask16) -> __m512 {
    match TY {
        F32 => _mm512_maskz_loadu_ps(k, p.add(4 * c) as *const f32),
        F16 => _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p.add(2 * c) as *const i16)),
        _ => {
            let h = _mm256_maskz_loadu_epi16(k, p.add(2 * c) as *const i16);
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c,fma")]
unsafe fn tile<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    let cols = a.cols;
    let mut xs = [std::ptr::null::<f32>(); T];
    for t in 0..T {
        xs[t] = a.x.as_ptr().add((a.t0 + t) * cols);
    }
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    let mut w = [_mm512_setzero_ps(); R];
    let mut c = 0;
    while c < cols {
        let k: __mmask16 = if cols - c >= 16 {
            0xFFFF
        } else {
            (1u16 << (cols - c)) - 1
        };
        for r in 0..R {
            let p = a.w.add(r * a.w_stride);
            if T == 1 {
                // Decode reads each weight once: ask for the bytes a little ahead in the stream.
                let at = c * if TY == F32 { 4 } else { 2 };
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(at + PREFETCH) as *const i8);
            }
            w[r] = weights::<TY>(p, c, k);
        }
        for t in 0..T {
            let xv = _mm512_maskz_loadu_ps(k, xs[t].add(c));
            for r in 0..R {
                acc[r][t] = _mm512_fmadd_ps(w[r], xv, acc[r][t]);
            }
        }
        c += 16;
    }
    for r in 0..R {
        for t in 0..T {
            *a.y.add((a.t0 + t) * a.y_stride + a.r0 + r * a.y_step) =
                _mm512_reduce_add_ps(acc[r][t]);
        }
    }
}
