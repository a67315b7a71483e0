//! The i-quants' rows repacked into AVX2 panels ([`super::avx2`]'s layout): each sub-block's
//! integer-form quants (decoded as the AVX2 tile kernels decode them: grid lookups, signs,
//! IQ1's `8 g ± 1`) + 64, its scales per 16, and the offset's correction.

use std::arch::x86_64::*;

use super::super::iquant::{
    self, super_scale_avx2, IQ1_M, IQ1_S, IQ2_S, IQ2_XS, IQ2_XXS, IQ3_S, IQ3_XXS,
};
use super::avx2::{put_quants, row_scales, scales, HALF};
use super::layout::{Panel, ROWS};

/// What the quants are stored plus: the integer-form quants of these types lie within ±62,
/// so the stored bytes are 2..=126 and `vpmaddubsw`'s pair sums stay below `2 * 126 * 127`.
const OFFSET: i8 = 64;

/// Repacks the rows (i-quant `c`) into `panel`.
///
/// # Safety
/// As [`super::pack`], with AVX2 and F16C.
pub unsafe fn pack_iquant(c: u8, rows: &[*const u8; ROWS], panel: &Panel) {
    match c {
        IQ2_XXS => pack::<IQ2_XXS>(rows, panel),
        IQ2_XS => pack::<IQ2_XS>(rows, panel),
        IQ2_S => pack::<IQ2_S>(rows, panel),
        IQ3_XXS => pack::<IQ3_XXS>(rows, panel),
        IQ3_S => pack::<IQ3_S>(rows, panel),
        IQ1_S => pack::<IQ1_S>(rows, panel),
        _ => pack::<IQ1_M>(rows, panel),
    }
}

/// The eight rows' scales as the panel's first two scale vectors: from row `r`'s 16-bit scales
/// (its first 16 weights' in every lane of the low half, its last 16's in the high half),
/// 32-bit lane `r` of each. Lane `r` is taken from row `r`'s vector and from its halves
/// swapped, then the two are joined by halves: no scalar extracts.
#[inline(always)]
unsafe fn row_lanes(sc: [__m256i; HALF]) -> (__m256i, __m256i) {
    let pick = |v: [__m256i; HALF]| {
        let mut out = v[0];
        macro_rules! lane {
            ($($r:literal),*) => {$(out = _mm256_blend_epi32::<{ 1 << $r }>(out, v[$r]);)*};
        }
        lane!(1, 2, 3, 4, 5, 6, 7);
        out
    };
    // Lanes 0..4 hold the low halves' scales, 4..8 the high halves'; swapped the other way.
    let x = pick(sc);
    let y = pick(sc.map(|v| _mm256_permute2x128_si256::<0x01>(v, v)));
    (
        _mm256_blend_epi32::<0xF0>(x, y),
        _mm256_blend_epi32::<0xF0>(y, x),
    )
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn pack<const TY: u8>(rows: &[*const u8; ROWS], panel: &Panel) {
    let bs = iquant::block_bytes(TY);
    let offset = _mm256_set1_epi8(OFFSET);
    let o = i16::from(OFFSET);
    for sb in 0..panel.blocks / 8 {
        for (r, &row) in rows.iter().enumerate() {
            *row_scales(panel, sb).add(r) = super_scale_avx2::<TY>(row.add(sb * bs));
        }
        for j in 0..4 {
            for h in 0..2 {
                let subs: [[iquant::Sub; 2]; HALF] = std::array::from_fn(|r| {
                    iquant::pair_avx2::<TY>(rows[HALF * h + r].add(sb * bs), j)
                });
                for (k, b) in [(0, 8 * sb + 2 * j), (1, 8 * sb + 2 * j + 1)] {
                    let q = std::array::from_fn(|r| {
                        let (u, s, _) = subs[r][k];
                        _mm256_add_epi8(_mm256_sign_epi8(u, s), offset)
                    });
                    put_quants(panel, b, h, q);
                    let (lo, hi) = row_lanes(subs.map(|s| s[k].2));
                    let third = _mm256_blend_epi16::<0b1010_1010>(lo, hi);
                    let st = scales(panel, b, h);
                    _mm256_store_si256(st, lo);
                    _mm256_store_si256(st.add(1), hi);
                    _mm256_store_si256(st.add(2), _mm256_mullo_epi16(third, _mm256_set1_epi16(o)));
                }
            }
        }
    }
}
