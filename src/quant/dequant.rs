//! Dequantization of GGUF tensor rows to f32, bit-identical to llama.cpp's `dequantize_row_*`.
//!
//! The inference path calls [`dequantize_row`] for weight rows on the fly, so the row functions
//! write into a caller's buffer and never allocate. Every length is checked first: a bad length
//! is a [`QuantError`], never a panic or a partial write.

use super::blocks::{
    bf16_at, f16_to_f32, BlockIq4Nl, BlockIq4Xs, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0,
    BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0,
};
use super::ggml_type::{supported_type_names, GgmlType};
use super::iquants::{
    BlockIq1M, BlockIq1S, BlockIq2S, BlockIq2Xs, BlockIq2Xxs, BlockIq3S, BlockIq3Xxs, BlockMxfp4,
};

/// Why a row could not be dequantized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    #[error("unsupported tensor type {0} (supported: {list})", list = supported_type_names())]
    Unsupported(GgmlType),
    #[error(
        "a row of {len} weights is not a whole number of {ty} blocks ({block_size} weights each)"
    )]
    PartialBlock {
        ty: GgmlType,
        len: usize,
        block_size: usize,
    },
    #[error("{ty} data for {weights} weights must be {expected} bytes, got {actual}")]
    SourceLength {
        ty: GgmlType,
        weights: usize,
        expected: usize,
        actual: usize,
    },
    #[error("{n_rows} rows of {row_len} weights are too many to hold in memory")]
    TooLarge { n_rows: usize, row_len: usize },
}

/// Dequantize one row (or any whole number of blocks) of type `ty` from `src` into `dst`.
/// `dst.len()` is the number of weights; `src` must hold exactly their bytes.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    match ty {
        GgmlType::F32 => dequantize_f32(src, dst),
        GgmlType::F16 => dequantize_f16(src, dst),
        GgmlType::BF16 => dequantize_bf16(src, dst),
        GgmlType::Q8_0 => dequantize_q8_0(src, dst),
        GgmlType::Q4_0 => dequantize_q4_0(src, dst),
        GgmlType::Q4_1 => dequantize_q4_1(src, dst),
        GgmlType::Q5_0 => dequantize_q5_0(src, dst),
        GgmlType::Q5_1 => dequantize_q5_1(src, dst),
        GgmlType::Q4_K => dequantize_q4_k(src, dst),
        GgmlType::Q5_K => dequantize_q5_k(src, dst),
        GgmlType::Q6_K => dequantize_q6_k(src, dst),
        GgmlType::Q2_K => dequantize_q2_k(src, dst),
        GgmlType::Q3_K => dequantize_q3_k(src, dst),
        GgmlType::IQ4_NL => dequantize_iq4_nl(src, dst),
        GgmlType::IQ4_XS => dequantize_iq4_xs(src, dst),
        GgmlType::IQ2_XXS => dequantize_iq2_xxs(src, dst),
        GgmlType::IQ2_XS => dequantize_iq2_xs(src, dst),
        GgmlType::IQ2_S => dequantize_iq2_s(src, dst),
        GgmlType::IQ3_XXS => dequantize_iq3_xxs(src, dst),
        GgmlType::IQ3_S => dequantize_iq3_s(src, dst),
        GgmlType::IQ1_S => dequantize_iq1_s(src, dst),
        GgmlType::IQ1_M => dequantize_iq1_m(src, dst),
        GgmlType::MXFP4 => dequantize_mxfp4(src, dst),
        other => Err(QuantError::Unsupported(other)),
    }
}

/// Dequantize `n_rows` rows of `row_len` weights each into a new vector (row-major).
pub fn dequantize_rows(
    ty: GgmlType,
    src: &[u8],
    n_rows: usize,
    row_len: usize,
) -> Result<Vec<f32>, QuantError> {
    if !ty.is_supported() {
        return Err(QuantError::Unsupported(ty));
    }
    check_whole_blocks(ty, row_len)?;
    let too_large = QuantError::TooLarge { n_rows, row_len };
    let weights = n_rows.checked_mul(row_len).ok_or(too_large.clone())?;
    let expected = (weights / ty.block_size())
        .checked_mul(ty.type_size())
        .ok_or(too_large)?;
    // Checked before allocating, so a bad size never asks for a huge buffer.
    check_source(ty, weights, expected, src.len())?;
    let mut out = vec![0.0; weights];
    // Rows are whole blocks, so the rows together are one run of blocks.
    dequantize_row(ty, src, &mut out)?;
    Ok(out)
}

fn check_whole_blocks(ty: GgmlType, len: usize) -> Result<(), QuantError> {
    let block_size = ty.block_size();
    if len.is_multiple_of(block_size) {
        Ok(())
    } else {
        Err(QuantError::PartialBlock {
            ty,
            len,
            block_size,
        })
    }
}

fn check_source(
    ty: GgmlType,
    weights: usize,
    expected: usize,
    actual: usize,
) -> Result<(), QuantError> {
    if expected == actual {
        Ok(())
    } else {
        Err(QuantError::SourceLength {
            ty,
            weights,
            expected,
            actual,
        })
    }
}

/// A run of `B`-byte blocks and the `W`-weight outputs they dequantize into.
type BlockRun<'s, 'd, const B: usize, const W: usize> = (&'s [[u8; B]], &'d mut [[f32; W]]);

/// `src` and `dst` as matching runs of `B`-byte blocks and `W`-weight outputs, after checking
/// that `dst` is whole blocks and `src` exactly their bytes.
fn split_blocks<'s, 'd, const B: usize, const W: usize>(
    ty: GgmlType,
    src: &'s [u8],
    dst: &'d mut [f32],
) -> Result<BlockRun<'s, 'd, B, W>, QuantError> {
    debug_assert_eq!((ty.type_size(), ty.block_size()), (B, W));
    check_whole_blocks(ty, dst.len())?;
    let expected = dst.len() / W * B;
    check_source(ty, dst.len(), expected, src.len())?;
    let (blocks, _) = src.as_chunks::<B>();
    let (outs, _) = dst.as_chunks_mut::<W>();
    Ok((blocks, outs))
}

/// F32: little-endian copy.
pub fn dequantize_f32(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    let (src, dst) = split_blocks::<4, 1>(GgmlType::F32, src, dst)?;
    for (s, d) in src.iter().zip(dst.as_flattened_mut()) {
        *d = f32::from_le_bytes(*s);
    }
    Ok(())
}

/// F16: exact widening (every f16 is an f32), see [`f16_to_f32`].
pub fn dequantize_f16(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    let (src, dst) = split_blocks::<2, 1>(GgmlType::F16, src, dst)?;
    for (s, d) in src.iter().zip(dst.as_flattened_mut()) {
        *d = f16_to_f32(u16::from_le_bytes(*s));
    }
    Ok(())
}

/// BF16: the top half of an f32, so widening is a 16-bit shift (ggml's `GGML_BF16_TO_FP32`).
pub fn dequantize_bf16(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    let (src, dst) = split_blocks::<2, 1>(GgmlType::BF16, src, dst)?;
    for (s, d) in src.iter().zip(dst.as_flattened_mut()) {
        *d = bf16_at(s, 0);
    }
    Ok(())
}

/// Defines a row function over one block view: split, then dequantize block by block.
macro_rules! block_row_fn {
    ($(#[$doc:meta])* $name:ident, $block:ident, $ty:expr) => {
        $(#[$doc])*
        pub fn $name(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
            let (src, dst) =
                split_blocks::<{ $block::BYTES }, { $block::WEIGHTS }>($ty, src, dst)?;
            for (s, d) in src.iter().zip(dst) {
                $block::new(s).dequantize(d);
            }
            Ok(())
        }
    };
}

block_row_fn!(
    /// Q8_0: see [`BlockQ8_0`].
    dequantize_q8_0, BlockQ8_0, GgmlType::Q8_0
);
block_row_fn!(
    /// Q4_0: see [`BlockQ4_0`].
    dequantize_q4_0, BlockQ4_0, GgmlType::Q4_0
);
block_row_fn!(
    /// Q4_1: see [`BlockQ4_1`].
    dequantize_q4_1, BlockQ4_1, GgmlType::Q4_1
);
block_row_fn!(
    /// Q5_0: see [`BlockQ5_0`].
    dequantize_q5_0, BlockQ5_0, GgmlType::Q5_0
);
block_row_fn!(
    /// Q5_1: see [`BlockQ5_1`].
    dequantize_q5_1, BlockQ5_1, GgmlType::Q5_1
);
block_row_fn!(
    /// Q4_K: see [`BlockQ4K`].
    dequantize_q4_k, BlockQ4K, GgmlType::Q4_K
);
block_row_fn!(
    /// Q5_K: see [`BlockQ5K`].
    dequantize_q5_k, BlockQ5K, GgmlType::Q5_K
);
block_row_fn!(
    /// Q6_K: see [`BlockQ6K`].
    dequantize_q6_k, BlockQ6K, GgmlType::Q6_K
);
block_row_fn!(
    /// Q2_K: see [`BlockQ2K`].
    dequantize_q2_k, BlockQ2K, GgmlType::Q2_K
);
block_row_fn!(
    /// Q3_K: see [`BlockQ3K`].
    dequantize_q3_k, BlockQ3K, GgmlType::Q3_K
);
block_row_fn!(
    /// IQ4_NL: see [`BlockIq4Nl`].
    dequantize_iq4_nl, BlockIq4Nl, GgmlType::IQ4_NL
);
block_row_fn!(
    /// IQ4_XS: see [`BlockIq4Xs`].
    dequantize_iq4_xs, BlockIq4Xs, GgmlType::IQ4_XS
);
block_row_fn!(
    /// IQ2_XXS: see [`BlockIq2Xxs`].
    dequantize_iq2_xxs, BlockIq2Xxs, GgmlType::IQ2_XXS
);
block_row_fn!(
    /// IQ2_XS: see [`BlockIq2Xs`].
    dequantize_iq2_xs, BlockIq2Xs, GgmlType::IQ2_XS
);
block_row_fn!(
    /// IQ2_S: see [`BlockIq2S`].
    dequantize_iq2_s, BlockIq2S, GgmlType::IQ2_S
);
block_row_fn!(
    /// IQ3_XXS: see [`BlockIq3Xxs`].
    dequantize_iq3_xxs, BlockIq3Xxs, GgmlType::IQ3_XXS
);
block_row_fn!(
    /// IQ3_S: see [`BlockIq3S`].
    dequantize_iq3_s, BlockIq3S, GgmlType::IQ3_S
);
block_row_fn!(
    /// IQ1_S: see [`BlockIq1S`].
    dequantize_iq1_s, BlockIq1S, GgmlType::IQ1_S
);
block_row_fn!(
    /// IQ1_M: see [`BlockIq1M`].
    dequantize_iq1_m, BlockIq1M, GgmlType::IQ1_M
);
block_row_fn!(
    /// MXFP4: see [`BlockMxfp4`].
    dequantize_mxfp4, BlockMxfp4, GgmlType::MXFP4
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::SUPPORTED_TYPES;

    #[test]
    fn every_supported_type_dequantizes_and_no_other() {
        for id in 0..64 {
            let Some(ty) = GgmlType::from_id(id) else {
                continue;
            };
            let src = vec![0u8; 2 * ty.type_size()];
            let mut dst = vec![f32::NAN; 2 * ty.block_size()];
            let got = dequantize_row(ty, &src, &mut dst);
            if SUPPORTED_TYPES.contains(&ty) {
                assert_eq!(got, Ok(()), "{ty}");
                assert!(dst.iter().all(|&x| x == 0.0), "{ty}: zero bytes give zeros");
            } else {
                assert_eq!(got, Err(QuantError::Unsupported(ty)));
            }
        }
    }

    #[test]
    fn lengths_are_checked_before_writing() {
        let mut dst = [7.0f32; 64];
        let err = dequantize_row(GgmlType::Q8_0, &[0; 33], &mut dst[..32]);
        assert_eq!(
            err,
            Err(QuantError::SourceLength {
                ty: GgmlType::Q8_0,
                weights: 32,
                expected: 34,
                actual: 33
            })
        );
        let err = dequantize_row(GgmlType::Q4_K, &[0; 144], &mut dst[..]);
        assert!(matches!(err, Err(QuantError::PartialBlock { len: 64, .. })));
        assert!(dst.iter().all(|&x| x == 7.0), "nothing written on error");
    }

    #[test]
    fn rows_reject_overflow_without_allocating() {
        let err = dequantize_rows(GgmlType::F32, &[], usize::MAX, 2);
        assert!(matches!(err, Err(QuantError::TooLarge { .. })));
        let err = dequantize_rows(GgmlType::Q8_0, &[], usize::MAX / 64, 32);
        assert!(matches!(err, Err(QuantError::SourceLength { .. })));
    }
}
