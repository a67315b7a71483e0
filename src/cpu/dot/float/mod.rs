//! Float weights (F32, F16, BF16) times f32 activations, with fused multiply-adds.

use super::KernelSet;
use crate::cpu::features::Isa;
use crate::cpu::quantize::ActFormat;
use crate::quant::GgmlType;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
pub use avx2::hsum as hsum_avx2;
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
        fmt: ActFormat::F32,
        tiles,
    })
}
