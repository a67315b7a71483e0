//! Row panels for the low-bit i-quants and MXFP4 (AVX-512 VNNI), in the panel layout and API
//! of the others.
//!
//! An i-quant sub-block enters as its signed integer-form quants (decoded exactly as the AVX2
//! tile kernels decode them: grid lookups, signs, IQ1's `8 g ± 1`) + 128, unsigned for
//! `vpdpbusd`, with effective scales `d * F * ls`; the `+ 128` comes back out through the min
//! term (`m = 128 * scale` against the Q8_K activations' `-d * sum`), per block of 32 for the
//! types with a scale per 32 ([`super::avx512::gemm`]) and per half-block of 16 for IQ2_XS, IQ2_S and
//! IQ1_M ([`super::avx512_low_bit::gemm16_min`]). MXFP4 enters as IQ4_NL does: its doubled values + 128 looked
//! up by nibble, the activations' `-128 * sum` per block starting each sum, and its E8M0 scale.

use std::arch::x86_64::*;

use super::super::iquant::{
    self, scales_per_16, IQ1_M, IQ1_S, IQ2_S, IQ2_XS, IQ2_XXS, IQ3_S, IQ3_XXS,
};
use super::super::legacy::{self, mxfp4_offset_levels};
use super::avx512::transpose;
use super::layout::{Panel, ROWS};
use crate::quant::grids::e8m0_half;

/// Repacks the rows (i-quant `c`) into `panel`.
///
/// # Safety
/// As [`super::pack`].
pub unsafe fn pack_iquant(c: u8, rows: &[*const u8; ROWS], panel: &Panel) {
    match c {
        IQ2_XXS => pack::<IQ2_XXS>(rows, panel),
        IQ2_XS => pack::<IQ2_XS>(rows, panel),
        IQ2_S => pack::<IQ2_S>(rows, panel),
        IQ3_XXS => pack::<IQ3_XXS>(rows, panel),
        IQ3_S => pack::<IQ3_S>(rows, panel),
        IQ1_S => pack::<IQ1_S>(rows, panel),
        _ => pack::<IQ1_M>(rows, panel),
    }
}

/// Stores 16 rows' 32 unsigned quants (`z[i]`: rows `i` and `i + 8`) as block `b`.
#[inline(always)]
unsafe fn put_block(z: [__m512i; 8], panel: &Panel, b: usize) {
    let dst = panel.q.add(b * 512);
    for (g, v) in transpose(z).into_iter().enumerate() {
        _mm512_store_si512(dst.add(64 * g) as *mut _, v);
    }
}

/// Stores row `r`'s effective scale of scale slot `i` (a block, or a half-block for the
/// types with scales per 16): `d * F * ls`, and its min `128 * d * F * ls`.
#[inline(always)]
unsafe fn put_scale(panel: &Panel, i: usize, r: usize, df: f32, ls: i32) {
    let dl = df * ls as f32;
    *panel.d.add(i * ROWS + r) = dl;
    *panel.m.add(i * ROWS + r) = 128.0 * dl;
}

#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,f16c")]
unsafe fn pack<const TY: u8>(rows: &[*const u8; ROWS], panel: &Panel) {
    let bs = iquant::block_bytes(TY);
    let offset = _mm256_set1_epi8(-128);
    for sb in 0..panel.blocks / 8 {
        // The scales come from the decoded sub-blocks' scale vectors and the super-block's
        // `d`; decoding each block's integer form again for them (scalar grid lookups of all
        // 256 quants) cost most of an IQ2_S or IQ3_S pack.
        let df: [f32; ROWS] = std::array::from_fn(|r| {
            iquant::super_scale_avx2::<TY>(rows[r].add(sb * bs)) * iquant::factor(TY)
        });
        for j in 0..4 {
            let subs: [[iquant::Sub; 2]; ROWS] =
                std::array::from_fn(|i| iquant::pair_avx2::<TY>(rows[i].add(sb * bs), j));
            for k in [0, 1] {
                let unsigned = |i: usize| {
                    let (u, s, _) = subs[i][k];
                    _mm256_xor_si256(_mm256_sign_epi8(u, s), offset)
                };
                let z = std::array::from_fn(|i| {
                    let (lo, hi) = (unsigned(i), unsigned(i + 8));
                    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
                });
                let b = 8 * sb + 2 * j + k;
                put_block(z, panel, b);
                // A sub-block's scale vector: its first 16 weights' `ls` in 16-bit lanes 0-7,
                // its last 16's in lanes 8-15.
                for (r, sub) in subs.iter().enumerate() {
                    let sc = sub[k].2;
                    if scales_per_16(TY) {
                        put_scale(panel, 2 * b, r, df[r], _mm256_extract_epi16::<0>(sc));
                        put_scale(panel, 2 * b + 1, r, df[r], _mm256_extract_epi16::<8>(sc));
                    } else {
                        put_scale(panel, b, r, df[r], _mm256_extract_epi16::<0>(sc));
                    }
                }
            }
        }
    }
}

/// Repacks MXFP4 rows into `panel`.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl")]
pub unsafe fn pack_mxfp4(rows: &[*const u8; ROWS], panel: &Panel) {
    let bs = legacy::block_bytes(legacy::MXFP4);
    let levels = _mm512_castsi512_si256(mxfp4_offset_levels());
    let nib = _mm_set1_epi8(0x0F);
    for b in 0..panel.blocks {
        let unsigned = |p: *const u8| {
            let v = _mm_loadu_si128(p.add(b * bs + 1) as *const __m128i);
            let lo = _mm_and_si128(v, nib);
            let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), nib);
            let idx = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi);
            _mm256_shuffle_epi8(levels, idx)
        };
        let z = std::array::from_fn(|i| {
            let (lo, hi) = (unsigned(rows[i]), unsigned(rows[i + 8]));
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
        });
        put_block(z, panel, b);
        for (r, &row) in rows.iter().enumerate() {
            *panel.d.add(b * ROWS + r) = e8m0_half(*row.add(b * bs));
        }
    }
}
