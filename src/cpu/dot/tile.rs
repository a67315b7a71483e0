//! What every tile kernel shares: one call's arguments ([`Tile`]), the kernel table of a weight
//! type on an ISA ([`KernelSet`]) and how kernels read ahead.

use crate::cpu::quantize::{ActFormat, QuantActs};

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
