//! AVX2 kernels for the i-quants: one sub-block of 32 weights per 256-bit vector.
//!
//! Per sub-block and row: the grid points its indices select (four 8-byte or eight 4-byte
//! loads gathered into one vector: the quants' magnitudes), the signs spread from bits to bytes
//! with one shuffle and compare, the scales per 16 as 16-bit lanes (IQ1: `8 g ± 1` from an
//! 8g table and the delta, magnitudes by `vpabsb`). Per token: `vpsignb` gives the activations
//! the weights' signs, `vpmaddubsw` multiplies them with the magnitudes, `vpmaddwd` applies the scales, and
//! the 32-bit sums stay exact to the end of the super-block (ggml's AVX2 scheme).

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ptr::read_unaligned;

use super::{block_bytes, factor, IQ1_M, IQ1_S, IQ2_S, IQ2_XS, IQ2_XXS, IQ3_S, IQ3_XXS};
use crate::cpu::dot::float::hsum_avx2 as hsum;
use crate::cpu::dot::{tile_table, Tile, TileEntry};
use crate::quant::grids::{
    IQ1S_GRID8, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS,
};
use crate::quant::iquants::BlockIq1M;

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
    if TY == IQ1_M {
        let b = &*(p as *const [u8; BlockIq1M::BYTES]);
        return BlockIq1M::new(b).d();
    }
    let h = read_unaligned(p as *const u16) as i32;
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)))
}

/// Byte `i` is -1 where bit `i` of `bits` is set, else 1.
#[inline]
#[target_feature(enable = "avx2")]
fn sign_bytes(bits: u32) -> __m256i {
    let spread = _mm256_setr_epi64x(
        0,
        0x0101_0101_0101_0101,
        0x0202_0202_0202_0202,
        0x0303_0303_0303_0303,
    );
    let b = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), spread);
    let b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    let set = _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
    _mm256_or_si256(set, _mm256_set1_epi8(1))
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
    let g = g.map(|v| v as i32);
    _mm256_setr_epi32(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7])
}

/// The sign bits of four groups from their 7-bit sign indices at bits 0, 7, 14, 21 of `aux`.
#[inline(always)]
fn parity_signs(aux: u32) -> u32 {
    (0..4).fold(0, |s, l| {
        s | u32::from(KSIGNS[((aux >> (7 * l)) & 127) as usize]) << (8 * l)
    })
}

/// Scales `lo` for the first 16 weights and `hi` for the next 16, as 16-bit lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn scales16(lo: u32, hi: u32) -> __m256i {
    _mm256_set_m128i(_mm_set1_epi16(hi as i16), _mm_set1_epi16(lo as i16))
}

/// Sub-block `ib` (weights 32ib..32ib+32) of the block at `p`: the quants' magnitudes, a
/// vector whose bytes carry the quants' signs (and are never zero), and the 16-bit scale of
/// each pair sum. The signed quants are `_mm256_sign_epi8(u, s)`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn sub<const TY: u8>(p: *const u8, ib: usize) -> (__m256i, __m256i, __m256i) {
    let byte = |at: usize| u32::from(*p.add(at));
    match TY {
        IQ2_XXS => {
            let idx = read_unaligned(p.add(2 + 8 * ib) as *const u32);
            let aux = read_unaligned(p.add(6 + 8 * ib) as *const u32);
            let g = std::array::from_fn(|l| IQ2XXS_GRID[((idx >> (8 * l)) & 255) as usize]);
            let ls = 2 * (aux >> 28) + 1;
            (points8(g), sign_bytes(parity_signs(aux)), scales16(ls, ls))
        }
        IQ2_XS => {
            let qs: [u16; 4] = read_unaligned(p.add(2 + 8 * ib) as *const [u16; 4]);
            let g = qs.map(|v| IQ2XS_GRID[usize::from(v & 511)]);
            let signs = (0..4).fold(0u32, |s, l| {
                s | u32::from(KSIGNS[usize::from(qs[l] >> 9)]) << (8 * l)
            });
            let sc = byte(66 + ib);
            let ls = scales16(2 * (sc & 15) + 1, 2 * (sc >> 4) + 1);
            (points8(g), sign_bytes(signs), ls)
        }
        IQ2_S => {
            let qh = byte(66 + ib);
            let g = std::array::from_fn(|l| {
                IQ2S_GRID[(byte(2 + 4 * ib + l) | ((qh >> (2 * l)) & 3) << 8) as usize]
            });
            let signs = read_unaligned(p.add(34 + 4 * ib) as *const u32);
            let sc = byte(74 + ib);
            let ls = scales16(2 * (sc & 15) + 1, 2 * (sc >> 4) + 1);
            (points8(g), sign_bytes(signs), ls)
        }
        IQ3_XXS => {
            let g = std::array::from_fn(|k| IQ3XXS_GRID[byte(2 + 8 * ib + k) as usize]);
            let aux = read_unaligned(p.add(66 + 4 * ib) as *const u32);
            let ls = 2 * (aux >> 28) + 1;
            (points4(g), sign_bytes(parity_signs(aux)), scales16(ls, ls))
        }
        IQ3_S => {
            let qh = byte(66 + ib);
            let g = std::array::from_fn(|k| {
                IQ3S_GRID[(byte(2 + 8 * ib + k) | ((qh >> k) & 1) << 8) as usize]
            });
            let signs = read_unaligned(p.add(74 + 4 * ib) as *const u32);
            let ls = 2 * ((byte(106 + ib / 2) >> (4 * (ib % 2))) & 15) + 1;
            (points4(g), sign_bytes(signs), scales16(ls, ls))
        }
        IQ1_S => {
            let qh = u32::from(read_unaligned(p.add(34 + 2 * ib) as *const u16));
            let g = std::array::from_fn(|l| {
                IQ1S_GRID8[(byte(2 + 4 * ib + l) | ((qh >> (3 * l)) & 7) << 8) as usize]
            });
            let delta = if qh & 0x8000 != 0 { -1 } else { 1 };
            let q = _mm256_add_epi8(points8(g), _mm256_set1_epi8(delta));
            let ls = 2 * ((qh >> 12) & 7) + 1;
            (_mm256_abs_epi8(q), q, scales16(ls, ls))
        }
        _ => {
            // IQ1_M: group k's nibble of qh holds its top index bits and its delta's sign.
            let mut delta = [0u64; 4];
            let g = std::array::from_fn(|l| {
                let k = 4 * ib + l;
                let nib = (byte(32 + k / 2) >> (4 * (k % 2))) & 15;
                delta[l] = if nib & 8 != 0 {
                    u64::MAX
                } else {
                    0x0101_0101_0101_0101
                };
                IQ1S_GRID8[(byte(k) | (nib & 7) << 8) as usize]
            });
            let q = _mm256_add_epi8(points8(g), points8(delta));
            let w = u32::from(read_unaligned(p.add(48 + 2 * (ib / 2)) as *const u16));
            let shift = 6 * (ib % 2);
            let (s1, s2) = ((w >> shift) & 7, (w >> (shift + 3)) & 7);
            (_mm256_abs_epi8(q), q, scales16(2 * s1 + 1, 2 * s2 + 1))
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
    let mut w = [(zi, zi, zi); R];
    for sb in 0..nsb {
        let d: [f32; R] =
            std::array::from_fn(|r| super_scale::<TY>(a.w.add(r * a.w_stride + sb * bs)));
        let mut isum = [[zi; T]; R];
        for ib in 0..8 {
            for r in 0..R {
                w[r] = sub::<TY>(a.w.add(r * a.w_stride + sb * bs), ib);
            }
            for t in 0..T {
                let av = _mm256_loadu_si256(qs[t].add(256 * sb + 32 * ib) as *const __m256i);
                for r in 0..R {
                    let (u, s, sc) = w[r];
                    let pairs = _mm256_maddubs_epi16(u, _mm256_sign_epi8(av, s));
                    isum[r][t] = _mm256_add_epi32(isum[r][t], _mm256_madd_epi16(pairs, sc));
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
