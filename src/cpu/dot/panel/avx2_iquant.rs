//! Row panels for the low-bit i-quants on AVX2 (no VNNI): the repack of 16 rows and the
//! kernel over it.
//!
//! The AVX2 tile kernels decode a sub-block's grid points and signs once per tile of one to
//! four tokens; on a prompt that decoding, not the integer dots, sets the pace. Here a
//! thread decodes 16 rows once per call into a panel and every token of the batch reuses it.
//! Each half-panel of 8 rows fills one 256-bit vector per group of 4 quants, row `r` in
//! 32-bit lane `r`, so one group of one token is a broadcast of its 4 activations, a
//! `vpmaddubsw` and a `vpmaddwd` that applies each row's scale.
//!
//! Without VNNI the products go through `vpmaddubsw`, whose 16-bit pair sums saturate; the
//! quants enter as `q + 64` (the integer-form quants of these types lie within ±62, so the
//! bytes are 2..=126 and a pair sum is at most `2 * 126 * 127`). The offset comes back out
//! per sub-block and row as `64 * (ls_lo * bsum_lo + ls_hi * bsum_hi)`, one `vpmaddwd` of the
//! row's scales with the token's Q8_K sums of 16. Every (row, token) super-block sum is then
//! the exact integer of the scalar kernel, and the float work is the scalar kernel's, in its
//! order: `sum += (d_w * d_a * F) * isum`, so panels give the portable bits.
//!
//! Layout in the panel's scratch (the quant area, then the bytes after it):
//! - quants `[block][half][group][row][4]`, 512 bytes per block of 32;
//! - scales `[block][half][3][row]` as pairs of 16-bit scales per row: `(ls_lo, ls_lo)`,
//!   `(ls_hi, ls_hi)` and `(64 ls_lo, 64 ls_hi)`, 192 bytes per block;
//! - the rows' super-block scales `d_w`, `[super-block][row]` as f32.

use std::arch::x86_64::*;
use std::ptr::read_unaligned;

use super::super::iquant::{
    self, super_scale_avx2, IQ1_M, IQ1_S, IQ2_S, IQ2_XS, IQ2_XXS, IQ3_S, IQ3_XXS,
};
use super::layout::{Out, Panel, BYTES_PER_BLOCK, ROWS};
use crate::cpu::quantize::QuantActs;

/// Rows per 256-bit vector: one per 32-bit lane.
const HALF: usize = 8;

/// What the quants are stored plus: `vpmaddubsw` needs them unsigned.
const OFFSET: i8 = 64;

/// Scale bytes per block of 32: three vectors for each half.
const SCALE_BYTES: usize = 2 * 3 * 32;

/// The scale vectors of half `h` of block `b`.
unsafe fn scales(panel: &Panel, b: usize, h: usize) -> *mut __m256i {
    let base = panel.q.add(panel.blocks * 512);
    base.add(b * SCALE_BYTES + h * 96) as *mut __m256i
}

/// The rows' super-block scales of super-block `sb`.
unsafe fn row_scales(panel: &Panel, sb: usize) -> *mut f32 {
    let base = panel.q.add(panel.blocks * (512 + SCALE_BYTES));
    (base as *mut f32).add(sb * ROWS)
}

// The layout above fits the panel's scratch (super-block scales: 64 bytes per 8 blocks).
const _: () = assert!(512 + SCALE_BYTES + ROWS * 4 / 8 <= BYTES_PER_BLOCK);

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

/// The 8x8 transpose of 32-bit elements: `out[g]` lane `r` is `v[r]` lane `g`.
#[inline(always)]
unsafe fn transpose8(v: [__m256i; 8]) -> [__m256i; 8] {
    let t: [__m256i; 8] = std::array::from_fn(|i| {
        let (a, b) = (v[2 * (i / 2)], v[2 * (i / 2) + 1]);
        match i % 2 {
            0 => _mm256_unpacklo_epi32(a, b),
            _ => _mm256_unpackhi_epi32(a, b),
        }
    });
    // u[4k + j]: rows 4k..4k+4 of groups j and j + 4 (j = 0..4).
    let u: [__m256i; 8] = std::array::from_fn(|i| {
        let (k, j) = (i / 4, i % 4);
        let (a, b) = (t[4 * k + j / 2], t[4 * k + 2 + j / 2]);
        match j % 2 {
            0 => _mm256_unpacklo_epi64(a, b),
            _ => _mm256_unpackhi_epi64(a, b),
        }
    });
    std::array::from_fn(|g| match g / 4 {
        0 => _mm256_permute2x128_si256::<0x20>(u[g % 4], u[4 + g % 4]),
        _ => _mm256_permute2x128_si256::<0x31>(u[g % 4], u[4 + g % 4]),
    })
}

/// Row `r`'s pair of 16-bit values in 32-bit lane `r`, the first in the low half.
#[inline(always)]
unsafe fn pair_lanes(p: [(i16, i16); HALF]) -> __m256i {
    let p = p.map(|(a, b)| i32::from(a as u16) | i32::from(b as u16) << 16);
    _mm256_setr_epi32(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7])
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn pack<const TY: u8>(rows: &[*const u8; ROWS], panel: &Panel) {
    let bs = iquant::block_bytes(TY);
    let offset = _mm256_set1_epi8(OFFSET);
    for sb in 0..panel.blocks / 8 {
        for (r, &row) in rows.iter().enumerate() {
            *row_scales(panel, sb).add(r) = super_scale_avx2::<TY>(row.add(sb * bs));
        }
        for ib in 0..8 {
            let b = 8 * sb + ib;
            for h in 0..2 {
                let mut ls = [(0i16, 0i16); HALF];
                let q: [__m256i; HALF] = std::array::from_fn(|r| {
                    let (u, s, sc) = iquant::sub_avx2::<TY>(rows[HALF * h + r].add(sb * bs), ib);
                    let lo = _mm256_extract_epi16::<0>(sc) as i16;
                    ls[r] = (lo, _mm256_extract_epi16::<8>(sc) as i16);
                    _mm256_add_epi8(_mm256_sign_epi8(u, s), offset)
                });
                let dst = panel.q.add(b * 512 + h * 256) as *mut __m256i;
                for (g, v) in transpose8(q).into_iter().enumerate() {
                    _mm256_store_si256(dst.add(g), v);
                }
                let s = scales(panel, b, h);
                let o = i16::from(OFFSET);
                _mm256_store_si256(s, pair_lanes(ls.map(|(lo, _)| (lo, lo))));
                _mm256_store_si256(s.add(1), pair_lanes(ls.map(|(_, hi)| (hi, hi))));
                _mm256_store_si256(s.add(2), pair_lanes(ls.map(|(lo, hi)| (o * lo, o * hi))));
            }
        }
    }
}

/// Tokens `t0..t0 + T` times the panel into `out`, `factor` being the type's `F`.
///
/// # Safety
/// The panel must hold i-quant rows packed by [`pack_iquant`] from rows of the activations'
/// width; the activations must be Q8_K with those tokens; `out` as [`super::gemm`]; the CPU
/// must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gemm<const T: usize>(
    panel: &Panel,
    acts: &QuantActs,
    factor: f32,
    t0: usize,
    out: &Out,
) {
    for h in 0..2 {
        if h * HALF < out.valid {
            gemm_half::<T>(panel, acts, factor, t0, h, out);
        }
    }
}

#[inline(always)]
unsafe fn gemm_half<const T: usize>(
    panel: &Panel,
    acts: &QuantActs,
    factor: f32,
    t0: usize,
    h: usize,
    out: &Out,
) {
    let qs: [*const i8; T] = std::array::from_fn(|t| acts.tok_qs(t0 + t).as_ptr());
    let ds: [*const f32; T] = std::array::from_fn(|t| acts.tok_d(t0 + t).as_ptr());
    let sums: [*const i16; T] = std::array::from_fn(|t| acts.tok_bsums16(t0 + t).as_ptr());
    let mut acc = [_mm256_setzero_ps(); T];
    for sb in 0..panel.blocks / 8 {
        let mut isum = [_mm256_setzero_si256(); T];
        for ib in 0..8 {
            let b = 8 * sb + ib;
            let w = panel.q.add(b * 512 + h * 256) as *const __m256i;
            let s = scales(panel, b, h);
            for g in 0..8 {
                let wv = _mm256_load_si256(w.add(g));
                let sc = _mm256_load_si256(s.add(g / 4));
                for t in 0..T {
                    let a = read_unaligned(qs[t].add(32 * b + 4 * g) as *const i32);
                    let pairs = _mm256_maddubs_epi16(wv, _mm256_set1_epi32(a));
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(pairs, sc));
                }
            }
            let offsets = _mm256_load_si256(s.add(2));
            for t in 0..T {
                let bsum = read_unaligned(sums[t].add(2 * b) as *const i32);
                let off = _mm256_madd_epi16(offsets, _mm256_set1_epi32(bsum));
                isum[t] = _mm256_sub_epi32(isum[t], off);
            }
        }
        let dw = _mm256_loadu_ps(row_scales(panel, sb).add(h * HALF));
        for t in 0..T {
            // The scalar kernel's `(d_w * d_a * F) * isum`, added to the running sum.
            let dd = _mm256_mul_ps(
                _mm256_mul_ps(dw, _mm256_set1_ps(*ds[t].add(sb))),
                _mm256_set1_ps(factor),
            );
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_cvtepi32_ps(isum[t]), dd));
        }
    }
    let rows = out.valid.saturating_sub(h * HALF).min(HALF);
    for (t, &sum) in acc.iter().enumerate() {
        let mut lanes = [0.0f32; HALF];
        _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
        let y = out.y.add((t0 + t) * out.stride + out.row0 + h * HALF);
        for (i, &v) in lanes[..rows].iter().enumerate() {
            *y.add(i) = v;
        }
    }
}
