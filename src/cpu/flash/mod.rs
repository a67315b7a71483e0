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
//! AVX-512 kernels where the CPU has them and the head size is a multiple of 16, AVX2 ones
//! (eight lanes, the same structure) where it has AVX2, FMA and F16C and the head size is a
//! multiple of 8: they read the f16 cache in place (each key and value widened in registers
//! once per chunk of four rows) and prefetch the next block while they compute, so decode at
//! long context streams the cache near the memory's speed instead of stalling on it block by
//! block. A portable version of the same steps elsewhere, on blocks widened into a scratch
//! buffer. Each has its own rounding (lane counts differ); within one, a row's bits never
//! depend on its batch or the thread split.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod block;
#[cfg(target_arch = "x86_64")]
mod chunks;
mod portable;

use block::{resize, KeyBlock};
pub use block::{FlashScratch, HeadCache, Partial, KEY_BLOCK, SEGMENT};

/// Which kernels run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Avx512,
    Avx2,
    Portable,
}

fn path(head_dim: usize) -> Path {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if head_dim.is_multiple_of(16) && has!("avx512f") {
            return Path::Avx512;
        }
        if head_dim.is_multiple_of(8) && has!("avx2") && has!("fma") && has!("f16c") {
            return Path::Avx2;
        }
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
            Path::Avx512 => unsafe {
                chunks::attend_block::<avx512::Avx512>(kv, q, last, &block, scale, s, part)
            },
            // SAFETY: AVX2, FMA and F16C were detected; the lengths were checked above.
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => unsafe {
                chunks::attend_block::<avx2::Avx2>(kv, q, last, &block, scale, s, part)
            },
            _ => portable::block(kv, q, last, &block, scale, s, part),
        }
    }
}

/// Folds a later segment's state `part` into `total` (same rows).
pub fn merge(total: &mut Partial<'_>, part: &Partial<'_>, hd: usize) {
    for r in 0..part.m.len().min(total.m.len()) {
        let m = total.m[r].max(part.m[r]);
        let (a, b) = (portable::exp(total.m[r] - m), portable::exp(part.m[r] - m));
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

#[cfg(test)]
mod tests {
    use half::f16;

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
        let got = avx512::sum_lanes16_of(&a);
        for j in 0..16 {
            assert_eq!(got[j], a[j].iter().sum::<f32>(), "vector {j}");
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn lane_sums_of_eight_vectors() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let a: [[f32; 8]; 8] =
            std::array::from_fn(|j| std::array::from_fn(|l| (j * 100 + l) as f32));
        let got = avx2::sum_lanes8_of(&a);
        for j in 0..8 {
            assert_eq!(got[j], a[j].iter().sum::<f32>(), "vector {j}");
        }
    }

    #[test]
    fn matches_exact_attention_on_odd_shapes() {
        // Head sizes with (16, 64, 128) and without (40, 80) the AVX-512 kernels, and one
        // without the AVX2 ones either (36); positions across several key blocks and
        // segments; rows at every kind of position.
        for (seed, hd) in [(1, 16), (2, 40), (3, 64), (4, 80), (5, 128), (6, 36)] {
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
        for hd in [36, 64, 80, 128] {
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
