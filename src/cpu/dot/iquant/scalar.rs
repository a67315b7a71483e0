//! The portable kernels for the low-bit i-quants: plain Rust on their integer form, the
//! reference every SIMD path is tested against.

use super::formats::*;
use crate::cpu::dot::{tile_table, Tile, TileEntry};
use crate::cpu::quantize::QuantActs;
use crate::quant::blocks::QK_K;
use crate::quant::iquants::{
    BlockIq1M, BlockIq1S, BlockIq2S, BlockIq2Xs, BlockIq2Xxs, BlockIq3S, BlockIq3Xxs, IntegerForm,
};

pub(super) fn scalar_tiles(c: u8) -> &'static [TileEntry] {
    match c {
        IQ2_XXS => tile_table!(tile, IQ2_XXS; (1, 1)),
        IQ2_XS => tile_table!(tile, IQ2_XS; (1, 1)),
        IQ2_S => tile_table!(tile, IQ2_S; (1, 1)),
        IQ3_XXS => tile_table!(tile, IQ3_XXS; (1, 1)),
        IQ3_S => tile_table!(tile, IQ3_S; (1, 1)),
        IQ1_S => tile_table!(tile, IQ1_S; (1, 1)),
        _ => tile_table!(tile, IQ1_M; (1, 1)),
    }
}

/// The integer form of the super-block `b` (one block's bytes) of type `TY`.
#[inline]
pub fn integer_form<const TY: u8>(b: &[u8]) -> IntegerForm {
    macro_rules! form {
        ($view:ident) => {
            $view::new(b.try_into().expect("one block")).integer_form()
        };
    }
    match TY {
        IQ2_XXS => form!(BlockIq2Xxs),
        IQ2_XS => form!(BlockIq2Xs),
        IQ2_S => form!(BlockIq2S),
        IQ3_XXS => form!(BlockIq3Xxs),
        IQ3_S => form!(BlockIq3S),
        IQ1_S => form!(BlockIq1S),
        _ => form!(BlockIq1M),
    }
}

/// The exact integer sum `sum_g ls_g * (q . a)_g` of one super-block.
#[inline]
pub fn scaled_isum(f: &IntegerForm, a: &[i8]) -> i32 {
    let groups = f.q.chunks_exact(16).zip(a.chunks_exact(16));
    groups
        .zip(f.ls)
        .map(|((q, a), ls)| {
            let dot: i32 = q.iter().zip(a).map(|(&q, &a)| q as i32 * a as i32).sum();
            ls as i32 * dot
        })
        .sum()
}

/// The scalar reference dot of one row with token `t`.
fn dot<const TY: u8>(row: &[u8], acts: &QuantActs, t: usize) -> f32 {
    let (qs, d) = (acts.tok_qs(t), acts.tok_d(t));
    let mut sum = 0.0f32;
    for (sb, b) in row.chunks_exact(block_bytes(TY)).enumerate() {
        let f = integer_form::<TY>(b);
        let isum = scaled_isum(&f, &qs[QK_K * sb..QK_K * (sb + 1)]);
        sum += (f.d * d[sb] * factor(TY)) * isum as f32;
    }
    sum
}

unsafe fn tile<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    for r in 0..R {
        let row = std::slice::from_raw_parts(a.w.add(r * a.w_stride), a.row_bytes);
        for t in 0..T {
            *a.y.add((a.t0 + t) * a.y_stride + a.r0 + r * a.y_step) =
                dot::<TY>(row, a.acts, a.t0 + t);
        }
    }
}
