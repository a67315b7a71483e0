//! Q2_K ... Q6_K rows repacked into AVX2 panels ([`super::avx2`]'s layout): the quants
//! unsigned as stored (Q5_K's fifth bit added, Q6_K's two high bits joined to its nibbles,
//! Q3_K's third bit added as stored: `q + 4`), Q4_K and Q5_K's 6-bit scales and mins per 32,
//! Q2_K's 4-bit scales and mins per 16, Q6_K's and Q3_K's signed scales per 16 with their
//! `-32` and `-4` as the offset's correction.

use std::arch::x86_64::*;

use super::super::kquant::{self, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K};
use super::avx2::{put_quants, put_scales, row_mins, row_scales, HALF};
use super::layout::{Panel, ROWS};
use crate::quant::blocks::{f16_at, scale_q3_k, scales_mins_k4};

/// What Q6_K's stored quants are above its true ones.
const Q6_OFFSET: i16 = 32;

/// What Q3_K's quants, stored as in the block (`q + 4`: the high bit set where ggml adds
/// nothing), are above its true ones.
const Q3_OFFSET: i16 = 4;

/// Repacks the rows (K-quant `c`: Q2_K ... Q6_K) into `panel`.
///
/// # Safety
/// As [`super::pack`], with AVX2.
pub unsafe fn pack_kquant(c: u8, rows: &[*const u8; ROWS], panel: &Panel) {
    match c {
        Q4_K => pack::<Q4_K>(rows, panel),
        Q5_K => pack::<Q5_K>(rows, panel),
        Q2_K => pack::<Q2_K>(rows, panel),
        Q3_K => pack::<Q3_K>(rows, panel),
        _ => pack::<Q6_K>(rows, panel),
    }
}

/// Adds `value` to the quants of block `j` whose bit `j` is set in `bits` (Q5_K's fifth bit,
/// Q3_K's third: byte `l` of `bits` holds that bit of weight `l` of every block).
#[inline(always)]
unsafe fn add_high_bits(q: &mut [__m256i; 8], bits: __m256i, value: i8) {
    for (j, q) in q.iter_mut().enumerate() {
        let bit = _mm256_set1_epi8((1u8 << j) as i8);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(bits, bit), bit);
        *q = _mm256_add_epi8(*q, _mm256_and_si256(set, _mm256_set1_epi8(value)));
    }
}

/// The super-block at `p` as 8 blocks of 32 unsigned quants in weight order.
#[inline(always)]
unsafe fn block_quants<const TY: u8>(p: *const u8) -> [__m256i; 8] {
    let nib = _mm256_set1_epi8(0x0F);
    let three = _mm256_set1_epi8(3);
    let load = |at: usize| _mm256_loadu_si256(p.add(at) as *const __m256i);
    let low = |v: __m256i| _mm256_and_si256(v, nib);
    let high = |v: __m256i| _mm256_and_si256(_mm256_srli_epi16::<4>(v), nib);
    let mut q = [_mm256_setzero_si256(); 8];
    if TY == Q4_K || TY == Q5_K {
        let qs = if TY == Q5_K { 48 } else { 16 };
        for c in 0..4 {
            let v = load(qs + 32 * c);
            (q[2 * c], q[2 * c + 1]) = (low(v), high(v));
        }
        if TY == Q5_K {
            // Bit j of byte l of qh is the fifth bit of weight l of block j.
            add_high_bits(&mut q, load(16), 16);
        }
        return q;
    }
    if TY == Q2_K || TY == Q3_K {
        // Weights 128n + 32k + l are bits 2k, 2k + 1 of qs[32n + l] (Q3_K: plus bit 4n + k
        // of hmask[l] as bit 2).
        let qs = if TY == Q2_K { 16 } else { 32 };
        for n in 0..2 {
            let v = load(qs + 32 * n);
            q[4 * n] = _mm256_and_si256(v, three);
            q[4 * n + 1] = _mm256_and_si256(_mm256_srli_epi16::<2>(v), three);
            q[4 * n + 2] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), three);
            q[4 * n + 3] = _mm256_and_si256(_mm256_srli_epi16::<6>(v), three);
        }
        if TY == Q3_K {
            add_high_bits(&mut q, load(0), 4);
        }
        return q;
    }
    // Q6_K, per half of 128: block `4 n + k` takes nibbles of `ql` (low, then high, of its
    // first and second 32 bytes) and bits `2 k, 2 k + 1` of `qh` as bits 4 and 5.
    for n in 0..2 {
        let (ql0, ql1, qh) = (load(64 * n), load(64 * n + 32), load(128 + 32 * n));
        let top = |v: __m256i| _mm256_slli_epi16::<4>(_mm256_and_si256(v, three));
        q[4 * n] = _mm256_or_si256(low(ql0), top(qh));
        q[4 * n + 1] = _mm256_or_si256(low(ql1), top(_mm256_srli_epi16::<2>(qh)));
        q[4 * n + 2] = _mm256_or_si256(high(ql0), top(_mm256_srli_epi16::<4>(qh)));
        q[4 * n + 3] = _mm256_or_si256(high(ql1), top(_mm256_srli_epi16::<6>(qh)));
    }
    q
}

/// A super-block's `d`, `dmin` (0 for Q6_K and Q3_K), each block's pair of scales (first and
/// last 16 weights) and the pair of its third scale vector (the mins, or the offset's
/// correction).
#[allow(clippy::type_complexity)]
fn block_scales<const TY: u8>(b: &[u8]) -> (f32, f32, [(i16, i16); 8], [(i16, i16); 8]) {
    if TY == Q4_K || TY == Q5_K {
        let (sc, mn) = scales_mins_k4(&b[4..16]);
        let (sc, mn) = (sc.map(i16::from), mn.map(i16::from));
        let ls = std::array::from_fn(|j| (sc[j], sc[j]));
        let mins = std::array::from_fn(|j| (mn[j], mn[j]));
        return (f16_at(b, 0), f16_at(b, 2), ls, mins);
    }
    if TY == Q2_K {
        // Byte g: the scale of group g (16 weights) low, its min high.
        let ls = std::array::from_fn(|j| (i16::from(b[2 * j] & 15), i16::from(b[2 * j + 1] & 15)));
        let mins =
            std::array::from_fn(|j| (i16::from(b[2 * j] >> 4), i16::from(b[2 * j + 1] >> 4)));
        return (f16_at(b, 80), f16_at(b, 82), ls, mins);
    }
    if TY == Q3_K {
        let scales: &[u8; 12] = b[96..108].try_into().expect("12 scale bytes");
        let sc = |g: usize| i16::from(scale_q3_k(g, scales));
        let ls: [(i16, i16); 8] = std::array::from_fn(|j| (sc(2 * j), sc(2 * j + 1)));
        let corr = ls.map(|(lo, hi)| (Q3_OFFSET * lo, Q3_OFFSET * hi));
        return (f16_at(b, 108), 0.0, ls, corr);
    }
    let sc = |g: usize| i16::from(b[192 + g] as i8);
    let ls: [(i16, i16); 8] = std::array::from_fn(|j| (sc(2 * j), sc(2 * j + 1)));
    let corr = ls.map(|(lo, hi)| (Q6_OFFSET * lo, Q6_OFFSET * hi));
    (f16_at(b, 208), 0.0, ls, corr)
}

#[target_feature(enable = "avx2")]
unsafe fn pack<const TY: u8>(rows: &[*const u8; ROWS], panel: &Panel) {
    let bs = kquant::block_bytes(TY);
    for sb in 0..panel.blocks / 8 {
        for h in 0..2 {
            let mut q = [[_mm256_setzero_si256(); HALF]; 8];
            let mut ls = [[(0i16, 0i16); HALF]; 8];
            let mut third = ls;
            for r in 0..HALF {
                let p = rows[HALF * h + r].add(sb * bs);
                for (j, v) in block_quants::<TY>(p).into_iter().enumerate() {
                    q[j][r] = v;
                }
                let (d, dmin, l, t) = block_scales::<TY>(std::slice::from_raw_parts(p, bs));
                *row_scales(panel, sb).add(HALF * h + r) = d;
                *row_mins(panel, sb).add(HALF * h + r) = dmin;
                for j in 0..8 {
                    (ls[j][r], third[j][r]) = (l[j], t[j]);
                }
            }
            for j in 0..8 {
                put_quants(panel, 8 * sb + j, h, q[j]);
                put_scales(panel, 8 * sb + j, h, ls[j], third[j]);
            }
        }
    }
}
