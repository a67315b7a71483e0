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

/// Q4_K/Q5_K's twelve scale bytes as the eight 6-bit scales and the eight 6-bit mins, one per
/// byte of each word (sub-block `j` in byte `j`): [`scales_mins_k4`]'s unpacking on whole words.
///
/// [`scales_mins_k4`]: crate::quant::blocks::scales_mins_k4
#[inline(always)]
pub(crate) fn scales_mins_words(b: &[u8; 12]) -> (u64, u64) {
    let word = |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
    let (a, m, c) = (word(0), word(1), word(2));
    // Sub-blocks 0..4 keep their six low bits; 4..8 take a nibble of the last word under the
    // two top bits the first four carry.
    let (low6, nib) = (0x3f3f_3f3f, 0x0f0f_0f0f);
    let top2 = |x: u32| ((x >> 6) & 0x0303_0303) << 4;
    let scales = (a & low6, (c & nib) | top2(a));
    let mins = (m & low6, ((c >> 4) & nib) | top2(m));
    let join = |(lo, hi): (u32, u32)| u64::from(lo) | u64::from(hi) << 32;
    (join(scales), join(mins))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::blocks::scales_mins_k4;

    #[test]
    fn scale_words_unpack_as_the_bytewise_rule() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let b: [u8; 12] = std::array::from_fn(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            });
            let (sc, mn) = scales_mins_k4(&b);
            let (ws, wm) = scales_mins_words(&b);
            assert_eq!(ws.to_le_bytes(), sc, "scales of {b:?}");
            assert_eq!(wm.to_le_bytes(), mn, "mins of {b:?}");
        }
    }
}
