//! Super-blocks of 256 (Q2_K ... Q6_K, IQ4_XS) as every ISA's kernels name them: type codes,
//! block sizes and the decoding helpers they share.

use crate::quant::blocks::{
    IQ4_XS_BYTES, Q2_K_BYTES, Q3_K_BYTES, Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES,
};
use crate::quant::GgmlType;

pub const Q4_K: u8 = 0;
pub const Q5_K: u8 = 1;
pub const Q6_K: u8 = 2;
pub const Q2_K: u8 = 3;
pub const Q3_K: u8 = 4;
pub const IQ4_XS: u8 = 5;

/// Whether the type's scales change every 16 weights (and its offsets or mins are summed
/// against the activations' sums per 16, `bsums16`; the others use `bsums32`).
pub const fn groups_of_16(ty: u8) -> bool {
    matches!(ty, Q6_K | Q2_K | Q3_K)
}

pub const fn block_bytes(ty: u8) -> usize {
    match ty {
        Q4_K => Q4_K_BYTES,
        Q5_K => Q5_K_BYTES,
        Q2_K => Q2_K_BYTES,
        Q3_K => Q3_K_BYTES,
        IQ4_XS => IQ4_XS_BYTES,
        _ => Q6_K_BYTES,
    }
}

pub(crate) fn code(ty: GgmlType) -> Option<u8> {
    match ty {
        GgmlType::Q4_K => Some(Q4_K),
        GgmlType::Q5_K => Some(Q5_K),
        GgmlType::Q6_K => Some(Q6_K),
        GgmlType::Q2_K => Some(Q2_K),
        GgmlType::Q3_K => Some(Q3_K),
        GgmlType::IQ4_XS => Some(IQ4_XS),
        _ => None,
    }
}

/// IQ4_XS sub-block `j`'s scale, `ls - 32`.
#[inline(always)]
pub(crate) fn iq4xs_scale(b: &[u8], j: usize) -> i32 {
    let low = (b[4 + j / 2] >> (4 * (j % 2))) & 0xF;
    let high = (u16::from_le_bytes([b[2], b[3]]) >> (2 * j)) & 3;
    (low as i32 | (high as i32) << 4) - 32
}
