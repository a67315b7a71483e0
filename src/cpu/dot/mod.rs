//! Tile kernels: `R` weight rows times `T` tokens, each a full-length dot product.
//!
//! One folder per weight family (float, legacy 32-blocks, K-quants, low-bit i-quants), one file
//! per ISA inside.
//! Every kernel computes each (row, token) output with the same sequence of operations
//! whatever the tile shape, so results do not depend on tiling or on the thread split.

use crate::quant::GgmlType;

use super::error::KernelError;
use super::features::Isa;
use super::quantize::{ActFormat, QuantActs};

pub mod float;
pub mod iquant;
pub mod kquant;
pub mod legacy;
#[cfg(target_arch = "aarch64")]
pub mod neon;
pub mod panel;

/// One call of a tile kernel.
pub struct Tile<'a> {
    /// The tile's first weight row; row `i` starts at `i * w_stride`.
    pub w: *const u8,
    /// Bytes from one of the tile's rows to the next (a multiple of `row_bytes`: the rows of a
    /// tile need not be adjacent).
    pub w_stride: usize,
    /// Bytes in one row.
    pub row_bytes: usize,
    pub cols: usize,
    /// Output row of the tile's first weight row; row `i` goes to `r0 + i * y_step`.
    pub r0: usize,
    pub y_step: usize,
    /// The tile's first token.
    pub t0: usize,
    /// Quantized activations (formats other than F32).
    pub acts: &'a QuantActs,
    /// f32 activations, `[n_tokens, cols]` (F32 format).
    pub x: &'a [f32],
    /// Output `y[t * y_stride + r]`.
    pub y: *mut f32,
    pub y_stride: usize,
}

/// A tile kernel.
///
/// # Safety
/// `w` must hold `R` rows of `row_bytes`, `w_stride` apart; tokens `t0..t0 + T` must exist in
/// the activations, prepared in the kernel set's format; `y` must be valid for the `R x T`
/// outputs, which no other thread touches; the ISA must be supported by the CPU.
pub type TileFn = unsafe fn(&Tile<'_>);

/// A kernel for one tile shape.
#[derive(Clone, Copy)]
pub struct TileEntry {
    pub rows: usize,
    pub tokens: usize,
    pub f: TileFn,
}

/// The kernels for one weight type on one ISA.
#[derive(Clone, Copy)]
pub struct KernelSet {
    pub fmt: ActFormat,
    pub tiles: &'static [TileEntry],
}

impl KernelSet {
    /// The tile covering the most outputs within `rows` x `tokens` (ties: more tokens, which
    /// reuses each decoded weight more). Every set has a 1x1 tile.
    pub fn best_fit(&self, rows: usize, tokens: usize) -> TileEntry {
        let mut best = self.tiles[0];
        for e in self.tiles {
            let fits = e.rows <= rows && e.tokens <= tokens;
            if fits && (e.rows * e.tokens, e.tokens) > (best.rows * best.tokens, best.tokens) {
                best = *e;
            }
        }
        best
    }

    /// The tile with exactly `rows` rows (a shape the set has) and the most tokens within
    /// `tokens`. Every row count in a set comes with a 1-token tile.
    pub fn with_rows(&self, rows: usize, tokens: usize) -> TileEntry {
        let mut best = self.tiles[0];
        for e in self.tiles {
            if e.rows == rows && e.tokens <= tokens && (best.rows != rows || e.tokens > best.tokens)
            {
                best = *e;
            }
        }
        best
    }

    pub fn max_rows(&self) -> usize {
        self.tiles.iter().map(|e| e.rows).max().unwrap_or(1)
    }

    pub fn max_tokens(&self) -> usize {
        self.tiles.iter().map(|e| e.tokens).max().unwrap_or(1)
    }
}

/// Builds a `&'static [TileEntry]` of `f::<TY, R, T>` for the listed shapes (first: 1x1).
macro_rules! tile_table {
    ($f:ident, $ty:tt; $(($r:literal, $t:literal)),+ $(,)?) => {
        &[$($crate::cpu::dot::TileEntry { rows: $r, tokens: $t, f: $f::<$ty, $r, $t> }),+]
    };
}
pub(crate) use tile_table;

/// How far ahead (bytes) decode kernels prefetch in each row stream: with four sequential
/// streams per thread, a short distance measured best on the 2-core AVX-512 machine
/// (31.5 -> 35 GB/s for Q8_0 with 2 threads; 1 KiB and more was slower). Near the end of a
/// tensor the address lies past its buffer, so it is computed with `wrapping_add` (`add` would
/// promise it stays inside the allocation); a prefetch of any address is harmless.
pub const PREFETCH: usize = 256;

/// The kernels for weight type `ty` on `isa`; `quantized` picks the integer path for the
/// quantized types (false: dequantize to f32 and use the float kernels).
pub fn kernel_set(ty: GgmlType, isa: Isa, quantized: bool) -> Result<KernelSet, KernelError> {
    let set = match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => float::kernels(ty, isa),
        _ if !quantized => float::kernels(GgmlType::F32, isa),
        GgmlType::Q8_0
        | GgmlType::Q4_0
        | GgmlType::Q4_1
        | GgmlType::Q5_0
        | GgmlType::Q5_1
        | GgmlType::IQ4_NL
        | GgmlType::MXFP4 => legacy::kernels(ty, isa),
        GgmlType::Q2_K
        | GgmlType::Q3_K
        | GgmlType::Q4_K
        | GgmlType::Q5_K
        | GgmlType::Q6_K
        | GgmlType::IQ4_XS => kquant::kernels(ty, isa),
        GgmlType::IQ2_XXS
        | GgmlType::IQ2_XS
        | GgmlType::IQ2_S
        | GgmlType::IQ3_XXS
        | GgmlType::IQ3_S
        | GgmlType::IQ1_S
        | GgmlType::IQ1_M => iquant::kernels(ty, isa),
        _ => None,
    };
    set.ok_or(KernelError::UnsupportedType(ty))
}
