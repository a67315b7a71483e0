//! Q8_0, Q4_0, Q5_0, IQ4_NL, MXFP4 (Q8_0 activations) and Q4_1, Q5_1 (Q8_1 activations):
//! blocks of 32.
//!
//! Per block: an exact integer dot of the quants, times `d_w * d_a` (ggml's
//! `ggml_vec_dot_q*_q8_*`), plus `m_w * s_a` for the types with a min. IQ4_NL's quants are the
//! non-linear levels its nibbles index (`KVALUES_IQ4NL`), which the SIMD kernels look up
//! sixteen or more at a time with a byte shuffle; MXFP4 is the same with the doubled FP4
//! values (`KVALUES_MXFP4`) and a power-of-two block scale (E8M0, halved) instead of an f16.

use super::KernelSet;
use crate::cpu::features::Isa;
use crate::cpu::quantize::ActFormat;
use crate::quant::GgmlType;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::unpack as unpack_avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::{iq4nl_offset_levels, mxfp4_offset_levels};
mod formats;
#[cfg(target_arch = "aarch64")]
mod neon;
mod scalar;

pub use formats::*;
pub use scalar::*;

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
    let fmt = if has_min(c) {
        ActFormat::Q8_1
    } else {
        ActFormat::Q8_0 { offset: offset(c) }
    };
    Some(KernelSet { fmt, tiles })
}
