//! F32, F16 and BF16 as every ISA's kernels name them: type codes and the one-weight reader
//! they share.

use crate::quant::blocks::{bf16_at, f16_at};
use crate::quant::GgmlType;

pub const F32: u8 = 0;
pub const F16: u8 = 1;
pub const BF16: u8 = 2;

pub(crate) fn code(ty: GgmlType) -> Option<u8> {
    match ty {
        GgmlType::F32 => Some(F32),
        GgmlType::F16 => Some(F16),
        GgmlType::BF16 => Some(BF16),
        _ => None,
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
