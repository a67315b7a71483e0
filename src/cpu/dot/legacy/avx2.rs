//! AVX2 kernels for the 32-blocks: one block per 256-bit vector.
//!
//! Weights are unpacked to signed bytes once per row; per (row, token) the sign trick
//! (`|w|` times `a` with `w`'s sign) feeds `vpmaddubsw` without overflow and `vpmaddwd` sums
//! the pairs (ggml's AVX2 scheme). The float work of a block, `d_w * d_a` times the integer
//! sum, is done for eight (row, token) pairs in one vector after a transpose of their lane
//! sums, instead of once per pair.

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ptr::read_unaligned;

use super::{block_bytes, has_min, IQ4_NL, MXFP4, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
use crate::cpu::dot::{Tile, TileEntry};
use crate::quant::blocks::KVALUES_IQ4NL;
use crate::quant::grids::{e8m0_half, KVALUES_MXFP4};

/// `tile::<TY, R, T, R * T>` for the listed shapes (first: 1x1).
macro_rules! pair_tiles {
    ($ty:tt; $(($r:literal, $t:literal)),+ $(,)?) => {
        &[$(TileEntry { rows: $r, tokens: $t, f: tile::<$ty, $r, $t, { $r * $t }> }),+]
    };
}

pub fn tiles(c: u8) -> &'static [TileEntry] {
    macro_rules! shapes {
        ($ty:tt) => {
            pair_tiles!($ty; (1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (2, 4), (4, 1), (4, 2), (4, 4), (8, 1))
        };
    }
    match c {
        Q8_0 => shapes!(Q8_0),
        Q4_0 => shapes!(Q4_0),
        Q5_0 => shapes!(Q5_0),
        Q4_1 => shapes!(Q4_1),
        IQ4_NL => shapes!(IQ4_NL),
        MXFP4 => shapes!(MXFP4),
        _ => shapes!(Q5_1),
    }
}

#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn f16_at(p: *const u8) -> f32 {
    let h = read_unaligned(p as *const u16) as i32;
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)))
}

/// Byte i is 0xFF where bit i of `bits` is set (ggml's bytes_from_bits_32).
#[inline]
#[target_feature(enable = "avx2")]
fn bit_bytes(bits: u32) -> __m256i {
    let spread = _mm256_setr_epi64x(
        0,
        0x0101_0101_0101_0101,
        0x0202_0202_0202_0202,
        0x0303_0303_0303_0303,
    );
    let b = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), spread);
    let b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1))
}

/// One block's weights as signed bytes, with `d` and `m`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn unpack<const TY: u8>(p: *const u8) -> (__m256i, f32, f32) {
    let d = if TY == MXFP4 {
        e8m0_half(*p)
    } else {
        f16_at(p)
    };
    let m = if has_min(TY) { f16_at(p.add(2)) } else { 0.0 };
    if TY == Q8_0 {
        return (_mm256_loadu_si256(p.add(2) as *const __m256i), d, m);
    }
    let qs = match TY {
        MXFP4 => 1,
        Q4_0 | IQ4_NL => 2,
        Q4_1 => 4,
        Q5_0 => 6,
        _ => 8,
    };
    let x = _mm_loadu_si128(p.add(qs) as *const __m128i);
    let nib = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(x, nib);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(x), nib);
    let mut q = _mm256_set_m128i(hi, lo);
    if TY == IQ4_NL || TY == MXFP4 {
        // The signed levels, looked up by nibble.
        let table = if TY == MXFP4 {
            &KVALUES_MXFP4
        } else {
            &KVALUES_IQ4NL
        };
        let levels = _mm_loadu_si128(table.as_ptr() as *const __m128i);
        return (
            _mm256_shuffle_epi8(_mm256_set_m128i(levels, levels), q),
            d,
            m,
        );
    }
    if TY == Q5_0 || TY == Q5_1 {
        let qh = read_unaligned(p.add(if TY == Q5_0 { 2 } else { 4 }) as *const u32);
        q = _mm256_or_si256(q, _mm256_and_si256(bit_bytes(qh), _mm256_set1_epi8(16)));
    }
    let sub = match TY {
        Q4_0 => 8,
        Q5_0 => 16,
        _ => 0,
    };
    (_mm256_sub_epi8(q, _mm256_set1_epi8(sub)), d, m)
}

/// Lane `j` of the result: the sum of the eight lanes of `s[j]` (exact: integers).
#[inline]
#[target_feature(enable = "avx2")]
fn lane_sums8(s: &[__m256i; 8]) -> __m256i {
    let t: [__m256i; 4] = std::array::from_fn(|i| _mm256_hadd_epi32(s[2 * i], s[2 * i + 1]));
    let (u0, u1) = (_mm256_hadd_epi32(t[0], t[1]), _mm256_hadd_epi32(t[2], t[3]));
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(u0, u1),
        _mm256_permute2x128_si256::<0x31>(u0, u1),
    )
}

/// Lane `j` (of four) of the result: the sum of the eight lanes of `s[j]`.
#[inline]
#[target_feature(enable = "avx2")]
fn lane_sums4(s: &[__m256i; 4]) -> __m128i {
    let u = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    _mm_add_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256::<1>(u))
}

/// The exact integer dot of each (row, token) pair's block, pair `j` being row `j % R` and
/// token `j / R`, as `N = R * T` sums (the tiles of fewer than eight pairs).
#[inline(always)]
unsafe fn pair_sums<const N: usize>(s: &[__m256i; N]) -> [i32; N] {
    let mut out = [0i32; N];
    if N == 4 {
        // SAFETY: N is 4, so `s` is exactly four vectors and `out` four lanes.
        let v: &[__m256i; 4] = &*(s.as_ptr() as *const [__m256i; 4]);
        _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, lane_sums4(v));
        return out;
    }
    for j in 0..N {
        let h = _mm_add_epi32(
            _mm256_castsi256_si128(s[j]),
            _mm256_extracti128_si256::<1>(s[j]),
        );
        let h = _mm_add_epi32(h, _mm_unpackhi_epi64(h, h));
        out[j] = _mm_cvtsi128_si32(_mm_add_epi32(h, _mm_shuffle_epi32::<1>(h)));
    }
    out
}

/// `R` rows times `T` tokens. Per block every (row, token) pair's 32 products are summed
/// exactly as integers (the sign trick: `|w|` times `a` with `w`'s sign, so `vpmaddubsw`
/// cannot saturate), the pairs' lane sums transposed into one vector, and the float work
/// done for up to eight pairs at once: `acc += isum * (d_w * d_a)` (then `+ m_w * s_a`), the
/// portable kernel's order, so every shape gives the portable kernel's bits.
#[target_feature(enable = "avx2,f16c,fma")]
unsafe fn tile<const TY: u8, const R: usize, const T: usize, const N: usize>(a: &Tile<'_>) {
    let bs = block_bytes(TY);
    let nb = a.cols / 32;
    let acts = a.acts;
    let mut qs = [std::ptr::null::<i8>(); T];
    let mut ds = [std::ptr::null::<f32>(); T];
    let mut ss = [std::ptr::null::<f32>(); T];
    for t in 0..T {
        let tok = a.t0 + t;
        qs[t] = acts.tok_qs(tok).as_ptr();
        ds[t] = acts.tok_d(tok).as_ptr();
        if has_min(TY) {
            ss[t] = acts.tok_s(tok).as_ptr();
        }
    }
    let ones = _mm256_set1_epi16(1);
    let mut acc = [0.0f32; N];
    let mut w = [(_mm256_setzero_si256(), _mm256_setzero_si256()); R];
    let (mut dw, mut mw) = ([0.0f32; R], [0.0f32; R]);
    for b in 0..nb {
        for r in 0..R {
            let (q, d, m) = unpack::<TY>(a.w.add(r * a.w_stride + b * bs));
            w[r] = (q, _mm256_sign_epi8(q, q));
            (dw[r], mw[r]) = (d, m);
        }
        let mut sums = [_mm256_setzero_si256(); N];
        for t in 0..T {
            let av = _mm256_loadu_si256(qs[t].add(32 * b) as *const __m256i);
            for r in 0..R {
                let (q, u) = w[r];
                let pairs = _mm256_maddubs_epi16(u, _mm256_sign_epi8(av, q));
                sums[t * R + r] = _mm256_madd_epi16(pairs, ones);
            }
        }
        if N.is_multiple_of(8) {
            // Eight pairs per vector: lane i of vector k is pair 8k + i.
            for k in 0..N / 8 {
                // SAFETY: N is a multiple of 8 and k < N / 8: vectors 8k..8k + 8 exist.
                let v: &[__m256i; 8] = &*(sums.as_ptr().add(8 * k) as *const [__m256i; 8]);
                let isum = _mm256_cvtepi32_ps(lane_sums8(v));
                let dd: [f32; 8] = std::array::from_fn(|i| {
                    let j = 8 * k + i;
                    dw[j % R] * *ds[j / R].add(b)
                });
                // Lanes 8k..8k + 8 of `acc` (k < N / 8).
                let at = acc.as_mut_ptr().add(8 * k);
                let mut v8 = _mm256_loadu_ps(at);
                v8 = _mm256_add_ps(v8, _mm256_mul_ps(isum, _mm256_loadu_ps(dd.as_ptr())));
                if has_min(TY) {
                    let ms: [f32; 8] = std::array::from_fn(|i| {
                        let j = 8 * k + i;
                        mw[j % R] * *ss[j / R].add(b)
                    });
                    v8 = _mm256_add_ps(v8, _mm256_loadu_ps(ms.as_ptr()));
                }
                _mm256_storeu_ps(at, v8);
            }
            continue;
        }
        let isum = pair_sums::<N>(&sums);
        for j in 0..N {
            let (r, t) = (j % R, j / R);
            acc[j] += isum[j] as f32 * (dw[r] * *ds[t].add(b));
            if has_min(TY) {
                acc[j] += mw[r] * *ss[t].add(b);
            }
        }
    }
    for j in 0..N {
        let (r, t) = (j % R, j / R);
        *a.y.add((a.t0 + t) * a.y_stride + a.r0 + r * a.y_step) = acc[j];
    }
}
