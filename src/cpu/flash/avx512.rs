//! The AVX-512 kernels of the tiled attention: the f16 cache read in place (each key and value
//! widened in registers once per chunk of four rows), the next block prefetched meanwhile.
// Register-blocked kernels index their accumulator arrays by row and column on purpose.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::block::{FlashScratch, HeadCache, KeyBlock, Partial, KEY_BLOCK};
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

/// One block against the rows `first..`, [`ROWS`] at a time: each f16 key and value is
/// widened in registers once per chunk of rows (no scratch copy of the block), and the
/// next block of the head is prefetched while the first chunk runs.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn attend_block(
    kv: HeadCache<'_>,
    q: &[f32],
    last: &[usize],
    block: &KeyBlock,
    scale: f32,
    s: &mut FlashScratch,
    part: &mut Partial<'_>,
) {
    let hd = kv.head_dim;
    let span = block.start * hd..(block.start + block.valid) * hd;
    let (keys, values) = (&kv.keys[span.clone()], &kv.values[span]);
    let next_in_cache = (block.start + KEY_BLOCK) * hd < kv.keys.len();
    let mut ahead = if next_in_cache { KEY_BLOCK * hd } else { 0 };
    let mut r = block.first;
    while r < last.len() {
        let n = ROWS.min(last.len() - r);
        let visible: [usize; ROWS] =
            std::array::from_fn(|i| last.get(r + i).map_or(0, |&p| block.visible(p)));
        let mut rows = Rows {
            q: &q[r * hd..(r + n) * hd],
            visible,
            probs: &mut s.probs[r * KEY_BLOCK..(r + n) * KEY_BLOCK],
        };
        let b = InPlace {
            keys,
            values,
            hd,
            valid: block.valid,
            ahead,
        };
        match n {
            1 => b.scores::<1, 16>(&mut rows, scale),
            2 => b.scores::<2, 8>(&mut rows, scale),
            3 => b.scores::<3, 4>(&mut rows, scale),
            _ => b.scores::<ROWS, 4>(&mut rows, scale),
        }
        for i in 0..n {
            let probs: &mut [f32; KEY_BLOCK] = (&mut rows.probs[i * KEY_BLOCK..][..KEY_BLOCK])
                .try_into()
                .expect("KEY_BLOCK probabilities");
            s.alpha[r + i] = softmax_step(probs, &mut part.m[r + i], &mut part.l[r + i]);
        }
        let (p, alpha) = (&*rows.probs, &s.alpha[r..r + n]);
        let o = &mut part.o[r * hd..(r + n) * hd];
        match n {
            1 => b.pv::<1, 8>(p, alpha, o),
            2 => b.pv::<2, 4>(p, alpha, o),
            3 => b.pv::<3, 2>(p, alpha, o),
            _ => b.pv::<ROWS, 2>(p, alpha, o),
        }
        ahead = 0;
        r += n;
    }
}

/// Rows per chunk of [`attend_block`]: their accumulators fill the vector registers.
const ROWS: usize = 4;

/// A chunk of query rows: their vectors, how many of the block's keys each sees, and
/// their probabilities (`[n, KEY_BLOCK]`).
struct Rows<'a> {
    q: &'a [f32],
    visible: [usize; ROWS],
    probs: &'a mut [f32],
}

/// One block of the f16 cache as it lies: `valid` keys and values of `hd` each, and how
/// far ahead (in elements) to prefetch the next block, 0 for not at all.
struct InPlace<'a> {
    keys: &'a [u16],
    values: &'a [u16],
    hd: usize,
    valid: usize,
    ahead: usize,
}

impl InPlace<'_> {
    /// Sixteen f16 values from `src` widened to f32.
    #[inline(always)]
    unsafe fn load(src: *const u16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(src as *const __m256i))
    }

    /// Hints that the line `ahead` elements past `at` will be read soon.
    #[inline(always)]
    unsafe fn prefetch(&self, at: *const u16) {
        if self.ahead != 0 {
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(self.ahead) as *const i8);
        }
    }

    /// Scaled scores of the `R` rows against the block's keys into `rows.probs`; a row's
    /// keys from its `visible` on are masked (-inf). `P` keys per pass (`R * P`
    /// accumulators); each key's sixteen lane sums are reduced as [`sum_lanes16`] does.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn scores<const R: usize, const P: usize>(&self, rows: &mut Rows<'_>, scale: f32) {
        let hd = self.hd;
        assert!(rows.q.len() >= R * hd && rows.probs.len() >= R * KEY_BLOCK);
        assert!(self.valid >= 1 && self.keys.len() >= self.valid * hd);
        assert!(hd.is_multiple_of(16) && 16 % P == 0);
        let q = rows.q.as_ptr();
        for g in 0..KEY_BLOCK / 16 {
            let mut lanes = [[_mm512_setzero_ps(); 16]; R];
            for p0 in (0..16).step_by(P) {
                if 16 * g + p0 >= self.valid {
                    break;
                }
                // Keys past `valid` read the last valid one again: they are masked.
                let key: [*const u16; P] = std::array::from_fn(|j| {
                    let k = (16 * g + p0 + j).min(self.valid - 1);
                    self.keys.as_ptr().add(k * hd)
                });
                let mut acc = [[_mm512_setzero_ps(); P]; R];
                for c in (0..hd).step_by(16) {
                    let qv: [__m512; R] =
                        std::array::from_fn(|r| _mm512_loadu_ps(q.add(r * hd + c)));
                    for j in 0..P {
                        if c % 32 == 0 {
                            self.prefetch(key[j].add(c));
                        }
                        let k = Self::load(key[j].add(c));
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
    unsafe fn pv<const R: usize, const CW: usize>(&self, p: &[f32], alpha: &[f32], o: &mut [f32]) {
        let hd = self.hd;
        assert!(p.len() >= R * KEY_BLOCK && alpha.len() >= R && o.len() >= R * hd);
        assert!(self.values.len() >= self.valid * hd && hd.is_multiple_of(16));
        let wide = hd - hd % (16 * CW);
        self.pv_columns::<R, CW>(p, alpha, o, 0..wide);
        self.pv_columns::<R, 1>(p, alpha, o, wide..hd);
    }

    /// [`Self::pv`] over the columns `cols`, `16 * CW` at a time; each row sums even and
    /// odd keys apart (two chains, whatever `R` is).
    #[inline(always)]
    unsafe fn pv_columns<const R: usize, const CW: usize>(
        &self,
        p: &[f32],
        alpha: &[f32],
        o: &mut [f32],
        cols: std::ops::Range<usize>,
    ) {
        let (hd, v, p) = (self.hd, self.values.as_ptr(), p.as_ptr());
        let prob = |r: usize, j: usize| _mm512_set1_ps(*p.add(r * KEY_BLOCK + j));
        for c0 in cols.step_by(16 * CW) {
            let (mut even, mut odd) = (
                [[_mm512_setzero_ps(); CW]; R],
                [[_mm512_setzero_ps(); CW]; R],
            );
            let mut j = 0;
            while j + 1 < self.valid {
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
                        self.prefetch(x0);
                        self.prefetch(x1);
                    }
                    let (v0, v1) = (Self::load(x0), Self::load(x1));
                    for r in 0..R {
                        even[r][w] = _mm512_fmadd_ps(pe[r], v0, even[r][w]);
                        odd[r][w] = _mm512_fmadd_ps(po[r], v1, odd[r][w]);
                    }
                }
                j += 2;
            }
            if j < self.valid {
                let pe: [__m512; R] = std::array::from_fn(|r| prob(r, j));
                for w in 0..CW {
                    let v0 = Self::load(v.add(j * hd + c0 + 16 * w));
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
