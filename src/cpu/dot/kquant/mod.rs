//! Super-blocks of 256 times Q8_K activations (ggml's `*_q8_K` dots): the K-quants and IQ4_XS.
//!
//! Q4_K/Q5_K: `y.d * (d * sum_j sc_j * (q . a)_j - dmin * sum_j m_j * bsum_j)` over eight
//! sub-blocks of 32; Q6_K: `y.d * d * sum_g sc_g * ((q - 32) . a)_g` over sixteen groups of 16;
//! Q2_K: as Q4_K over sixteen groups of 16 (4-bit scales and mins); Q3_K: as Q6_K with signed
//! 6-bit scales and `q - 4` in -4..3; IQ4_XS: `y.d * d * sum_j (ls_j - 32) * (level . a)_j` over
//! eight sub-blocks of 32. All integer sums are exact; each super-block adds one f32 product
//! (two with mins).

use super::KernelSet;
use crate::cpu::features::Isa;
use crate::cpu::quantize::ActFormat;
use crate::quant::GgmlType;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod formats;
#[cfg(target_arch = "aarch64")]
mod neon;
mod scalar;

pub use formats::*;

/// The kernels of weight type `ty` on `isa`, with the activation format they take (`None`: not
/// this family's type).
pub fn kernels(ty: GgmlType, isa: Isa) -> Option<KernelSet> {
    let c = code(ty)?;
    let tiles = match isa {
        Isa::Scalar => scalar::scalar_tiles(c),
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
