//! The AVX2 kernels of the tiled attention: the AVX-512 ones' structure on eight-lane vectors.
//! The f16 cache is read in place (each key and value widened with F16C once per chunk of
//! rows) and the next block prefetched meanwhile; a score is an eight-lane partial dot
//! product reduced across lanes, the probabilities come from ggml's `exp` lane for lane.
// Register-blocked kernels index their accumulator arrays by row and column on purpose.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::block::KEY_BLOCK;
use super::chunks::{ChunkKernels, InPlace, Rows, ROWS};
use crate::cpu::ggml_math::x86::v_expf_256 as exp;

/// Lanes of a vector, and keys per reduction group.
const LANES: usize = 8;

/// Lane `j` of the result: the sum of the lanes of `a[j]` (an 8 x 8 transpose folded into
/// the additions: three rounds of pairwise sums, the same tree for every `j`).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn sum_lanes8(a: &[__m256; LANES]) -> __m256 {
    // t[i], 128-bit half H: [a_2i[2H..] pair sums, a_2i+1[2H..] pair sums].
    let t: [__m256; 4] = std::array::from_fn(|i| _mm256_hadd_ps(a[2 * i], a[2 * i + 1]));
    // u0, half H: the sums of a0..a3's four lanes of half H; u1 likewise for a4..a7.
    let u0 = _mm256_hadd_ps(t[0], t[1]);
    let u1 = _mm256_hadd_ps(t[2], t[3]);
    _mm256_add_ps(
        _mm256_permute2f128_ps::<0x20>(u0, u1),
        _mm256_permute2f128_ps::<0x31>(u0, u1),
    )
}

/// The AVX2 chunk kernels.
pub(super) struct Avx2;

impl ChunkKernels for Avx2 {
    unsafe fn scores(b: &InPlace<'_>, n: usize, rows: &mut Rows<'_>, scale: f32) {
        match n {
            1 => scores::<1, 8>(b, rows, scale),
            2 => scores::<2, 4>(b, rows, scale),
            3 => scores::<3, 2>(b, rows, scale),
            _ => scores::<ROWS, 2>(b, rows, scale),
        }
    }

    unsafe fn softmax_step(p: &mut [f32; KEY_BLOCK], m: &mut f32, l: &mut f32) -> f32 {
        softmax_step(p, m, l)
    }

    unsafe fn pv(b: &InPlace<'_>, n: usize, p: &[f32], alpha: &[f32], o: &mut [f32]) {
        match n {
            1 => pv::<1, 4>(b, p, alpha, o),
            2 => pv::<2, 2>(b, p, alpha, o),
            3 => pv::<3, 1>(b, p, alpha, o),
            _ => pv::<ROWS, 1>(b, p, alpha, o),
        }
    }
}

/// Eight f16 values from `src` widened to f32.
#[inline(always)]
unsafe fn load(src: *const u16) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(src as *const __m128i))
}

/// Scaled scores of the `R` rows against the block's keys into `rows.probs`; a row's
/// keys from its `visible` on are masked (-inf). `P` keys per pass (`R * P`
/// accumulators); each key's eight lane sums are reduced as [`sum_lanes8`] does.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scores<const R: usize, const P: usize>(b: &InPlace<'_>, rows: &mut Rows<'_>, scale: f32) {
    let hd = b.hd;
    assert!(rows.q.len() >= R * hd && rows.probs.len() >= R * KEY_BLOCK);
    assert!(b.valid >= 1 && b.keys.len() >= b.valid * hd);
    assert!(hd.is_multiple_of(LANES) && LANES.is_multiple_of(P));
    let q = rows.q.as_ptr();
    for g in 0..KEY_BLOCK / LANES {
        let mut lanes = [[_mm256_setzero_ps(); LANES]; R];
        for p0 in (0..LANES).step_by(P) {
            if LANES * g + p0 >= b.valid {
                break;
            }
            // Keys past `valid` read the last valid one again: they are masked.
            let key: [*const u16; P] = std::array::from_fn(|j| {
                let k = (LANES * g + p0 + j).min(b.valid - 1);
                b.keys.as_ptr().add(k * hd)
            });
            let mut acc = [[_mm256_setzero_ps(); P]; R];
            for c in (0..hd).step_by(LANES) {
                let qv: [__m256; R] = std::array::from_fn(|r| _mm256_loadu_ps(q.add(r * hd + c)));
                for j in 0..P {
                    if c % 32 == 0 {
                        b.prefetch(key[j].add(c));
                    }
                    let k = load(key[j].add(c));
                    for r in 0..R {
                        acc[r][j] = _mm256_fmadd_ps(k, qv[r], acc[r][j]);
                    }
                }
            }
            for r in 0..R {
                lanes[r][p0..p0 + P].copy_from_slice(&acc[r]);
            }
        }
        for (r, lanes) in lanes.iter().enumerate() {
            let s = _mm256_mul_ps(sum_lanes8(lanes), _mm256_set1_ps(scale));
            let shown = rows.visible[r].saturating_sub(LANES * g).min(LANES);
            // Lane l is kept where l < shown.
            let index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(shown as i32), index);
            let s = _mm256_blendv_ps(
                _mm256_set1_ps(f32::NEG_INFINITY),
                s,
                _mm256_castsi256_ps(keep),
            );
            let out = rows.probs.as_mut_ptr().add(r * KEY_BLOCK + LANES * g);
            _mm256_storeu_ps(out, s);
        }
    }
}

/// `o[r] = o[r] * alpha[r] + sum_j p[r][j] * values[j]` for `R` rows (`p`: `[R,
/// KEY_BLOCK]`, `o`: `[R, hd]`), `CW` eight-wide columns at a time, then one at a time
/// for what is left. Keys past `valid` weigh zero and are skipped (adding 0 * 0 would
/// change no bit).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pv<const R: usize, const CW: usize>(
    b: &InPlace<'_>,
    p: &[f32],
    alpha: &[f32],
    o: &mut [f32],
) {
    let hd = b.hd;
    assert!(p.len() >= R * KEY_BLOCK && alpha.len() >= R && o.len() >= R * hd);
    assert!(b.values.len() >= b.valid * hd && hd.is_multiple_of(LANES));
    let wide = hd - hd % (LANES * CW);
    pv_columns::<R, CW>(b, p, alpha, o, 0..wide);
    pv_columns::<R, 1>(b, p, alpha, o, wide..hd);
}

/// [`pv`] over the columns `cols`, `8 * CW` at a time; each row sums even and odd
/// keys apart (two chains, whatever `R` is).
#[inline(always)]
unsafe fn pv_columns<const R: usize, const CW: usize>(
    b: &InPlace<'_>,
    p: &[f32],
    alpha: &[f32],
    o: &mut [f32],
    cols: std::ops::Range<usize>,
) {
    let (hd, v, p) = (b.hd, b.values.as_ptr(), p.as_ptr());
    let prob = |r: usize, j: usize| _mm256_set1_ps(*p.add(r * KEY_BLOCK + j));
    for c0 in cols.step_by(LANES * CW) {
        let (mut even, mut odd) = (
            [[_mm256_setzero_ps(); CW]; R],
            [[_mm256_setzero_ps(); CW]; R],
        );
        let mut j = 0;
        while j + 1 < b.valid {
            for w in 0..CW {
                let (x0, x1) = (
                    v.add(j * hd + c0 + LANES * w),
                    v.add((j + 1) * hd + c0 + LANES * w),
                );
                if w % 4 == 0 {
                    b.prefetch(x0);
                    b.prefetch(x1);
                }
                let (v0, v1) = (load(x0), load(x1));
                for r in 0..R {
                    even[r][w] = _mm256_fmadd_ps(prob(r, j), v0, even[r][w]);
                    odd[r][w] = _mm256_fmadd_ps(prob(r, j + 1), v1, odd[r][w]);
                }
            }
            j += 2;
        }
        if j < b.valid {
            for w in 0..CW {
                let v0 = load(v.add(j * hd + c0 + LANES * w));
                for r in 0..R {
                    even[r][w] = _mm256_fmadd_ps(prob(r, j), v0, even[r][w]);
                }
            }
        }
        for r in 0..R {
            for w in 0..CW {
                let dst = o.as_mut_ptr().add(r * hd + c0 + LANES * w);
                let sum = _mm256_add_ps(even[r][w], odd[r][w]);
                let prev = _mm256_loadu_ps(dst);
                _mm256_storeu_ps(dst, _mm256_fmadd_ps(prev, _mm256_set1_ps(alpha[r]), sum));
            }
        }
    }
}

/// One online-softmax step: the scores in `p` become `exp(score - m_new)`; `m` and `l`
/// are updated; returns `exp(m_old - m_new)`, the rescale of what came before.
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_step(p: &mut [f32; KEY_BLOCK], m: &mut f32, l: &mut f32) -> f32 {
    let v: [__m256; KEY_BLOCK / LANES] =
        std::array::from_fn(|g| _mm256_loadu_ps(p.as_ptr().add(LANES * g)));
    let mut mx = v[0];
    for x in &v[1..] {
        mx = _mm256_max_ps(mx, *x);
    }
    let m_new = lanes_of(mx).into_iter().fold(*m, f32::max);
    let alpha = super::portable::exp(*m - m_new);
    let mv = _mm256_set1_ps(m_new);
    let mut sum = _mm256_setzero_ps();
    for (g, x) in v.iter().enumerate() {
        let e = exp(_mm256_sub_ps(*x, mv));
        _mm256_storeu_ps(p.as_mut_ptr().add(LANES * g), e);
        sum = _mm256_add_ps(sum, e);
    }
    *l = *l * alpha + lanes_of(sum).iter().sum::<f32>();
    *m = m_new;
    alpha
}

#[inline(always)]
unsafe fn lanes_of(v: __m256) -> [f32; LANES] {
    let mut out = [0.0f32; LANES];
    _mm256_storeu_ps(out.as_mut_ptr(), v);
    out
}

#[cfg(test)]
pub fn sum_lanes8_of(a: &[[f32; LANES]; LANES]) -> [f32; LANES] {
    // SAFETY: only called where AVX2 was detected.
    unsafe {
        let v: [__m256; LANES] = std::array::from_fn(|j| _mm256_loadu_ps(a[j].as_ptr()));
        lanes_of(sum_lanes8(&v))
    }
}
