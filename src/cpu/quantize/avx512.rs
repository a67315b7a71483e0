//! The AVX-512 row quantizers (Q8_0/Q8_1 and Q8_K), bit for bit the reference ones.

use crate::quant::blocks::{QK, QK_K};
use std::arch::x86_64::*;

const TRUNC: i32 = _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC;
const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

/// `roundf` of 16 lanes: truncate, then step away from zero where the rest is >= 0.5.
#[inline]
#[target_feature(enable = "avx512f")]
fn round_away_512(v: __m512) -> __m512i {
    let t = _mm512_roundscale_ps::<TRUNC>(v);
    let r = _mm512_sub_ps(v, t);
    let one = _mm512_set1_ps(1.0);
    let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(r, _mm512_set1_ps(0.5));
    let down = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(r, _mm512_set1_ps(-0.5));
    let t = _mm512_mask_add_ps(t, up, t, one);
    _mm512_cvtps_epi32(_mm512_mask_sub_ps(t, down, t, one))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn q8_row(x: &[f32], qs: &mut [i8], d: &mut [f32]) {
    for ((xb, qb), db) in x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)).zip(d) {
        let v0 = _mm512_loadu_ps(xb.as_ptr());
        let v1 = _mm512_loadu_ps(xb.as_ptr().add(16));
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        let dd = amax / 127.0;
        let id = _mm512_set1_ps(if dd != 0.0 { 1.0 / dd } else { 0.0 });
        let q0 = _mm512_cvtsepi32_epi8(round_away_512(_mm512_mul_ps(v0, id)));
        let q1 = _mm512_cvtsepi32_epi8(round_away_512(_mm512_mul_ps(v1, id)));
        _mm_storeu_si128(qb.as_mut_ptr() as *mut __m128i, q0);
        _mm_storeu_si128(qb.as_mut_ptr().add(16) as *mut __m128i, q1);
        *db = dd;
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn q8k_row(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    let blocks = x.chunks_exact(QK_K).zip(qs.chunks_exact_mut(QK_K));
    for ((xb, qb), (db, bs)) in blocks.zip(d.iter_mut().zip(bsums.chunks_exact_mut(16))) {
        let v: [__m512; 16] = std::array::from_fn(|k| _mm512_loadu_ps(xb.as_ptr().add(16 * k)));
        let mut m = _mm512_abs_ps(v[0]);
        for vk in &v[1..] {
            m = _mm512_max_ps(m, _mm512_abs_ps(*vk));
        }
        let amax = _mm512_reduce_max_ps(m);
        if amax == 0.0 || amax.is_nan() {
            super::reference::quantize_q8_k(xb, qb, std::slice::from_mut(db), bs);
            continue;
        }
        // The signed value of the first element reaching amax, as the reference scans.
        let target = _mm512_set1_ps(amax);
        let mut max = 0.0;
        for (k, vk) in v.iter().enumerate() {
            let hit = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_abs_ps(*vk), target);
            if hit != 0 {
                max = xb[16 * k + hit.trailing_zeros() as usize];
                break;
            }
        }
        let iscale = -127.0 / max;
        let is = _mm512_set1_ps(iscale);
        let cap = _mm512_set1_epi32(127);
        for (k, vk) in v.iter().enumerate() {
            let i = _mm512_cvt_roundps_epi32::<NEAREST>(_mm512_mul_ps(*vk, is));
            let i = _mm512_min_epi32(i, cap);
            bs[k] = _mm512_reduce_add_epi32(i) as i16;
            let q = _mm512_cvtsepi32_epi8(i);
            _mm_storeu_si128(qb.as_mut_ptr().add(16 * k) as *mut __m128i, q);
        }
        *db = 1.0 / iscale;
    }
}
