//! The AVX2 row quantizers (Q8_0/Q8_1 and Q8_K), bit for bit the reference ones.

use crate::quant::blocks::{QK, QK_K};
use std::arch::x86_64::*;

const TRUNC: i32 = _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC;

#[inline]
#[target_feature(enable = "avx2")]
fn round_away_256(v: __m256) -> __m256i {
    let t = _mm256_round_ps::<TRUNC>(v);
    let r = _mm256_sub_ps(v, t);
    let one = _mm256_set1_ps(1.0);
    let up = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(r, _mm256_set1_ps(0.5)), one);
    let down = _mm256_and_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(r, _mm256_set1_ps(-0.5)), one);
    _mm256_cvtps_epi32(_mm256_sub_ps(_mm256_add_ps(t, up), down))
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn q8_row(x: &[f32], qs: &mut [i8], d: &mut [f32]) {
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    for ((xb, qb), db) in x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)).zip(d) {
        let p = xb.as_ptr();
        let v = [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ];
        let m01 = _mm256_max_ps(_mm256_and_ps(v[0], abs_mask), _mm256_and_ps(v[1], abs_mask));
        let m23 = _mm256_max_ps(_mm256_and_ps(v[2], abs_mask), _mm256_and_ps(v[3], abs_mask));
        let m = _mm256_max_ps(m01, m23);
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_movehdup_ps(m));
        let amax = _mm_cvtss_f32(m);
        let dd = amax / 127.0;
        let id = _mm256_set1_ps(if dd != 0.0 { 1.0 / dd } else { 0.0 });
        let i: [__m256i; 4] = std::array::from_fn(|k| round_away_256(_mm256_mul_ps(v[k], id)));
        let p01 = _mm256_packs_epi32(i[0], i[1]);
        let p23 = _mm256_packs_epi32(i[2], i[3]);
        let packed = _mm256_packs_epi16(p01, p23);
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let q = _mm256_permutevar8x32_epi32(packed, order);
        _mm256_storeu_si256(qb.as_mut_ptr() as *mut __m256i, q);
        *db = dd;
    }
}

/// The largest lane of `m`.
#[inline]
#[target_feature(enable = "avx2")]
fn max_lane(m: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
}

/// The sum of the eight 32-bit lanes of `v`.
#[inline]
#[target_feature(enable = "avx2")]
fn sum_lanes(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)))
}

/// Q8_K rows: per super-block of 256 the scale of the first value of largest magnitude, the
/// quants rounded to nearest even (the default rounding of `vcvtps2dq`, as the reference's
/// `nearest_int`) and capped at 127, and their sums per 16.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn q8k_row(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let blocks = x.chunks_exact(QK_K).zip(qs.chunks_exact_mut(QK_K));
    for ((xb, qb), (db, bs)) in blocks.zip(d.iter_mut().zip(bsums.chunks_exact_mut(16))) {
        let v: [__m256; 32] = std::array::from_fn(|k| _mm256_loadu_ps(xb.as_ptr().add(8 * k)));
        let mut m = _mm256_and_ps(v[0], abs_mask);
        for vk in &v[1..] {
            m = _mm256_max_ps(m, _mm256_and_ps(*vk, abs_mask));
        }
        let amax = max_lane(m);
        if amax == 0.0 || amax.is_nan() {
            super::reference::quantize_q8_k(xb, qb, std::slice::from_mut(db), bs);
            continue;
        }
        // The signed value of the first element reaching amax, as the reference scans.
        let target = _mm256_set1_ps(amax);
        let mut max = 0.0;
        for (k, vk) in v.iter().enumerate() {
            let hit = _mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_and_ps(*vk, abs_mask), target);
            let bits = _mm256_movemask_ps(hit);
            if bits != 0 {
                max = xb[8 * k + bits.trailing_zeros() as usize];
                break;
            }
        }
        let iscale = -127.0 / max;
        let is = _mm256_set1_ps(iscale);
        let cap = _mm256_set1_epi32(127);
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (g, vg) in v.chunks_exact(4).enumerate() {
            let i: [__m256i; 4] = std::array::from_fn(|k| {
                _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(vg[k], is)), cap)
            });
            bs[2 * g] = sum_lanes(_mm256_add_epi32(i[0], i[1])) as i16;
            bs[2 * g + 1] = sum_lanes(_mm256_add_epi32(i[2], i[3])) as i16;
            let packed = _mm256_packs_epi16(
                _mm256_packs_epi32(i[0], i[1]),
                _mm256_packs_epi32(i[2], i[3]),
            );
            let q = _mm256_permutevar8x32_epi32(packed, order);
            _mm256_storeu_si256(qb.as_mut_ptr().add(32 * g) as *mut __m256i, q);
        }
        *db = 1.0 / iscale;
    }
}
