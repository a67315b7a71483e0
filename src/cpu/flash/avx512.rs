//! The AVX-512 kernels of the tiled attention: the f16 cache read in place (each key and value
//! widened in registers once per chunk of four rows), the next block prefetched meanwhile.
// Register-blocked kernels index their accumulator arrays by row and column on purpose.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::block::KEY_BLOCK;
use super::chunks::{ChunkKernels, InPlace, Rows, ROWS};
use crate::cpu::ggml_math::x86::v_expf_512 as exp;

/// Lane `j` of the result: the sum of the lanes of `a[j]` (a 16 x 16 transpose folded
/// into the additions: 15 shuffle pairs instead of sixteen full reductions).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn sum_lanes16(a: &[__m512; 16]) -> __m512 {
    // Per 128-bit lane L: [a_2i[0] + a_2i[2], a_2i+1[0] + a_2i+1[2], a_2i[1] + a_2i[3], ..].
    let x: [__m512; 8] = std::array::from_fn(|i| {
        let (p, q) = (a[2 * i], a[2 * i + 1]);
        _mm512_add_ps(_mm512_unpacklo_ps(p, q), _mm512_unpackhi_ps(p, q))
    });
    // y[k], 128-bit lane L: the sums over lane L's four floats of a[4k..4k + 4].
    let y: [__m512; 4] = std::array::from_fn(|k| {
        let (p, q) = (_mm512_castps_pd(x[2 * k]), _mm512_castps_pd(x[2 * k + 1]));
        _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(p, q)),
            _mm512_castpd_ps(_mm512_unpackhi_pd(p, q)),
        )
    });
    // Across the four 128-bit lanes: lanes 0 + 2 and 1 + 3, then the two.
    let u01 = _mm512_add_ps(
        _mm512_shuffle_f32x4::<0x44>(y[0], y[1]),
        _mm512_shuffle_f32x4::<0xEE>(y[0], y[1]),
    );
    let u23 = _mm512_add_ps(
        _mm512_shuffle_f32x4::<0x44>(y[2], y[3]),
        _mm512_shuffle_f32x4::<0xEE>(y[2], y[3]),
    );
    _mm512_add_ps(
        _mm512_shuffle_f32x4::<0x88>(u01, u23),
        _mm512_shuffle_f32x4::<0xDD>(u01, u23),
    )
}

/// The AVX-512 chunk kernels.
pub(super) struct Avx512;

impl ChunkKernels for Avx512 {
    unsafe fn scores(b: &InPlace<'_>, n: usize, rows: &mut Rows<'_>, scale: f32) {
        match n {
            1 => scores::<1, 16>(b, rows, scale),
            2 => scores::<2, 8>(b, rows, scale),
            3 => scores::<3, 4>(b, rows, scale),
            _ => scores::<ROWS, 4>(b, rows, scale),
        }
    }

    unsafe fn softmax_step(p: &mut [f32; KEY_BLOCK], m: &mut f32, l: &mut f32) -> f32 {
        softmax_step(p, m, l)
    }

    unsafe fn pv(b: &InPlace<'_>, n: usize, p: &[f32], alpha: &[f32], o: &mut [f32]) {
        match n {
            1 => pv::<1, 8>(b, p, alpha, o),
            2 => pv::<2, 4>(b, p, alpha, o),
            3 => pv::<3, 2>(b, p, alpha, o),
            _ => pv::<ROWS, 2>(b, p, alpha, o),
        }
    }
}

/// Sixteen f16 values from `src` widened to f32.
#[inline(always)]
unsafe fn load(src: *const u16) -> __m512 {
    _mm512_cvtph_ps(_mm256_loadu_si256(src as *const __m256i))
}

/// Scaled scores of the `R` rows against the block's keys into `rows.probs`; a row's
/// keys from its `visible` on are masked (-inf). `P` keys per pass (`R * P`
/// accumulators); each key's sixteen lane sums are reduced as [`sum_lanes16`] does.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn scores<const R: usize, const P: usize>(b: &InPlace<'_>, rows: &mut Rows<'_>, scale: f32) {
    let hd = b.hd;
    assert!(rows.q.len() >= R * hd && rows.probs.len() >= R * KEY_BLOCK);
    assert!(b.valid >= 1 && b.keys.len() >= b.valid * hd);
    assert!(hd.is_multiple_of(16) && 16 % P == 0);
    let q = rows.q.as_ptr();
    for g in 0..KEY_BLOCK / 16 {
        let mut lanes = [[_mm512_setzero_ps(); 16]; R];
        for p0 in (0..16).step_by(P) {
            if 16 * g + p0 >= b.valid {
                break;
            }
            // Keys past `valid` read the last valid one again: they are masked.
            let key: [*const u16; P] = std::array::from_fn(|j| {
                let k = (16 * g + p0 + j).min(b.valid - 1);
                b.keys.as_ptr().add(k * hd)
            });
            let mut acc = [[_mm512_setzero_ps(); P]; R];
            for c in (0..hd).step_by(16) {
                let qv: [__m512; R] = std::array::from_fn(|r| _mm512_loadu_ps(q.add(r * hd + c)));
                for j in 0..P {
                    if c % 32 == 0 {
                        b.prefetch(key[j].add(c));
                    }
                    let k = load(key[j].add(c));
                    for r in 0..R {
                        acc[r][j] = _mm512_fmadd_ps(k, qv[r], acc[r][j]);
                    }
                }
            }
            for r in 0..R {
                lanes[r][p0..p0 + P].copy_from_slice(&acc[r]);
            }
        }
        for (r, lanes) in lanes.iter().enumerate() {
            let s = _mm512_mul_ps(sum_lanes16(lanes), _mm512_set1_ps(scale));
            let shown = rows.visible[r].saturating_sub(16 * g).min(16);
            let mask: __mmask16 = if shown == 16 {
                0xFFFF
            } else {
                (1 << shown) - 1
            };
            let s = _mm512_mask_blend_ps(mask, _mm512_set1_ps(f32::NEG_INFINITY), s);
            let out = rows.probs.as_mut_ptr().add(r * KEY_BLOCK + 16 * g);
            _mm512_storeu_ps(out, s);
        }
    }
}

/// `o[r] = o[r] * alpha[r] + sum_j p[r][j] * values[j]` for `R` rows (`p`: `[R,
/// KEY_BLOCK]`, `o`: `[R, hd]`), `CW` sixteen-wide columns at a time, then one at a
/// time for what is left. Keys past `valid` weigh zero and are skipped (adding 0 * 0
/// would change no bit).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn pv<const R: usize, const CW: usize>(
    b: &InPlace<'_>,
    p: &[f32],
    alpha: &[f32],
    o: &mut [f32],
) {
    let hd = b.hd;
    assert!(p.len() >= R * KEY_BLOCK && alpha.len() >= R && o.len() >= R * hd);
    assert!(b.values.len() >= b.valid * hd && hd.is_multiple_of(16));
    let wide = hd - hd % (16 * CW);
    pv_columns::<R, CW>(b, p, alpha, o, 0..wide);
    pv_columns::<R, 1>(b, p, alpha, o, wide..hd);
}

/// [`pv`] over the columns `cols`, `16 * CW` at a time; each row sums even and
/// odd keys apart (two chains, whatever `R` is).
#[inline(always)]
unsafe fn pv_columns<const R: usize, const CW: usize>(
    b: &InPlace<'_>,
    p: &[f32],
    alpha: &[f32],
    o: &mut [f32],
    cols: std::ops::Range<usize>,
) {
    let (hd, v, p) = (b.hd, b.values.as_ptr(), p.as_ptr());
    let prob = |r: usize, j: usize| _mm512_set1_ps(*p.add(r * KEY_BLOCK + j));
    for c0 in cols.step_by(16 * CW) {
        let (mut even, mut odd) = (
            [[_mm512_setzero_ps(); CW]; R],
            [[_mm512_setzero_ps(); CW]; R],
        );
        let mut j = 0;
        while j + 1 < b.valid {
            let (pe, po): ([__m512; R], [__m512; R]) = (
                std::array::from_fn(|r| prob(r, j)),
                std::array::from_fn(|r| prob(r, j + 1)),
            );
            for w in 0..CW {
                let (x0, x1) = (
                    v.add(j * hd + c0 + 16 * w),
                    v.add((j + 1) * hd + c0 + 16 * w),
                );
                if w % 2 == 0 {
                    b.prefetch(x0);
                    b.prefetch(x1);
                }
                let (v0, v1) = (load(x0), load(x1));
                for r in 0..R {
                    even[r][w] = _mm512_fmadd_ps(pe[r], v0, even[r][w]);
                    odd[r][w] = _mm512_fmadd_ps(po[r], v1, odd[r][w]);
                }
            }
            j += 2;
        }
        if j < b.valid {
            let pe: [__m512; R] = std::array::from_fn(|r| prob(r, j));
            for w in 0..CW {
                let v0 = load(v.add(j * hd + c0 + 16 * w));
                for r in 0..R {
                    even[r][w] = _mm512_fmadd_ps(pe[r], v0, even[r][w]);
                }
            }
        }
        for r in 0..R {
            for w in 0..CW {
                let dst = o.as_mut_ptr().add(r * hd + c0 + 16 * w);
                let sum = _mm512_add_ps(even[r][w], odd[r][w]);
                let prev = _mm512_loadu_ps(dst);
                _mm512_storeu_ps(dst, _mm512_fmadd_ps(prev, _mm512_set1_ps(alpha[r]), sum));
            }
        }
    }
}

/// One online-softmax step: the scores in `p` become `exp(score - m_new)`; `m` and `l`
/// are updated; returns `exp(m_old - m_new)`, the rescale of what came before.
#[target_feature(enable = "avx512f")]
unsafe fn softmax_step(p: &mut [f32; KEY_BLOCK], m: &mut f32, l: &mut f32) -> f32 {
    let v: [__m512; KEY_BLOCK / 16] =
        std::array::from_fn(|g| _mm512_loadu_ps(p.as_ptr().add(16 * g)));
    let mut mx = v[0];
    for x in &v[1..] {
        mx = _mm512_max_ps(mx, *x);
    }
    let m_new = _mm512_reduce_max_ps(mx).max(*m);
    let alpha = _mm512_cvtss_f32(exp(_mm512_set1_ps(*m - m_new)));
    let mv = _mm512_set1_ps(m_new);
    let mut sum = _mm512_setzero_ps();
    for (g, x) in v.iter().enumerate() {
        let e = exp(_mm512_sub_ps(*x, mv));
        _mm512_storeu_ps(p.as_mut_ptr().add(16 * g), e);
        sum = _mm512_add_ps(sum, e);
    }
    *l = *l * alpha + _mm512_reduce_add_ps(sum);
    *m = m_new;
    alpha
}

#[cfg(test)]
pub fn sum_lanes16_of(a: &[[f32; 16]; 16]) -> [f32; 16] {
    let mut out = [0.0f32; 16];
    // SAFETY: only called where AVX-512F was detected.
    unsafe {
        let v: [__m512; 16] = std::array::from_fn(|j| _mm512_loadu_ps(a[j].as_ptr()));
        _mm512_storeu_ps(out.as_mut_ptr(), sum_lanes16(&v));
    }
    out
}
