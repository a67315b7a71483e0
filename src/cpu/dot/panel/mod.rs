//! Batch (prompt) kernels on row panels: on AVX-512 VNNI for the 32-block types, the K-quants
//! and the i-quants; on AVX2 for the i-quants, the 32-block types and Q2_K ... Q6_K
//! (`avx2.rs`; IQ4_XS keeps the tiles).
//!
//! The tile kernels give each 512-bit lane four *columns* of one row, so every (row, token)
//! output pays a convert, a scale multiply and an FMA per pair of blocks next to one
//! `vpdpbusd`: on a prompt the float work, not the integer dots, sets the pace. Here a thread
//! first repacks 16 consecutive weight rows into a panel where lane `r` holds row `r`:
//! per block, eight 64-byte vectors of four quants from each row, then the 16 row scales.
//! One block of one token is then eight `vpdpbusd` (activations broadcast four at a time)
//! and a single convert, multiply and FMA for all 16 rows. The repack reads each weight
//! once per call and is paid back over every token of the batch; the weights themselves stay
//! in place in the memory map (llama.cpp's CPU "repack" keeps a second, interleaved copy).
//!
//! Per (row, token) the sum runs block by block, `acc += isum * (d_w * d_a)` (+ `m_w * s_a`
//! for the types with a min): ggml's scalar `vec_dot` order, the same for every token tile.
//! K-quants enter as blocks of 32 with their effective scales (`d * sc_j`, `dmin * m_j`) and
//! the Q8_K activations' per-block tables; Q6_K, whose scales change every 16 weights, as
//! two half-blocks with the `-32` offset folded into each half's starting sum. IQ4_NL's levels
//! (+ 128, as Q8_0's sign flip) come from the non-linear table; Q2_K, Q3_K and IQ4_XS have
//! their own packing in `avx512_low_bit.rs`.

use crate::cpu::features::Isa;
use crate::cpu::quantize::QuantActs;
use crate::quant::GgmlType;

use super::{iquant, kquant, legacy};

/// Calls kernel `f` with the token count `n` (1..=MAX_TOKENS) as its last const parameter.
#[cfg(target_arch = "x86_64")]
macro_rules! for_tokens {
    ($n:expr, $($f:ident)::+ [$($g:expr),*]($($a:expr),*)) => {
        match $n {
            1 => $($f)::+::<$($g,)* 1>($($a),*),
            2 => $($f)::+::<$($g,)* 2>($($a),*),
            3 => $($f)::+::<$($g,)* 3>($($a),*),
            4 => $($f)::+::<$($g,)* 4>($($a),*),
            5 => $($f)::+::<$($g,)* 5>($($a),*),
            6 => $($f)::+::<$($g,)* 6>($($a),*),
            7 => $($f)::+::<$($g,)* 7>($($a),*),
            _ => $($f)::+::<$($g,)* 8>($($a),*),
        }
    };
}

#[cfg(target_arch = "x86_64")]
pub mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_iquant;
#[cfg(target_arch = "x86_64")]
mod avx2_kquant;
#[cfg(target_arch = "x86_64")]
mod avx2_legacy;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_iquant;
#[cfg(target_arch = "x86_64")]
mod avx512_low_bit;
#[cfg(target_arch = "x86_64")]
mod avx512_repacked;
mod layout;

pub use layout::{
    scratch_bytes, Out, Panel, Tables, BYTES_PER_BLOCK, MAX_TOKENS, Q4K_REPACKED_BLOCK,
    Q6K_REPACKED_BLOCK, ROWS,
};
use layout::{Compact, Kernel};

/// Whether `isa` has panel kernels for any type (batch plans default to panels there).
pub fn any(isa: Isa) -> bool {
    cfg!(target_arch = "x86_64") && matches!(isa, Isa::Avx512Vnni | Isa::Avx2)
}

/// Whether `ty` has panel kernels on `isa`.
pub fn supports(ty: GgmlType, isa: Isa) -> bool {
    let iquant = iquant::code(ty).is_some();
    match isa {
        Isa::Avx512Vnni => {
            any(isa) && (iquant || legacy::code(ty).is_some() || kquant::code(ty).is_some())
        }
        Isa::Avx2 => any(isa) && (iquant || legacy::code(ty).is_some() || avx2_kquants(ty)),
        _ => false,
    }
}

/// The K-quants with AVX2 panels: those whose quants fit `vpmaddubsw` unsigned as stored
/// (IQ4_XS's signed levels do not).
fn avx2_kquants(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K
    )
}

/// Asks for `bytes` (the next panel's rows) to be brought into L2 while the current panel's
/// products run. Weights read from memory otherwise stall the pack that first touches them: on
/// a MoE prompt, where each expert's panel serves only its few tokens, that wait was a large
/// part of the pack.
pub fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        // SAFETY: a prefetch reads nothing architecturally; the address is inside the slice.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(line.as_ptr() as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Repacks the rows at `rows` (each `blocks` blocks of `ty`) into `panel` for `isa`'s kernels.
///
/// # Safety
/// Every pointer must hold one whole row of the panel's width; `ty` must be supported on
/// `isa` ([`supports`]) and the CPU must have `isa`.
pub unsafe fn pack(isa: Isa, ty: GgmlType, rows: &[*const u8; ROWS], panel: &Panel) {
    #[cfg(target_arch = "x86_64")]
    {
        use legacy::{IQ4_NL, Q4_0, Q4_1, Q5_0, Q8_0};
        if isa == Isa::Avx2 {
            return match (iquant::code(ty), legacy::code(ty), kquant::code(ty)) {
                (Some(c), _, _) => avx2_iquant::pack_iquant(c, rows, panel),
                (_, Some(c), _) => avx2_legacy::pack_legacy(c, rows, panel),
                (_, _, Some(c)) => avx2_kquant::pack_kquant(c, rows, panel),
                _ => {}
            };
        }
        match panel.compact {
            Some(Compact::Q4K) => return avx512_repacked::pack_q4k(rows, panel),
            Some(Compact::Q6K) => return avx512_repacked::pack_q6k(rows, panel),
            None => {}
        }
        if let Some(c) = iquant::code(ty) {
            return avx512_iquant::pack_iquant(c, rows, panel);
        }
        match (legacy::code(ty), kquant::code(ty)) {
            (Some(Q8_0), _) => avx512::pack::<Q8_0>(rows, panel),
            (Some(IQ4_NL), _) => avx512::pack::<IQ4_NL>(rows, panel),
            (Some(Q4_0), _) => avx512::pack::<Q4_0>(rows, panel),
            (Some(Q5_0), _) => avx512::pack::<Q5_0>(rows, panel),
            (Some(Q4_1), _) => avx512::pack::<Q4_1>(rows, panel),
            (Some(legacy::MXFP4), _) => avx512_iquant::pack_mxfp4(rows, panel),
            (Some(_), _) => avx512::pack::<{ legacy::Q5_1 }>(rows, panel),
            (_, Some(kquant::Q4_K)) => avx512::pack_k::<{ kquant::Q4_K }>(rows, panel),
            (_, Some(kquant::Q5_K)) => avx512::pack_k::<{ kquant::Q5_K }>(rows, panel),
            (_, Some(kquant::Q2_K)) => {
                avx512_low_bit::pack_low_bit::<{ kquant::Q2_K }>(rows, panel)
            }
            (_, Some(kquant::Q3_K)) => {
                avx512_low_bit::pack_low_bit::<{ kquant::Q3_K }>(rows, panel)
            }
            (_, Some(kquant::IQ4_XS)) => {
                avx512_low_bit::pack_low_bit::<{ kquant::IQ4_XS }>(rows, panel)
            }
            (_, Some(_)) => avx512::pack_k::<{ kquant::Q6_K }>(rows, panel),
            (None, None) => {}
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (isa, ty, rows, panel);
}

/// Tokens `tokens` times the panel, `tile` (at most [`MAX_TOKENS`]) per kernel call, into
/// `out`.
///
/// # Safety
/// The panel must have been packed for `isa` from `ty` rows of the activations' width; the
/// activations must be prepared in `ty`'s format with those tokens; `out` must be valid for
/// the outputs and owned by this thread; the CPU must have `isa`.
pub unsafe fn gemm(
    isa: Isa,
    ty: GgmlType,
    panel: &Panel,
    acts: &QuantActs,
    tokens: std::ops::Range<usize>,
    tile: usize,
    out: &Out,
) {
    #[cfg(target_arch = "x86_64")]
    {
        assert!(tokens.end <= acts.n_tokens);
        let tile = tile.clamp(1, MAX_TOKENS);
        if isa == Isa::Avx2 {
            let mut t = tokens.start;
            while t < tokens.end {
                let n = tile.min(tokens.end - t);
                avx2_gemm(ty, n, panel, acts, t, out);
                t += n;
            }
            return;
        }
        let tables = Tables::new(ty, acts);
        let kernel = Kernel::of(ty);
        let mut t = tokens.start;
        while t < tokens.end {
            let n = tile.min(tokens.end - t);
            match (panel.compact, kernel) {
                (Some(Compact::Q4K), _) => {
                    for_tokens!(n, avx512_repacked::gemm_q4k[](panel, &tables, t, out))
                }
                (Some(Compact::Q6K), _) => {
                    for_tokens!(n, avx512_repacked::gemm_q6k[](panel, &tables, t, out))
                }
                (None, Kernel::Halves) => for_tokens!(n, avx512::gemm16[](panel, &tables, t, out)),
                (None, Kernel::HalvesMin) => {
                    for_tokens!(n, avx512_low_bit::gemm16_min[](panel, &tables, t, out))
                }
                (None, Kernel::Blocks { min: false }) => {
                    for_tokens!(n, avx512::gemm[false](panel, &tables, t, out))
                }
                (None, Kernel::Blocks { min: true }) => {
                    for_tokens!(n, avx512::gemm[true](panel, &tables, t, out))
                }
            }
            t += n;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (isa, ty, panel, acts, tokens, tile, out);
}

/// As [`gemm`] on AVX-512 VNNI, with each block's integer dots on AMX tiles, 16 tokens a call
/// (`amx.rs`); panels the tiles do not take ([`amx::supports`]) run [`gemm`].
///
/// # Safety
/// As [`gemm`] on [`Isa::Avx512Vnni`], and [`amx::usable`] must have said yes.
#[cfg(target_arch = "x86_64")]
pub unsafe fn gemm_amx(
    ty: GgmlType,
    panel: &Panel,
    acts: &QuantActs,
    tokens: std::ops::Range<usize>,
    out: &Out,
) {
    if !amx::supports(ty, panel) {
        return gemm(Isa::Avx512Vnni, ty, panel, acts, tokens, MAX_TOKENS, out);
    }
    assert!(tokens.end <= acts.n_tokens);
    let tables = Tables::new(ty, acts);
    amx::gemm_tokens(
        &mut crate::cpu::amx::Hardware,
        ty,
        panel,
        &tables,
        tokens,
        out,
    );
}

/// One AVX2 kernel call on `n` tokens from `t0`: groups per scale, mins or an offset, and the
/// factor by type.
///
/// # Safety
/// As [`gemm`] on AVX2.
#[cfg(target_arch = "x86_64")]
unsafe fn avx2_gemm(ty: GgmlType, n: usize, panel: &Panel, acts: &QuantActs, t0: usize, out: &Out) {
    match ty {
        GgmlType::Q4_K => for_tokens!(n, avx2::gemm[8, true](panel, acts, 1.0, t0, out)),
        GgmlType::Q5_K => for_tokens!(n, avx2::gemm[4, true](panel, acts, 1.0, t0, out)),
        GgmlType::Q6_K => for_tokens!(n, avx2::gemm[2, false](panel, acts, 1.0, t0, out)),
        // Quants 0..4 and 0..8 with a scale per 16: the four groups of one scale at once.
        GgmlType::Q2_K => for_tokens!(n, avx2::gemm[4, true](panel, acts, 1.0, t0, out)),
        GgmlType::Q3_K => for_tokens!(n, avx2::gemm[4, false](panel, acts, 1.0, t0, out)),
        // Quants within ±16 (MXFP4's doubled values within ±12): 8 groups' pair sums fit
        // 16 bits; Q5_1's 0..32 four; Q8_0's and IQ4_NL's full bytes one.
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::MXFP4 => {
            for_tokens!(n, avx2::gemm_blocks[8, false](panel, acts, t0, out))
        }
        GgmlType::Q4_1 => for_tokens!(n, avx2::gemm_blocks[8, true](panel, acts, t0, out)),
        GgmlType::Q5_1 => for_tokens!(n, avx2::gemm_blocks[4, true](panel, acts, t0, out)),
        GgmlType::Q8_0 | GgmlType::IQ4_NL => {
            for_tokens!(n, avx2::gemm_blocks[1, false](panel, acts, t0, out))
        }
        _ => {
            let factor = iquant::code(ty).map_or(1.0, iquant::factor);
            for_tokens!(n, avx2::gemm[1, false](panel, acts, factor, t0, out))
        }
    }
}
