//! AVX2 kernels for the Q8_K family: 32 weights per 256-bit vector.
//!
//! Unsigned quants (`vpmaddubsw` against signed activations), `vpmaddwd` with the 16-bit
//! sub-block scales, 32-bit sums per super-block; Q6_K's `-32` and Q3_K's `-4` come from the
//! activation sums, the mins of Q4_K/Q5_K/Q2_K likewise (ggml's AVX2 scheme). IQ4_XS's signed
//! levels take the sign trick (`|w|` times `a` with `w`'s sign) instead.
//!
//! A super-block's scales are unpacked once per row into one vector of 16-bit lanes (Q4_K and
//! Q5_K's packed 6-bit fields on whole words, no per-byte loop), and each sub-block's scales
//! are one `vpshufb` of it. The quants come two sub-blocks at a time from one load (the low and
//! the high nibbles; Q5_K's and Q6_K's high bits by constant shifts).

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ptr::read_unaligned;

use super::{
    block_bytes, groups_of_16, iq4xs_scale, scales_mins_words, IQ4_XS, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
};
use crate::cpu::dot::float::hsum_avx2 as hsum;
use crate::cpu::dot::{tile_table, Tile, TileEntry};
use crate::quant::blocks::{scale_q3_k, KVALUES_IQ4NL};

pub fn tiles(c: u8) -> &'static [TileEntry] {
    macro_rules! shapes {
        ($ty:tt) => {
            tile_table!(tile, $ty; (1, 1), (1, 2), (1, 4), (1, 8), (2, 1), (2, 2), (2, 4), (4, 1))
        };
    }
    match c {
        Q4_K => shapes!(Q4_K),
        Q5_K => shapes!(Q5_K),
        Q2_K => shapes!(Q2_K),
        Q3_K => shapes!(Q3_K),
        IQ4_XS => shapes!(IQ4_XS),
        _ => shapes!(Q6_K),
    }
}

#[derive(Clone, Copy)]
struct Header {
    d: f32,
    dmin: f32,
    /// The sub-block scales as 16-bit lanes, laid out for [`scale_of`]. One scale per 32
    /// weights (Q4_K, Q5_K, IQ4_XS): the eight in both 128-bit halves; one per 16 (Q6_K, Q2_K,
    /// Q3_K): the even groups' in the low half, the odd groups' in the high half.
    sc: __m256i,
    /// Multipliers of the activation sums: Q4_K/Q5_K the mins (low half), Q2_K the mins, Q6_K
    /// `-32 * scale`, Q3_K `-4 * scale` (all sixteen, in order).
    corr: __m256i,
}

#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn f16_at(p: *const u8) -> f32 {
    let h = read_unaligned(p as *const u16) as i32;
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)))
}

/// Eight 8-bit scales, one per 32 weights, as [`Header::sc`] holds them.
#[inline]
#[target_feature(enable = "avx2")]
fn per_32(bytes: u64, signed: bool) -> __m256i {
    let v = _mm_cvtsi64_si128(bytes as i64);
    let v = if signed {
        _mm_cvtepi8_epi16(v)
    } else {
        _mm_cvtepu8_epi16(v)
    };
    _mm256_broadcastsi128_si256(v)
}

/// Sixteen 8-bit scales, one per 16 weights, as [`Header::sc`] holds them.
#[inline]
#[target_feature(enable = "avx2")]
fn per_16(bytes: __m128i, signed: bool) -> __m256i {
    let evens_then_odds = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    let v = _mm_shuffle_epi8(bytes, evens_then_odds);
    if signed {
        _mm256_cvtepi8_epi16(v)
    } else {
        _mm256_cvtepu8_epi16(v)
    }
}

/// The 16-bit scales of sub-block `j`'s weights: one shuffle of [`Header::sc`].
#[inline]
#[target_feature(enable = "avx2")]
fn scale_of(sc: __m256i, j: usize) -> __m256i {
    let lane = (2 * j as i16) | (2 * j as i16 + 1) << 8;
    _mm256_shuffle_epi8(sc, _mm256_set1_epi16(lane))
}

#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn header<const TY: u8>(p: *const u8) -> Header {
    let raw16 = |at: usize| _mm_loadu_si128(p.add(at) as *const __m128i);
    match TY {
        Q2_K => {
            let nib = _mm_set1_epi8(0x0F);
            let raw = raw16(0);
            let mins = _mm_and_si128(_mm_srli_epi16::<4>(raw), nib);
            Header {
                d: f16_at(p.add(80)),
                dmin: f16_at(p.add(82)),
                sc: per_16(_mm_and_si128(raw, nib), false),
                corr: _mm256_cvtepu8_epi16(mins),
            }
        }
        Q3_K => {
            let scales: &[u8; 12] = &*(p.add(96) as *const [u8; 12]);
            let sc: [i8; 16] = std::array::from_fn(|g| scale_q3_k(g, scales));
            let raw = _mm_loadu_si128(sc.as_ptr() as *const __m128i);
            let v = _mm256_cvtepi8_epi16(raw);
            Header {
                d: f16_at(p.add(108)),
                dmin: 0.0,
                sc: per_16(raw, true),
                corr: _mm256_mullo_epi16(v, _mm256_set1_epi16(-4)),
            }
        }
        IQ4_XS => {
            let blk = std::slice::from_raw_parts(p, block_bytes(TY));
            let bytes = (0..8).fold(0u64, |w, j| {
                w | u64::from(iq4xs_scale(blk, j) as u8) << (8 * j)
            });
            Header {
                d: f16_at(p),
                dmin: 0.0,
                sc: per_32(bytes, true),
                corr: _mm256_setzero_si256(),
            }
        }
        Q6_K => {
            let raw = raw16(192);
            let v = _mm256_cvtepi8_epi16(raw);
            Header {
                d: f16_at(p.add(208)),
                dmin: 0.0,
                sc: per_16(raw, true),
                corr: _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16::<5>(v)),
            }
        }
        _ => {
            let (sc, mins) = scales_mins_words(&*(p.add(4) as *const [u8; 12]));
            let m = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(mins as i64));
            Header {
                d: f16_at(p),
                dmin: f16_at(p.add(2)),
                sc: per_32(sc, false),
                corr: _mm256_castsi128_si256(m),
            }
        }
    }
}

/// Sub-blocks `2k` and `2k + 1` (weights 64k..64k+64) of the super-block at `p`: unsigned quants
/// (IQ4_XS: signed levels, the caller applies the sign trick).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn pair<const TY: u8>(p: *const u8, k: usize) -> [__m256i; 2] {
    let load = |at: usize| _mm256_loadu_si256(p.add(at) as *const __m256i);
    let shift = |v: __m256i, n: usize| _mm256_srl_epi16(v, _mm_cvtsi32_si128(n as i32));
    let nib = _mm256_set1_epi8(0x0F);
    let low = |v: __m256i| _mm256_and_si256(v, nib);
    let high = |v: __m256i| _mm256_and_si256(_mm256_srli_epi16::<4>(v), nib);
    match TY {
        IQ4_XS => {
            let levels = _mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i);
            let levels = _mm256_set_m128i(levels, levels);
            let sub = |j: usize| {
                let x = _mm_loadu_si128(p.add(8 + 16 * j) as *const __m128i);
                let lo = _mm_and_si128(x, _mm_set1_epi8(0x0F));
                let hi = _mm_and_si128(_mm_srli_epi16::<4>(x), _mm_set1_epi8(0x0F));
                _mm256_shuffle_epi8(levels, _mm256_set_m128i(hi, lo))
            };
            [sub(2 * k), sub(2 * k + 1)]
        }
        Q2_K | Q3_K => {
            // Weights 128n + 32i + l are bits 2i of qs[32n + l] (Q3_K: plus bit 4n + i of
            // hmask[l], which when set cancels the -4 the activation sums subtract).
            let (n, i) = (k / 2, 2 * (k % 2));
            let raw = load(if TY == Q2_K { 16 } else { 32 } + 32 * n);
            let two = |i: usize| _mm256_and_si256(shift(raw, 2 * i), _mm256_set1_epi8(3));
            let (mut a, mut b) = (two(i), two(i + 1));
            if TY == Q3_K {
                let hm = shift(load(0), 4 * n + i);
                let bit = |v: __m256i| _mm256_and_si256(v, _mm256_set1_epi8(4));
                a = _mm256_or_si256(a, bit(_mm256_slli_epi16::<2>(hm)));
                b = _mm256_or_si256(b, bit(_mm256_slli_epi16::<1>(hm)));
            }
            [a, b]
        }
        Q6_K => {
            // Of the 128 weights at 128n: quarter i takes the nibbles of ql[64n + 32(i % 2)..]
            // (low for i < 2) and bits 2i of qh[32n..] as its top two.
            let (n, half) = (k / 2, k % 2);
            let nibbles = |v: __m256i| if half == 0 { low(v) } else { high(v) };
            let qh = shift(load(128 + 32 * n), 4 * half);
            let top = _mm256_set1_epi8(0x30);
            let a = _mm256_and_si256(_mm256_slli_epi16::<4>(qh), top);
            let b = _mm256_and_si256(_mm256_slli_epi16::<2>(qh), top);
            [
                _mm256_or_si256(nibbles(load(64 * n)), a),
                _mm256_or_si256(nibbles(load(64 * n + 32)), b),
            ]
        }
        _ => {
            // Q4_K/Q5_K: sub-block 2k is the low nibbles of the 32 bytes at 32k, 2k + 1 the
            // high; Q5_K's fifth bit of sub-block j is bit j of qh[l].
            let raw = load(if TY == Q4_K { 16 } else { 48 } + 32 * k);
            let (mut a, mut b) = (low(raw), high(raw));
            if TY == Q5_K {
                let qh = shift(load(16), 2 * k);
                let bit = |v: __m256i| _mm256_and_si256(v, _mm256_set1_epi8(0x10));
                a = _mm256_or_si256(a, bit(_mm256_slli_epi16::<4>(qh)));
                b = _mm256_or_si256(b, bit(_mm256_slli_epi16::<3>(qh)));
            }
            [a, b]
        }
    }
}

#[target_feature(enable = "avx2,f16c,fma")]
unsafe fn tile<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    let bs = block_bytes(TY);
    let nsb = a.cols / 256;
    let acts = a.acts;
    let mut qs = [std::ptr::null::<i8>(); T];
    let mut ds = [std::ptr::null::<f32>(); T];
    let mut sums = [std::ptr::null::<i16>(); T];
    for t in 0..T {
        let tok = a.t0 + t;
        qs[t] = acts.tok_qs(tok).as_ptr();
        ds[t] = acts.tok_d(tok).as_ptr();
        sums[t] = if groups_of_16(TY) {
            acts.tok_bsums16(tok).as_ptr()
        } else {
            acts.tok_bsums32(tok).as_ptr()
        };
    }
    let zi = _mm256_setzero_si256();
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let mut hdr = [Header {
        d: 0.0,
        dmin: 0.0,
        sc: zi,
        corr: zi,
    }; R];
    for sb in 0..nsb {
        let rows: [*const u8; R] = std::array::from_fn(|r| a.w.add(r * a.w_stride + sb * bs));
        for r in 0..R {
            hdr[r] = header::<TY>(rows[r]);
        }
        let mut isum = [[zi; T]; R];
        for k in 0..4 {
            let w: [[__m256i; 2]; R] = std::array::from_fn(|r| pair::<TY>(rows[r], k));
            for h in 0..2 {
                let j = 2 * k + h;
                let sc: [__m256i; R] = std::array::from_fn(|r| scale_of(hdr[r].sc, j));
                for t in 0..T {
                    let av = _mm256_loadu_si256(qs[t].add(256 * sb + 32 * j) as *const __m256i);
                    for r in 0..R {
                        let q = w[r][h];
                        let pairs = if TY == IQ4_XS {
                            let u = _mm256_sign_epi8(q, q);
                            _mm256_maddubs_epi16(u, _mm256_sign_epi8(av, q))
                        } else {
                            _mm256_maddubs_epi16(q, av)
                        };
                        isum[r][t] = _mm256_add_epi32(isum[r][t], _mm256_madd_epi16(pairs, sc[r]));
                    }
                }
            }
        }
        for t in 0..T {
            let da = *ds[t].add(sb);
            for r in 0..R {
                let h = &hdr[r];
                let dd = _mm256_set1_ps(h.d * da);
                if TY == Q2_K {
                    let bs16 = _mm256_loadu_si256(sums[t].add(16 * sb) as *const __m256i);
                    let m = _mm256_madd_epi16(h.corr, bs16);
                    let v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), dd, acc[r][t]);
                    let dm = _mm256_set1_ps(-(h.dmin * da));
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), dm, v);
                } else if TY == IQ4_XS {
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), dd, acc[r][t]);
                } else if groups_of_16(TY) {
                    let bs16 = _mm256_loadu_si256(sums[t].add(16 * sb) as *const __m256i);
                    let i = _mm256_add_epi32(isum[r][t], _mm256_madd_epi16(h.corr, bs16));
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), dd, acc[r][t]);
                } else {
                    let bs32 = _mm256_castsi128_si256(_mm_loadu_si128(
                        sums[t].add(8 * sb) as *const __m128i
                    ));
                    // Upper halves are garbage in both; only the low 4 lanes are kept.
                    let m = _mm256_madd_epi16(h.corr, bs32);
                    let m = _mm256_set_m128i(_mm_setzero_si128(), _mm256_castsi256_si128(m));
                    let v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), dd, acc[r][t]);
                    let dm = _mm256_set1_ps(-(h.dmin * da));
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), dm, v);
                }
            }
        }
    }
    for r in 0..R {
        for t in 0..T {
            *a.y.add((a.t0 + t) * a.y_stride + a.r0 + r * a.y_step) = hsum(acc[r][t]);
        }
    }
}
