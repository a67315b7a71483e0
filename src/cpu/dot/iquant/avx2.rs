//! AVX2 kernels for the i-quants: two sub-blocks of 32 weights per call, one 256-bit vector each.
//!
//! Per pair of sub-blocks and row: the grid points their indices select (four 8-byte or eight
//! 4-byte loads gathered into one vector per sub-block: the quants' magnitudes; IQ1: the signed
//! quants `8 g ± 1` themselves, from a table holding both deltas, magnitudes by `vpabsb`); the
//! signs built in vectors, with no table and no branch: the 7-bit sign indices of IQ2_XXS,
//! IQ2_XS and IQ3_XXS get their parity bit from a 16-entry `vpshufb` table, explicit sign bytes
//! (IQ2_S, IQ3_S) are spread from bits to bytes with one shuffle and compare; the scales per 16
//! weights as 16-bit lanes. Per token: `vpsignb` gives the activations the weights' signs,
//! `vpmaddubsw` multiplies them with the magnitudes, `vpmaddwd` applies the scales, and the
//! 32-bit sums stay exact to the end of the super-block (ggml's AVX2 scheme).
//!
//! Doing two sub-blocks at once lets one vector of 32-bit lanes carry the eight groups' sign
//! indices or scale bits of both, laid out `(A0, B0, A1, B1 | A2, B2, A3, B3)` so that one
//! in-lane shuffle spreads each group's byte over the 8 bytes it signs.

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ptr::read_unaligned;

use super::{block_bytes, factor, IQ1_M, IQ1_S, IQ2_S, IQ2_XS, IQ2_XXS, IQ3_S, IQ3_XXS};
use crate::cpu::dot::float::hsum_avx2 as hsum;
use crate::cpu::dot::{tile_table, Tile, TileEntry};
use crate::quant::grids::{
    IQ1S_QUANTS, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID,
};
use crate::quant::iquants::BlockIq1M;

/// One sub-block of 32 weights: the quants' magnitudes, a vector whose bytes carry the quants'
/// signs (and are never zero), and the 16-bit scale of each pair sum. The signed quants are
/// `_mm256_sign_epi8(u, s)`.
pub(crate) type Sub = (__m256i, __m256i, __m256i);

pub fn tiles(c: u8) -> &'static [TileEntry] {
    macro_rules! shapes {
        ($ty:tt) => {
            tile_table!(tile, $ty; (1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (4, 1))
        };
    }
    match c {
        IQ2_XXS => shapes!(IQ2_XXS),
        IQ2_XS => shapes!(IQ2_XS),
        IQ2_S => shapes!(IQ2_S),
        IQ3_XXS => shapes!(IQ3_XXS),
        IQ3_S => shapes!(IQ3_S),
        IQ1_S => shapes!(IQ1_S),
        _ => shapes!(IQ1_M),
    }
}

/// The super-block scale `d` of the block at `p`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn super_scale<const TY: u8>(p: *const u8) -> f32 {
    let h = if TY == IQ1_M {
        // The f16's four nibbles are the top nibbles of the four scale words.
        let sc = read_unaligned(p.add(BlockIq1M::SCALES_AT) as *const u64);
        let top = |w: u32| ((sc >> (16 * w + 12)) & 15) << (4 * w);
        (top(0) | top(1) | top(2) | top(3)) as i32
    } else {
        i32::from(read_unaligned(p as *const u16))
    };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)))
}

/// Per byte: negative where `v`'s byte has the bit of `bits`' byte set, else positive; never
/// zero (what `vpsignb` reads of a sign). The set bit plus 127 is 128..255: negative as a byte.
#[inline]
#[target_feature(enable = "avx2")]
fn signs_where(v: __m256i, bits: __m256i) -> __m256i {
    _mm256_add_epi8(_mm256_and_si256(v, bits), _mm256_set1_epi8(127))
}

/// Bit `i` of a byte, at byte `i` of every 8-byte group.
#[inline]
#[target_feature(enable = "avx2")]
fn bit_of_byte() -> __m256i {
    _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64)
}

/// The sign bytes of two sub-blocks from eight sign bytes, one per group (bit `i` signs weight
/// `i` of the group), in byte 0 of the 32-bit lanes laid out `(A0, B0, A1, B1 | A2, B2, A3, B3)`.
#[inline]
#[target_feature(enable = "avx2")]
fn spread_pair(v: __m256i) -> (__m256i, __m256i) {
    let a = _mm256_setr_epi64x(0, 0x0808_0808_0808_0808, 0, 0x0808_0808_0808_0808);
    let b = _mm256_setr_epi64x(
        0x0404_0404_0404_0404,
        0x0c0c_0c0c_0c0c_0c0c,
        0x0404_0404_0404_0404,
        0x0c0c_0c0c_0c0c_0c0c,
    );
    let bits = bit_of_byte();
    let sa = signs_where(_mm256_shuffle_epi8(v, a), bits);
    (sa, signs_where(_mm256_shuffle_epi8(v, b), bits))
}

/// The sign bytes of two sub-blocks from their groups' 7-bit sign indices (ggml's `ksigns`:
/// the eighth sign makes the count of minus signs even), one index in the low bits of each
/// 32-bit lane, laid out as [`spread_pair`] reads them; bits above the seventh are ignored.
#[inline]
#[target_feature(enable = "avx2")]
fn parity_signs(idx: __m256i) -> (__m256i, __m256i) {
    // Bit 7 set for the nibbles with an odd number of ones.
    let (even8, odd8) = (0x8000_0080_0080_8000u64 as i64, 0x0080_8000_8000_0080);
    let odd = _mm256_setr_epi64x(even8, odd8, even8, odd8);
    let v = _mm256_and_si256(idx, _mm256_set1_epi32(127));
    let lo = _mm256_and_si256(v, _mm256_set1_epi32(15));
    let hi = _mm256_srli_epi32::<4>(v);
    let parity = _mm256_xor_si256(_mm256_shuffle_epi8(odd, lo), _mm256_shuffle_epi8(odd, hi));
    spread_pair(_mm256_or_si256(v, parity))
}

/// The sign bytes of two sub-blocks from their explicit sign bits (A's 32 in the low half of
/// `bits`, B's in the high half; bit `i` signs weight `i`).
#[inline]
#[target_feature(enable = "avx2")]
fn explicit_signs(bits: u64) -> (__m256i, __m256i) {
    let v = _mm256_set1_epi64x(bits as i64);
    let byte = |k: i64| k * 0x0101_0101_0101_0101;
    let a = _mm256_setr_epi64x(byte(0), byte(1), byte(2), byte(3));
    let b = _mm256_setr_epi64x(byte(4), byte(5), byte(6), byte(7));
    let sa = signs_where(_mm256_shuffle_epi8(v, a), bit_of_byte());
    (sa, signs_where(_mm256_shuffle_epi8(v, b), bit_of_byte()))
}

/// The scales `2 t + 1` per 16-bit lane of two sub-blocks from their small scale fields `t`,
/// one per 32-bit lane laid out `(A, B, A, B | A', B', A', B')`: the low half of a sub-block's
/// vector (its first 16 weights) gets `A`, the high half `A'`.
#[inline]
#[target_feature(enable = "avx2")]
fn odd_scales(t: __m256i) -> (__m256i, __m256i) {
    let ls = _mm256_or_si256(_mm256_add_epi32(t, t), _mm256_set1_epi32(1));
    let a = _mm256_shuffle_epi8(ls, _mm256_set1_epi32(0x0100_0100));
    (a, _mm256_shuffle_epi8(ls, _mm256_set1_epi32(0x0504_0504)))
}

/// [`odd_scales`] from the fields of `word` at the bit offsets `shifts`, `mask` wide.
#[inline]
#[target_feature(enable = "avx2")]
fn scale_fields(word: u32, shifts: [i32; 4], mask: i32) -> (__m256i, __m256i) {
    let [a, b, a2, b2] = shifts;
    let s = _mm256_setr_epi32(a, b, a, b, a2, b2, a2, b2);
    let t = _mm256_srlv_epi32(_mm256_set1_epi32(word as i32), s);
    odd_scales(_mm256_and_si256(t, _mm256_set1_epi32(mask)))
}

/// Four 8-byte grid points, the first in the lowest bytes.
#[inline]
#[target_feature(enable = "avx2")]
fn points8(g: [u64; 4]) -> __m256i {
    _mm256_setr_epi64x(g[0] as i64, g[1] as i64, g[2] as i64, g[3] as i64)
}

/// Eight 4-byte grid points, the first in the lowest bytes.
#[inline]
#[target_feature(enable = "avx2")]
fn points4(g: [u32; 8]) -> __m256i {
    // Joined in pairs in general registers: half the vector inserts of eight 32-bit ones.
    let pair = |k: usize| (u64::from(g[2 * k]) | u64::from(g[2 * k + 1]) << 32) as i64;
    _mm256_setr_epi64x(pair(0), pair(1), pair(2), pair(3))
}

/// Sub-blocks `2j` and `2j + 1` of the block at `p` (weights 64j..64j+64).
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn pair<const TY: u8>(p: *const u8, j: usize) -> [Sub; 2] {
    let byte = |at: usize| usize::from(*p.add(at));
    let u32_at = |at: usize| read_unaligned(p.add(at) as *const u32);
    let u64_at = |at: usize| read_unaligned(p.add(at) as *const u64);
    let (ia, ib) = (2 * j, 2 * j + 1);
    match TY {
        IQ2_XXS | IQ3_XXS => {
            // Each sub-block's word: four 7-bit sign indices, then its 4-bit scale.
            let words = if TY == IQ2_XXS {
                u64::from(u32_at(6 + 8 * ia)) | u64::from(u32_at(6 + 8 * ib)) << 32
            } else {
                u64_at(66 + 8 * j)
            };
            let x = _mm256_set1_epi64x(words as i64);
            let idx = _mm256_srlv_epi32(x, _mm256_setr_epi32(0, 0, 7, 7, 14, 14, 21, 21));
            let (sa, sb) = parity_signs(idx);
            let (la, lb) = odd_scales(_mm256_srli_epi32::<28>(x));
            let (ua, ub) = if TY == IQ2_XXS {
                let g =
                    |ib: usize| points8(std::array::from_fn(|l| IQ2XXS_GRID[byte(2 + 8 * ib + l)]));
                (g(ia), g(ib))
            } else {
                let g =
                    |ib: usize| points4(std::array::from_fn(|k| IQ3XXS_GRID[byte(2 + 8 * ib + k)]));
                (g(ia), g(ib))
            };
            [(ua, sa, la), (ub, sb, lb)]
        }
        IQ2_XS => {
            // Eight 16-bit words: a 9-bit grid index under a 7-bit sign index.
            let qs: [u16; 8] = read_unaligned(p.add(2 + 16 * j) as *const [u16; 8]);
            let q = _mm_loadu_si128(p.add(2 + 16 * j) as *const __m128i);
            let idx = _mm256_cvtepu16_epi32(_mm_srli_epi16::<9>(q));
            let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
            let (sa, sb) = parity_signs(_mm256_permutevar8x32_epi32(idx, order));
            let g = |h: usize| {
                points8(std::array::from_fn(|l| {
                    IQ2XS_GRID[usize::from(qs[4 * h + l] & 511)]
                }))
            };
            let sc = u32::from(read_unaligned(p.add(66 + 2 * j) as *const u16));
            let (la, lb) = scale_fields(sc, [0, 8, 4, 12], 15);
            [(g(0), sa, la), (g(1), sb, lb)]
        }
        IQ2_S => {
            let g = |ib: usize| {
                let qh = byte(66 + ib);
                points8(std::array::from_fn(|l| {
                    IQ2S_GRID[byte(2 + 4 * ib + l) | ((qh >> (2 * l)) & 3) << 8]
                }))
            };
            let (sa, sb) = explicit_signs(u64_at(34 + 8 * j));
            let sc = u32::from(read_unaligned(p.add(74 + 2 * j) as *const u16));
            let (la, lb) = scale_fields(sc, [0, 8, 4, 12], 15);
            [(g(ia), sa, la), (g(ib), sb, lb)]
        }
        IQ3_S => {
            let g = |ib: usize| {
                let qh = byte(66 + ib);
                points4(std::array::from_fn(|k| {
                    IQ3S_GRID[byte(2 + 8 * ib + k) | ((qh >> k) & 1) << 8]
                }))
            };
            let (sa, sb) = explicit_signs(u64_at(74 + 8 * j));
            let (la, lb) = scale_fields(u32::from(*p.add(106 + j)), [0, 4, 0, 4], 15);
            [(g(ia), sa, la), (g(ib), sb, lb)]
        }
        IQ1_S => {
            // Per sub-block a 16-bit word: four 3-bit index tops, a 3-bit scale, the delta's sign.
            let qh = u32_at(34 + 4 * j);
            let q = |h: usize| {
                let word = (qh >> (16 * h)) as usize;
                // The half of the table with this sub-block's delta.
                let at = ((word >> 15) & 1) << 11;
                let quants = &IQ1S_QUANTS[at..at + 2048];
                points8(std::array::from_fn(|l| {
                    quants[byte(2 + 4 * (2 * j + h) + l) | ((word >> (3 * l)) & 7) << 8]
                }))
            };
            let (la, lb) = scale_fields(qh, [12, 28, 12, 28], 7);
            let (qa, qb) = (q(0), q(1));
            [(_mm256_abs_epi8(qa), qa, la), (_mm256_abs_epi8(qb), qb, lb)]
        }
        _ => {
            // IQ1_M: group k's nibble of qh holds its top index bits under its delta's sign,
            // which is how IQ1S_QUANTS is indexed; the 16-bit scale word j holds both
            // sub-blocks' two 3-bit scales.
            let qh = u32_at(32 + 4 * j) as usize;
            let q = |h: usize| {
                points8(std::array::from_fn(|l| {
                    let k = 4 * h + l;
                    IQ1S_QUANTS[byte(8 * j + k) | ((qh >> (4 * k)) & 15) << 8]
                }))
            };
            let w = u32::from(read_unaligned(p.add(48 + 2 * j) as *const u16));
            let (la, lb) = scale_fields(w, [0, 6, 3, 9], 7);
            let (qa, qb) = (q(0), q(1));
            [(_mm256_abs_epi8(qa), qa, la), (_mm256_abs_epi8(qb), qb, lb)]
        }
    }
}

#[target_feature(enable = "avx2,f16c,fma")]
unsafe fn tile<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    let bs = block_bytes(TY);
    let nsb = a.cols / 256;
    let acts = a.acts;
    let qs: [*const i8; T] = std::array::from_fn(|t| acts.tok_qs(a.t0 + t).as_ptr());
    let ds: [*const f32; T] = std::array::from_fn(|t| acts.tok_d(a.t0 + t).as_ptr());
    let zi = _mm256_setzero_si256();
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    for sb in 0..nsb {
        let rows: [*const u8; R] = std::array::from_fn(|r| a.w.add(r * a.w_stride + sb * bs));
        let d: [f32; R] = std::array::from_fn(|r| super_scale::<TY>(rows[r]));
        let mut isum = [[zi; T]; R];
        for j in 0..4 {
            let w: [[Sub; 2]; R] = std::array::from_fn(|r| pair::<TY>(rows[r], j));
            for h in 0..2 {
                for t in 0..T {
                    let at = qs[t].add(256 * sb + 64 * j + 32 * h);
                    let av = _mm256_loadu_si256(at as *const __m256i);
                    for r in 0..R {
                        let (u, s, sc) = w[r][h];
                        let pairs = _mm256_maddubs_epi16(u, _mm256_sign_epi8(av, s));
                        isum[r][t] = _mm256_add_epi32(isum[r][t], _mm256_madd_epi16(pairs, sc));
                    }
                }
            }
        }
        for t in 0..T {
            let da = *ds[t].add(sb) * factor(TY);
            for r in 0..R {
                let dd = _mm256_set1_ps(d[r] * da);
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), dd, acc[r][t]);
            }
        }
    }
    for r in 0..R {
        for t in 0..T {
            *a.y.add((a.t0 + t) * a.y_stride + a.r0 + r * a.y_step) = hsum(acc[r][t]);
        }
    }
}
