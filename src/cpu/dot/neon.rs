//! NEON helpers shared by the aarch64 kernels: integer dots (`sdot` where the CPU has the
//! dot-product extension, widening multiplies otherwise) and f16 widening.

use std::arch::aarch64::*;

/// `acc + four 4-byte dot products of a and b`, lane-wise, with `sdot` or without.
///
/// The two forms give identical integers, so results never depend on which one ran.
///
/// # Safety
/// With `DOT`, the CPU must have the dot-product extension.
#[inline(always)]
pub unsafe fn dot<const DOT: bool>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    if DOT {
        let mut r = acc;
        // `sdot` is stable only as an instruction: the intrinsic is still unstable in Rust.
        std::arch::asm!(
            ".arch_extension dotprod",
            "sdot {0:v}.4s, {1:v}.16b, {2:v}.16b",
            inout(vreg) r,
            in(vreg) a,
            in(vreg) b,
            options(pure, nomem, nostack)
        );
        r
    } else {
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vaddq_s32(acc, vaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi)))
    }
}

/// Four f16 (as bits) widened to f32 exactly, subnormals, infinities and NaNs included.
///
/// # Safety
/// NEON only, which every aarch64 CPU has.
#[inline(always)]
pub unsafe fn f16x4_to_f32(h: uint16x4_t) -> float32x4_t {
    let w = vmovl_u16(h);
    let sign = vshlq_n_u32::<16>(vandq_u32(w, vdupq_n_u32(0x8000)));
    let mag = vandq_u32(w, vdupq_n_u32(0x7fff));
    // Exponent rebias by multiplying by 2^112: exact for normals and subnormals alike.
    let scaled = vmulq_f32(
        vreinterpretq_f32_u32(vshlq_n_u32::<13>(mag)),
        vdupq_n_f32(f32::from_bits(0x7780_0000)),
    );
    let special = vcgeq_u32(mag, vdupq_n_u32(0x7c00));
    let inf_nan = vorrq_u32(
        vdupq_n_u32(0x7f80_0000),
        vshlq_n_u32::<13>(vandq_u32(mag, vdupq_n_u32(0x3ff))),
    );
    let bits = vbslq_u32(special, inf_nan, vreinterpretq_u32_f32(scaled));
    vreinterpretq_f32_u32(vorrq_u32(bits, sign))
}
