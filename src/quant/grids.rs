//! The lookup tables of the i-quants: lattice grids, sign patterns, the IQ1 delta and the
//! MXFP4 values.
//!
//! IQ2_XXS/IQ2_XS/IQ2_S store each group of 8 weights as an index into a grid of points whose
//! coordinates take the levels 8, 25, 43 (the weight is `level * scale / 8`, the sign comes
//! separately); IQ3_XXS and IQ3_S groups of 4 take one of 8 levels; IQ1_S and IQ1_M groups of 8
//! take -1, 0, 1 (plus a shared delta of ±1/8). Which points a grid holds is data: the points
//! were chosen when the formats were designed. `grid_data.rs` carries them compactly (a u16 of
//! level indices per point, written by `tools/iq_grids.py` from ggml's dequantization); here
//! they are expanded at compile time into the byte tables the kernels read (one u64 per point
//! of 8 coordinates, one u32 per point of 4, coordinate 0 in the lowest byte, as ggml lays
//! them out), so a lookup is a single load.

use super::grid_data::{
    IQ1S_POINTS, IQ2S_POINTS, IQ2XS_POINTS, IQ2XXS_POINTS, IQ3S_POINTS, IQ3XXS_POINTS,
};

/// The levels of the IQ2 grids' coordinates.
pub const IQ2_LEVELS: [u8; 3] = [8, 25, 43];
/// The levels of IQ3_XXS's grid coordinates.
pub const IQ3XXS_LEVELS: [u8; 8] = [4, 12, 20, 28, 36, 44, 52, 62];
/// The levels of IQ3_S's grid coordinates.
pub const IQ3S_LEVELS: [u8; 8] = [1, 3, 5, 7, 9, 11, 13, 15];
/// The levels of the IQ1 grid's coordinates (as two's-complement bytes in the table).
pub const IQ1_LEVELS: [i8; 3] = [-1, 0, 1];

/// IQ1_S/IQ1_M: each group of 8 adds `±IQ1_DELTA` to its grid values (ggml's `IQ1S_DELTA`).
pub const IQ1_DELTA: f32 = 0.125;

/// 8-coordinate points, 2 bits of level index each, as 8 bytes (coordinate 0 lowest).
const fn expand8<const N: usize>(points: &[u16; N], levels: [u8; 3]) -> [u64; N] {
    let mut out = [0u64; N];
    let mut i = 0;
    while i < N {
        let mut j = 0;
        while j < 8 {
            let level = levels[((points[i] >> (2 * j)) & 3) as usize];
            out[i] |= (level as u64) << (8 * j);
            j += 1;
        }
        i += 1;
    }
    out
}

/// 4-coordinate points, 3 bits of level index each, as 4 bytes (coordinate 0 lowest).
const fn expand4<const N: usize>(points: &[u16; N], levels: [u8; 8]) -> [u32; N] {
    let mut out = [0u32; N];
    let mut i = 0;
    while i < N {
        let mut j = 0;
        while j < 4 {
            let level = levels[((points[i] >> (3 * j)) & 7) as usize];
            out[i] |= (level as u32) << (8 * j);
            j += 1;
        }
        i += 1;
    }
    out
}

const fn iq1_bytes() -> [u8; 3] {
    [
        IQ1_LEVELS[0] as u8,
        IQ1_LEVELS[1] as u8,
        IQ1_LEVELS[2] as u8,
    ]
}

/// The points' level indices (their `u16` codes) split into two byte tables, low bytes then
/// high bytes: what a kernel looks up by byte permutes and spreads into levels itself.
const fn code_bytes<const N: usize>(points: &[u16; N]) -> [[u8; N]; 2] {
    let mut out = [[0u8; N]; 2];
    let mut i = 0;
    while i < N {
        out[0][i] = points[i] as u8;
        out[1][i] = (points[i] >> 8) as u8;
        i += 1;
    }
    out
}

/// IQ2_XXS's 256 codes (2 bits of level index per coordinate), low and high bytes.
pub static IQ2XXS_CODES: [[u8; 256]; 2] = code_bytes(&IQ2XXS_POINTS);
/// IQ2_XS's 512 codes.
pub static IQ2XS_CODES: [[u8; 512]; 2] = code_bytes(&IQ2XS_POINTS);
/// IQ2_S's 1024 codes.
pub static IQ2S_CODES: [[u8; 1024]; 2] = code_bytes(&IQ2S_POINTS);
/// IQ3_XXS's 256 codes (3 bits of level index per coordinate), low and high bytes.
pub static IQ3XXS_CODES: [[u8; 256]; 2] = code_bytes(&IQ3XXS_POINTS);
/// IQ3_S's 512 codes.
pub static IQ3S_CODES: [[u8; 512]; 2] = code_bytes(&IQ3S_POINTS);

/// IQ2_XXS: 256 points of 8 bytes.
pub static IQ2XXS_GRID: [u64; 256] = expand8(&IQ2XXS_POINTS, IQ2_LEVELS);
/// IQ2_XS: 512 points of 8 bytes.
pub static IQ2XS_GRID: [u64; 512] = expand8(&IQ2XS_POINTS, IQ2_LEVELS);
/// IQ2_S: 1024 points of 8 bytes.
pub static IQ2S_GRID: [u64; 1024] = expand8(&IQ2S_POINTS, IQ2_LEVELS);
/// IQ3_XXS: 256 points of 4 bytes.
pub static IQ3XXS_GRID: [u32; 256] = expand4(&IQ3XXS_POINTS, IQ3XXS_LEVELS);
/// IQ3_S: 512 points of 4 bytes.
pub static IQ3S_GRID: [u32; 512] = expand4(&IQ3S_POINTS, IQ3S_LEVELS);
/// IQ1_S and IQ1_M: 2048 points of 8 signed bytes (-1, 0, 1).
pub static IQ1S_GRID: [u64; 2048] = expand8(&IQ1S_POINTS, iq1_bytes());

/// IQ1_S and IQ1_M with every coordinate times 8 (-8, 0, 8): the grid part of the integer
/// form's quants `8 g ± 1`, so a kernel adds the delta to a lookup.
pub static IQ1S_GRID8: [u64; 2048] = expand8(&IQ1S_POINTS, [(-8i8) as u8, 0, 8]);

/// The integer form's quants `8 g + delta` of IQ1_S and IQ1_M, both deltas: entry
/// `index | 2048` holds the point `index` with delta -1, entry `index` with delta +1. An
/// IQ1_M group's nibble (three index bits under the delta's sign bit) is then simply the
/// top of the entry's index, and a kernel adds nothing to the lookup. 32 KiB.
pub static IQ1S_QUANTS: [u64; 4096] = {
    let mut out = [0u64; 4096];
    let mut i = 0;
    while i < 4096 {
        let delta: i8 = if i < 2048 { 1 } else { -1 };
        let point = IQ1S_GRID8[i % 2048].to_le_bytes();
        let mut j = 0;
        while j < 8 {
            out[i] |= ((point[j] as i8 + delta) as u8 as u64) << (8 * j);
            j += 1;
        }
        i += 1;
    }
    out
};

/// The sign pattern of a 7-bit sign index (ggml's `ksigns_iq2xs`): bit `j` set makes weight
/// `j` of the group negative. Only 7 signs are stored: the eighth makes the number of negative
/// weights even (the quantizer flips the smallest weight to get there).
pub const fn sign_bits(index: u32) -> u8 {
    let low = (index & 0x7F) as u8;
    low | (((low.count_ones() & 1) as u8) << 7)
}

/// [`sign_bits`] of every 7-bit index.
pub static KSIGNS: [u8; 128] = {
    let mut out = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        out[i] = sign_bits(i as u32);
        i += 1;
    }
    out
};

/// The FP4 (E2M1) values doubled, by 4-bit code (ggml's `kvalues_mxfp4`): sign in bit 3, a
/// 2-bit exponent and a 1-bit mantissa, `e = 0` subnormal. Doubled so they are integers; the
/// E8M0 block scale is halved to match ([`e8m0_half`]).
pub const KVALUES_MXFP4: [i8; 16] = {
    let mut out = [0i8; 16];
    let mut code = 0;
    while code < 16 {
        let (e, m) = ((code >> 1) & 3, code & 1);
        // 2 * value: subnormal 2 * m/2, normal 2 * (1 + m/2) * 2^(e-1).
        let twice = (if e == 0 { m } else { (2 + m) << (e - 1) }) as i8;
        out[code] = if code & 8 != 0 { -twice } else { twice };
        code += 1;
    }
    out
};

/// Half the E8M0 scale `2^(e - 127)`, exactly (ggml's `ggml_e8m0_to_fp32_half`): `2^(e - 128)`,
/// subnormal for `e < 2`. (`e = 255`, which E8M0 reserves for NaN, gives `2^127` as ggml does.)
#[inline(always)]
pub fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        u32::from(e - 1) << 23
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_patterns_have_even_parity() {
        for (i, &s) in KSIGNS.iter().enumerate() {
            assert_eq!(s & 0x7F, i as u8);
            assert_eq!(s.count_ones() % 2, 0, "index {i}");
        }
        // ggml's table starts 0, 129, 130, 3, 132.
        assert_eq!(KSIGNS[..5], [0, 129, 130, 3, 132]);
    }

    #[test]
    fn iq1_quants_are_eight_times_the_grid_plus_each_delta() {
        for (i, &q) in IQ1S_QUANTS.iter().enumerate() {
            let (g, delta) = (IQ1S_GRID[i % 2048].to_le_bytes(), [1, -1][i / 2048]);
            for (j, b) in q.to_le_bytes().into_iter().enumerate() {
                assert_eq!(b as i8, 8 * g[j] as i8 + delta, "entry {i} byte {j}");
            }
        }
    }

    #[test]
    fn code_bytes_spread_back_into_the_grids() {
        fn check<const N: usize, G: Copy + Into<u64>>(
            name: &str,
            grid: &[G; N],
            codes: &[[u8; N]; 2],
            levels: &[u8],
        ) {
            let bits = if levels.len() == 3 { 2 } else { 3 };
            let coords = if bits == 2 { 8 } else { 4 };
            for i in 0..N {
                let code = u16::from_le_bytes([codes[0][i], codes[1][i]]);
                assert!(u32::from(code) < 1 << (bits * coords), "{name} {i}");
                let point = grid[i].into().to_le_bytes();
                for j in 0..coords {
                    let level = levels[usize::from(code >> (bits * j)) & ((1 << bits) - 1)];
                    assert_eq!(point[j], level, "{name} point {i} coordinate {j}");
                }
            }
        }
        check("IQ2_XXS", &IQ2XXS_GRID, &IQ2XXS_CODES, &IQ2_LEVELS);
        check("IQ2_XS", &IQ2XS_GRID, &IQ2XS_CODES, &IQ2_LEVELS);
        check("IQ2_S", &IQ2S_GRID, &IQ2S_CODES, &IQ2_LEVELS);
        check("IQ3_XXS", &IQ3XXS_GRID, &IQ3XXS_CODES, &IQ3XXS_LEVELS);
        check("IQ3_S", &IQ3S_GRID, &IQ3S_CODES, &IQ3S_LEVELS);
    }

    #[test]
    fn fp4_values_follow_e2m1() {
        assert_eq!(
            KVALUES_MXFP4,
            [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12]
        );
    }

    #[test]
    fn e8m0_halves_are_powers_of_two() {
        assert_eq!(e8m0_half(127), 0.5);
        assert_eq!(e8m0_half(128), 1.0);
        assert_eq!(e8m0_half(2), 2f32.powi(-126));
        assert_eq!(e8m0_half(1), 2f32.powi(-127));
        assert_eq!(e8m0_half(0), 2f32.powi(-128));
        assert_eq!(e8m0_half(254), 2f32.powi(126));
    }

    #[test]
    fn grids_hold_distinct_points_of_their_levels() {
        fn distinct<T: Ord + Copy>(v: &[T]) -> bool {
            let mut s = v.to_vec();
            s.sort();
            s.windows(2).all(|w| w[0] != w[1])
        }
        assert!(distinct(&IQ2XXS_GRID));
        assert!(distinct(&IQ2XS_GRID));
        assert!(distinct(&IQ2S_GRID));
        assert!(distinct(&IQ3XXS_GRID));
        assert!(distinct(&IQ3S_GRID));
        assert!(distinct(&IQ1S_GRID));
        // First points as ggml lists them: all-lowest, then the first coordinate raised.
        assert_eq!(IQ2XXS_GRID[0], 0x0808_0808_0808_0808);
        assert_eq!(IQ2XXS_GRID[1], 0x0808_0808_0808_082b);
        assert_eq!(IQ3S_GRID[1], 0x0101_0103);
        assert!(IQ2S_GRID
            .iter()
            .all(|p| p.to_le_bytes().iter().all(|b| IQ2_LEVELS.contains(b))));
        assert!(IQ1S_GRID.iter().all(|p| p
            .to_le_bytes()
            .iter()
            .all(|&b| IQ1_LEVELS.contains(&(b as i8)))));
    }
}
