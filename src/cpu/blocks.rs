//! GGML weight blocks read in place (ggml-common.h layouts) and scalar row dequantization.
//!
//! The kernels never copy weights out of the memory map: they read these byte layouts
//! directly, unaligned. The dequantization here follows ggml's `dequantize_row_*` formulas
//! exactly; it feeds the f32-activation path and the tests' exact reference.

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

/// The 5-bit value of weight `j` (0..32) of a Q5_0/Q5_1 block from its nibbles and `qh` word.
#[inline(always)]
fn q5_value(qs: &[u8], qh: u32, j: usize) -> u8 {
    let nib = if j < 16 { qs[j] & 0xF } else { qs[j - 16] >> 4 };
    nib | ((((qh >> j) & 1) as u8) << 4)
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

/// Dequantizes one row (`row.len()` bytes, `out.len()` weights) with ggml's formulas.
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
    let ts = ty.type_size();
    let bs = ty.block_size();
    for (blk, y) in row.chunks_exact(ts).zip(out.chunks_exact_mut(bs)) {
        dequantize_block(ty, blk, y);
    }
    Ok(())
}

fn dequantize_block(ty: GgmlType, b: &[u8], y: &mut [f32]) {
    match ty {
        GgmlType::F32 => y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => y[0] = f16_at(b, 0),
        GgmlType::BF16 => y[0] = bf16_at(b, 0),
        GgmlType::Q8_0 => {
            let d = f16_at(b, 0);
            for (j, v) in y.iter_mut().enumerate() {
                *v = (b[2 + j] as i8) as f32 * d;
            }
        }
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let (d, m, qs) = if ty == GgmlType::Q4_0 {
                (f16_at(b, 0), None, &b[2..18])
            } else {
                (f16_at(b, 0), Some(f16_at(b, 2)), &b[4..20])
            };
            for j in 0..16 {
                let (lo, hi) = ((qs[j] & 0xF) as i32, (qs[j] >> 4) as i32);
                match m {
                    None => {
                        y[j] = (lo - 8) as f32 * d;
                        y[j + 16] = (hi - 8) as f32 * d;
                    }
                    Some(m) => {
                        y[j] = lo as f32 * d + m;
                        y[j + 16] = hi as f32 * d + m;
                    }
                }
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let with_min = ty == GgmlType::Q5_1;
            let o = if with_min { 4 } else { 2 };
            let d = f16_at(b, 0);
            let qh = u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
            let qs = &b[o + 4..o + 20];
            for (j, v) in y.iter_mut().enumerate() {
                let q = q5_value(qs, qh, j) as i32;
                *v = if with_min {
                    q as f32 * d + f16_at(b, 2)
                } else {
                    (q - 16) as f32 * d
                };
            }
        }
        GgmlType::Q4_K | GgmlType::Q5_K => dequantize_q45k(ty == GgmlType::Q5_K, b, y),
        GgmlType::Q6_K => dequantize_q6k(b, y),
        _ => unreachable!("row_bytes rejects types without kernels"),
    }
}

fn dequantize_q45k(five: bool, b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let (qh, qs) = if five {
        (&b[16..48], &b[48..176])
    } else {
        (&b[0..0], &b[16..144])
    };
    for j in 0..4 {
        let q = &qs[32 * j..32 * j + 32];
        for half in 0..2 {
            let (sc, m) = scale_min_k4(2 * j + half, scales);
            let (d1, m1) = (d * sc as f32, dmin * m as f32);
            for l in 0..32 {
                let mut v = if half == 0 { q[l] & 0xF } else { q[l] >> 4 };
                if five && qh[l] & (1 << (2 * j + half)) != 0 {
                    v += 16;
                }
                y[64 * j + 32 * half + l] = d1 * v as f32 - m1;
            }
        }
    }
}

fn dequantize_q6k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    for n in 0..2 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let sc = &b[192 + 8 * n..192 + 8 * n + 8];
        let y = &mut y[128 * n..128 * n + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}
