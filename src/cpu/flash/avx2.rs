//! The AVX2 kernels of the tiled attention: the AVX-512 ones' structure on eight-lane vectors.
//! The f16 cache is read in place (each key and value widened with F16C once per chunk of
//! rows) and the next block prefetched meanwhile; a score is an eight-lane partial dot
//! product reduced across lanes, the probabilities come from ggml's `exp` lane for lane.
// Register-blocked kernels index their accumulator arrays by row and column on purpose.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::block::{FlashScratch, HeadCache, KeyBlock, Partial, KEY_BLOCK};
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

/// One block against the rows `first..`, [`ROWS`] at a time: each f16 key and value is
/// widened in registers once per chunk of rows, and the next block of the head is
/// prefetched while the first chunk runs.
#[target_feature(enable = "avx2,fma,f16c")]
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
            1 => b.scores::<1, 8>(&mut rows, scale),
            2 => b.scores::<2, 4>(&mut rows, scale),
            3 => b.scores::<3, 2>(&mut rows, scale),
            _ => b.scores::<ROWS, 2>(&mut rows, scale),
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
            1 => b.pv::<1, 4>(p, alpha, o),
            2 => b.pv::<2, 2>(p, alpha, o),
            3 => b.pv::<3, 1>(p, alpha, o),
            _ => b.pv::<ROWS, 1>(p, alpha, o),
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
    /// Eight f16 values from `src` widened to f32.
    #[inline(always)]
    unsafe fn load(src: *const u16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(src as *const __m128i))
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
    /// accumulators); each key's eight lane sums are reduced as [`sum_lanes8`] does.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scores<const R: usize, const P: usize>(&self, rows: &mut Rows<'_>, scale: f32) {
        let hd = self.hd;
        assert!(rows.q.len() >= R * hd && rows.probs.len() >= R * KEY_BLOCK);
        assert!(self.valid >= 1 && self.keys.len() >= self.valid * hd);
        assert!(hd.is_multiple_of(LANES) && LANES.is_multiple_of(P));
        let q = rows.q.as_ptr();
        for g in 0..KEY_BLOCK / LANES {
            let mut lanes = [[_mm256_setzero_ps(); LANES]; R];
            for p0 in (0..LANES).step_by(P) {
                if LANES * g + p0 >= self.valid {
                    break;
                }
                // Keys past `valid` read the last valid one again: they are masked.
                let key: [*const u16; P] = std::array::from_fn(|j| {
                    let k = (LANES * g + p0 + j).min(self.valid - 1);
                    self.keys.as_ptr().add(k * hd)
                });
                let mut acc = [[_mm256_setzero_ps(); P]; R];
                for c in (0..hd).step_by(LANES) {
                    let qv: [__m256; R] =
                        std::array::from_fn(|r| _mm256_loadu_ps(q.add(r * hd + c)));
                    for j in 0..P {
                        if c % 32 == 0 {
                            self.prefetch(key[j].add(c));
                        }
                        let k = Self::load(key[j].add(c));
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
    unsafe fn pv<const R: usize, const CW: usize>(&self, p: &[f32], alpha: &[f32], o: &mut [f32]) {
        let hd = self.hd;
        assert!(p.len() >= R * KEY_BLOCK && alpha.len() >= R && o.len() >= R * hd);
        assert!(self.values.len() >= self.valid * hd && hd.is_multiple_of(LANES));
        let wide = hd - hd % (LANES * CW);
        self.pv_columns::<R, CW>(p, alpha, o, 0..wide);
        self.pv_columns::<R, 1>(p, alpha, o, wide..hd);
    }

    /// [`Self::pv`] over the columns `cols`, `8 * CW` at a time; each row sums even and odd
    /// keys apart (two chains, whatever `R` is).
    #[inline(always)]
    unsafe fn pv_columns<const R: usize, const CW: usize>(
        &self,
        p: &[f32],
        alpha: &[f32],
        o: &mut [f32],
        cols: std::ops::Range<usize>,
    ) {
        let (hd, v, p) = (self.hd, self.values.as_ptr(), p.as_ptr());
        let prob = |r: usize, j: usize| _mm256_set1_ps(*p.add(r * KEY_BLOCK + j));
        for c0 in cols.step_by(LANES * CW) {
            let (mut even, mut odd) = (
                [[_mm256_setzero_ps(); CW]; R],
                [[_mm256_setzero_ps(); CW]; R],
            );
            let mut j = 0;
            while j + 1 < self.valid {
                for w in 0..CW {
                    let (x0, x1) = (
                        v.add(j * hd + c0 + LANES * w),
                        v.add((j + 1) * hd + c0 + LANES * w),
                    );
                    if w % 4 == 0 {
                        self.prefetch(x0);
                        self.prefetch(x1);
                    }
                    let (v0, v1) = (Self::load(x0), Self::load(x1));
                    for r in 0..R {
                        even[r][w] = _mm256_fmadd_ps(prob(r, j), v0, even[r][w]);
                        odd[r][w] = _mm256_fmadd_ps(prob(r, j + 1), v1, odd[r][w]);
                    }
                }
                j += 2;
            }
            if j < self.valid {
                for w in 0..CW {
                    let v0 = Self::load(v.add(j * hd + c0 + LANES * w));
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
