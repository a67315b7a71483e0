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

use super::KernelSet;
use crate::cpu::features::Isa;
use crate::cpu::quantize::ActFormat;
use crate::quant::GgmlType;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::{pair as pair_avx2, super_scale as super_scale_avx2, Sub};
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_vbmi;
mod formats;
#[cfg(target_arch = "aarch64")]
mod neon;
mod scalar;

pub use formats::*;
pub use scalar::*;

pub fn kernels(ty: GgmlType, isa: Isa) -> Option<KernelSet> {
    let c = code(ty)?;
    let tiles = match isa {
        Isa::Scalar => scalar::scalar_tiles(c),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => avx512_vbmi::tiles(c).unwrap_or_else(|| avx512::tiles(c)),
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
