//! The 32-block types' rows repacked into AVX2 panels ([`super::avx2`]'s block layout): each
//! block's weights as the AVX2 tile kernels unpack them (signed bytes; unsigned for Q4_1 and
//! Q5_1, whose min is apart), with the rows' `d` and `m`.

use super::super::legacy::{self, unpack_avx2, IQ4_NL, MXFP4, Q4_0, Q4_1, Q5_0, Q8_0};
use super::avx2::{block_d, block_m, put_quants, HALF};
use super::layout::{Panel, ROWS};

/// Repacks the rows (32-block type `c`) into `panel`.
///
/// # Safety
/// As [`super::pack`], with AVX2 and F16C.
pub unsafe fn pack_legacy(c: u8, rows: &[*const u8; ROWS], panel: &Panel) {
    match c {
        Q8_0 => pack::<Q8_0>(rows, panel),
        Q4_0 => pack::<Q4_0>(rows, panel),
        Q5_0 => pack::<Q5_0>(rows, panel),
        Q4_1 => pack::<Q4_1>(rows, panel),
        IQ4_NL => pack::<IQ4_NL>(rows, panel),
        MXFP4 => pack::<MXFP4>(rows, panel),
        _ => pack::<{ legacy::Q5_1 }>(rows, panel),
    }
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn pack<const TY: u8>(rows: &[*const u8; ROWS], panel: &Panel) {
    let bs = legacy::block_bytes(TY);
    for b in 0..panel.blocks {
        for h in 0..2 {
            let q = std::array::from_fn(|r| {
                let row = HALF * h + r;
                let (q, d, m) = unpack_avx2::<TY>(rows[row].add(b * bs));
                *block_d(panel, b).add(row) = d;
                *block_m(panel, b).add(row) = m;
                q
            });
            put_quants(panel, b, h, q);
        }
    }
}
