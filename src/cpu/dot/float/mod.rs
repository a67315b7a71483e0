//! Float weights (F32, F16, BF16) times f32 activations, with fused multiply-adds.

use crate::quant::GgmlType;

use super::{tile_table, KernelSet, Tile, TileEntry};
use crate::cpu::features::Isa;
use crate::cpu::quantize::ActFormat;
use crate::quant::blocks::{bf16_at, f16_at};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
pub use avx2::hsum as hsum_avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

pub const F32: u8 = 0;
pub const F16: u8 = 1;
pub const BF16: u8 = 2;

fn code(ty: GgmlType) -> Option<u8> {
    match ty {
        GgmlType::F32 => Some(F32),
        GgmlType::F16 => Some(F16),
        GgmlType::BF16 => Some(BF16),
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
    Some(KernelSet {
        fmt: ActFormat::F32,
        tiles,
    })
}

fn scalar_tiles(c: u8) -> &'static [TileEntry] {
    match c {
        F32 => tile_table!(tile, F32; (1, 1)),
        F16 => tile_table!(tile, F16; (1, 1)),
        _ => tile_table!(tile, BF16; (1, 1)),
    }
}

/// Weight `c` of a float row.
#[inline(always)]
pub fn weight<const TY: u8>(row: &[u8], c: usize) -> f32 {
    match TY {
        F32 => f32::from_le_bytes([row[4 * c], row[4 * c + 1], row[4 * c + 2], row[4 * c + 3]]),
        F16 => f16_at(row, 2 * c),
        _ => bf16_at(row, 2 * c),
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
