//! AVX-512 VNNI kernels for the i-quants: two sub-blocks (64 weights) per 512-bit vector.
//!
//! The sub-blocks are decoded exactly as on AVX2 (`avx2::pair`: magnitudes from grid lookups,
//! sign bytes, scales per 16) and joined in pairs; AVX-512 has no `vpsignb`, so the activations take the
//! weights' signs by a masked negation (`q`'s sign bits as the mask), `vpmaddubsw` multiplies
//! them with `|q|`, and `vpdpwssd` applies the scales and accumulates in one instruction. The
//! integer sums are the AVX2 kernels' (and the scalar path's), so only the order of the f32
//! sums differs.

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::avx2::{pair as pair_avx2, super_scale};
use super::{block_bytes, factor, IQ1_M, IQ1_S, IQ2_S, IQ2_XS, IQ2_XXS, IQ3_S, IQ3_XXS};
use crate::cpu::dot::{tile_table, Tile, TileEntry, PREFETCH};

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

/// Sub-blocks `ib` and `ib + 1` of the block at `p`: `|q|`, the mask of negative quants, and
/// the 16-bit scale of each pair sum, weights in order.
#[derive(Clone, Copy)]
struct Pair {
    u: __m512i,
    neg: __mmask64,
    sc: __m512i,
}

#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw")]
unsafe fn pair<const TY: u8>(p: *const u8, ib: usize) -> Pair {
    let [(u0, s0, sc0), (u1, s1, sc1)] = pair_avx2::<TY>(p, ib / 2);
    let join = |lo: __m256i, hi: __m256i| _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
    Pair {
        u: join(u0, u1),
        neg: _mm512_movepi8_mask(join(s0, s1)),
        sc: join(sc0, sc1),
    }
}

#[target_feature(enable = "avx2,f16c,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    let bs = block_bytes(TY);
    let nsb = a.cols / 256;
    let acts = a.acts;
    let qs: [*const i8; T] = std::array::from_fn(|t| acts.tok_qs(a.t0 + t).as_ptr());
    let ds: [*const f32; T] = std::array::from_fn(|t| acts.tok_d(a.t0 + t).as_ptr());
    let zi = _mm512_setzero_si512();
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    let mut w = [Pair {
        u: zi,
        neg: 0,
        sc: zi,
    }; R];
    for sb in 0..nsb {
        let d: [f32; R] =
            std::array::from_fn(|r| super_scale::<TY>(a.w.add(r * a.w_stride + sb * bs)));
        let mut isum = [[zi; T]; R];
        for ib in (0..8).step_by(2) {
            for r in 0..R {
                let p = a.w.add(r * a.w_stride + sb * bs);
                if T == 1 && ib == 0 {
                    // Decode reads each weight once: ask for the bytes a little ahead.
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH) as *const i8);
                }
                w[r] = pair::<TY>(p, ib);
            }
            for t in 0..T {
                let av = _mm512_loadu_si512(qs[t].add(256 * sb + 32 * ib) as *const _);
                for r in 0..R {
                    isum[r][t] = dot64(isum[r][t], av, w[r].u, w[r].neg, w[r].sc);
                }
            }
        }
        add_block::<TY, R, T>(&mut acc, &isum, &d, &ds, sb);
    }
    store(a, &acc);
}

/// 64 weights of one (row, token): `isum` plus the activations `av`, given the signs of
/// `neg`, times the magnitudes `u`, each pair sum times its 16-bit scale in `sc`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) fn dot64(
    isum: __m512i,
    av: __m512i,
    u: __m512i,
    neg: __mmask64,
    sc: __m512i,
) -> __m512i {
    let signed = _mm512_mask_sub_epi8(av, neg, _mm512_setzero_si512(), av);
    _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(u, signed), sc)
}

/// Adds super-block `sb`'s integer sums, times each row's `d`, each token's activation scale
/// and the type's factor, to the float sums.
///
/// # Safety
/// `ds[t]` must hold the activation scales of super-block `sb`.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn add_block<const TY: u8, const R: usize, const T: usize>(
    acc: &mut [[__m512; T]; R],
    isum: &[[__m512i; T]; R],
    d: &[f32; R],
    ds: &[*const f32; T],
    sb: usize,
) {
    for t in 0..T {
        let da = *ds[t].add(sb) * factor(TY);
        for r in 0..R {
            let dd = _mm512_set1_ps(d[r] * da);
            acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][t]), dd, acc[r][t]);
        }
    }
}

/// Writes each (row, token)'s float sum to its output.
///
/// # Safety
/// As for the tile kernel whose sums these are.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn store<const R: usize, const T: usize>(a: &Tile<'_>, acc: &[[__m512; T]; R]) {
    for r in 0..R {
        for t in 0..T {
            *a.y.add((a.t0 + t) * a.y_stride + a.r0 + r * a.y_step) =
                _mm512_reduce_add_ps(acc[r][t]);
        }
    }
}
