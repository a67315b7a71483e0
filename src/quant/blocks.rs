//! Byte layouts of the GGML quantized blocks, as `ggml-common.h` defines them.
//!
//! Each `Block*` type is a zero-cost view over one block's bytes (`&[u8; BYTES]`). Blocks sit
//! unaligned in a GGUF file, so every multi-byte field is decoded with `from_le_bytes`; no
//! pointer casts, no `unsafe`. Split a row into blocks with [`slice::as_chunks`]:
//!
//! ```
//! use qwen::quant::blocks::BlockQ8_0;
//! let row = [0u8; 2 * BlockQ8_0::BYTES];
//! let (blocks, rest) = row.as_chunks::<{ BlockQ8_0::BYTES }>();
//! assert!(rest.is_empty());
//! let scale = BlockQ8_0::new(&blocks[1]).d();
//! assert_eq!(scale, 0.0);
//! ```
//!
//! Each view also has `dequantize`, which follows the operation order of ggml's reference
//! `dequantize_row_*` (ggml-quants.c) so its output is bit-identical to llama.cpp's.
//!
//! Why the bits cannot drift: an f16 scale has 11 significant bits, a sub-block scale at most 8
//! and a quant at most 6 (the IQ4 levels 8), so every product below fits f32's 24-bit
//! significand exactly except Q6_K's `d * sc * q` and IQ4_XS's `d * (ls - 32) * level` (up to
//! 25 bits, rounded once whichever way they are grouped). Each output therefore takes at most
//! one rounding (that product, or the final `+ m` / `- m1`), and a fused multiply-add, which a
//! C compiler may emit for ggml on FMA hardware, gives the same result. Q8_0, Q4_0, Q5_0,
//! Q3_K and IQ4_NL outputs are exact.

/// Weights per block of the legacy formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): ggml's `QK4_0` etc.
pub const QK: usize = 32;
/// Weights per super-block of the K-quants: ggml's `QK_K`.
pub const QK_K: usize = 256;
/// Bytes of the packed 6-bit scales and mins of Q4_K and Q5_K: ggml's `K_SCALE_SIZE`.
pub const K_SCALE_SIZE: usize = 12;

/// Bytes per Q8_0 block.
pub const Q8_0_BYTES: usize = 2 + QK;
/// Bytes per Q4_0 block.
pub const Q4_0_BYTES: usize = 2 + QK / 2;
/// Bytes per Q4_1 block.
pub const Q4_1_BYTES: usize = 4 + QK / 2;
/// Bytes per Q5_0 block.
pub const Q5_0_BYTES: usize = 2 + 4 + QK / 2;
/// Bytes per Q5_1 block.
pub const Q5_1_BYTES: usize = 4 + 4 + QK / 2;
/// Bytes per Q4_K block.
pub const Q4_K_BYTES: usize = 4 + K_SCALE_SIZE + QK_K / 2;
/// Bytes per Q5_K block.
pub const Q5_K_BYTES: usize = 4 + K_SCALE_SIZE + QK_K / 8 + QK_K / 2;
/// Bytes per Q6_K block.
pub const Q6_K_BYTES: usize = QK_K / 2 + QK_K / 4 + QK_K / 16 + 2;
/// Bytes per Q2_K block.
pub const Q2_K_BYTES: usize = QK_K / 16 + QK_K / 4 + 4;
/// Bytes per Q3_K block.
pub const Q3_K_BYTES: usize = QK_K / 8 + QK_K / 4 + K_SCALE_SIZE + 2;
/// Bytes per IQ4_NL block.
pub const IQ4_NL_BYTES: usize = 2 + QK / 2;
/// Bytes per IQ4_XS block.
pub const IQ4_XS_BYTES: usize = 2 + 2 + QK_K / 64 + QK_K / 2;

/// The 16 levels of the non-linear 4-bit types IQ4_NL and IQ4_XS (ggml's `kvalues_iq4nl`): a
/// 4-bit index selects one, which the block scale multiplies. Denser near zero, where most
/// weights lie, than the evenly spaced levels of Q4_0.
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// The `N` bytes of `bytes` that start at `at`. Callers pass constant ranges inside their block,
/// so the conversion cannot fail; the `expect` guards against a typo in this file, not bad input.
#[inline(always)]
fn field<const N: usize>(bytes: &[u8], at: usize) -> &[u8; N] {
    bytes[at..at + N]
        .try_into()
        .expect("block field ranges are constants inside the block")
}

/// The f16 with bit pattern `bits`, widened exactly to f32 (ggml's `GGML_FP16_TO_FP32`).
///
/// The same result as `half::f16::to_f32` for every input (checked over all 65536), but plain
/// integer and float operations the compiler can inline and vectorize on any CPU; `half` picks
/// F16C at run time behind a call that neither inlines nor vectorizes. This is ggml's own
/// portable `ggml_compute_fp16_to_fp32`: shift the exponent and mantissa into place and rescale
/// by a power of two (exact), or, for subnormals, let one exact subtraction normalize them.
#[inline(always)]
pub fn f16_to_f32(bits: u16) -> f32 {
    let w = u32::from(bits) << 16;
    let sign = w & 0x8000_0000;
    // Exponent and mantissa at the top, sign dropped.
    let two_w = w << 1;
    // Normal, inf, NaN: add 224 to the exponent so that 31 (inf/NaN) lands on 255, then scale
    // by 2^-112, which leaves the net rebias 112 = 127 - 15.
    let normalized = f32::from_bits((two_w >> 4) + (0xE0 << 23)) * f32::from_bits(0x0780_0000);
    // Subnormal: the mantissa as the low bits of 0.5 * 2^k, minus 0.5.
    let denormalized = f32::from_bits((two_w >> 17) | (126 << 23)) - 0.5;
    let magnitude = if two_w < (1 << 27) {
        denormalized.to_bits()
    } else {
        normalized.to_bits()
    };
    f32::from_bits(sign | magnitude)
}

/// An f16 stored little-endian at `bytes[at..at + 2]`, widened exactly to f32.
#[inline(always)]
pub fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes(*field::<2>(bytes, at)))
}

/// A bf16 stored little-endian at `bytes[at..at + 2]`, widened exactly (bf16 is the top half of
/// an f32: ggml's `GGML_BF16_TO_FP32`).
#[inline(always)]
pub fn bf16_at(bytes: &[u8], at: usize) -> f32 {
    f32::from_bits(u32::from(u16::from_le_bytes(*field::<2>(bytes, at))) << 16)
}

/// `x` rounded to the nearest f16 (ties to even) and widened back, as ggml's
/// `GGML_FP32_TO_FP16` then `GGML_FP16_TO_FP32` do (the f16 scales of quantized activations, the
/// f16 KV cache).
#[inline(always)]
pub fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0..8) of a Q4_K or Q5_K
/// super-block. Sub-blocks 0..4 keep their values in the low 6 bits of bytes `j` and `j + 4`;
/// sub-blocks 4..8 keep their low 4 bits in byte `j + 4` and their top 2 bits in the spare high
/// bits of bytes `j - 4` (scale) and `j` (min).
#[inline(always)]
pub fn scale_min_k4(j: usize, scales: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        let sc = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
        let m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
        (sc, m)
    }
}

/// All eight (scale, min) pairs of a Q4_K/Q5_K super-block, from its [`K_SCALE_SIZE`] packed
/// scale bytes (`block[4..16]`; the kernels pass that slice of a block read in place).
#[inline(always)]
pub fn scales_mins_k4(scales: &[u8]) -> ([u8; 8], [u8; 8]) {
    let scales = field::<K_SCALE_SIZE>(scales, 0);
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        (sc[j], mn[j]) = scale_min_k4(j, scales);
    }
    (sc, mn)
}

/// `block_q8_0 { f16 d; i8 qs[32]; }`: `y = qs[j] * d`.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ8_0<'a>(&'a [u8; Q8_0_BYTES]);

impl<'a> BlockQ8_0<'a> {
    pub const BYTES: usize = Q8_0_BYTES;
    pub const WEIGHTS: usize = QK;

    #[inline]
    pub fn new(bytes: &'a [u8; Q8_0_BYTES]) -> Self {
        Self(bytes)
    }

    /// The block scale.
    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, 0)
    }

    /// The 32 quants as raw bytes; each is an `i8` in two's complement.
    #[inline]
    pub fn qs(self) -> &'a [u8; QK] {
        field(self.0, 2)
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK]) {
        let d = self.d();
        for (y, &q) in y.iter_mut().zip(self.qs()) {
            *y = f32::from(q as i8) * d;
        }
    }
}

/// `block_q4_0 { f16 d; u8 qs[16]; }`: weight `j` is the low nibble of `qs[j]` and weight
/// `j + 16` the high nibble, each offset by 8: `y = (q - 8) * d`.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ4_0<'a>(&'a [u8; Q4_0_BYTES]);

impl<'a> BlockQ4_0<'a> {
    pub const BYTES: usize = Q4_0_BYTES;
    pub const WEIGHTS: usize = QK;

    #[inline]
    pub fn new(bytes: &'a [u8; Q4_0_BYTES]) -> Self {
        Self(bytes)
    }

    /// The block scale.
    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, 0)
    }

    /// Packed nibbles: weights `j` (low) and `j + 16` (high).
    #[inline]
    pub fn qs(self) -> &'a [u8; QK / 2] {
        field(self.0, 2)
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK]) {
        let d = self.d();
        let (lo, hi) = y.split_at_mut(QK / 2);
        for ((lo, hi), &q) in lo.iter_mut().zip(hi).zip(self.qs()) {
            *lo = ((q & 0xF) as i32 - 8) as f32 * d;
            *hi = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// `block_q4_1 { f16 d; f16 m; u8 qs[16]; }`: nibbles as Q4_0, unsigned: `y = q * d + m`.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ4_1<'a>(&'a [u8; Q4_1_BYTES]);

impl<'a> BlockQ4_1<'a> {
    pub const BYTES: usize = Q4_1_BYTES;
    pub const WEIGHTS: usize = QK;

    #[inline]
    pub fn new(bytes: &'a [u8; Q4_1_BYTES]) -> Self {
        Self(bytes)
    }

    /// The block scale.
    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, 0)
    }

    /// The block minimum (added, not subtracted).
    #[inline]
    pub fn m(self) -> f32 {
        f16_at(self.0, 2)
    }

    /// Packed nibbles: weights `j` (low) and `j + 16` (high).
    #[inline]
    pub fn qs(self) -> &'a [u8; QK / 2] {
        field(self.0, 4)
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK]) {
        let (d, m) = (self.d(), self.m());
        let (lo, hi) = y.split_at_mut(QK / 2);
        for ((lo, hi), &q) in lo.iter_mut().zip(hi).zip(self.qs()) {
            *lo = f32::from(q & 0xF) * d + m;
            *hi = f32::from(q >> 4) * d + m;
        }
    }
}

/// `1 << j`: the fifth bit of Q5_0/Q5_1 weight `j` in `qh`. Testing against a table of constant
/// masks, rather than shifting `qh` by `j`, lets the loops vectorize without per-lane shifts.
const QH_BITS: [u32; QK] = {
    let mut bits = [0; QK];
    let mut j = 0;
    while j < QK {
        bits[j] = 1 << j;
        j += 1;
    }
    bits
};

/// The fifth bit of a Q5_0/Q5_1 weight, placed at bit 4 (ggml's `xh_0`, `xh_1`).
#[inline(always)]
fn q5_high_bit(qh: u32, mask: u32) -> u8 {
    if qh & mask != 0 {
        0x10
    } else {
        0
    }
}

/// `block_q5_0 { f16 d; u8 qh[4]; u8 qs[16]; }`: Q4_0 nibbles plus a fifth bit per weight from
/// the little-endian `u32` `qh` (bit `j` for weight `j`), offset by 16: `y = (q - 16) * d`.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ5_0<'a>(&'a [u8; Q5_0_BYTES]);

impl<'a> BlockQ5_0<'a> {
    pub const BYTES: usize = Q5_0_BYTES;
    pub const WEIGHTS: usize = QK;

    #[inline]
    pub fn new(bytes: &'a [u8; Q5_0_BYTES]) -> Self {
        Self(bytes)
    }

    /// The block scale.
    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, 0)
    }

    /// The fifth bits: bit `j` belongs to weight `j`.
    #[inline]
    pub fn qh(self) -> u32 {
        u32::from_le_bytes(*field(self.0, 2))
    }

    /// Packed low nibbles: weights `j` (low) and `j + 16` (high).
    #[inline]
    pub fn qs(self) -> &'a [u8; QK / 2] {
        field(self.0, 6)
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK]) {
        let (d, qh) = (self.d(), self.qh());
        let (lo, hi) = y.split_at_mut(QK / 2);
        let (masks_lo, masks_hi) = QH_BITS.split_at(QK / 2);
        let masks = masks_lo.iter().zip(masks_hi);
        for (((lo, hi), &q), (&m0, &m1)) in lo.iter_mut().zip(hi).zip(self.qs()).zip(masks) {
            let (h0, h1) = (q5_high_bit(qh, m0), q5_high_bit(qh, m1));
            *lo = (((q & 0xF) | h0) as i32 - 16) as f32 * d;
            *hi = (((q >> 4) | h1) as i32 - 16) as f32 * d;
        }
    }
}

/// `block_q5_1 { f16 d; f16 m; u8 qh[4]; u8 qs[16]; }`: Q5_0 bits, unsigned: `y = q * d + m`.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ5_1<'a>(&'a [u8; Q5_1_BYTES]);

impl<'a> BlockQ5_1<'a> {
    pub const BYTES: usize = Q5_1_BYTES;
    pub const WEIGHTS: usize = QK;

    #[inline]
    pub fn new(bytes: &'a [u8; Q5_1_BYTES]) -> Self {
        Self(bytes)
    }

    /// The block scale.
    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, 0)
    }

    /// The block minimum (added, not subtracted).
    #[inline]
    pub fn m(self) -> f32 {
        f16_at(self.0, 2)
    }

    /// The fifth bits: bit `j` belongs to weight `j`.
    #[inline]
    pub fn qh(self) -> u32 {
        u32::from_le_bytes(*field(self.0, 4))
    }

    /// Packed low nibbles: weights `j` (low) and `j + 16` (high).
    #[inline]
    pub fn qs(self) -> &'a [u8; QK / 2] {
        field(self.0, 8)
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK]) {
        let (d, m, qh) = (self.d(), self.m(), self.qh());
        let (lo, hi) = y.split_at_mut(QK / 2);
        let (masks_lo, masks_hi) = QH_BITS.split_at(QK / 2);
        let masks = masks_lo.iter().zip(masks_hi);
        for (((lo, hi), &q), (&m0, &m1)) in lo.iter_mut().zip(hi).zip(self.qs()).zip(masks) {
            let (h0, h1) = (q5_high_bit(qh, m0), q5_high_bit(qh, m1));
            *lo = f32::from((q & 0xF) | h0) * d + m;
            *hi = f32::from((q >> 4) | h1) * d + m;
        }
    }
}

/// `block_q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }`: 8 sub-blocks of 32 weights,
/// each with a 6-bit scale and min ([`scale_min_k4`]). Each 64 weights share 32 bytes of `qs`:
/// the low nibbles are sub-block `2i`, the high nibbles sub-block `2i + 1`.
/// `y = (d * sc) * q - (dmin * m)`.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ4K<'a>(&'a [u8; Q4_K_BYTES]);

impl<'a> BlockQ4K<'a> {
    pub const BYTES: usize = Q4_K_BYTES;
    pub const WEIGHTS: usize = QK_K;

    #[inline]
    pub fn new(bytes: &'a [u8; Q4_K_BYTES]) -> Self {
        Self(bytes)
    }

    /// The super-block scale of the sub-block scales.
    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, 0)
    }

    /// The super-block scale of the sub-block mins.
    #[inline]
    pub fn dmin(self) -> f32 {
        f16_at(self.0, 2)
    }

    /// Packed 6-bit scales and mins; decode with [`scale_min_k4`].
    #[inline]
    pub fn scales(self) -> &'a [u8; K_SCALE_SIZE] {
        field(self.0, 4)
    }

    /// Packed nibbles, 32 bytes per 64 weights.
    #[inline]
    pub fn qs(self) -> &'a [u8; QK_K / 2] {
        field(self.0, 4 + K_SCALE_SIZE)
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK_K]) {
        let (d, dmin, scales) = (self.d(), self.dmin(), self.scales());
        let (qs, _) = self.qs().as_chunks::<32>();
        let (ys, _) = y.as_chunks_mut::<64>();
        for (i, (q, y)) in qs.iter().zip(ys).enumerate() {
            let (sc1, m1) = scale_min_k4(2 * i, scales);
            let (sc2, m2) = scale_min_k4(2 * i + 1, scales);
            let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
            let (lo, hi) = y.split_at_mut(32);
            for ((lo, hi), &q) in lo.iter_mut().zip(hi).zip(q) {
                *lo = d1 * f32::from(q & 0xF) - m1;
                *hi = d2 * f32::from(q >> 4) - m2;
            }
        }
    }
}

/// `block_q5_K { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }`: Q4_K plus a fifth
/// bit per weight: for the `i`-th 64 weights, bit `2i` of `qh[l]` belongs to weight `l` of the
/// low-nibble sub-block and bit `2i + 1` to weight `l` of the high-nibble one.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ5K<'a>(&'a [u8; Q5_K_BYTES]);

impl<'a> BlockQ5K<'a> {
    pub const BYTES: usize = Q5_K_BYTES;
    pub const WEIGHTS: usize = QK_K;

    #[inline]
    pub fn new(bytes: &'a [u8; Q5_K_BYTES]) -> Self {
        Self(bytes)
    }

    /// The super-block scale of the sub-block scales.
    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, 0)
    }

    /// The super-block scale of the sub-block mins.
    #[inline]
    pub fn dmin(self) -> f32 {
        f16_at(self.0, 2)
    }

    /// Packed 6-bit scales and mins; decode with [`scale_min_k4`].
    #[inline]
    pub fn scales(self) -> &'a [u8; K_SCALE_SIZE] {
        field(self.0, 4)
    }

    /// The fifth bits, one bit plane per sub-block.
    #[inline]
    pub fn qh(self) -> &'a [u8; QK_K / 8] {
        field(self.0, 4 + K_SCALE_SIZE)
    }

    /// Packed low nibbles, 32 bytes per 64 weights.
    #[inline]
    pub fn qs(self) -> &'a [u8; QK_K / 2] {
        field(self.0, 4 + K_SCALE_SIZE + QK_K / 8)
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK_K]) {
        let (d, dmin, scales, qh) = (self.d(), self.dmin(), self.scales(), self.qh());
        let (qs, _) = self.qs().as_chunks::<32>();
        let (ys, _) = y.as_chunks_mut::<64>();
        for (i, (q, y)) in qs.iter().zip(ys).enumerate() {
            let (sc1, m1) = scale_min_k4(2 * i, scales);
            let (sc2, m2) = scale_min_k4(2 * i + 1, scales);
            let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
            let (u1, u2) = (1u8 << (2 * i), 2u8 << (2 * i));
            let (lo, hi) = y.split_at_mut(32);
            for (((lo, hi), &q), &h) in lo.iter_mut().zip(hi).zip(q).zip(qh) {
                let h1 = if h & u1 != 0 { 16 } else { 0 };
                let h2 = if h & u2 != 0 { 16 } else { 0 };
                *lo = d1 * f32::from((q & 0xF) + h1) - m1;
                *hi = d2 * f32::from((q >> 4) + h2) - m2;
            }
        }
    }
}

/// `block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }`: 16 sub-blocks of 16 weights
/// with signed 8-bit scales. Each 128 weights use 64 bytes of `ql` and 32 of `qh`: weight
/// `l + 32k` (k = 0..4) takes a nibble of `ql[l]` (k even) or `ql[l + 32]` (k odd), low for
/// k < 2, and bits `2k..2k+2` of `qh[l]` as its top two bits; offset by 32.
/// `y = (d * sc) * (q - 32)`.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ6K<'a>(&'a [u8; Q6_K_BYTES]);

impl<'a> BlockQ6K<'a> {
    pub const BYTES: usize = Q6_K_BYTES;
    pub const WEIGHTS: usize = QK_K;

    #[inline]
    pub fn new(bytes: &'a [u8; Q6_K_BYTES]) -> Self {
        Self(bytes)
    }

    /// Low 4 bits of the quants.
    #[inline]
    pub fn ql(self) -> &'a [u8; QK_K / 2] {
        field(self.0, 0)
    }

    /// High 2 bits of the quants.
    #[inline]
    pub fn qh(self) -> &'a [u8; QK_K / 4] {
        field(self.0, QK_K / 2)
    }

    /// The 16 sub-block scales as raw bytes; each is an `i8` in two's complement.
    #[inline]
    pub fn scales(self) -> &'a [u8; QK_K / 16] {
        field(self.0, QK_K / 2 + QK_K / 4)
    }

    /// The super-block scale (stored last in this format).
    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, QK_K / 2 + QK_K / 4 + QK_K / 16)
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK_K]) {
        let d = self.d();
        let (ql, _) = self.ql().as_chunks::<64>();
        let (qh, _) = self.qh().as_chunks::<32>();
        let (sc, _) = self.scales().as_chunks::<8>();
        let (ys, _) = y.as_chunks_mut::<128>();
        for (((ql, qh), sc), y) in ql.iter().zip(qh).zip(sc).zip(ys) {
            let ds = sc.map(|s| d * f32::from(s as i8));
            // Weights l and l + 16 of each 32 have different scales: two halves of 16.
            for half in 0..2 {
                for l in 16 * half..16 * half + 16 {
                    let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                    let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                    let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                    let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                    y[l] = ds[half] * q1 as f32;
                    y[l + 32] = ds[half + 2] * q2 as f32;
                    y[l + 64] = ds[half + 4] * q3 as f32;
                    y[l + 96] = ds[half + 6] * q4 as f32;
                }
            }
        }
    }
}

/// `block_q2_K { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin; }`: 16 sub-blocks of 16 weights,
/// each with a 4-bit scale (low nibble of `scales[s]`) and a 4-bit min (high nibble). Each
/// 128 weights share 32 bytes of `qs`: weight `l + 32k` (l < 32, k = 0..4) is bits `2k..2k+2`
/// of `qs[l]`. `y = (d * sc) * q - (dmin * m)`.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ2K<'a>(&'a [u8; Q2_K_BYTES]);

impl<'a> BlockQ2K<'a> {
    pub const BYTES: usize = Q2_K_BYTES;
    pub const WEIGHTS: usize = QK_K;

    #[inline]
    pub fn new(bytes: &'a [u8; Q2_K_BYTES]) -> Self {
        Self(bytes)
    }

    /// Sub-block `s`'s scale (low nibble) and min (high nibble).
    #[inline]
    pub fn scales(self) -> &'a [u8; QK_K / 16] {
        field(self.0, 0)
    }

    /// 2-bit quants, four per byte.
    #[inline]
    pub fn qs(self) -> &'a [u8; QK_K / 4] {
        field(self.0, QK_K / 16)
    }

    /// The super-block scale of the sub-block scales.
    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, QK_K / 16 + QK_K / 4)
    }

    /// The super-block scale of the sub-block mins.
    #[inline]
    pub fn dmin(self) -> f32 {
        f16_at(self.0, QK_K / 16 + QK_K / 4 + 2)
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK_K]) {
        let (d, dmin, scales) = (self.d(), self.dmin(), self.scales());
        let (qs, _) = self.qs().as_chunks::<32>();
        let (ys, _) = y.as_chunks_mut::<16>();
        // Sub-block s = 8n + 2k + h: bits 2k of qs[32n + 16h..][..16].
        for (s, y) in ys.iter_mut().enumerate() {
            let (n, k, h) = (s / 8, (s / 2) % 4, s % 2);
            let sc = scales[s];
            let (dl, ml) = (d * f32::from(sc & 0xF), dmin * f32::from(sc >> 4));
            for (y, &q) in y.iter_mut().zip(&qs[n][16 * h..16 * h + 16]) {
                *y = dl * f32::from((q >> (2 * k)) & 3) - ml;
            }
        }
    }
}

/// Sub-block `j` (0..16)'s 6-bit scale of a Q3_K super-block, minus 32. The low 4 bits are a
/// nibble of `scales[j % 8]` (low for j < 8), the top 2 bits come from `scales[8 + j % 4]`,
/// bits `2 (j / 4)..`: ggml's `kmask` unpacking, one scale at a time.
#[inline(always)]
pub fn scale_q3_k(j: usize, scales: &[u8; K_SCALE_SIZE]) -> i8 {
    let low = if j < 8 {
        scales[j] & 0xF
    } else {
        scales[j - 8] >> 4
    };
    let high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    (low | (high << 4)) as i8 - 32
}

/// `block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d; }`: 16 sub-blocks of 16
/// weights with signed 6-bit scales ([`scale_q3_k`]). The low 2 bits of each quant are laid
/// out as Q2_K's; weight `l + 32k` of the `n`-th 128 (l < 32) takes its third bit from bit
/// `4n + k` of `hmask[l]`, and a clear bit subtracts 4: `y = (d * sc) * (q - 4 * !h)`.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ3K<'a>(&'a [u8; Q3_K_BYTES]);

impl<'a> BlockQ3K<'a> {
    pub const BYTES: usize = Q3_K_BYTES;
    pub const WEIGHTS: usize = QK_K;

    #[inline]
    pub fn new(bytes: &'a [u8; Q3_K_BYTES]) -> Self {
        Self(bytes)
    }

    /// The third bits of the quants, one bit plane per 32 weights.
    #[inline]
    pub fn hmask(self) -> &'a [u8; QK_K / 8] {
        field(self.0, 0)
    }

    /// The low 2 bits of the quants, four per byte.
    #[inline]
    pub fn qs(self) -> &'a [u8; QK_K / 4] {
        field(self.0, QK_K / 8)
    }

    /// Packed 6-bit scales; decode with [`scale_q3_k`].
    #[inline]
    pub fn scales(self) -> &'a [u8; K_SCALE_SIZE] {
        field(self.0, QK_K / 8 + QK_K / 4)
    }

    /// The super-block scale.
    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, QK_K / 8 + QK_K / 4 + K_SCALE_SIZE)
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK_K]) {
        let (d, scales, hmask) = (self.d(), self.scales(), self.hmask());
        let (qs, _) = self.qs().as_chunks::<32>();
        let (ys, _) = y.as_chunks_mut::<16>();
        for (s, y) in ys.iter_mut().enumerate() {
            let (n, k, h) = (s / 8, (s / 2) % 4, s % 2);
            let dl = d * f32::from(scale_q3_k(s, scales));
            let bit = 1u8 << (4 * n + k);
            let lows = &qs[n][16 * h..16 * h + 16];
            let highs = &hmask[16 * h..16 * h + 16];
            for ((y, &q), &hm) in y.iter_mut().zip(lows).zip(highs) {
                let sub = if hm & bit != 0 { 0 } else { 4 };
                *y = dl * f32::from(((q >> (2 * k)) & 3) as i8 - sub);
            }
        }
    }
}

/// `block_iq4_nl { f16 d; u8 qs[16]; }`: nibbles as Q4_0 (weight `j` low, `j + 16` high), each
/// an index into [`KVALUES_IQ4NL`]: `y = d * level[q]`.
#[derive(Debug, Clone, Copy)]
pub struct BlockIq4Nl<'a>(&'a [u8; IQ4_NL_BYTES]);

impl<'a> BlockIq4Nl<'a> {
    pub const BYTES: usize = IQ4_NL_BYTES;
    pub const WEIGHTS: usize = QK;

    #[inline]
    pub fn new(bytes: &'a [u8; IQ4_NL_BYTES]) -> Self {
        Self(bytes)
    }

    /// The block scale.
    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, 0)
    }

    /// Packed level indices: weights `j` (low) and `j + 16` (high).
    #[inline]
    pub fn qs(self) -> &'a [u8; QK / 2] {
        field(self.0, 2)
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK]) {
        nl_levels(self.d(), self.qs(), y);
    }
}

/// `y = d * level[q]` for one block of 32 packed level indices (IQ4_NL, IQ4_XS sub-blocks).
#[inline(always)]
fn nl_levels(d: f32, qs: &[u8; QK / 2], y: &mut [f32; QK]) {
    let (lo, hi) = y.split_at_mut(QK / 2);
    for ((lo, hi), &q) in lo.iter_mut().zip(hi).zip(qs) {
        *lo = d * f32::from(KVALUES_IQ4NL[usize::from(q & 0xF)]);
        *hi = d * f32::from(KVALUES_IQ4NL[usize::from(q >> 4)]);
    }
}

/// `block_iq4_xs { f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]; }`: 8 sub-blocks of 32,
/// each an IQ4_NL block without its own f16: a 6-bit scale `ls` (low 4 bits a nibble of
/// `scales_l[j / 2]`, top 2 bits bits `2j..2j+2` of `scales_h`) times the super-block's `d`:
/// `y = (d * (ls - 32)) * level[q]`.
#[derive(Debug, Clone, Copy)]
pub struct BlockIq4Xs<'a>(&'a [u8; IQ4_XS_BYTES]);

impl<'a> BlockIq4Xs<'a> {
    pub const BYTES: usize = IQ4_XS_BYTES;
    pub const WEIGHTS: usize = QK_K;

    #[inline]
    pub fn new(bytes: &'a [u8; IQ4_XS_BYTES]) -> Self {
        Self(bytes)
    }

    /// The super-block scale.
    #[inline]
    pub fn d(self) -> f32 {
        f16_at(self.0, 0)
    }

    /// The top 2 bits of the 8 sub-block scales.
    #[inline]
    pub fn scales_h(self) -> u16 {
        u16::from_le_bytes(*field(self.0, 2))
    }

    /// The low 4 bits of the 8 sub-block scales, two per byte.
    #[inline]
    pub fn scales_l(self) -> &'a [u8; QK_K / 64] {
        field(self.0, 4)
    }

    /// Sub-block `j`'s scale, `ls - 32` (-32..32).
    #[inline]
    pub fn scale(self, j: usize) -> i8 {
        let low = (self.scales_l()[j / 2] >> (4 * (j % 2))) & 0xF;
        let high = ((self.scales_h() >> (2 * j)) & 3) as u8;
        (low | (high << 4)) as i8 - 32
    }

    /// Packed level indices, 16 bytes per sub-block (as an IQ4_NL block's).
    #[inline]
    pub fn qs(self) -> &'a [u8; QK_K / 2] {
        field(self.0, 8)
    }

    #[inline]
    pub fn dequantize(self, y: &mut [f32; QK_K]) {
        let d = self.d();
        let (qs, _) = self.qs().as_chunks::<{ QK / 2 }>();
        let (ys, _) = y.as_chunks_mut::<QK>();
        for (j, (q, y)) in qs.iter().zip(ys).enumerate() {
            nl_levels(d * f32::from(self.scale(j)), q, y);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::GgmlType;

    #[test]
    fn f16_to_f32_equals_half_for_every_bit_pattern() {
        for bits in 0..=u16::MAX {
            let (got, want) = (f16_to_f32(bits), half::f16::from_bits(bits).to_f32());
            if want.is_nan() {
                assert!(got.is_nan(), "{bits:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{bits:#06x}");
            }
        }
    }

    #[test]
    fn sizes_agree_with_the_type_table() {
        let views = [
            (GgmlType::Q8_0, BlockQ8_0::BYTES, BlockQ8_0::WEIGHTS),
            (GgmlType::Q4_0, BlockQ4_0::BYTES, BlockQ4_0::WEIGHTS),
            (GgmlType::Q4_1, BlockQ4_1::BYTES, BlockQ4_1::WEIGHTS),
            (GgmlType::Q5_0, BlockQ5_0::BYTES, BlockQ5_0::WEIGHTS),
            (GgmlType::Q5_1, BlockQ5_1::BYTES, BlockQ5_1::WEIGHTS),
            (GgmlType::Q4_K, BlockQ4K::BYTES, BlockQ4K::WEIGHTS),
            (GgmlType::Q5_K, BlockQ5K::BYTES, BlockQ5K::WEIGHTS),
            (GgmlType::Q6_K, BlockQ6K::BYTES, BlockQ6K::WEIGHTS),
            (GgmlType::Q2_K, BlockQ2K::BYTES, BlockQ2K::WEIGHTS),
            (GgmlType::Q3_K, BlockQ3K::BYTES, BlockQ3K::WEIGHTS),
            (GgmlType::IQ4_NL, BlockIq4Nl::BYTES, BlockIq4Nl::WEIGHTS),
            (GgmlType::IQ4_XS, BlockIq4Xs::BYTES, BlockIq4Xs::WEIGHTS),
        ];
        for (ty, bytes, weights) in views {
            assert_eq!((bytes, weights), (ty.type_size(), ty.block_size()), "{ty}");
        }
    }

    #[test]
    fn scale_min_k4_unpacks_the_six_bit_fields() {
        // Sub-blocks 0..4: low 6 bits of bytes j and j + 4; the top 2 bits belong to 4..8.
        let mut scales = [0u8; K_SCALE_SIZE];
        scales[1] = 0b11_000101; // scale of 1 = 5; top bits 3 -> bits 4..6 of scale 5
        scales[5] = 0b10_100001; // min of 1 = 33; top bits 2 -> bits 4..6 of min 5
        scales[9] = 0b0111_1001; // scale 5 low nibble 9, min 5 low nibble 7
        assert_eq!(scale_min_k4(1, &scales), (5, 33));
        assert_eq!(scale_min_k4(5, &scales), (9 | (3 << 4), 7 | (2 << 4)));
        assert_eq!(scale_min_k4(0, &scales), (0, 0));
    }

    /// ggml's `dequantize_row_q3_K` unpacks all 16 scales at once with 32-bit masks.
    fn ggml_q3_k_scales(scales: &[u8; K_SCALE_SIZE]) -> [i8; 16] {
        let word = |i: usize| u32::from_le_bytes(scales[4 * i..4 * i + 4].try_into().unwrap());
        let (kmask1, kmask2) = (0x0303_0303u32, 0x0f0f_0f0fu32);
        let (a0, a1, tmp) = (word(0), word(1), word(2));
        let aux = [
            (a0 & kmask2) | ((tmp & kmask1) << 4),
            (a1 & kmask2) | (((tmp >> 2) & kmask1) << 4),
            ((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4),
            ((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4),
        ];
        let bytes: Vec<u8> = aux.iter().flat_map(|w| w.to_le_bytes()).collect();
        std::array::from_fn(|j| bytes[j] as i8 - 32)
    }

    #[test]
    fn q3_k_scales_unpack_as_ggml_does() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200 {
            let scales: [u8; K_SCALE_SIZE] = std::array::from_fn(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 56) as u8
            });
            let want = ggml_q3_k_scales(&scales);
            let got: [i8; 16] = std::array::from_fn(|j| scale_q3_k(j, &scales));
            assert_eq!(got, want, "{scales:?}");
        }
    }

    #[test]
    fn iq4_xs_scales_combine_low_and_high_bits() {
        let mut bytes = [0u8; IQ4_XS_BYTES];
        bytes[2..4].copy_from_slice(&0b11_00_00_00_00_00_10_01u16.to_le_bytes());
        bytes[4] = 0x7F; // sub-block 0 low 15, sub-block 1 low 7
        let b = BlockIq4Xs::new(&bytes);
        assert_eq!(b.scale(0), (15 | (1 << 4)) - 32);
        assert_eq!(b.scale(1), (7 | (2 << 4)) - 32);
        assert_eq!(b.scale(2), -32);
        assert_eq!(b.scale(7), (3 << 4) - 32);
    }
}
