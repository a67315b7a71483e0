//! The low-bit i-quants (IQ1_S ... IQ3_S) as every ISA's kernels name them: type codes, block
//! sizes, scale layouts and the factors of their integer form.

use crate::quant::iquants::{
    BlockIq3S, BlockIq3Xxs, IQ1_M_BYTES, IQ1_S_BYTES, IQ2_S_BYTES, IQ2_XS_BYTES, IQ2_XXS_BYTES,
    IQ3_S_BYTES, IQ3_XXS_BYTES,
};
use crate::quant::GgmlType;

pub const IQ2_XXS: u8 = 0;

pub const IQ2_XS: u8 = 1;

pub const IQ2_S: u8 = 2;

pub const IQ3_XXS: u8 = 3;

pub const IQ3_S: u8 = 4;

pub const IQ1_S: u8 = 5;

pub const IQ1_M: u8 = 6;

pub const fn block_bytes(ty: u8) -> usize {
    match ty {
        IQ2_XXS => IQ2_XXS_BYTES,
        IQ2_XS => IQ2_XS_BYTES,
        IQ2_S => IQ2_S_BYTES,
        IQ3_XXS => IQ3_XXS_BYTES,
        IQ3_S => IQ3_S_BYTES,
        IQ1_S => IQ1_S_BYTES,
        _ => IQ1_M_BYTES,
    }
}

/// Whether the type's scales change every 16 weights (IQ2_XS, IQ2_S, IQ1_M) rather than 32.
pub const fn scales_per_16(ty: u8) -> bool {
    matches!(ty, IQ2_XS | IQ2_S | IQ1_M)
}

/// The power of two `F` of the integer form.
pub const fn factor(ty: u8) -> f32 {
    match ty {
        IQ3_XXS => BlockIq3Xxs::FACTOR,
        IQ3_S => BlockIq3S::FACTOR,
        // IQ2 levels and IQ1 quants are in eighths.
        _ => 0.125,
    }
}

pub(crate) fn code(ty: GgmlType) -> Option<u8> {
    match ty {
        GgmlType::IQ2_XXS => Some(IQ2_XXS),
        GgmlType::IQ2_XS => Some(IQ2_XS),
        GgmlType::IQ2_S => Some(IQ2_S),
        GgmlType::IQ3_XXS => Some(IQ3_XXS),
        GgmlType::IQ3_S => Some(IQ3_S),
        GgmlType::IQ1_S => Some(IQ1_S),
        GgmlType::IQ1_M => Some(IQ1_M),
        _ => None,
    }
}
