//! Q8_0, Q4_0, Q5_0, IQ4_NL, MXFP4 (Q8_0 activations) and Q4_1, Q5_1 (Q8_1 activations):
//! blocks of 32.
//!
//! Per block: an exact integer dot of the quants, times `d_w * d_a` (ggml's
//! `ggml_vec_dot_q*_q8_*`), plus `m_w * s_a` for the types with a min. IQ4_NL's quants are the
//! non-linear levels its nibbles index (`KVALUES_IQ4NL`), which the SIMD kernels look up
//! sixteen or more at a time with a byte shuffle; MXFP4 is the same with the doubled FP4
//! values (`KVALUES_MXFP4`) and a power-of-two block scale (E8M0, halved) instead of an f16.

use crate::quant::GgmlType;

use super::{tile_table, KernelSet, Tile, TileEntry};
use crate::cpu::features::Isa;
use crate::cpu::quantize::{ActFormat, QuantActs};
use crate::quant::blocks::{
    f16_at, IQ4_NL_BYTES, KVALUES_IQ4NL, Q4_0_BYTES, Q4_1_BYTES, Q5_0_BYTES, Q5_1_BYTES,
    Q8_0_BYTES, QK,
};
use crate::quant::grids::{e8m0_half, KVALUES_MXFP4};
use crate::quant::iquants::MXFP4_BYTES;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::{iq4nl_offset_levels, mxfp4_offset_levels};
#[cfg(target_arch = "aarch64")]
mod neon;

pub const Q8_0: u8 = 0;
pub const Q4_0: u8 = 1;
pub const Q5_0: u8 = 2;
pub const Q4_1: u8 = 3;
pub const Q5_1: u8 = 4;
pub const IQ4_NL: u8 = 5;
pub const MXFP4: u8 = 6;

/// Bytes per block.
pub const fn block_bytes(ty: u8) -> usize {
    match ty {
        Q8_0 => Q8_0_BYTES,
        Q4_0 => Q4_0_BYTES,
        Q5_0 => Q5_0_BYTES,
        Q4_1 => Q4_1_BYTES,
        IQ4_NL => IQ4_NL_BYTES,
        MXFP4 => MXFP4_BYTES,
        _ => Q5_1_BYTES,
    }
}

/// Whether the type has a min (`w = d * q + m`) and so takes Q8_1 activations.
pub const fn has_min(ty: u8) -> bool {
    matches!(ty, Q4_1 | Q5_1)
}

/// What the x86 kernels add to the signed quants to make them unsigned.
pub const fn offset(ty: u8) -> i32 {
    match ty {
        Q8_0 => 128,
        Q4_0 => 8,
        Q5_0 => 16,
        // The levels span -127..=113: +128 makes every one a byte, as for Q8_0.
        IQ4_NL | MXFP4 => 128,
        _ => 0,
    }
}

pub(crate) fn code(ty: GgmlType) -> Option<u8> {
    match ty {
        GgmlType::Q8_0 => Some(Q8_0),
        GgmlType::Q4_0 => Some(Q4_0),
        GgmlType::Q5_0 => Some(Q5_0),
        GgmlType::Q4_1 => Some(Q4_1),
        GgmlType::Q5_1 => Some(Q5_1),
        GgmlType::IQ4_NL => Some(IQ4_NL),
        GgmlType::MXFP4 => Some(MXFP4),
        _ => None,
    }
}

pub fn kernels(ty: GgmlType, isa: Isa) -> Option<KernelSet> {
    let c = code(ty)?;
    let tiles = match isa {
        Isa::Scalar => scalar_tiles(c),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => avx512::tiles(c),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::tiles(c),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon::tiles(c),
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    let fmt = if has_min(c) {
        ActFormat::Q8_1
    } else {
        ActFormat::Q8_0 { offset: offset(c) }
    };
    Some(KernelSet { fmt, tiles })
}

fn scalar_tiles(c: u8) -> &'static [TileEntry] {
    match c {
        Q8_0 => tile_table!(tile, Q8_0; (1, 1)),
        Q4_0 => tile_table!(tile, Q4_0; (1, 1)),
        Q5_0 => tile_table!(tile, Q5_0; (1, 1)),
        Q4_1 => tile_table!(tile, Q4_1; (1, 1)),
        IQ4_NL => tile_table!(tile, IQ4_NL; (1, 1)),
        MXFP4 => tile_table!(tile, MXFP4; (1, 1)),
        _ => tile_table!(tile, Q5_1; (1, 1)),
    }
}

/// The block scale `d` (MXFP4: half its E8M0 scale, see [`e8m0_half`]).
#[inline(always)]
pub fn block_scale<const TY: u8>(b: &[u8]) -> f32 {
    if TY == MXFP4 {
        e8m0_half(b[0])
    } else {
        f16_at(b, 0)
    }
}

/// The 32 quants of a block as signed values (`q - 8`, `q - 16` applied, IQ4_NL's levels,
/// MXFP4's doubled values; unsigned for the types with a min), with the block's `d` and `m`.
#[inline(always)]
pub fn block_values<const TY: u8>(b: &[u8]) -> ([i32; QK], f32, f32) {
    let mut v = [0i32; QK];
    let d = block_scale::<TY>(b);
    let m = if has_min(TY) { f16_at(b, 2) } else { 0.0 };
    let nib = |qs: &[u8], j: usize| if j < 16 { qs[j] & 0xF } else { qs[j - 16] >> 4 };
    match TY {
        Q8_0 => v
            .iter_mut()
            .zip(&b[2..34])
            .for_each(|(v, &q)| *v = q as i8 as i32),
        IQ4_NL => {
            for (j, v) in v.iter_mut().enumerate() {
                *v = KVALUES_IQ4NL[usize::from(nib(&b[2..18], j))] as i32;
            }
        }
        MXFP4 => {
            for (j, v) in v.iter_mut().enumerate() {
                *v = KVALUES_MXFP4[usize::from(nib(&b[1..17], j))] as i32;
            }
        }
        Q4_0 | Q4_1 => {
            let (qs, sub) = if TY == Q4_0 {
                (&b[2..18], 8)
            } else {
                (&b[4..20], 0)
            };
            for (j, v) in v.iter_mut().enumerate() {
                *v = nib(qs, j) as i32 - sub;
            }
        }
        _ => {
            let (o, sub) = if TY == Q5_0 { (2, 16) } else { (4, 0) };
            let qh = u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
            let qs = &b[o + 4..o + 20];
            for (j, v) in v.iter_mut().enumerate() {
                let hi = ((qh >> j) & 1) << 4;
                *v = (nib(qs, j) as u32 | hi) as i32 - sub;
            }
        }
    }
    (v, d, m)
}

/// The scalar reference dot of one row with token `t`.
fn dot<const TY: u8>(row: &[u8], acts: &QuantActs, t: usize) -> f32 {
    let (qs, d) = (acts.tok_qs(t), acts.tok_d(t));
    let s = if has_min(TY) { acts.tok_s(t) } else { &[] };
    let mut sum = 0.0f32;
    for (b, blk) in row.chunks_exact(block_bytes(TY)).enumerate() {
        let (v, dw, m) = block_values::<TY>(blk);
        let a = &qs[QK * b..QK * (b + 1)];
        let isum: i32 = v.iter().zip(a).map(|(&w, &a)| w * a as i32).sum();
        sum += isum as f32 * (dw * d[b]);
        if has_min(TY) {
            sum += m * s[b];
        }
    }
    sum
}

unsafe fn tile<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    for r in 0..R {
        let row = std::slice::from_raw_parts(a.w.add(r * a.w_stride), a.row_bytes);
        for t in 0..T {
            *a.y.add((a.t0 + t) * a.y_stride + a.r0 + r * a.y_step) =
                dot::<TY>(row, a.acts, a.t0 + t);
        }
    }
}
