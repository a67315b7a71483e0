//! Blocks of 32 (Q8_0, Q4_0, Q5_0, IQ4_NL, Q4_1, Q5_1) as every ISA's kernels name them: type
//! codes, block sizes and the decoding helpers they share.

use crate::quant::blocks::{
    IQ4_NL_BYTES, Q4_0_BYTES, Q4_1_BYTES, Q5_0_BYTES, Q5_1_BYTES, Q8_0_BYTES,
};
use crate::quant::iquants::MXFP4_BYTES;
use crate::quant::GgmlType;

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
