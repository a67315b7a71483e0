//! Q2_K ... Q6_K rows repacked into AVX2 panels ([`super::avx2`]'s layout): the quants
//! unsigned as stored (Q5_K's fifth bit added, Q6_K's two high bits joined to its nibbles,
//! Q3_K's third bit added as stored: `q + 4`), Q4_K and Q5_K's 6-bit scales and mins per 32,
//! Q2_K's 4-bit scales and mins per 16, Q6_K's and Q3_K's signed scales per 16 with their
//! `-32` and `-4` as the offset's correction.
//!
//! The scales go to the panel by vector: each row's scales (and mins) of a super-block as
//! words of eight bytes, one per block, then for eight rows one 8x8 byte transpose and a
//! shuffle per block that widens each byte to the `(s, s)` pair of its row's lane. On a MoE
//! prompt, where a panel serves only its expert's few tokens, the pack is a large part of the
//! time; per-row scalar scales were most of it.

use std::arch::x86_64::*;

use super::super::kquant::{self, scales_mins_words, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K};
use super::avx2::{put_quants, row_mins, row_scales, scales, HALF};
use super::layout::{Panel, ROWS};
use crate::quant::blocks::{f16_at, scale_q3_k};

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

/// Byte `j` of each row's word (`words[r]`, eight rows) as the pair `(b, b)` of 16-bit lanes in
/// 32-bit lane `r` of `out[j]`, sign-extended where `signed`: an 8x8 byte transpose, then one
/// shuffle per `j` that widens and doubles.
#[inline(always)]
unsafe fn byte_lanes(words: [u64; HALF], signed: bool) -> [__m256i; 8] {
    let w = |r: usize| _mm_cvtsi64_si128(words[r] as i64);
    // Rows paired byte by byte, then in fours, then all eight: 64-bit lane `i` of `c[k]` is
    // byte `2k + i` of the eight rows.
    let a: [__m128i; 4] = std::array::from_fn(|i| _mm_unpacklo_epi8(w(2 * i), w(2 * i + 1)));
    let b = [
        _mm_unpacklo_epi16(a[0], a[1]),
        _mm_unpackhi_epi16(a[0], a[1]),
        _mm_unpacklo_epi16(a[2], a[3]),
        _mm_unpackhi_epi16(a[2], a[3]),
    ];
    let c = [
        _mm_unpacklo_epi32(b[0], b[2]),
        _mm_unpackhi_epi32(b[0], b[2]),
        _mm_unpacklo_epi32(b[1], b[3]),
        _mm_unpackhi_epi32(b[1], b[3]),
    ];
    // Lane r (bytes 4r..4r+4 of its 128-bit half) reads byte r, or 8 + r, twice: as the low
    // byte of each 16-bit half (zero-extended), or as the high byte, then shifted down with
    // its sign.
    let z = -128i8;
    let widen = |o: i8| {
        let lane = |r: i8| match signed {
            false => [r + o, z, r + o, z],
            true => [z, r + o, z, r + o],
        };
        let l: [[i8; 4]; 8] = std::array::from_fn(|r| lane(r as i8));
        let b: [i8; 32] = std::array::from_fn(|i| l[i / 4][i % 4]);
        _mm256_loadu_si256(b.as_ptr() as *const __m256i)
    };
    let (even, odd) = (widen(0), widen(8));
    let mut out = [_mm256_setzero_si256(); 8];
    for (k, v) in c.into_iter().enumerate() {
        let v = _mm256_broadcastsi128_si256(v);
        out[2 * k] = _mm256_shuffle_epi8(v, even);
        out[2 * k + 1] = _mm256_shuffle_epi8(v, odd);
    }
    if signed {
        out = out.map(|v| _mm256_srai_epi16::<8>(v));
    }
    out
}

/// Each 32-bit lane's low 16 bits from `a`, its high 16 bits from `b`.
#[inline(always)]
unsafe fn halves(a: __m256i, b: __m256i) -> __m256i {
    _mm256_blend_epi16::<0b1010_1010>(a, b)
}

/// Eight rows' scales of one super-block as words of eight bytes, byte `j` for block `j`.
struct ScaleWords {
    /// The scales of each block's first 16 weights, and of its last 16 where they differ
    /// (`None`: one scale per block, Q4_K and Q5_K).
    lo: [u64; HALF],
    hi: Option<[u64; HALF]>,
    signed: bool,
    third: Third,
}

/// What a block's third scale vector holds.
enum Third {
    /// The mins of its first and last 16 weights (unsigned words as [`ScaleWords`]'s).
    Mins([u64; HALF], [u64; HALF]),
    /// The offset's correction `offset * (lo, hi)`: what the stored quants are above the true.
    Offset(i16),
}

/// Stores the scale vectors of half `h` of super-block `sb` ([`super::avx2`]'s layout): per
/// block the first 16 weights' scale twice, the last 16's twice, then the mins' pair or the
/// offset's correction `offset * (lo, hi)`.
#[inline(always)]
unsafe fn put_scale_words(panel: &Panel, sb: usize, h: usize, words: &ScaleWords) {
    // Plain `match` and loops: closures (`map_or`, `array::from_fn`) stay out of line without
    // the kernel's target features, and their intrinsics become calls.
    let lo = byte_lanes(words.lo, words.signed);
    let hi = match words.hi {
        Some(hi) => byte_lanes(hi, words.signed),
        None => lo,
    };
    let mut third = [_mm256_setzero_si256(); 8];
    match words.third {
        Third::Mins(a, b) => {
            let (a, b) = (byte_lanes(a, false), byte_lanes(b, false));
            for (j, v) in third.iter_mut().enumerate() {
                *v = halves(a[j], b[j]);
            }
        }
        Third::Offset(o) => {
            for (j, v) in third.iter_mut().enumerate() {
                *v = _mm256_mullo_epi16(halves(lo[j], hi[j]), _mm256_set1_epi16(o));
            }
        }
    }
    for j in 0..8 {
        let s = scales(panel, 8 * sb + j, h);
        _mm256_store_si256(s, lo[j]);
        _mm256_store_si256(s.add(1), hi[j]);
        _mm256_store_si256(s.add(2), third[j]);
    }
}

/// A row's 16 scale bytes (one per 16 weights) as the words of its evens and of its odds.
#[inline(always)]
unsafe fn evens_odds(bytes: __m128i) -> (u64, u64) {
    let order = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    let v = _mm_shuffle_epi8(bytes, order);
    let half = |v: __m128i| _mm_cvtsi128_si64(v) as u64;
    (half(v), half(_mm_unpackhi_epi64(v, v)))
}

/// One row's part of [`ScaleWords`] from its super-block at `p`: (lo, hi, (mins lo, mins hi)).
#[inline(always)]
unsafe fn row_scale_words<const TY: u8>(p: *const u8) -> (u64, u64, (u64, u64)) {
    let nib = 0x0f0f_0f0f_0f0f_0f0f;
    match TY {
        Q4_K | Q5_K => {
            let (sc, mn) = scales_mins_words(&*(p.add(4) as *const [u8; 12]));
            (sc, sc, (mn, mn))
        }
        Q2_K => {
            // Byte g: the scale of group g (16 weights) low, its min high.
            let (e, o) = evens_odds(_mm_loadu_si128(p as *const __m128i));
            (e & nib, o & nib, ((e >> 4) & nib, (o >> 4) & nib))
        }
        Q3_K => {
            let scales: &[u8; 12] = &*(p.add(96) as *const [u8; 12]);
            let sc: [i8; 16] = std::array::from_fn(|g| scale_q3_k(g, scales));
            let (e, o) = evens_odds(_mm_loadu_si128(sc.as_ptr() as *const __m128i));
            (e, o, (0, 0))
        }
        _ => {
            let (e, o) = evens_odds(_mm_loadu_si128(p.add(192) as *const __m128i));
            (e, o, (0, 0))
        }
    }
}

/// Where the type keeps `d` and `dmin` in its super-block (no `dmin` in Q6_K and Q3_K).
const fn d_at(ty: u8) -> (usize, Option<usize>) {
    match ty {
        Q4_K | Q5_K => (0, Some(2)),
        Q2_K => (80, Some(82)),
        Q3_K => (108, None),
        _ => (208, None),
    }
}

#[target_feature(enable = "avx2")]
unsafe fn pack<const TY: u8>(rows: &[*const u8; ROWS], panel: &Panel) {
    for sb in 0..panel.blocks / 8 {
        for h in 0..2 {
            pack_half::<TY>(rows, panel, sb, h);
        }
    }
}

/// Super-block `sb` of the eight rows of half `h`.
#[inline(always)]
unsafe fn pack_half<const TY: u8>(rows: &[*const u8; ROWS], panel: &Panel, sb: usize, h: usize) {
    let bs = kquant::block_bytes(TY);
    let (d_off, dmin_off) = d_at(TY);
    let mut q = [[_mm256_setzero_si256(); HALF]; 8];
    let mut w = [(0u64, 0u64, (0u64, 0u64)); HALF];
    for r in 0..HALF {
        let p = rows[HALF * h + r].add(sb * bs);
        for (j, v) in block_quants::<TY>(p).into_iter().enumerate() {
            q[j][r] = v;
        }
        w[r] = row_scale_words::<TY>(p);
        let b = std::slice::from_raw_parts(p, bs);
        *row_scales(panel, sb).add(HALF * h + r) = f16_at(b, d_off);
        *row_mins(panel, sb).add(HALF * h + r) = dmin_off.map_or(0.0, |at| f16_at(b, at));
    }
    for (j, q) in q.into_iter().enumerate() {
        put_quants(panel, 8 * sb + j, h, q);
    }
    let third = match TY {
        Q6_K => Third::Offset(Q6_OFFSET),
        Q3_K => Third::Offset(Q3_OFFSET),
        _ => Third::Mins(w.map(|w| w.2 .0), w.map(|w| w.2 .1)),
    };
    let words = ScaleWords {
        lo: w.map(|w| w.0),
        hi: (TY != Q4_K && TY != Q5_K).then(|| w.map(|w| w.1)),
        signed: TY == Q6_K || TY == Q3_K,
        third,
    };
    put_scale_words(panel, sb, h, &words);
}
