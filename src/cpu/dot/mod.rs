//! Tile kernels: `R` weight rows times `T` tokens, each a full-length dot product.
//!
//! One folder per weight family (float, legacy 32-blocks, K-quants, low-bit i-quants), one file
//! per ISA inside.
//! Every kernel computes each (row, token) output with the same sequence of operations
//! whatever the tile shape, so results do not depend on tiling or on the thread split.

use crate::quant::GgmlType;

use super::error::KernelError;
use super::features::Isa;

pub mod float;
pub mod iquant;
pub mod kquant;
pub mod legacy;
#[cfg(target_arch = "aarch64")]
pub mod neon;
pub mod panel;
mod tile;

pub(crate) use tile::tile_table;
pub use tile::{KernelSet, Tile, TileEntry, TileFn, PREFETCH};

/// The kernels for weight type `ty` on `isa`; `quantized` picks the integer path for the
/// quantized types (false: dequantize to f32 and use the float kernels).
pub fn kernel_set(ty: GgmlType, isa: Isa, quantized: bool) -> Result<KernelSet, KernelError> {
    let set = match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => float::kernels(ty, isa),
        _ if !quantized => float::kernels(GgmlType::F32, isa),
        GgmlType::Q8_0
        | GgmlType::Q4_0
        | GgmlType::Q4_1
        | GgmlType::Q5_0
        | GgmlType::Q5_1
        | GgmlType::IQ4_NL
        | GgmlType::MXFP4 => legacy::kernels(ty, isa),
        GgmlType::Q2_K
        | GgmlType::Q3_K
        | GgmlType::Q4_K
        | GgmlType::Q5_K
        | GgmlType::Q6_K
        | GgmlType::IQ4_XS => kquant::kernels(ty, isa),
        GgmlType::IQ2_XXS
        | GgmlType::IQ2_XS
        | GgmlType::IQ2_S
        | GgmlType::IQ3_XXS
        | GgmlType::IQ3_S
        | GgmlType::IQ1_S
        | GgmlType::IQ1_M => iquant::kernels(ty, isa),
        _ => None,
    };
    set.ok_or(KernelError::UnsupportedType(ty))
}
