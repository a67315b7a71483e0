//! AVX-512 VBMI decode tiles for IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S: grid lookups by
//! byte permutes.
//!
//! The plain AVX-512 tiles (`avx512.rs`) fetch each group's grid point with a scalar load and
//! build vectors from them: about four instructions per group, which keeps decode far below
//! the memory's pace. Here a super-block's indices are looked up at once. A grid point is a
//! 16-bit code of level indices (`quant::grids`: 2 bits per coordinate for the IQ2 grids, 3 for
//! the IQ3 grids), split into a table of low bytes and one of high bytes; `vpermt2b` looks up
//! 128 entries of a table for all 64 bytes of the index vector, and the index bits above the
//! seventh choose among the 128-entry parts by blends (256 entries: 2 parts, 1024: 8). Per 64
//! weights one `vpermt2b` moves their groups' codes into the qwords they expand to,
//! `vpmultishiftqb` puts each coordinate's level index in its own byte and `vpermb` maps
//! indices to levels. The 7-bit sign indices of IQ2_XXS, IQ2_XS and IQ3_XXS come apart the
//! same way, the eighth sign (the parity) by `vpopcntb`, as one 64-bit mask per 64 weights;
//! IQ2_S and IQ3_S store those masks as they are. IQ1_S and IQ1_M keep the plain tiles: their
//! 2048-entry grid takes 16 parts a table, and so written they ran at a third of the scalar
//! lookups' rate.
//!
//! Levels, signs and scales are the plain kernel's, in the same lanes, and the arithmetic after
//! them is its arithmetic: the same bits (tested below).

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ptr::read_unaligned;

use super::avx2::super_scale;
use super::avx512::{add_block, dot64, store};
use super::{block_bytes, IQ2_S, IQ2_XS, IQ2_XXS, IQ3_S, IQ3_XXS};
use crate::cpu::dot::{tile_table, Tile, TileEntry, PREFETCH};
use crate::cpu::features::cpu_features;
use crate::quant::grids::{
    IQ2S_CODES, IQ2XS_CODES, IQ2XXS_CODES, IQ2_LEVELS, IQ3S_CODES, IQ3S_LEVELS, IQ3XXS_CODES,
    IQ3XXS_LEVELS,
};

/// The tiles of the types this file serves, where the CPU has the byte permutes.
pub fn tiles(c: u8) -> Option<&'static [TileEntry]> {
    macro_rules! shapes {
        ($ty:tt) => {
            tile_table!(tile, $ty; (1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (4, 1))
        };
    }
    if !cpu_features().byte_permutes() {
        return None;
    }
    match c {
        IQ2_XXS => Some(shapes!(IQ2_XXS)),
        IQ2_XS => Some(shapes!(IQ2_XS)),
        IQ2_S => Some(shapes!(IQ2_S)),
        IQ3_XXS => Some(shapes!(IQ3_XXS)),
        IQ3_S => Some(shapes!(IQ3_S)),
        _ => None,
    }
}

/// Whether the type's grid points have 8 coordinates of 2 bits (IQ2) rather than 4 of 3 (IQ3).
const fn eight_coords(ty: u8) -> bool {
    matches!(ty, IQ2_XXS | IQ2_XS | IQ2_S)
}

/// The byte of the looked-up vector that holds group `g`'s grid index (the index vector is the
/// block's bytes from offset 2: IQ2_XXS keeps four index bytes in each sub-block's eight,
/// IQ2_XS one in each 16-bit word, the others all theirs in a row).
const fn lane_of_group(ty: u8, g: usize) -> usize {
    match ty {
        IQ2_XXS => 8 * (g / 4) + g % 4,
        IQ2_XS => 2 * g,
        _ => g,
    }
}

/// 64 bytes, as a vector constant is read from memory.
#[repr(align(64))]
struct Bytes64([u8; 64]);

/// For chunk `c` (weights 64c..64c+64) and qword `k` of its vector: the positions, among the
/// super-block's looked-up bytes (low code bytes at 0..64, high at 64..128), of the codes that
/// qword expands: the group `8c + k` of 8 weights, or the groups `16c + 2k` and `16c + 2k + 1`
/// of 4. The other bytes are never read.
const fn placement(ty: u8, c: usize) -> Bytes64 {
    let mut out = [0u8; 64];
    let mut k = 0;
    while k < 8 {
        let groups = if eight_coords(ty) { 1 } else { 2 };
        let mut h = 0;
        while h < groups {
            let at = lane_of_group(
                ty,
                if groups == 1 {
                    8 * c + k
                } else {
                    16 * c + 2 * k + h
                },
            );
            out[8 * k + 2 * h] = at as u8;
            out[8 * k + 2 * h + 1] = 64 + at as u8;
            h += 1;
        }
        k += 1;
    }
    Bytes64(out)
}

const fn placements(ty: u8) -> [Bytes64; 4] {
    [
        placement(ty, 0),
        placement(ty, 1),
        placement(ty, 2),
        placement(ty, 3),
    ]
}

static PLACEMENT: [[Bytes64; 4]; 5] = [
    placements(IQ2_XXS),
    placements(IQ2_XS),
    placements(IQ2_S),
    placements(IQ3_XXS),
    placements(IQ3_S),
];

/// `vpermb`'s table from a level index (the low bits of a byte; the bits above it belong to
/// the next coordinate and are ignored) to the level.
const fn level_table(ty: u8) -> Bytes64 {
    let mut out = [0u8; 64];
    let mut j = 0;
    while j < 64 {
        out[j] = match ty {
            // Index 3 never occurs: IQ2 grids have three levels.
            IQ2_XXS | IQ2_XS | IQ2_S if j & 3 == 3 => 0,
            IQ2_XXS | IQ2_XS | IQ2_S => IQ2_LEVELS[j & 3],
            IQ3_XXS => IQ3XXS_LEVELS[j & 7],
            _ => IQ3S_LEVELS[j & 7],
        };
        j += 1;
    }
    Bytes64(out)
}

static LEVEL_TABLE: [Bytes64; 5] = [
    level_table(IQ2_XXS),
    level_table(IQ2_XS),
    level_table(IQ2_S),
    level_table(IQ3_XXS),
    level_table(IQ3_S),
];

/// Where the type's constants sit in the tables above.
const fn slot(ty: u8) -> usize {
    match ty {
        IQ2_XXS => 0,
        IQ2_XS => 1,
        IQ2_S => 2,
        IQ3_XXS => 3,
        _ => 4,
    }
}

/// For chunk `c`: the 16-bit lane of the scale vector for each 16-bit lane of the chunk's pair
/// sums. The scale vector holds scale `m` in lane `m * stride`; a scale covers `weights`.
const fn scale_lanes(c: usize, weights: usize, stride: usize) -> Bytes64 {
    let mut out = [0u8; 64];
    let mut j = 0;
    while j < 32 {
        // Pair-sum lane j covers weights 2j and 2j + 1 of the chunk.
        out[2 * j] = (stride * ((64 * c + 2 * j) / weights)) as u8;
        j += 1;
    }
    Bytes64(out)
}

const fn scale_lanes_of(weights: usize, stride: usize) -> [Bytes64; 4] {
    [
        scale_lanes(0, weights, stride),
        scale_lanes(1, weights, stride),
        scale_lanes(2, weights, stride),
        scale_lanes(3, weights, stride),
    ]
}

/// Scales per 32 weights in 32-bit lanes (IQ2_XXS, IQ3_XXS), per 32 in 16-bit lanes (IQ3_S),
/// per 16 in 16-bit lanes (IQ2_XS, IQ2_S).
static SCALE_LANES: [[Bytes64; 4]; 3] = [
    scale_lanes_of(32, 2),
    scale_lanes_of(32, 1),
    scale_lanes_of(16, 1),
];

const fn scale_slot(ty: u8) -> usize {
    match ty {
        IQ2_XXS | IQ3_XXS => 0,
        IQ3_S => 1,
        _ => 2,
    }
}

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load(b: &Bytes64) -> __m512i {
    _mm512_load_si512(b.0.as_ptr() as *const _)
}

/// A type's code tables (`quant::grids`) as 64-byte rows, low bytes then high bytes: 256, 512
/// or 1024 entries, 4, 8 or 16 rows each (`REGS`). Read as memory operands of the permutes:
/// held in registers they crowd out the rows' values and cost more than the loads.
#[derive(Clone, Copy)]
struct Codes<const REGS: usize> {
    rows: &'static [[u8; 64]],
}

impl<const REGS: usize> Codes<REGS> {
    fn new(rows: &'static [[u8; 64]]) -> Self {
        assert_eq!(rows.len(), 2 * REGS);
        Codes { rows }
    }

    /// Both code bytes of entry `idx` for every byte of `idx`, whose index bits above the
    /// seventh are `high` (bit 7 first): `vpermt2b` looks up 128 entries at once, the high
    /// bits choose among them.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    unsafe fn get(&self, idx: __m512i, high: &[__mmask64]) -> (__m512i, __m512i) {
        (self.one(0, idx, high), self.one(REGS, idx, high))
    }

    /// [`Codes::get`] from the table whose rows start at `first`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    unsafe fn one(&self, first: usize, idx: __m512i, high: &[__mmask64]) -> __m512i {
        let mut parts = [_mm512_setzero_si512(); 8];
        for k in 0..REGS / 2 {
            let a = _mm512_loadu_si512(self.rows[first + 2 * k].as_ptr() as *const _);
            let b = _mm512_loadu_si512(self.rows[first + 2 * k + 1].as_ptr() as *const _);
            parts[k] = _mm512_permutex2var_epi8(a, idx, b);
        }
        let mut n = REGS / 2;
        for &bit in high {
            n /= 2;
            for k in 0..n {
                parts[k] = _mm512_mask_blend_epi8(bit, parts[2 * k], parts[2 * k + 1]);
            }
        }
        parts[0]
    }
}

/// The code tables of a type as 64-byte rows, low bytes then high bytes.
fn code_rows(ty: u8) -> &'static [[u8; 64]] {
    let bytes: &'static [u8] = match ty {
        IQ2_XXS => IQ2XXS_CODES.as_flattened(),
        IQ2_XS => IQ2XS_CODES.as_flattened(),
        IQ2_S => IQ2S_CODES.as_flattened(),
        IQ3_XXS => IQ3XXS_CODES.as_flattened(),
        _ => IQ3S_CODES.as_flattened(),
    };
    bytes.as_chunks::<64>().0
}

/// One super-block of one row, looked up: the code bytes at the grid indices' lanes, the
/// negative weights' mask of each chunk and the scales `2 t + 1` (in the lanes `scale_slot`
/// says).
#[derive(Clone, Copy)]
struct Block {
    low: __m512i,
    high: __m512i,
    /// Per chunk (the first four; a vector's worth), the mask of negative weights.
    neg: [u64; 8],
    scales: __m512i,
}

impl Block {
    /// A placeholder for arrays of blocks, overwritten before use.
    // SAFETY: all-zero bits are a valid value of every field.
    const EMPTY: Block = unsafe { std::mem::zeroed() };
}

/// The super-block at `p`.
#[inline]
#[target_feature(enable = "bmi2,avx512f,avx512bw,avx512vbmi,avx512bitalg")]
unsafe fn block<const TY: u8, const REGS: usize>(p: *const u8, codes: &Codes<REGS>) -> Block {
    let idx = _mm512_loadu_si512(p.add(2) as *const _);
    let bit7 = _mm512_movepi8_mask(idx);
    let ((low, high), neg, scales) = match TY {
        IQ2_XXS | IQ3_XXS => {
            // Each sub-block's 32-bit word: four 7-bit sign indices under its 4-bit scale;
            // qword `c` holds the words of sub-blocks 2c and 2c + 1, the two halves of chunk c.
            let words = if TY == IQ2_XXS {
                // The words follow the 4 index bytes of each sub-block's 8: the odd dwords.
                let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15);
                _mm512_permutexvar_epi32(odd, idx)
            } else {
                _mm512_zextsi256_si512(_mm256_loadu_si256(p.add(66) as *const __m256i))
            };
            let at = i64::from_le_bytes([0, 7, 14, 21, 32, 39, 46, 53]);
            let signs = parity_signs(_mm512_multishift_epi64_epi8(_mm512_set1_epi64(at), words));
            let t = _mm512_srli_epi32::<28>(words);
            (codes.get(idx, &[bit7]), signs, odd(t))
        }
        IQ2_XS => {
            // 16-bit words: a 9-bit grid index under a 7-bit sign index.
            let bit8 = _mm512_movepi8_mask(_mm512_srli_epi16::<1>(idx));
            let sign_idx = _mm512_cvtepi16_epi8(_mm512_srli_epi16::<9>(idx));
            let signs = parity_signs(_mm512_zextsi256_si512(sign_idx));
            (
                codes.get(idx, &[bit7, bit8]),
                signs,
                odd(nibbles(read_unaligned(p.add(66) as *const u64))),
            )
        }
        IQ2_S => {
            // Bits 8 and 9 of group g's index: bits 2g and 2g + 1 of the 8 bytes at 66.
            let qh = read_unaligned(p.add(66) as *const u64);
            let bit8 = _pext_u64(qh, 0x5555_5555_5555_5555);
            let bit9 = _pext_u64(qh, 0xaaaa_aaaa_aaaa_aaaa);
            let scales = read_unaligned(p.add(74) as *const u64);
            (
                codes.get(idx, &[bit7, bit8, bit9]),
                explicit_signs(p.add(34)),
                odd(nibbles(scales)),
            )
        }
        _ => {
            // IQ3_S: bit 8 of group g's index is bit g of the 8 bytes at 66.
            let scales = u64::from(read_unaligned(p.add(106) as *const u32));
            (
                codes.get(idx, &[bit7, read_unaligned(p.add(66) as *const u64)]),
                explicit_signs(p.add(74)),
                odd(nibbles(scales)),
            )
        }
    };
    Block {
        low,
        high,
        neg,
        scales,
    }
}

/// `2 t + 1` in every 16-bit lane of `t` (whose lanes are below 16).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn odd(t: __m512i) -> __m512i {
    _mm512_or_si512(_mm512_add_epi16(t, t), _mm512_set1_epi16(1))
}

/// The 16 nibbles of `v`, low nibble first, in 16-bit lanes 0..16.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn nibbles(v: u64) -> __m512i {
    let x = _mm_cvtsi64_si128(v as i64);
    let m = _mm_set1_epi8(15);
    let bytes = _mm_unpacklo_epi8(
        _mm_and_si128(x, m),
        _mm_and_si128(_mm_srli_epi16::<4>(x), m),
    );
    _mm512_zextsi256_si512(_mm256_cvtepu8_epi16(bytes))
}

/// Per chunk, the mask of its negative weights from 7-bit sign indices, one byte per group
/// of 8 weights in order (bit 7 of each byte is ignored).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bitalg")]
unsafe fn parity_signs(fields: __m512i) -> [u64; 8] {
    let idx = _mm512_and_si512(fields, _mm512_set1_epi8(0x7f));
    // ggml's eighth sign keeps the count of minus signs even: the index's parity, at bit 7.
    let odd = _mm512_slli_epi16::<7>(_mm512_popcnt_epi8(idx));
    // idx | (odd & 0x80)
    let signs = _mm512_ternarylogic_epi32::<0xF8>(idx, odd, _mm512_set1_epi8(-128));
    std::mem::transmute::<__m512i, [u64; 8]>(signs)
}

/// Per chunk, the mask of its negative weights from explicit sign bytes (bit i of byte g signs
/// weight i of group g).
#[inline]
unsafe fn explicit_signs(p: *const u8) -> [u64; 8] {
    let mut out = [0u64; 8];
    out[..4].copy_from_slice(&read_unaligned(p as *const [u64; 4]));
    out
}

/// The levels `|q|` of chunk `c`'s 64 weights, in order.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn magnitudes<const TY: u8>(b: &Block, c: usize) -> __m512i {
    // Byte i of a qword: bits from coordinate i's level index (two groups of 4 coordinates
    // of 3 bits: 16 bits apart).
    let fields = if eight_coords(TY) {
        [0, 2, 4, 6, 8, 10, 12, 14]
    } else {
        [0, 3, 6, 9, 16, 19, 22, 25]
    };
    let codes = _mm512_permutex2var_epi8(b.low, load(&PLACEMENT[slot(TY)][c]), b.high);
    let index = _mm512_multishift_epi64_epi8(_mm512_set1_epi64(i64::from_le_bytes(fields)), codes);
    _mm512_permutexvar_epi8(index, load(&LEVEL_TABLE[slot(TY)]))
}

#[target_feature(
    enable = "avx2,bmi2,f16c,fma,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx512bitalg"
)]
unsafe fn tile<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    match TY {
        IQ2_XXS | IQ3_XXS => tile_with::<TY, R, T, 4>(a),
        IQ2_S => tile_with::<TY, R, T, 16>(a),
        _ => tile_with::<TY, R, T, 8>(a),
    }
}

/// [`tile`] with the type's code tables in `REGS` registers each.
#[inline]
#[target_feature(
    enable = "avx2,bmi2,f16c,fma,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx512bitalg"
)]
unsafe fn tile_with<const TY: u8, const R: usize, const T: usize, const REGS: usize>(a: &Tile<'_>) {
    let bs = block_bytes(TY);
    let nsb = a.cols / 256;
    let acts = a.acts;
    let qs: [*const i8; T] = std::array::from_fn(|t| acts.tok_qs(a.t0 + t).as_ptr());
    let ds: [*const f32; T] = std::array::from_fn(|t| acts.tok_d(a.t0 + t).as_ptr());
    let codes = Codes::<REGS>::new(code_rows(TY));
    let zi = _mm512_setzero_si512();
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    for sb in 0..nsb {
        let rows: [*const u8; R] = std::array::from_fn(|r| a.w.add(r * a.w_stride + sb * bs));
        if T == 1 {
            // Decode reads each weight once: ask for the bytes a little ahead.
            for p in rows {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH) as *const i8);
            }
        }
        // Plain loops, no closures: a closure has no target features, so the kernels'
        // helpers would not be inlined into it.
        let mut d = [0f32; R];
        let mut blocks = [Block::EMPTY; R];
        for r in 0..R {
            d[r] = super_scale::<TY>(rows[r]);
            blocks[r] = block::<TY, REGS>(rows[r], &codes);
        }
        let mut isum = [[zi; T]; R];
        for c in 0..4 {
            let lanes = load(&SCALE_LANES[scale_slot(TY)][c]);
            let (mut u, mut sc) = ([zi; R], [zi; R]);
            for r in 0..R {
                u[r] = magnitudes::<TY>(&blocks[r], c);
                sc[r] = _mm512_permutexvar_epi16(lanes, blocks[r].scales);
            }
            for t in 0..T {
                let av = _mm512_loadu_si512(qs[t].add(256 * sb + 64 * c) as *const _);
                for r in 0..R {
                    isum[r][t] = dot64(isum[r][t], av, u[r], blocks[r].neg[c], sc[r]);
                }
            }
        }
        add_block::<TY, R, T>(&mut acc, &isum, &d, &ds, sb);
    }
    store(a, &acc);
}

#[cfg(test)]
mod tests {
    use super::super::avx512;
    use super::*;
    use crate::cpu::features::Isa;
    use crate::cpu::quantize::{ActFormat, QuantActs};
    use crate::cpu::synth::{random_input, random_weights, Rng};
    use crate::cpu::ThreadPool;
    use crate::quant::GgmlType;

    /// Every output of the tile `e` over `rows x n`.
    fn run(
        e: &TileEntry,
        w: &[u8],
        rows: usize,
        cols: usize,
        acts: &QuantActs,
        n: usize,
    ) -> Vec<f32> {
        let row_bytes = w.len() / rows;
        let mut y = vec![f32::NAN; rows * n];
        for r0 in (0..rows).step_by(e.rows) {
            for t0 in (0..n).step_by(e.tokens) {
                let tile = Tile {
                    w: w[r0 * row_bytes..].as_ptr(),
                    w_stride: row_bytes,
                    row_bytes,
                    cols,
                    r0,
                    y_step: 1,
                    t0,
                    acts,
                    x: &[],
                    y: y.as_mut_ptr(),
                    y_stride: rows,
                };
                // SAFETY: rows and tokens are multiples of the tile's, the activations are
                // Q8_K for all `n` tokens, `y` holds `rows x n`, and the caller checked the CPU.
                unsafe { (e.f)(&tile) };
            }
        }
        y
    }

    #[test]
    fn byte_permute_tiles_give_the_plain_tiles_bits() {
        if !cpu_features().byte_permutes() {
            eprintln!("no AVX-512 VBMI and BITALG here: the byte-permute tiles are not run");
            return;
        }
        let pool = ThreadPool::new(1).unwrap();
        let mut rng = Rng::new(0x005e_ed0f_b17e);
        // 4 rows of 8 super-blocks: random bytes, so every grid index and sign index occurs.
        let (rows, cols, n) = (4, 2048, 4);
        let types = [
            (GgmlType::IQ2_XXS, IQ2_XXS),
            (GgmlType::IQ2_XS, IQ2_XS),
            (GgmlType::IQ2_S, IQ2_S),
            (GgmlType::IQ3_XXS, IQ3_XXS),
            (GgmlType::IQ3_S, IQ3_S),
        ];
        for (ty, c) in types {
            let w = random_weights(&mut rng, ty, rows, cols);
            let x = random_input(&mut rng, n * cols);
            let mut acts = QuantActs::default();
            acts.prepare(ActFormat::Q8K, n, cols);
            acts.quantize(&pool, 1, &x, Isa::Avx512Vnni);
            let fast = tiles(c).unwrap();
            let plain = avx512::tiles(c);
            assert_eq!(fast.len(), plain.len());
            for (f, p) in fast.iter().zip(plain) {
                assert_eq!((f.rows, f.tokens), (p.rows, p.tokens));
                let want = run(p, &w, rows, cols, &acts, n);
                let got = run(f, &w, rows, cols, &acts, n);
                assert!(want.iter().all(|v| v.is_finite() && *v != 0.0), "{ty}");
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "{ty} {}x{} out {i}: {g} vs {w}",
                        f.rows,
                        f.tokens
                    );
                }
            }
        }
    }
}
