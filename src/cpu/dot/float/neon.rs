//! NEON kernels for F32/F16/BF16 weights: 4 weights widened to f32 per vector, one FMA per
//! (row, token); the last `cols % 4` go through a zero-padded copy.

#![allow(clippy::needless_range_loop)]

use std::arch::aarch64::*;

use super::{weight, BF16, F16, F32};
use crate::cpu::dot::neon::f16x4_to_f32;
use crate::cpu::dot::{tile_table, Tile, TileEntry};

pub fn tiles(c: u8) -> &'static [TileEntry] {
    macro_rules! shapes {
        ($ty:tt) => {
            tile_table!(tile, $ty; (1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (2, 4), (4, 1), (4, 2), (4, 4))
        };
    }
    match c {
        F32 => shapes!(F32),
        F16 => shapes!(F16),
        _ => shapes!(BF16),
    }
}

#[inline(always)]
unsafe fn weights<const TY: u8>(p: *const u8, c: usize) -> float32x4_t {
    match TY {
        F32 => vld1q_f32(p.add(4 * c) as *const f32),
        F16 => f16x4_to_f32(vld1_u16(p.add(2 * c) as *const u16)),
        _ => vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p.add(2 * c) as *const u16))),
    }
}

unsafe fn tile<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    let cols = a.cols;
    let mut xs = [std::ptr::null::<f32>(); T];
    for t in 0..T {
        xs[t] = a.x.as_ptr().add((a.t0 + t) * cols);
    }
    let mut acc = [[vdupq_n_f32(0.0); T]; R];
    let mut w = [vdupq_n_f32(0.0); R];
    let full = cols / 4 * 4;
    let mut c = 0;
    while c < cols {
        let tail = c >= full;
        for r in 0..R {
            let p = a.w.add(r * a.w_stride);
            w[r] = if tail {
                let row = std::slice::from_raw_parts(p, a.row_bytes);
                let mut tw = [0.0f32; 4];
                for (k, v) in tw.iter_mut().enumerate().take(cols - c) {
                    *v = weight::<TY>(row, c + k);
                }
                vld1q_f32(tw.as_ptr())
            } else {
                weights::<TY>(p, c)
            };
        }
        for t in 0..T {
            let xv = if tail {
                let mut tx = [0.0f32; 4];
                tx[..cols - c].copy_from_slice(std::slice::from_raw_parts(xs[t].add(c), cols - c));
                vld1q_f32(tx.as_ptr())
            } else {
                vld1q_f32(xs[t].add(c))
            };
            for r in 0..R {
                acc[r][t] = vfmaq_f32(acc[r][t], w[r], xv);
            }
        }
        c += 4;
    }
    for r in 0..R {
        for t in 0..T {
            *a.y.add((a.t0 + t) * a.y_stride + a.r0 + r * a.y_step) = vaddvq_f32(acc[r][t]);
        }
    }
}
