//! The low-bit i-quants times Q8_K activations (ggml's `iq*_q8_K` dots): IQ2_XXS, IQ2_XS,
//! IQ2_S, IQ3_XXS, IQ3_S, IQ1_S and IQ1_M.
//!
//! Every type is read in its integer form (`quant::iquants`): `w_i = d * F * ls_g * q_i` with
//! small signed quants, odd scales per 16 weights and a power-of-two factor `F` (IQ1's ±1/8
//! delta is folded into its quants as `8 g ± 1`). One super-block of one (row, token) is then
//! `y.d * d * F * sum_g ls_g * (q . a)_g`: an exact integer sum (ggml sums the same products,
//! grouped per 32, and adds IQ1's delta times the activation sums apart; the integers are the
//! same) and one f32 product per super-block.
//!
//! The SIMD kernels build each sub-block's signed quants from grid lookups (one load of 8 or
//! 4 levels per index) and sign masks, then meet the activations with the sign trick: `|q|`
//! (never zero here: grid levels are positive, IQ1's `8 g ± 1` is odd) times `a` carrying
//! `q`'s sign, which keeps `vpmaddubsw`'s pair sums below saturation (`2 * 62 * 127`).

use crate::quant::GgmlType;

use super::{tile_table, KernelSet, Tile, TileEntry};
use crate::cpu::features::Isa;
use crate::cpu::quantize::{ActFormat, QuantActs};
use crate::quant::blocks::QK_K;
use crate::quant::iquants::{
    BlockIq1M, BlockIq1S, BlockIq2S, BlockIq2Xs, BlockIq2Xxs, BlockIq3S, BlockIq3Xxs, IntegerForm,
    IQ1_M_BYTES, IQ1_S_BYTES, IQ2_S_BYTES, IQ2_XS_BYTES, IQ2_XXS_BYTES, IQ3_S_BYTES, IQ3_XXS_BYTES,
};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::sub as sub_avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

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

pub fn kernels(ty: GgmlType, isa: Isa) -> Option<KernelSet> {
    let c = code(ty)?;
    let tiles = match isa {
        Isa::Scalar => scalar_tiles(c),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => avx512::tiles(c),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::tiles(c),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon::tiles(c),
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    Some(KernelSet {
        fmt: ActFormat::Q8K,
        tiles,
    })
}

fn scalar_tiles(c: u8) -> &'static [TileEntry] {
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
