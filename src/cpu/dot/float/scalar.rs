//! The portable kernels for F32, F16 and BF16: plain Rust, the reference every SIMD path is tested
//! against.

use super::formats::*;
use crate::cpu::dot::{tile_table, Tile, TileEntry};

pub(super) fn scalar_tiles(c: u8) -> &'static [TileEntry] {
    match c {
        F32 => tile_table!(tile, F32; (1, 1)),
        F16 => tile_table!(tile, F16; (1, 1)),
        _ => tile_table!(tile, BF16; (1, 1)),
    }
}

/// The scalar reference: a plain sequential sum.
unsafe fn tile<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    for r in 0..R {
        let row = std::slice::from_raw_parts(a.w.add(r * a.w_stride), a.row_bytes);
        for t in 0..T {
            let x = &a.x[(a.t0 + t) * a.cols..(a.t0 + t + 1) * a.cols];
            let mut s = 0.0f32;
            for (c, &xv) in x.iter().enumerate() {
                s += weight::<TY>(row, c) * xv;
            }
            *a.y.add((a.t0 + t) * a.y_stride + a.r0 + r * a.y_step) = s;
        }
    }
}
