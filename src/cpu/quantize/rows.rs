//! Row quantizers dispatched on the ISA; each writes exactly what [`super::reference`] writes
//! (Q8_0/Q8_1: the unrounded scale, which the caller rounds).

use super::reference;
use crate::cpu::features::Isa;
use crate::quant::blocks::{QK, QK_K};

#[cfg(target_arch = "x86_64")]
use super::{avx2, avx512};

pub fn q8_row(isa: Isa, x: &[f32], qs: &mut [i8], d: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY (both arms): `QuantActs::quantize`, the only caller, checked the ISA against
        // the CPU.
        Isa::Avx512Vnni => return unsafe { avx512::q8_row(x, qs, d) },
        Isa::Avx2 => return unsafe { avx2::q8_row(x, qs, d) },
        _ => {}
    }
    let _ = isa;
    for ((xb, qb), db) in x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)).zip(d) {
        *db = reference::q8_block(xb, qb);
    }
}

pub fn q8k_row(isa: Isa, x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY (both arms): `QuantActs::quantize`, the only caller, checked the ISA against
        // the CPU.
        Isa::Avx512Vnni => return unsafe { avx512::q8k_row(x, qs, d, bsums) },
        Isa::Avx2 => return unsafe { avx2::q8k_row(x, qs, d, bsums) },
        _ => {}
    }
    let _ = (isa, QK_K);
    reference::quantize_q8_k(x, qs, d, bsums);
}
