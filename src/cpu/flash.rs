//! Tiled ("flash") attention of the parallel path over one KV head of the f16 cache: query
//! rows against blocks of keys with an online softmax, so a prompt reads each block of the
//! cache once per block of query rows instead of once per row, and no score row of the whole
//! context is ever materialised.
//!
//! Per query row the arithmetic is fixed by the row alone (its vector and its last visible
//! position), never by the batch it came in, the rows it shares a block with, or the thread
//! count:
//! - keys go in blocks of [`KEY_BLOCK`] at absolute positions (a multiple of the block size);
//!   a block's scores are sixteen-lane partial dot products, reduced across lanes;
//! - positions go in segments of [`SEGMENT`]; each segment's softmax `(max, sum, output)` is
//!   computed on its own and the segments are merged in order. Decode at long context splits
//!   a head's segments across threads ([`segment_partial`], [`merge`], [`finish`]) with the
//!   same bits as one thread running [`attend_rows`], and as the prompt computed them.
//!
//! AVX-512 kernels where the CPU has them and the head size is a multiple of 16: they read
//! the f16 cache in place (each key and value widened in registers once per chunk of four
//! rows) and prefetch the next block while they compute, so decode at long context streams
//! the cache near the memory's speed instead of stalling on it block by block. A portable
//! version of the same steps elsewhere (its own rounding, same structure), on blocks widened
//! into a scratch buffer.

use half::f16;
use half::slice::HalfFloatSliceExt;

/// Keys per online-softmax step.
pub const KEY_BLOCK: usize = 32;

/// Positions per independently computed softmax segment (a multiple of [`KEY_BLOCK`]).
pub const SEGMENT: usize = 512;

const _: () = assert!(SEGMENT.is_multiple_of(KEY_BLOCK) && KEY_BLOCK.is_multiple_of(16));

/// Rows per register block of the portable `P·V` kernel (they share each value loaded).
const PV_ROWS: usize = 4;

/// The cached keys and values of one KV head, positions `0..len`, `head_dim` f16 bits each.
#[derive(Clone, Copy)]
pub struct HeadCache<'a> {
    pub keys: &'a [u16],
    pub values: &'a [u16],
    pub head_dim: usize,
}

/// Softmax state of query rows over some positions: per row the largest score `m`, the sum
/// `l` of `exp(score - m)` and the unnormalised output `o` (`head_dim` per row).
pub struct Partial<'a> {
    pub m: &'a mut [f32],
    pub l: &'a mut [f32],
    pub o: &'a mut [f32],
}

/// Buffers of one thread's attention calls.
#[derive(Debug, Default)]
pub struct FlashScratch {
    /// The portable path's current block of keys and values widened to f32, `[KEY_BLOCK,
    /// head_dim]`.
    keys: Vec<f32>,
    values: Vec<f32>,
    /// Per row: the block's probabilities `[KEY_BLOCK]` and the rescale of what came before.
    probs: Vec<f32>,
    alpha: Vec<f32>,
    /// A later segment's state before it is merged (the first is computed in place).
    part: PartialBuf,
    /// The running state of [`attend_rows`].
    total: PartialBuf,
}

/// The storage of a [`Partial`].
#[derive(Debug, Default)]
struct PartialBuf {
    m: Vec<f32>,
    l: Vec<f32>,
    o: Vec<f32>,
}

impl PartialBuf {
    /// The state of `rows` rows of `hd` values (zeroed; `segment_partial` initialises it).
    fn rows(&mut self, rows: usize, hd: usize) -> Partial<'_> {
        resize(&mut self.m, rows);
        resize(&mut self.l, rows);
        resize(&mut self.o, rows * hd);
        Partial {
            m: &mut self.m,
            l: &mut self.l,
            o: &mut self.o,
        }
    }
}

/// Which kernels run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Avx512,
    Portable,
}

fn path(head_dim: usize) -> Path {
    #[cfg(target_arch = "x86_64")]
    if head_dim.is_multiple_of(16) && std::arch::is_x86_feature_detected!("avx512f") {
        return Path::Avx512;
    }
    let _ = head_dim;
    Path::Portable
}

/// Segments the positions `0..=last` fall into.
pub fn segments(last: usize) -> usize {
    last / SEGMENT + 1
}

/// Attention of `q`'s rows (`[rows, head_dim]`, contiguous) over `kv`: row `r` sees the keys
/// at positions `0..=last[r]` (`last` ascending, each below the cache's length). `out` is laid
/// out as `q`.
pub fn attend_rows(
    kv: HeadCache<'_>,
    q: &[f32],
    last: &[usize],
    scale: f32,
    s: &mut FlashScratch,
    out: &mut [f32],
) {
    let (rows, hd) = (last.len(), kv.head_dim);
    let Some(&max_last) = last.last() else {
        return;
    };
    debug_assert!(last.windows(2).all(|w| w[0] <= w[1]), "rows by position");
    // Taken out of the scratch for the call: `segment_partial` borrows the rest of it.
    let mut total_buf = std::mem::take(&mut s.total);
    let mut part_buf = std::mem::take(&mut s.part);
    let mut total = total_buf.rows(rows, hd);
    segment_partial(kv, q, last, 0, scale, s, &mut total);
    for seg in 1..segments(max_last) {
        let first = last.partition_point(|&p| p < seg * SEGMENT);
        let mut part = part_buf.rows(rows - first, hd);
        segment_partial(
            kv,
            &q[first * hd..],
            &last[first..],
            seg,
            scale,
            s,
            &mut part,
        );
        let mut rest = Partial {
            m: &mut total.m[first..],
            l: &mut total.l[first..],
            o: &mut total.o[first * hd..],
        };
        merge(&mut rest, &part, hd);
    }
    finish(&total, hd, out);
    (s.total, s.part) = (total_buf, part_buf);
}

fn resize(v: &mut Vec<f32>, n: usize) {
    v.clear();
    v.resize(n, 0.0);
}

/// The softmax state of `q`'s rows over segment `seg` (positions `seg * SEGMENT ..`), into
/// `part` (one entry per row). Every row must see at least the segment's first position.
pub fn segment_partial(
    kv: HeadCache<'_>,
    q: &[f32],
    last: &[usize],
    seg: usize,
    scale: f32,
    s: &mut FlashScratch,
    part: &mut Partial<'_>,
) {
    let (rows, hd) = (last.len(), kv.head_dim);
    let Some(&max_last) = last.last() else {
        return;
    };
    let begin = seg * SEGMENT;
    let end = (begin + SEGMENT).min(max_last + 1);
    assert!(
        last[0] >= begin && q.len() >= rows * hd,
        "rows outside the segment"
    );
    assert!(kv.keys.len() >= end * hd && kv.values.len() >= end * hd);
    assert!(part.m.len() >= rows && part.l.len() >= rows && part.o.len() >= rows * hd);
    part.m[..rows].fill(f32::NEG_INFINITY);
    part.l[..rows].fill(0.0);
    part.o[..rows * hd].fill(0.0);
    resize(&mut s.probs, rows * KEY_BLOCK);
    resize(&mut s.alpha, rows);
    let path = path(hd);
    for start in (begin..end).step_by(KEY_BLOCK) {
        let block = KeyBlock {
            start,
            valid: KEY_BLOCK.min(end - start),
            first: last.partition_point(|&p| p < start),
        };
        match path {
            // SAFETY: AVX-512F was detected; the lengths were checked above.
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => unsafe { x86::attend_block(kv, q, last, &block, scale, s, part) },
            _ => portable_block(kv, q, last, &block, scale, s, part),
        }
    }
}

/// One block of keys: positions `start..start + valid`, seen by the rows from `first` on.
pub(crate) struct KeyBlock {
    start: usize,
    valid: usize,
    first: usize,
}

impl KeyBlock {
    /// How many of the block's keys a row whose last position is `last` sees (it sees one).
    fn visible(&self, last: usize) -> usize {
        (last + 1 - self.start).min(KEY_BLOCK)
    }
}

/// The portable step over one block: the keys and values widened into the scratch, then
/// each row's scores and softmax step, then `P·V` a few rows at a time.
fn portable_block(
    kv: HeadCache<'_>,
    q: &[f32],
    last: &[usize],
    block: &KeyBlock,
    scale: f32,
    s: &mut FlashScratch,
    part: &mut Partial<'_>,
) {
    let hd = kv.head_dim;
    widen_block(kv.keys, block, hd, &mut s.keys);
    widen_block(kv.values, block, hd, &mut s.values);
    for r in block.first..last.len() {
        let probs: &mut [f32; KEY_BLOCK] = (&mut s.probs[r * KEY_BLOCK..][..KEY_BLOCK])
            .try_into()
            .expect("KEY_BLOCK probabilities");
        let visible = block.visible(last[r]);
        portable::scores(&q[r * hd..(r + 1) * hd], &s.keys, hd, scale, visible, probs);
        s.alpha[r] = portable::softmax_step(probs, &mut part.m[r], &mut part.l[r]);
    }
    let mut r = block.first;
    while r < last.len() {
        let n = PV_ROWS.min(last.len() - r);
        let (p, a) = (&s.probs[r * KEY_BLOCK..], &s.alpha[r..]);
        portable::pv(n, p, a, &s.values, hd, &mut part.o[r * hd..(r + n) * hd]);
        r += n;
    }
}

/// The block's positions of `bits` widened into `out` (`[KEY_BLOCK, hd]`), zero past
/// `valid`: masked keys then weigh zero times zero, whatever stale bits lie there.
fn widen_block(bits: &[u16], block: &KeyBlock, hd: usize, out: &mut Vec<f32>) {
    out.resize(KEY_BLOCK * hd, 0.0);
    let src = &bits[block.start * hd..(block.start + block.valid) * hd];
    let halves: &[f16] = half::slice::HalfBitsSliceExt::reinterpret_cast(src);
    halves.convert_to_f32_slice(&mut out[..block.valid * hd]);
    out[block.valid * hd..].fill(0.0);
}

/// Folds a later segment's state `part` into `total` (same rows).
pub fn merge(total: &mut Partial<'_>, part: &Partial<'_>, hd: usize) {
    for r in 0..part.m.len().min(total.m.len()) {
        let m = total.m[r].max(part.m[r]);
        let (a, b) = (exp(total.m[r] - m), exp(part.m[r] - m));
        total.m[r] = m;
        total.l[r] = total.l[r] * a + part.l[r] * b;
        let (dst, src) = (&mut total.o[r * hd..][..hd], &part.o[r * hd..][..hd]);
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *d * a + *s * b;
        }
    }
}

/// The attention output of each row of `total`: `o / l`.
pub fn finish(total: &Partial<'_>, hd: usize, out: &mut [f32]) {
    for (r, dst) in out.chunks_exact_mut(hd).enumerate().take(total.l.len()) {
        let inv = 1.0 / total.l[r];
        for (d, o) in dst.iter_mut().zip(&total.o[r * hd..][..hd]) {
            *d = *o * inv;
        }
    }
}

/// ggml's `exp` (the vector kernels' lanes compute exactly this).
fn exp(x: f32) -> f32 {
    crate::cpu::ggml_math::v_expf(x)
}

/// The portable kernels: the same steps in plain f32.
mod portable {
    use super::KEY_BLOCK;

    const LANES: usize = 16;

    pub fn scores(
        q: &[f32],
        keys: &[f32],
        hd: usize,
        scale: f32,
        visible: usize,
        out: &mut [f32; KEY_BLOCK],
    ) {
        for (j, s) in out.iter_mut().enumerate() {
            *s = if j < visible {
                dot(q, &keys[j * hd..(j + 1) * hd]) * scale
            } else {
                f32::NEG_INFINITY
            };
        }
    }

    /// Sixteen partial sums (vector lanes where the compiler finds them), then the tail.
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0.0f32; LANES];
        let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let mut tail = 0.0f32;
        for (x, y) in ac.remainder().iter().zip(bc.remainder()) {
            tail += x * y;
        }
        for (x, y) in ac.zip(bc) {
            for l in 0..LANES {
                acc[l] += x[l] * y[l];
            }
        }
        acc.iter().sum::<f32>() + tail
    }

    pub fn softmax_step(p: &mut [f32; KEY_BLOCK], m: &mut f32, l: &mut f32) -> f32 {
        let m_new = p.iter().copied().fold(*m, f32::max);
        let alpha = super::exp(*m - m_new);
        let mut sum = 0.0f32;
        for v in p.iter_mut() {
            *v = super::exp(*v - m_new);
            sum += *v;
        }
        *l = *l * alpha + sum;
        *m = m_new;
        alpha
    }

    pub fn pv(n: usize, p: &[f32], alpha: &[f32], values: &[f32], hd: usize, o: &mut [f32]) {
        for r in 0..n {
            let probs = &p[r * KEY_BLOCK..(r + 1) * KEY_BLOCK];
            let row = &mut o[r * hd..(r + 1) * hd];
            for v in row.iter_mut() {
                *v *= alpha[r];
            }
            for (j, pj) in probs.iter().enumerate() {
                for (v, x) in row.iter_mut().zip(&values[j * hd..(j + 1) * hd]) {
                    *v += pj * x;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
// Register-blocked kernels index their accumulator arrays by row and column on purpose.
#[allow(clippy::needless_range_loop)]
mod x86 {
    use std::arch::x86_64::*;

    use super::{FlashScratch, HeadCache, KeyBlock, Partial, KEY_BLOCK};
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
        unsafe fn pv<const R: usize, const CW: usize>(
            &self,
            p: &[f32],
            alpha: &[f32],
            o: &mut [f32],
        ) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::synth::Rng;

    fn bits(v: &[f32]) -> Vec<u16> {
        v.iter().map(|x| f16::from_f32(*x).to_bits()).collect()
    }

    fn random(rng: &mut Rng, n: usize, amp: f32) -> Vec<f32> {
        (0..n).map(|_| rng.uniform(-amp, amp)).collect()
    }

    /// Exact softmax attention in f64 over the widened cache.
    fn reference(kv: HeadCache<'_>, q: &[f32], last: &[usize], scale: f32) -> Vec<f32> {
        let hd = kv.head_dim;
        let wide = |b: &[u16], i: usize| f64::from(f16::from_bits(b[i]).to_f32());
        let mut out = vec![0.0; q.len()];
        for (r, &p) in last.iter().enumerate() {
            let qr = &q[r * hd..(r + 1) * hd];
            let s: Vec<f64> = (0..=p)
                .map(|j| {
                    let dot = (0..hd).map(|d| f64::from(qr[d]) * wide(kv.keys, j * hd + d));
                    dot.sum::<f64>() * f64::from(scale)
                })
                .collect();
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for d in 0..hd {
                let v: f64 = (0..=p).map(|j| e[j] * wide(kv.values, j * hd + d)).sum();
                out[r * hd + d] = (v / sum) as f32;
            }
        }
        out
    }

    struct Case {
        keys: Vec<u16>,
        values: Vec<u16>,
        q: Vec<f32>,
        hd: usize,
    }

    fn case(seed: u64, hd: usize, positions: usize, rows: usize) -> Case {
        let mut rng = Rng::new(seed);
        Case {
            keys: bits(&random(&mut rng, positions * hd, 2.0)),
            values: bits(&random(&mut rng, positions * hd, 1.0)),
            q: random(&mut rng, rows * hd, 1.5),
            hd,
        }
    }

    impl Case {
        fn kv(&self) -> HeadCache<'_> {
            HeadCache {
                keys: &self.keys,
                values: &self.values,
                head_dim: self.hd,
            }
        }
    }

    fn attend(c: &Case, q: &[f32], last: &[usize]) -> Vec<f32> {
        let mut out = vec![0.0; q.len()];
        let scale = 1.0 / (c.hd as f32).sqrt();
        attend_rows(
            c.kv(),
            q,
            last,
            scale,
            &mut FlashScratch::default(),
            &mut out,
        );
        out
    }

    #[test]
    fn lane_sums_of_sixteen_vectors() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let a: [[f32; 16]; 16] =
            std::array::from_fn(|j| std::array::from_fn(|l| (j * 100 + l) as f32));
        let got = x86::sum_lanes16_of(&a);
        for j in 0..16 {
            assert_eq!(got[j], a[j].iter().sum::<f32>(), "vector {j}");
        }
    }

    #[test]
    fn matches_exact_attention_on_odd_shapes() {
        // Head sizes with (16, 64, 128) and without (40, 80) the AVX-512 kernels; positions
        // across several key blocks and segments; rows at every kind of position.
        for (seed, hd) in [(1, 16), (2, 40), (3, 64), (4, 80), (5, 128)] {
            let positions = 2 * SEGMENT + 45;
            let last = [
                0,
                1,
                30,
                31,
                32,
                33,
                200,
                SEGMENT - 1,
                SEGMENT,
                SEGMENT + 7,
                positions - 1,
            ];
            let c = case(seed, hd, positions, last.len());
            let got = attend(&c, &c.q, &last);
            let want = reference(c.kv(), &c.q, &last, 1.0 / (hd as f32).sqrt());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 2e-5 + 1e-4 * w.abs(),
                    "hd {hd} row {} d {}: {g} vs {w}",
                    i / hd,
                    i % hd
                );
            }
        }
    }

    #[test]
    fn a_row_gets_the_same_bits_in_any_batch_and_any_split() {
        for hd in [64, 80, 128] {
            let positions = 3 * SEGMENT + 10;
            // A prompt of 40 tokens from position 1000, two query heads per token.
            let last: Vec<usize> = (0..40).flat_map(|t| [1000 + t, 1000 + t]).collect();
            let c = case(9, hd, positions, last.len());
            let scale = 1.0 / (hd as f32).sqrt();
            let batch = attend(&c, &c.q, &last);
            for n in [1, 2, 3, 5, 7] {
                for first in (0..last.len()).step_by(n) {
                    let end = (first + n).min(last.len());
                    let part = attend(&c, &c.q[first * hd..end * hd], &last[first..end]);
                    let same = part
                        .iter()
                        .zip(&batch[first * hd..end * hd])
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "hd {hd}: rows {first}..{end} in batches of {n}");
                }
            }
            // Decode: the last token's two heads, segment by segment as threads would.
            let (q, rows) = (&c.q[78 * hd..], &last[78..]);
            let segs = segments(rows[0]);
            let mut parts: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = (0..segs)
                .map(|_| (vec![0.0; 2], vec![0.0; 2], vec![0.0; 2 * hd]))
                .collect();
            for (seg, (m, l, o)) in parts.iter_mut().enumerate().rev() {
                let mut p = Partial { m, l, o };
                segment_partial(
                    c.kv(),
                    q,
                    rows,
                    seg,
                    scale,
                    &mut FlashScratch::default(),
                    &mut p,
                );
            }
            let (first, rest) = parts.split_first_mut().expect("one segment at least");
            let mut total = Partial {
                m: &mut first.0,
                l: &mut first.1,
                o: &mut first.2,
            };
            for (m, l, o) in rest.iter_mut() {
                merge(&mut total, &Partial { m, l, o }, hd);
            }
            let mut out = vec![0.0; 2 * hd];
            finish(&total, hd, &mut out);
            let same = out
                .iter()
                .zip(&batch[78 * hd..])
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "hd {hd}: split decode differs from the batch");
        }
    }
}
