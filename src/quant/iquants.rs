//! Byte layouts of the low-bit i-quants (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M)
//! and of MXFP4, as `ggml-common.h` defines them, with their dequantization.
//!
//! The i-quants store groups of 8 weights (IQ3: two groups of 4) as indices into the lattice
//! grids of [`super::grids`], with signs stored apart (IQ2/IQ3: 7 sign bits and a parity rule,
//! or 8 bits) or none (IQ1: the grid holds -1, 0, 1 and a ±1/8 delta shifts each group), and
//! small odd integer scales `ls = 2s + 1` per 32 or 16 weights under one f16 super-block scale.
//!
//! Every format here has an *integer form* ([`IntegerForm`]): `w_i = d * FACTOR * ls_g * q_i`
//! with small signed quants `q_i` and the scale `ls_g` of the 16-weight group `g` holding `i`
//! (a scale per 32 repeats for both halves). IQ1's delta fits by scaling: `g + delta` is
//! `(8 g ± 1) / 8`. The integer-dot kernels and the panel packers read blocks through it.
//!
//! Why `dequantize` is exact: `d` has 11 significant bits, `ls` at most 5, a level at most 6
//! (IQ1: `8 g ± 1` 4 bits), and the remaining factors are powers of two, so every product
//! fits f32's 24-bit significand and no operation rounds: the order ggml uses and any other
//! give the same bits. MXFP4's values (4 bits) times a power of two are exact too.

use super::blocks::{f16_at, QK, QK_K};
use super::grids::{
    e8m0_half, IQ1S_GRID, IQ1_DELTA, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID,
    KSIGNS, KVALUES_MXFP4,
};

/// Bytes per IQ2_XXS block.
pub const IQ2_XXS_BYTES: usize = 2 + QK_K / 4;
/// Bytes per IQ2_XS block.
pub const IQ2_XS_BYTES: usize = 2 + QK_K / 4 + QK_K / 32;
/// Bytes per IQ2_S block.
pub const IQ2_S_BYTES: usize = 2 + QK_K / 4 + QK_K / 16;
/// Bytes per IQ3_XXS block.
pub const IQ3_XXS_BYTES: usize = 2 + 3 * QK_K / 8;
/// Bytes per IQ3_S block.
pub const IQ3_S_BYTES: usize = 2 + 13 * QK_K / 32 + QK_K / 64;
/// Bytes per IQ1_S block.
pub const IQ1_S_BYTES: usize = 2 + QK_K / 8 + QK_K / 16;
/// Bytes per IQ1_M block.
pub const IQ1_M_BYTES: usize = QK_K / 8 + QK_K / 16 + QK_K / 32;
/// Bytes per MXFP4 block.
pub const MXFP4_BYTES: usize = 1 + QK / 2;

/// A super-block as `w_i = d * factor * ls[i / 16] * q[i]`.
#[derive(Debug, Clone, Copy)]
pub struct IntegerForm {
    pub d: f32,
    /// Odd scales 1..=31, one per group of 16 weights.
    pub ls: [u8; QK_K / 16],
    /// Signed quants: IQ2 within ±43, IQ3_XXS ±62, IQ3_S ±15, IQ1 ±9.
    pub q: [i8; QK_K],
}

#[inline(always)]
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Writes 8 grid bytes (unsigned levels) with the signs of the bits of `signs` into `q`.
#[inline(always)]
fn signed_levels(point: u64, signs: u8, q: &mut [i8]) {
    for (j, (q, level)) in q.iter_mut().zip(point.to_le_bytes()).enumerate() {
        let v = level as i8;
        *q = if signs & (1 << j) != 0 { -v } else { v };
    }
}

/// Writes `y[j] = db * level_j * (sign_j ? -1 : 1)` for one group of 8 (ggml's order).
#[inline(always)]
fn dequantize_group(db: f32, point: u64, signs: u8, y: &mut [f32]) {
    for (j, (y, level)) in y.iter_mut().zip(point.to_le_bytes()).enumerate() {
        let sign = if signs & (1 << j) != 0 { -1.0 } else { 1.0 };
        *y = db * f32::from(level) * sign;
    }
}

/// Two 4-coordinate IQ3 points as one 8-coordinate point.
#[inline(always)]
fn pair(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | u64::from(hi) << 32
}

macro_rules! view {
    ($(#[$doc:meta])* $name:ident, $bytes:expr, $weights:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a>(&'a [u8; $bytes]);

        impl<'a> $name<'a> {
            pub const BYTES: usize = $bytes;
            pub const WEIGHTS: usize = $weights;

            #[inline]
            pub fn new(bytes: &'a [u8; $bytes]) -> Self {
                Self(bytes)
            }

            /// The block's bytes.
            #[inline]
            pub fn bytes(self) -> &'a [u8; $bytes] {
                self.0
            }
        }
    };
}

view!(
    /// `block_iq2_xxs { f16 d; u16 qs[32]; }`: per 32 weights 8 bytes, four grid indices
    /// (bytes 0-3) then a u32 of four 7-bit sign indices (bits 7l..7l+7) and the 4-bit scale
    /// (bits 28-31). `y = d * (0.5 + s) * 0.25 * level * sign`.
    BlockIq2Xxs, IQ2_XXS_BYTES, QK_K
);

impl BlockIq2Xxs<'_> {
    /// `w = d * ls * q / 8`.
    pub const FACTOR: f32 = 0.125;

    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, 0)
    }

    /// Sub-block `ib` (0..8): its four grid indices and its signs-and-scale word.
    #[inline]
    pub fn sub_block(self, ib: usize) -> ([u8; 4], u32) {
        let at = 2 + 8 * ib;
        let idx = [self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]];
        (idx, u32_at(self.0, at + 4))
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK_K]) {
        let d = self.d();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let (idx, aux) = self.sub_block(ib);
            let db = d * (0.5 + (aux >> 28) as f32) * 0.25;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let signs = KSIGNS[((aux >> (7 * l)) & 127) as usize];
                dequantize_group(db, IQ2XXS_GRID[usize::from(idx[l])], signs, y);
            }
        }
    }

    pub fn integer_form(self) -> IntegerForm {
        let mut f = IntegerForm {
            d: self.d(),
            ls: [0; 16],
            q: [0; QK_K],
        };
        for (ib, q) in f.q.chunks_exact_mut(32).enumerate() {
            let (idx, aux) = self.sub_block(ib);
            let ls = 2 * (aux >> 28) as u8 + 1;
            f.ls[2 * ib..2 * ib + 2].fill(ls);
            for (l, q) in q.chunks_exact_mut(8).enumerate() {
                let signs = KSIGNS[((aux >> (7 * l)) & 127) as usize];
                signed_levels(IQ2XXS_GRID[usize::from(idx[l])], signs, q);
            }
        }
        f
    }
}

view!(
    /// `block_iq2_xs { f16 d; u16 qs[32]; u8 scales[8]; }`: one u16 per group of 8, a 9-bit
    /// grid index and a 7-bit sign index (bits 9-15); per 32 weights a byte of two 4-bit
    /// scales (low: the first 16 weights). `y = d * (0.5 + s) * 0.25 * level * sign`.
    BlockIq2Xs, IQ2_XS_BYTES, QK_K
);

impl BlockIq2Xs<'_> {
    /// `w = d * ls * q / 8`.
    pub const FACTOR: f32 = 0.125;

    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, 0)
    }

    /// Group `k`'s (0..32) index-and-signs word.
    #[inline]
    pub fn qs(self, k: usize) -> u16 {
        u16_at(self.0, 2 + 2 * k)
    }

    /// Sub-block `ib`'s two 4-bit scales.
    #[inline]
    pub fn scales(self, ib: usize) -> u8 {
        self.0[2 + QK_K / 4 + ib]
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK_K]) {
        let d = self.d();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let sc = self.scales(ib);
            let db = [
                d * (0.5 + (sc & 0xF) as f32) * 0.25,
                d * (0.5 + (sc >> 4) as f32) * 0.25,
            ];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let qs = self.qs(4 * ib + l);
                let signs = KSIGNS[usize::from(qs >> 9)];
                dequantize_group(db[l / 2], IQ2XS_GRID[usize::from(qs & 511)], signs, y);
            }
        }
    }

    pub fn integer_form(self) -> IntegerForm {
        let mut f = IntegerForm {
            d: self.d(),
            ls: [0; 16],
            q: [0; QK_K],
        };
        for (ib, q) in f.q.chunks_exact_mut(32).enumerate() {
            let sc = self.scales(ib);
            f.ls[2 * ib] = 2 * (sc & 0xF) + 1;
            f.ls[2 * ib + 1] = 2 * (sc >> 4) + 1;
            for (l, q) in q.chunks_exact_mut(8).enumerate() {
                let qs = self.qs(4 * ib + l);
                signed_levels(
                    IQ2XS_GRID[usize::from(qs & 511)],
                    KSIGNS[usize::from(qs >> 9)],
                    q,
                );
            }
        }
        f
    }
}

view!(
    /// `block_iq2_s { f16 d; u8 qs[64]; u8 qh[8]; u8 scales[8]; }`: the first 32 bytes of
    /// `qs` are the low 8 bits of the 32 groups' 10-bit grid indices, the next 32 their 8-bit
    /// sign masks; `qh[ib]` holds the top 2 bits of sub-block `ib`'s four indices (bits 2l,
    /// 2l+1); scales as IQ2_XS. `y = d * (0.5 + s) * 0.25 * level * sign`.
    BlockIq2S, IQ2_S_BYTES, QK_K
);

impl BlockIq2S<'_> {
    /// `w = d * ls * q / 8`.
    pub const FACTOR: f32 = 0.125;

    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, 0)
    }

    /// Group `k`'s (0..32) grid index.
    #[inline]
    pub fn index(self, k: usize) -> usize {
        let (ib, l) = (k / 4, k % 4);
        let high = (self.0[2 + QK_K / 4 + ib] >> (2 * l)) & 3;
        usize::from(self.0[2 + k]) | usize::from(high) << 8
    }

    /// Group `k`'s sign mask.
    #[inline]
    pub fn signs(self, k: usize) -> u8 {
        self.0[2 + QK_K / 8 + k]
    }

    /// Sub-block `ib`'s two 4-bit scales.
    #[inline]
    pub fn scales(self, ib: usize) -> u8 {
        self.0[2 + QK_K / 4 + QK_K / 32 + ib]
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK_K]) {
        let d = self.d();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let sc = self.scales(ib);
            let db = [
                d * (0.5 + (sc & 0xF) as f32) * 0.25,
                d * (0.5 + (sc >> 4) as f32) * 0.25,
            ];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let k = 4 * ib + l;
                dequantize_group(db[l / 2], IQ2S_GRID[self.index(k)], self.signs(k), y);
            }
        }
    }

    pub fn integer_form(self) -> IntegerForm {
        let mut f = IntegerForm {
            d: self.d(),
            ls: [0; 16],
            q: [0; QK_K],
        };
        for (ib, q) in f.q.chunks_exact_mut(32).enumerate() {
            let sc = self.scales(ib);
            f.ls[2 * ib] = 2 * (sc & 0xF) + 1;
            f.ls[2 * ib + 1] = 2 * (sc >> 4) + 1;
            for (l, q) in q.chunks_exact_mut(8).enumerate() {
                let k = 4 * ib + l;
                signed_levels(IQ2S_GRID[self.index(k)], self.signs(k), q);
            }
        }
        f
    }
}

view!(
    /// `block_iq3_xxs { f16 d; u8 qs[96]; }`: the first 64 bytes are grid indices, two per
    /// group of 8 (4 weights each); then per 32 weights a u32 of four 7-bit sign indices and
    /// the 4-bit scale (bits 28-31). `y = d * (0.5 + s) * 0.5 * level * sign`.
    BlockIq3Xxs, IQ3_XXS_BYTES, QK_K
);

impl BlockIq3Xxs<'_> {
    /// `w = d * ls * q / 4`.
    pub const FACTOR: f32 = 0.25;

    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, 0)
    }

    /// Group `k`'s (0..32) 8 levels (two grid points).
    #[inline]
    pub fn point(self, k: usize) -> u64 {
        let (a, b) = (self.0[2 + 2 * k], self.0[3 + 2 * k]);
        pair(IQ3XXS_GRID[usize::from(a)], IQ3XXS_GRID[usize::from(b)])
    }

    /// Sub-block `ib`'s signs-and-scale word.
    #[inline]
    pub fn aux(self, ib: usize) -> u32 {
        u32_at(self.0, 2 + QK_K / 4 + 4 * ib)
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK_K]) {
        let d = self.d();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let aux = self.aux(ib);
            let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let signs = KSIGNS[((aux >> (7 * l)) & 127) as usize];
                dequantize_group(db, self.point(4 * ib + l), signs, y);
            }
        }
    }

    pub fn integer_form(self) -> IntegerForm {
        let mut f = IntegerForm {
            d: self.d(),
            ls: [0; 16],
            q: [0; QK_K],
        };
        for (ib, q) in f.q.chunks_exact_mut(32).enumerate() {
            let aux = self.aux(ib);
            f.ls[2 * ib..2 * ib + 2].fill(2 * (aux >> 28) as u8 + 1);
            for (l, q) in q.chunks_exact_mut(8).enumerate() {
                let signs = KSIGNS[((aux >> (7 * l)) & 127) as usize];
                signed_levels(self.point(4 * ib + l), signs, q);
            }
        }
        f
    }
}

view!(
    /// `block_iq3_s { f16 d; u8 qs[64]; u8 qh[8]; u8 signs[32]; u8 scales[4]; }`: 9-bit grid
    /// indices, two per group of 8: the low 8 bits in `qs`, the top bit of index `j` of
    /// sub-block `ib` in bit `j` of `qh[ib]`; 8-bit sign masks per group; 4-bit scales per 32
    /// weights (low nibble: the even sub-block). `y = d * (1 + 2 s) * level * sign`.
    BlockIq3S, IQ3_S_BYTES, QK_K
);

impl BlockIq3S<'_> {
    /// `w = d * ls * q`.
    pub const FACTOR: f32 = 1.0;

    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, 0)
    }

    /// Group `k`'s (0..32) 8 levels (two grid points).
    #[inline]
    pub fn point(self, k: usize) -> u64 {
        let (ib, l) = (k / 4, k % 4);
        let qh = self.0[2 + QK_K / 4 + ib];
        let index = |j: usize| {
            let high = usize::from((qh >> (2 * l + j)) & 1) << 8;
            usize::from(self.0[2 + 2 * k + j]) | high
        };
        pair(IQ3S_GRID[index(0)], IQ3S_GRID[index(1)])
    }

    /// Group `k`'s sign mask.
    #[inline]
    pub fn signs(self, k: usize) -> u8 {
        self.0[2 + QK_K / 4 + QK_K / 32 + k]
    }

    /// Sub-block `ib`'s 4-bit scale.
    #[inline]
    pub fn scale(self, ib: usize) -> u8 {
        (self.0[2 + QK_K / 4 + QK_K / 32 + QK_K / 8 + ib / 2] >> (4 * (ib % 2))) & 0xF
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK_K]) {
        let d = self.d();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let db = d * (1 + 2 * self.scale(ib) as i32) as f32;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let k = 4 * ib + l;
                dequantize_group(db, self.point(k), self.signs(k), y);
            }
        }
    }

    pub fn integer_form(self) -> IntegerForm {
        let mut f = IntegerForm {
            d: self.d(),
            ls: [0; 16],
            q: [0; QK_K],
        };
        for (ib, q) in f.q.chunks_exact_mut(32).enumerate() {
            f.ls[2 * ib..2 * ib + 2].fill(2 * self.scale(ib) + 1);
            for (l, q) in q.chunks_exact_mut(8).enumerate() {
                let k = 4 * ib + l;
                signed_levels(self.point(k), self.signs(k), q);
            }
        }
        f
    }
}

/// One IQ1 grid point (-1, 0, 1 per coordinate) plus `delta` (±1/8), times `dl`.
#[inline(always)]
fn dequantize_iq1_group(dl: f32, point: u64, delta: f32, y: &mut [f32]) {
    for (y, g) in y.iter_mut().zip(point.to_le_bytes()) {
        *y = dl * (f32::from(g as i8) + delta);
    }
}

/// One IQ1 grid point as `8 g + delta` with `delta = ±1`: the weights in eighths.
#[inline(always)]
fn iq1_eighths(point: u64, negative: bool, q: &mut [i8]) {
    let delta = if negative { -1 } else { 1 };
    for (q, g) in q.iter_mut().zip(point.to_le_bytes()) {
        *q = 8 * (g as i8) + delta;
    }
}

view!(
    /// `block_iq1_s { f16 d; u8 qs[32]; u16 qh[8]; }`: 11-bit grid indices per group of 8,
    /// the low 8 bits in `qs`, the top 3 of group `l` of sub-block `ib` in bits 3l..3l+3 of
    /// `qh[ib]`, whose bits 12-14 are the 3-bit scale and bit 15 the sign of the delta.
    /// `y = d * (2 s + 1) * (g ± 1/8)`.
    BlockIq1S, IQ1_S_BYTES, QK_K
);

impl BlockIq1S<'_> {
    /// `w = d * ls * q / 8` with `q = 8 g ± 1`.
    pub const FACTOR: f32 = 0.125;

    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, 0)
    }

    /// Sub-block `ib`'s high-bits, scale and delta word.
    #[inline]
    pub fn qh(self, ib: usize) -> u16 {
        u16_at(self.0, 2 + QK_K / 8 + 2 * ib)
    }

    /// Group `l` of sub-block `ib`'s grid point.
    #[inline]
    pub fn point(self, ib: usize, l: usize) -> u64 {
        let high = usize::from((self.qh(ib) >> (3 * l)) & 7) << 8;
        IQ1S_GRID[usize::from(self.0[2 + 4 * ib + l]) | high]
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK_K]) {
        let d = self.d();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let qh = self.qh(ib);
            let dl = d * (2 * ((qh >> 12) & 7) + 1) as f32;
            let delta = if qh & 0x8000 != 0 {
                -IQ1_DELTA
            } else {
                IQ1_DELTA
            };
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                dequantize_iq1_group(dl, self.point(ib, l), delta, y);
            }
        }
    }

    pub fn integer_form(self) -> IntegerForm {
        let mut f = IntegerForm {
            d: self.d(),
            ls: [0; 16],
            q: [0; QK_K],
        };
        for (ib, q) in f.q.chunks_exact_mut(32).enumerate() {
            let qh = self.qh(ib);
            f.ls[2 * ib..2 * ib + 2].fill(2 * ((qh >> 12) & 7) as u8 + 1);
            for (l, q) in q.chunks_exact_mut(8).enumerate() {
                iq1_eighths(self.point(ib, l), qh & 0x8000 != 0, q);
            }
        }
        f
    }
}

view!(
    /// `block_iq1_m { u8 qs[32]; u8 qh[16]; u8 scales[8]; }`: as IQ1_S's grid indices, the
    /// top 3 bits and the delta sign (bit 3) of each group in a nibble of `qh` (group `2m` low,
    /// `2m + 1` high of `qh[m]`); per 16 weights a 3-bit scale, four to a u16 of `scales`
    /// (bits 3t..3t+3, t = 0..4). The f16 super-block scale has no field of its own: its 16
    /// bits are the top nibbles of the four scale words (word `w` gives bits 4w..4w+4).
    BlockIq1M, IQ1_M_BYTES, QK_K
);

impl BlockIq1M<'_> {
    /// `w = d * ls * q / 8` with `q = 8 g ± 1`.
    pub const FACTOR: f32 = 0.125;
    /// Where the four scale words start.
    pub const SCALES_AT: usize = QK_K / 8 + QK_K / 16;

    /// Scale word `w` (0..4).
    #[inline]
    pub fn scale_word(self, w: usize) -> u16 {
        u16_at(self.0, Self::SCALES_AT + 2 * w)
    }

    /// The super-block scale, gathered from the scale words' top nibbles.
    #[inline]
    pub fn d(self) -> f32 {
        let sc = [0, 1, 2, 3].map(|w| self.scale_word(w));
        let bits =
            (sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000);
        super::blocks::f16_to_f32(bits)
    }

    /// Group `k`'s (0..32) grid point and whether its delta is negative.
    #[inline]
    pub fn point(self, k: usize) -> (u64, bool) {
        let nibble = (self.0[QK_K / 8 + k / 2] >> (4 * (k % 2))) & 0xF;
        let index = usize::from(self.0[k]) | usize::from(nibble & 7) << 8;
        (IQ1S_GRID[index], nibble & 8 != 0)
    }

    /// The 3-bit scale of weights 16h..16h+16 (h = 0..16).
    #[inline]
    pub fn scale(self, h: usize) -> u16 {
        (self.scale_word(h / 4) >> (3 * (h % 4))) & 7
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK_K]) {
        let d = self.d();
        for (h, y) in y.chunks_exact_mut(16).enumerate() {
            let dl = d * (2 * self.scale(h) + 1) as f32;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let (point, negative) = self.point(2 * h + l);
                let delta = if negative { -IQ1_DELTA } else { IQ1_DELTA };
                dequantize_iq1_group(dl, point, delta, y);
            }
        }
    }

    pub fn integer_form(self) -> IntegerForm {
        let mut f = IntegerForm {
            d: self.d(),
            ls: [0; 16],
            q: [0; QK_K],
        };
        for (h, q) in f.q.chunks_exact_mut(16).enumerate() {
            f.ls[h] = 2 * self.scale(h) as u8 + 1;
            for (l, q) in q.chunks_exact_mut(8).enumerate() {
                let (point, negative) = self.point(2 * h + l);
                iq1_eighths(point, negative, q);
            }
        }
        f
    }
}

view!(
    /// `block_mxfp4 { u8 e; u8 qs[16]; }`: an E8M0 scale (a power of two) and 32 FP4 (E2M1)
    /// codes, weight `j` the low nibble of `qs[j]`, weight `j + 16` the high one.
    /// `y = value * 2^(e - 128)` with the doubled values of [`KVALUES_MXFP4`].
    BlockMxfp4, MXFP4_BYTES, QK
);

impl BlockMxfp4<'_> {
    /// Half the block scale: the factor of the doubled values.
    #[inline]
    pub fn d(self) -> f32 {
        e8m0_half(self.0[0])
    }

    /// The 32 quants as their doubled FP4 values.
    #[inline]
    pub fn values(self) -> [i8; QK] {
        std::array::from_fn(|j| {
            let byte = self.0[1 + j % 16];
            let code = if j < 16 { byte & 0xF } else { byte >> 4 };
            KVALUES_MXFP4[usize::from(code)]
        })
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK]) {
        let d = self.d();
        for (y, v) in y.iter_mut().zip(self.values()) {
            *y = f32::from(v) * d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dequantizing through the integer form gives the same bits as `dequantize`.
    fn integer_form_agrees(f: IntegerForm, factor: f32, y: &[f32; QK_K]) {
        for (i, y) in y.iter().enumerate() {
            let w = f.d * factor * f32::from(f.ls[i / 16]) * f32::from(f.q[i]);
            assert_eq!(w.to_bits(), y.to_bits(), "weight {i}: {w} vs {y}");
        }
    }

    fn blocks<const N: usize>(seed: u64) -> Vec<[u8; N]> {
        let mut rng = crate::cpu::synth::Rng::new(seed);
        (0..20)
            .map(|_| {
                let mut b: [u8; N] = rng.bytes(N).try_into().unwrap();
                if N != IQ1_M_BYTES {
                    // A finite f16 scale.
                    b[1] &= 0b1011_1011;
                }
                b
            })
            .collect()
    }

    macro_rules! check_integer_form {
        ($name:ident, $view:ident, $bytes:expr) => {
            #[test]
            fn $name() {
                for b in blocks::<{ $bytes }>($bytes as u64) {
                    let v = $view::new(&b);
                    let mut y = [0.0; QK_K];
                    v.dequantize(&mut y);
                    if v.d().is_finite() {
                        integer_form_agrees(v.integer_form(), $view::FACTOR, &y);
                    }
                }
            }
        };
    }

    check_integer_form!(iq2_xxs_integer_form, BlockIq2Xxs, IQ2_XXS_BYTES);
    check_integer_form!(iq2_xs_integer_form, BlockIq2Xs, IQ2_XS_BYTES);
    check_integer_form!(iq2_s_integer_form, BlockIq2S, IQ2_S_BYTES);
    check_integer_form!(iq3_xxs_integer_form, BlockIq3Xxs, IQ3_XXS_BYTES);
    check_integer_form!(iq3_s_integer_form, BlockIq3S, IQ3_S_BYTES);
    check_integer_form!(iq1_s_integer_form, BlockIq1S, IQ1_S_BYTES);
    check_integer_form!(iq1_m_integer_form, BlockIq1M, IQ1_M_BYTES);

    #[test]
    fn sizes_agree_with_the_type_table() {
        use crate::quant::GgmlType as T;
        let views = [
            (T::IQ2_XXS, BlockIq2Xxs::BYTES, BlockIq2Xxs::WEIGHTS, 66),
            (T::IQ2_XS, BlockIq2Xs::BYTES, BlockIq2Xs::WEIGHTS, 74),
            (T::IQ2_S, BlockIq2S::BYTES, BlockIq2S::WEIGHTS, 82),
            (T::IQ3_XXS, BlockIq3Xxs::BYTES, BlockIq3Xxs::WEIGHTS, 98),
            (T::IQ3_S, BlockIq3S::BYTES, BlockIq3S::WEIGHTS, 110),
            (T::IQ1_S, BlockIq1S::BYTES, BlockIq1S::WEIGHTS, 50),
            (T::IQ1_M, BlockIq1M::BYTES, BlockIq1M::WEIGHTS, 56),
            (T::MXFP4, BlockMxfp4::BYTES, BlockMxfp4::WEIGHTS, 17),
        ];
        for (ty, bytes, weights, ggml) in views {
            assert_eq!((ty.type_size(), ty.block_size()), (bytes, weights), "{ty}");
            assert_eq!(bytes, ggml, "{ty}");
        }
    }

    #[test]
    fn iq1_m_scale_is_gathered_from_the_scale_words() {
        let mut b = [0u8; IQ1_M_BYTES];
        // f16 1.5 = 0x3E00: nibbles 0, 0, E, 3 (lowest first) go to words 0..4's top nibbles.
        let sc = [0x0000u16, 0x0000, 0xE000, 0x3000];
        for (w, s) in sc.iter().enumerate() {
            b[48 + 2 * w..50 + 2 * w].copy_from_slice(&s.to_le_bytes());
        }
        assert_eq!(BlockIq1M::new(&b).d(), 1.5);
        // Group 0 of weights: scale 0 -> ls 1; grid point 0 with delta +1/8.
        let mut y = [0.0; QK_K];
        BlockIq1M::new(&b).dequantize(&mut y);
        let g0 = IQ1S_GRID[0].to_le_bytes()[0] as i8;
        assert_eq!(y[0], 1.5 * (f32::from(g0) + 0.125));
    }

    #[test]
    fn iq2_xxs_hand_built_block() {
        let mut b = [0u8; IQ2_XXS_BYTES];
        b[0..2].copy_from_slice(&0x4000u16.to_le_bytes()); // d = 2
        b[2] = 1; // group 0: point 1 = (43, 8, 8, ...)
                  // Sub-block 0: sign index 1 for group 0 (weight 0 negative, parity flips weight 7),
                  // scale 3: db = 2 * 3.5 * 0.25 = 1.75.
        let aux: u32 = 1 | (3 << 28);
        b[6..10].copy_from_slice(&aux.to_le_bytes());
        let mut y = [0.0; QK_K];
        BlockIq2Xxs::new(&b).dequantize(&mut y);
        assert_eq!(y[0], -1.75 * 43.0);
        assert_eq!(y[1], 1.75 * 8.0);
        assert_eq!(y[7], -1.75 * 8.0);
        assert_eq!(y[8], 1.75 * 8.0, "group 1: point 0, no signs");
        assert_eq!(y[32], 2.0, "sub-block 1: 2 * 0.5 * 0.25 * 8");
    }

    /// Coordinate `j` of an 8-byte grid point, as a level.
    fn level(point: u64, j: usize) -> f32 {
        f32::from(point.to_le_bytes()[j])
    }

    const ONE: [u8; 2] = [0x00, 0x3C];

    #[test]
    fn iq2_xs_hand_built_block() {
        let mut b = [0u8; IQ2_XS_BYTES];
        b[0..2].copy_from_slice(&ONE);
        // Group 0: grid index 1, sign index 1 (weights 0 and 7 negative).
        b[2..4].copy_from_slice(&(1u16 | 1 << 9).to_le_bytes());
        b[66] = 0x21; // sub-block 0: scale 1 for weights 0..16, 2 for 16..32
        let mut y = [0.0; QK_K];
        BlockIq2Xs::new(&b).dequantize(&mut y);
        assert_eq!(y[0], -0.375 * level(IQ2XS_GRID[1], 0));
        assert_eq!(y[7], -0.375 * level(IQ2XS_GRID[1], 7));
        assert_eq!(y[1], 0.375 * level(IQ2XS_GRID[1], 1));
        assert_eq!(y[16], 0.625 * 8.0, "group 2: point 0, the high scale");
    }

    #[test]
    fn iq2_s_hand_built_block() {
        let mut b = [0u8; IQ2_S_BYTES];
        b[0..2].copy_from_slice(&ONE);
        b[2] = 5; // group 0: index low bits
        b[66] = 0b01; // qh[0]: group 0's top bits 1 -> index 261
        b[34] = 0x02; // group 0's sign mask: weight 1 negative
        b[74] = 0x03; // scales[0]: 3 for weights 0..16
        let mut y = [0.0; QK_K];
        BlockIq2S::new(&b).dequantize(&mut y);
        assert_eq!(y[0], 0.875 * level(IQ2S_GRID[261], 0));
        assert_eq!(y[1], -0.875 * level(IQ2S_GRID[261], 1));
    }

    #[test]
    fn iq3_xxs_hand_built_block() {
        let mut b = [0u8; IQ3_XXS_BYTES];
        b[0..2].copy_from_slice(&ONE);
        (b[2], b[3]) = (1, 2); // group 0: points 1 (weights 0..4) and 2 (4..8)
        let aux: u32 = 1 | 2 << 28; // sign index 1: weights 0 and 7; scale 2: db = 2.5 * 0.5
        b[66..70].copy_from_slice(&aux.to_le_bytes());
        let mut y = [0.0; QK_K];
        BlockIq3Xxs::new(&b).dequantize(&mut y);
        let g = |i: usize, j: usize| f32::from(IQ3XXS_GRID[i].to_le_bytes()[j]);
        assert_eq!(y[0], -1.25 * g(1, 0));
        assert_eq!(y[4], 1.25 * g(2, 0));
        assert_eq!(y[7], -1.25 * g(2, 3));
    }

    #[test]
    fn iq3_s_hand_built_block() {
        let mut b = [0u8; IQ3_S_BYTES];
        b[0..2].copy_from_slice(&ONE);
        b[3] = 7; // group 0's second point: low bits 7
        b[66] = 0b10; // qh[0] bit 1: that point's top bit -> index 263
        b[74] = 0x10; // group 0's sign mask: weight 4 negative
        b[106] = 0x30; // sub-block 0 scale 0 (db 1), sub-block 1 scale 3 (db 7)
        let mut y = [0.0; QK_K];
        BlockIq3S::new(&b).dequantize(&mut y);
        assert_eq!(y[4], -f32::from(IQ3S_GRID[263].to_le_bytes()[0]));
        assert_eq!(y[32], 7.0, "sub-block 1: point 0 (level 1) times 7");
    }

    #[test]
    fn iq1_s_hand_built_block() {
        let mut b = [0u8; IQ1_S_BYTES];
        b[0..2].copy_from_slice(&0x4000u16.to_le_bytes()); // d = 2
        b[2] = 3; // group 0: low index bits
                  // qh[0]: group 0's top bits 1 (index 259), scale 2 (dl = 2 * 5), negative delta.
        let qh: u16 = 1 | 2 << 12 | 0x8000;
        b[34..36].copy_from_slice(&qh.to_le_bytes());
        let mut y = [0.0; QK_K];
        BlockIq1S::new(&b).dequantize(&mut y);
        let g = |j: usize| f32::from(IQ1S_GRID[259].to_le_bytes()[j] as i8);
        assert_eq!(y[0], 10.0 * (g(0) - 0.125));
        assert_eq!(y[8], 10.0 * (f32::from(IQ1S_GRID[0] as u8 as i8) - 0.125));
        let g0 = f32::from(IQ1S_GRID[0] as u8 as i8);
        assert_eq!(
            y[32],
            2.0 * (g0 + 0.125),
            "sub-block 1: point 0, scale 1, +delta"
        );
    }

    #[test]
    fn mxfp4_hand_built_block() {
        let mut b = [0u8; MXFP4_BYTES];
        b[0] = 129; // 2^(129 - 128) = 2
        b[1] = 0xF7; // weight 0: code 7 (+12 doubled = 6.0), weight 16: code 15 (-6.0)
        let mut y = [0.0; QK];
        BlockMxfp4::new(&b).dequantize(&mut y);
        assert_eq!(y[0], 24.0);
        assert_eq!(y[16], -24.0);
        assert_eq!(y[1], 0.0);
    }
}
