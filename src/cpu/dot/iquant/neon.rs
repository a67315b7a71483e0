//! NEON kernels for the i-quants: each sub-block's signed quants built 16 at a time from grid
//! lookups (two 8-byte points per vector), the signs applied by a conditional negate
//! (`(g ^ m) - m` with `m` the sign bits spread to bytes by `cmtst`), IQ1's delta added; then
//! signed dots (`sdot` where available) scaled per 16 weights into 32-bit sums per super-block.

#![allow(clippy::needless_range_loop)]

use std::arch::aarch64::*;

use super::{block_bytes, factor, IQ1_M, IQ1_S, IQ2_S, IQ2_XS, IQ2_XXS, IQ3_S, IQ3_XXS};
use crate::cpu::dot::neon::dot;
use crate::cpu::dot::{tile_table, Tile, TileEntry};
use crate::cpu::features::cpu_features;
use crate::quant::blocks::f16_at;
use crate::quant::grids::{
    IQ1S_GRID8, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS,
};
use crate::quant::iquants::BlockIq1M;

pub fn tiles(c: u8) -> &'static [TileEntry] {
    macro_rules! shapes {
        ($f:ident, $ty:tt) => {
            tile_table!($f, $ty; (1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (4, 1))
        };
    }
    macro_rules! pick {
        ($ty:tt) => {
            if cpu_features().dotprod {
                shapes!(tile_dot, $ty)
            } else {
                shapes!(tile_plain, $ty)
            }
        };
    }
    match c {
        IQ2_XXS => pick!(IQ2_XXS),
        IQ2_XS => pick!(IQ2_XS),
        IQ2_S => pick!(IQ2_S),
        IQ3_XXS => pick!(IQ3_XXS),
        IQ3_S => pick!(IQ3_S),
        IQ1_S => pick!(IQ1_S),
        _ => pick!(IQ1_M),
    }
}

/// One sub-block of 32 weights before vectorizing: four 8-weight grid points, per group the
/// sign bits (IQ2/IQ3) or the delta's sign (IQ1: 0xFF negative), and the scales per 16.
struct Parts {
    points: [u64; 4],
    signs: [u8; 4],
    ls: [i32; 2],
}

/// Two 4-weight IQ3 points as one 8-weight point.
#[inline(always)]
fn pair(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | u64::from(hi) << 32
}

/// The sign bytes of four groups from 7-bit sign indices at bits 0, 7, 14, 21 of `aux`.
#[inline(always)]
fn parity_signs(aux: u32) -> [u8; 4] {
    std::array::from_fn(|l| KSIGNS[((aux >> (7 * l)) & 127) as usize])
}

#[inline(always)]
unsafe fn parts<const TY: u8>(b: &[u8], ib: usize) -> Parts {
    let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let byte = |at: usize| u32::from(b[at]);
    match TY {
        IQ2_XXS => {
            let aux = u32_at(6 + 8 * ib);
            let ls = 2 * (aux >> 28) as i32 + 1;
            Parts {
                points: std::array::from_fn(|l| IQ2XXS_GRID[b[2 + 8 * ib + l] as usize]),
                signs: parity_signs(aux),
                ls: [ls, ls],
            }
        }
        IQ2_XS => {
            let qs: [u32; 4] =
                std::array::from_fn(|l| byte(2 + 8 * ib + 2 * l) | byte(3 + 8 * ib + 2 * l) << 8);
            let sc = byte(66 + ib) as i32;
            Parts {
                points: qs.map(|v| IQ2XS_GRID[(v & 511) as usize]),
                signs: qs.map(|v| KSIGNS[(v >> 9) as usize]),
                ls: [2 * (sc & 15) + 1, 2 * (sc >> 4) + 1],
            }
        }
        IQ2_S => {
            let qh = byte(66 + ib);
            let sc = byte(74 + ib) as i32;
            Parts {
                points: std::array::from_fn(|l| {
                    IQ2S_GRID[(byte(2 + 4 * ib + l) | ((qh >> (2 * l)) & 3) << 8) as usize]
                }),
                signs: std::array::from_fn(|l| b[34 + 4 * ib + l]),
                ls: [2 * (sc & 15) + 1, 2 * (sc >> 4) + 1],
            }
        }
        IQ3_XXS => {
            let aux = u32_at(66 + 4 * ib);
            let ls = 2 * (aux >> 28) as i32 + 1;
            let g = |k: usize| IQ3XXS_GRID[b[2 + 8 * ib + k] as usize];
            Parts {
                points: std::array::from_fn(|l| pair(g(2 * l), g(2 * l + 1))),
                signs: parity_signs(aux),
                ls: [ls, ls],
            }
        }
        IQ3_S => {
            let qh = byte(66 + ib);
            let g = |k: usize| IQ3S_GRID[(byte(2 + 8 * ib + k) | ((qh >> k) & 1) << 8) as usize];
            let ls = 2 * ((byte(106 + ib / 2) >> (4 * (ib % 2))) & 15) as i32 + 1;
            Parts {
                points: std::array::from_fn(|l| pair(g(2 * l), g(2 * l + 1))),
                signs: std::array::from_fn(|l| b[74 + 4 * ib + l]),
                ls: [ls, ls],
            }
        }
        IQ1_S => {
            let qh = byte(34 + 2 * ib) | byte(35 + 2 * ib) << 8;
            let ls = 2 * ((qh >> 12) & 7) as i32 + 1;
            let neg = if qh & 0x8000 != 0 { 0xFF } else { 0 };
            Parts {
                points: std::array::from_fn(|l| {
                    IQ1S_GRID8[(byte(2 + 4 * ib + l) | ((qh >> (3 * l)) & 7) << 8) as usize]
                }),
                signs: [neg; 4],
                ls: [ls, ls],
            }
        }
        _ => {
            let nib = |k: usize| (byte(32 + k / 2) >> (4 * (k % 2))) & 15;
            let w = byte(48 + 2 * (ib / 2)) | byte(49 + 2 * (ib / 2)) << 8;
            let shift = 6 * (ib % 2);
            Parts {
                points: std::array::from_fn(|l| {
                    let k = 4 * ib + l;
                    IQ1S_GRID8[(byte(k) | (nib(k) & 7) << 8) as usize]
                }),
                signs: std::array::from_fn(|l| if nib(4 * ib + l) & 8 != 0 { 0xFF } else { 0 }),
                ls: [
                    2 * ((w >> shift) & 7) as i32 + 1,
                    2 * ((w >> (shift + 3)) & 7) as i32 + 1,
                ],
            }
        }
    }
}

/// Weights 16h..16h+16 of a sub-block as signed bytes.
#[inline(always)]
unsafe fn signed16<const TY: u8>(p: &Parts, h: usize) -> int8x16_t {
    let g = vreinterpretq_s8_u64(vcombine_u64(
        vcreate_u64(p.points[2 * h]),
        vcreate_u64(p.points[2 * h + 1]),
    ));
    let (s0, s1) = (p.signs[2 * h], p.signs[2 * h + 1]);
    if TY == IQ1_S || TY == IQ1_M {
        // 8g + delta: -1 where the group's delta is negative, else +1.
        let m = vcombine_s8(vdup_n_s8(s0 as i8), vdup_n_s8(s1 as i8));
        return vaddq_s8(g, vorrq_s8(m, vdupq_n_s8(1)));
    }
    let bits = vcombine_u8(vdup_n_u8(s0), vdup_n_u8(s1));
    let lanes = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    let m = vreinterpretq_s8_u8(vtstq_u8(bits, lanes));
    vsubq_s8(veorq_s8(g, m), m)
}

/// The super-block scale `d` of block `b`.
#[inline(always)]
fn super_scale<const TY: u8>(b: &[u8]) -> f32 {
    if TY == IQ1_M {
        BlockIq1M::new(b.try_into().expect("one block")).d()
    } else {
        f16_at(b, 0)
    }
}

unsafe fn tile_plain<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    body::<TY, false, R, T>(a)
}

unsafe fn tile_dot<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    body::<TY, true, R, T>(a)
}

#[inline(always)]
unsafe fn body<const TY: u8, const DOT: bool, const R: usize, const T: usize>(a: &Tile<'_>) {
    let bs = block_bytes(TY);
    let nsb = a.cols / 256;
    let acts = a.acts;
    let qs: [*const i8; T] = std::array::from_fn(|t| acts.tok_qs(a.t0 + t).as_ptr());
    let ds: [*const f32; T] = std::array::from_fn(|t| acts.tok_d(a.t0 + t).as_ptr());
    let zero = vdupq_n_s32(0);
    let mut acc = [[vdupq_n_f32(0.0); T]; R];
    let mut w = [(vdupq_n_s8(0), vdupq_n_s8(0), [0i32; 2]); R];
    for sb in 0..nsb {
        let blocks: [&[u8]; R] = std::array::from_fn(|r| {
            std::slice::from_raw_parts(a.w.add(r * a.w_stride + sb * bs), bs)
        });
        let d: [f32; R] = std::array::from_fn(|r| super_scale::<TY>(blocks[r]));
        let mut isum = [[zero; T]; R];
        for ib in 0..8 {
            for r in 0..R {
                let p = parts::<TY>(blocks[r], ib);
                w[r] = (signed16::<TY>(&p, 0), signed16::<TY>(&p, 1), p.ls);
            }
            for t in 0..T {
                let a0 = vld1q_s8(qs[t].add(256 * sb + 32 * ib));
                let a1 = vld1q_s8(qs[t].add(256 * sb + 32 * ib + 16));
                for r in 0..R {
                    let (w0, w1, ls) = w[r];
                    let s = vmlaq_n_s32(isum[r][t], dot::<DOT>(zero, w0, a0), ls[0]);
                    isum[r][t] = vmlaq_n_s32(s, dot::<DOT>(zero, w1, a1), ls[1]);
                }
            }
        }
        for t in 0..T {
            let da = *ds[t].add(sb) * factor(TY);
            for r in 0..R {
                acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(isum[r][t]), d[r] * da);
            }
        }
    }
    for r in 0..R {
        for t in 0..T {
            *a.y.add((a.t0 + t) * a.y_stride + a.r0 + r * a.y_step) = vaddvq_f32(acc[r][t]);
        }
    }
}
