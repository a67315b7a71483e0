//! AVX-512 VNNI kernels for the 32-blocks: two blocks per 512-bit vector.
//!
//! Weights become unsigned (`q + offset`: Q8_0 by flipping the sign bit, Q4/Q5 nibbles as they
//! are, IQ4_NL's levels + 128 looked up by nibble with `vpshufb`) so one `vpdpbusd` does 64 multiply-adds against the signed activations; each lane
//! starts from the activations' precomputed `-offset * sum`, which makes the lane sums exact
//! signed dots. Per pair of blocks and (row, token): dpbusd, convert, scale, FMA.

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ptr::read_unaligned;

use super::{block_bytes, has_min, offset, IQ4_NL, MXFP4, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
use crate::cpu::dot::{tile_table, Tile, TileEntry, PREFETCH};
use crate::quant::blocks::KVALUES_IQ4NL;
use crate::quant::grids::{e8m0_half, KVALUES_MXFP4};

pub fn tiles(c: u8) -> &'static [TileEntry] {
    macro_rules! shapes {
        ($ty:tt) => {
            tile_table!(tile, $ty; (1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (2, 4), (4, 1), (4, 2), (4, 4))
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

/// Two blocks' weights: unsigned quants, and per-lane scale and min.
#[derive(Clone, Copy)]
struct Pair {
    q: __m512i,
    d: __m512,
    m: __m512,
}

/// The f16 at `off` of the blocks at `p` and `p + next`, widened into lanes 0-7 and 8-15.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
unsafe fn scale_lanes(p: *const u8, next: usize, off: usize) -> __m512 {
    let a = _mm256_set1_epi16(read_unaligned(p.add(off) as *const i16));
    let b = _mm256_set1_epi16(read_unaligned(p.add(next + off) as *const i16));
    _mm512_cvtph_ps(_mm256_mask_blend_epi16(0xFF00, a, b))
}

/// Unpacks the blocks at `p` and `p + next` (`next == 0` at an odd tail: the second copy
/// meets zero activations).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
unsafe fn unpack<const TY: u8>(p: *const u8, next: usize) -> Pair {
    let d = if TY == MXFP4 {
        // E8M0 scales: lanes 0-7 the first block's, 8-15 the second's.
        let (a, b) = (e8m0_half(*p), e8m0_half(*p.add(next)));
        _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(a), _mm512_set1_ps(b))
    } else {
        scale_lanes(p, next, 0)
    };
    let m = if has_min(TY) {
        scale_lanes(p, next, 2)
    } else {
        _mm512_setzero_ps()
    };
    let q = if TY == Q8_0 {
        let lo = _mm256_loadu_si256(p.add(2) as *const __m256i);
        let hi = _mm256_loadu_si256(p.add(next + 2) as *const __m256i);
        let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
        _mm512_xor_si512(v, _mm512_set1_epi8(-128))
    } else {
        let qs = match TY {
            MXFP4 => 1,
            Q4_0 | IQ4_NL => 2,
            Q4_1 => 4,
            Q5_0 => 6,
            _ => 8,
        };
        let a = _mm_loadu_si128(p.add(qs) as *const __m128i);
        let b = _mm_loadu_si128(p.add(next + qs) as *const __m128i);
        let ab = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(a), b);
        // 128-bit lanes [a, a, b, b]; lanes 1 and 3 take the high nibbles (weights 16..32).
        let v = _mm512_permutexvar_epi64(
            _mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3),
            _mm512_castsi256_si512(ab),
        );
        let hi4 = 0x0004_0004_0004_0004;
        let v = _mm512_srlv_epi16(v, _mm512_setr_epi64(0, 0, hi4, hi4, 0, 0, hi4, hi4));
        let mut q = _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
        if TY == IQ4_NL {
            q = _mm512_shuffle_epi8(iq4nl_offset_levels(), q);
        }
        if TY == MXFP4 {
            q = _mm512_shuffle_epi8(mxfp4_offset_levels(), q);
        }
        if TY == Q5_0 || TY == Q5_1 {
            // Bit i of qh is the fifth bit of weight i: byte i of this vector.
            let qh = if TY == Q5_0 { 2 } else { 4 };
            let ha = read_unaligned(p.add(qh) as *const u32) as u64;
            let hb = read_unaligned(p.add(next + qh) as *const u32) as u64;
            q = _mm512_mask_add_epi8(q, ha | (hb << 32), q, _mm512_set1_epi8(16));
        }
        q
    };
    Pair { q, d, m }
}

/// IQ4_NL's levels + 128 (unsigned bytes) in every 128-bit lane, for `vpshufb` by nibble.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) fn iq4nl_offset_levels() -> __m512i {
    offset_levels(&KVALUES_IQ4NL)
}

/// MXFP4's doubled values + 128, as [`iq4nl_offset_levels`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) fn mxfp4_offset_levels() -> __m512i {
    offset_levels(&KVALUES_MXFP4)
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn offset_levels(levels: &[i8; 16]) -> __m512i {
    let bytes: [u8; 16] = std::array::from_fn(|i| (levels[i] as u8) ^ 0x80);
    // SAFETY: 16 bytes read from a 16-byte array.
    let lane = unsafe { _mm_loadu_si128(bytes.as_ptr() as *const __m128i) };
    _mm512_broadcast_i32x4(lane)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
unsafe fn tile<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    let bs = block_bytes(TY);
    let nb = a.cols / 32;
    let acts = a.acts;
    let mut qs = [std::ptr::null::<i8>(); T];
    let mut d4 = [std::ptr::null::<f32>(); T];
    let mut c4 = [std::ptr::null::<i32>(); T];
    let mut s4 = [std::ptr::null::<f32>(); T];
    for t in 0..T {
        let tok = a.t0 + t;
        qs[t] = acts.tok_qs(tok).as_ptr();
        d4[t] = acts.tok_d4(tok).as_ptr();
        c4[t] = acts.tok_c4(tok).as_ptr();
        if has_min(TY) {
            s4[t] = acts.tok_s4(tok).as_ptr();
        }
    }
    let zero = _mm512_setzero_ps();
    let mut acc = [[zero; T]; R];
    let mut w = [Pair {
        q: _mm512_setzero_si512(),
        d: zero,
        m: zero,
    }; R];
    let mut b = 0;
    while b < nb {
        let next = if b + 1 < nb { bs } else { 0 };
        for r in 0..R {
            let p = a.w.add(r * a.w_stride + b * bs);
            if T == 1 {
                // Decode reads each weight once: ask for the bytes a little ahead in the stream.
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH) as *const i8);
            }
            w[r] = unpack::<TY>(p, next);
        }
        for t in 0..T {
            let av = _mm512_loadu_si512(qs[t].add(32 * b) as *const _);
            let dv = _mm512_loadu_ps(d4[t].add(8 * b));
            let base = if offset(TY) != 0 {
                _mm512_loadu_si512(c4[t].add(8 * b) as *const _)
            } else {
                _mm512_setzero_si512()
            };
            for r in 0..R {
                let i = _mm512_dpbusd_epi32(base, w[r].q, av);
                let s = _mm512_mul_ps(w[r].d, dv);
                let mut v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, acc[r][t]);
                if has_min(TY) {
                    v = _mm512_fmadd_ps(w[r].m, _mm512_loadu_ps(s4[t].add(8 * b)), v);
                }
                acc[r][t] = v;
            }
        }
        b += 2;
    }
    for r in 0..R {
        for t in 0..T {
            *a.y.add((a.t0 + t) * a.y_stride + a.r0 + r * a.y_step) =
                _mm512_reduce_add_ps(acc[r][t]);
        }
    }
}
