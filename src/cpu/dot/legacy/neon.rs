//! NEON kernels for the 32-blocks: weights unpacked to signed bytes, signed dots (`sdot`
//! where available), `d_w * d_a` per block as ggml's NEON path.

#![allow(clippy::needless_range_loop)]

use std::arch::aarch64::*;
use std::ptr::read_unaligned;

use super::{block_bytes, block_scale, has_min, IQ4_NL, MXFP4, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
use crate::cpu::dot::neon::dot;
use crate::cpu::dot::{tile_table, Tile, TileEntry};
use crate::cpu::features::cpu_features;
use crate::quant::blocks::{f16_at, KVALUES_IQ4NL};
use crate::quant::grids::KVALUES_MXFP4;

pub fn tiles(c: u8) -> &'static [TileEntry] {
    macro_rules! shapes {
        ($f:ident, $ty:tt) => {
            tile_table!($f, $ty; (1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (2, 4), (4, 1), (4, 2), (4, 4))
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
        Q8_0 => pick!(Q8_0),
        Q4_0 => pick!(Q4_0),
        Q5_0 => pick!(Q5_0),
        Q4_1 => pick!(Q4_1),
        IQ4_NL => pick!(IQ4_NL),
        MXFP4 => pick!(MXFP4),
        _ => pick!(Q5_1),
    }
}

/// Bytes with 0xFF where the matching bit of the 16-bit `bits` is set.
#[inline(always)]
unsafe fn bit_bytes(bits: u32) -> uint8x16_t {
    let b = vcombine_u8(vdup_n_u8(bits as u8), vdup_n_u8((bits >> 8) as u8));
    let sel = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    vtstq_u8(b, sel)
}

#[inline(always)]
unsafe fn unpack<const TY: u8>(p: *const u8) -> (int8x16_t, int8x16_t, f32, f32) {
    let blk = std::slice::from_raw_parts(p, block_bytes(TY));
    let d = block_scale::<TY>(blk);
    let m = if has_min(TY) { f16_at(blk, 2) } else { 0.0 };
    if TY == Q8_0 {
        return (
            vld1q_s8(p.add(2) as *const i8),
            vld1q_s8(p.add(18) as *const i8),
            d,
            m,
        );
    }
    let qs = match TY {
        MXFP4 => 1,
        Q4_0 | IQ4_NL => 2,
        Q4_1 => 4,
        Q5_0 => 6,
        _ => 8,
    };
    let x = vld1q_u8(p.add(qs));
    let mut lo = vandq_u8(x, vdupq_n_u8(0x0F));
    let mut hi = vshrq_n_u8::<4>(x);
    if TY == IQ4_NL || TY == MXFP4 {
        // The signed levels, looked up by nibble.
        let table = if TY == MXFP4 {
            &KVALUES_MXFP4
        } else {
            &KVALUES_IQ4NL
        };
        let levels = vld1q_s8(table.as_ptr());
        return (vqtbl1q_s8(levels, lo), vqtbl1q_s8(levels, hi), d, m);
    }
    if TY == Q5_0 || TY == Q5_1 {
        let qh = read_unaligned(p.add(if TY == Q5_0 { 2 } else { 4 }) as *const u32);
        let sixteen = vdupq_n_u8(16);
        lo = vorrq_u8(lo, vandq_u8(bit_bytes(qh), sixteen));
        hi = vorrq_u8(hi, vandq_u8(bit_bytes(qh >> 16), sixteen));
    }
    let sub = vdupq_n_s8(match TY {
        Q4_0 => 8,
        Q5_0 => 16,
        _ => 0,
    });
    let lo = vsubq_s8(vreinterpretq_s8_u8(lo), sub);
    let hi = vsubq_s8(vreinterpretq_s8_u8(hi), sub);
    (lo, hi, d, m)
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
    let zero = vdupq_n_s32(0);
    let mut acc = [[vdupq_n_f32(0.0); T]; R];
    let mut mins = [[0.0f32; T]; R];
    let mut w = [(vdupq_n_s8(0), vdupq_n_s8(0), 0.0f32, 0.0f32); R];
    for b in 0..nb {
        for r in 0..R {
            w[r] = unpack::<TY>(a.w.add(r * a.w_stride + b * bs));
        }
        for t in 0..T {
            let a0 = vld1q_s8(qs[t].add(32 * b));
            let a1 = vld1q_s8(qs[t].add(32 * b + 16));
            let da = *ds[t].add(b);
            for r in 0..R {
                let (lo, hi, d, m) = w[r];
                let p = dot::<DOT>(dot::<DOT>(zero, lo, a0), hi, a1);
                acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(p), d * da);
                if has_min(TY) {
                    mins[r][t] += m * *ss[t].add(b);
                }
            }
        }
    }
    for r in 0..R {
        for t in 0..T {
            *a.y.add((a.t0 + t) * a.y_stride + a.r0 + r * a.y_step) =
                vaddvq_f32(acc[r][t]) + mins[r][t];
        }
    }
}
