//! GGML weight blocks read in place (ggml-common.h layouts) and scalar row dequantization.
//!
//! The kernels never copy weights out of the memory map: they read these byte layouts
//! directly, unaligned. Row dequantization (for the f32-activation path and the tests'
//! reference) is the crate's own, `crate::quant`.

use crate::quant::GgmlType;

use super::error::KernelError;

/// Weights in a `Q*_K` super-block.
pub const QK_K: usize = 256;
/// Weights in a Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 block.
pub const QK: usize = 32;

/// The weight types the kernels compute on.
pub const KERNEL_TYPES: [GgmlType; 11] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// Little-endian f16 at `b[off..off + 2]`, widened.
#[inline(always)]
pub fn f16_at(b: &[u8], off: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

/// Little-endian bf16 at `b[off..off + 2]`, widened (exact: bf16 is the top half of an f32).
#[inline(always)]
pub fn bf16_at(b: &[u8], off: usize) -> f32 {
    f32::from_bits((u16::from_le_bytes([b[off], b[off + 1]]) as u32) << 16)
}

/// Rounds through f16 as ggml's `GGML_FP32_TO_FP16` then `GGML_FP16_TO_FP32` do.
#[inline(always)]
pub fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// Scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block: ggml's `get_scale_min_k4`.
#[inline(always)]
pub fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// All eight (scale, min) pairs of a Q4_K/Q5_K block's 12 packed scale bytes.
#[inline(always)]
pub fn scales_mins_k4(q: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        (sc[j], mn[j]) = scale_min_k4(j, q);
    }
    (sc, mn)
}

/// Checks that `cols` is a whole number of `ty` blocks and returns the bytes of one row.
pub fn row_bytes(ty: GgmlType, cols: usize) -> Result<usize, KernelError> {
    if !KERNEL_TYPES.contains(&ty) {
        return Err(KernelError::UnsupportedType(ty));
    }
    let block = ty.block_size();
    if !cols.is_multiple_of(block) {
        return Err(KernelError::PartialBlock { ty, cols, block });
    }
    (cols / block)
        .checked_mul(ty.type_size())
        .ok_or(KernelError::Overflow)
}

/// Dequantizes one row (`row.len()` bytes, `out.len()` weights) with ggml's formulas: the
/// crate's own dequantization (`crate::quant`, checked bit for bit against the F32 twins),
/// with the kernels' error type.
pub fn dequantize_row(ty: GgmlType, row: &[u8], out: &mut [f32]) -> Result<(), KernelError> {
    let expected = row_bytes(ty, out.len())?;
    if row.len() != expected {
        return Err(KernelError::WeightBytes {
            ty,
            rows: 1,
            cols: out.len(),
            expected,
            got: row.len(),
        });
    }
    crate::quant::dequantize_row(ty, row, out).map_err(|_| KernelError::UnsupportedType(ty))
}
