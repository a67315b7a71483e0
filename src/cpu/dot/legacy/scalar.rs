//! The portable kernels for blocks of 32 (Q8_0, Q4_0, Q5_0, IQ4_NL, Q4_1, Q5_1): plain Rust, the
//! reference every SIMD path is tested against.

use super::formats::*;
use crate::cpu::dot::{tile_table, Tile, TileEntry};
use crate::cpu::quantize::QuantActs;
use crate::quant::blocks::{f16_at, KVALUES_IQ4NL, QK};
use crate::quant::grids::{e8m0_half, KVALUES_MXFP4};

pub(super) fn scalar_tiles(c: u8) -> &'static [TileEntry] {
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
