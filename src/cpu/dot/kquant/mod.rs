//! Super-blocks of 256 times Q8_K activations (ggml's `*_q8_K` dots): the K-quants and IQ4_XS.
//!
//! Q4_K/Q5_K: `y.d * (d * sum_j sc_j * (q . a)_j - dmin * sum_j m_j * bsum_j)` over eight
//! sub-blocks of 32; Q6_K: `y.d * d * sum_g sc_g * ((q - 32) . a)_g` over sixteen groups of 16;
//! Q2_K: as Q4_K over sixteen groups of 16 (4-bit scales and mins); Q3_K: as Q6_K with signed
//! 6-bit scales and `q - 4` in -4..3; IQ4_XS: `y.d * d * sum_j (ls_j - 32) * (level . a)_j` over
//! eight sub-blocks of 32. All integer sums are exact; each super-block adds one f32 product
//! (two with mins).

use crate::quant::GgmlType;

use super::{tile_table, KernelSet, Tile, TileEntry};
use crate::cpu::features::Isa;
use crate::cpu::quantize::{ActFormat, QuantActs};
use crate::quant::blocks::{
    f16_at, scale_q3_k, scales_mins_k4, IQ4_XS_BYTES, KVALUES_IQ4NL, Q2_K_BYTES, Q3_K_BYTES,
    Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES, QK_K,
};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

pub const Q4_K: u8 = 0;
pub const Q5_K: u8 = 1;
pub const Q6_K: u8 = 2;
pub const Q2_K: u8 = 3;
pub const Q3_K: u8 = 4;
pub const IQ4_XS: u8 = 5;

/// Whether the type's scales change every 16 weights (and its offsets or mins are summed
/// against the activations' sums per 16, `bsums16`; the others use `bsums32`).
pub const fn groups_of_16(ty: u8) -> bool {
    matches!(ty, Q6_K | Q2_K | Q3_K)
}

pub const fn block_bytes(ty: u8) -> usize {
    match ty {
        Q4_K => Q4_K_BYTES,
        Q5_K => Q5_K_BYTES,
        Q2_K => Q2_K_BYTES,
        Q3_K => Q3_K_BYTES,
        IQ4_XS => IQ4_XS_BYTES,
        _ => Q6_K_BYTES,
    }
}

pub(crate) fn code(ty: GgmlType) -> Option<u8> {
    match ty {
        GgmlType::Q4_K => Some(Q4_K),
        GgmlType::Q5_K => Some(Q5_K),
        GgmlType::Q6_K => Some(Q6_K),
        GgmlType::Q2_K => Some(Q2_K),
        GgmlType::Q3_K => Some(Q3_K),
        GgmlType::IQ4_XS => Some(IQ4_XS),
        _ => None,
    }
}

pub fn kernels(ty: GgmlType, isa: Isa) -> Option<KernelSet> {
    let c = code(ty)?;
    let tiles = match isa {
        Isa::Scalar => scalar_tiles(c),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => avx512::tiles(c),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::tiles(c),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon::tiles(c),
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    Some(KernelSet {
        fmt: ActFormat::Q8K,
        tiles,
    })
}

fn scalar_tiles(c: u8) -> &'static [TileEntry] {
    match c {
        Q4_K => tile_table!(tile, Q4_K; (1, 1)),
        Q5_K => tile_table!(tile, Q5_K; (1, 1)),
        Q2_K => tile_table!(tile, Q2_K; (1, 1)),
        Q3_K => tile_table!(tile, Q3_K; (1, 1)),
        IQ4_XS => tile_table!(tile, IQ4_XS; (1, 1)),
        _ => tile_table!(tile, Q6_K; (1, 1)),
    }
}

/// Unsigned quant `i` (0..256) of a Q4_K/Q5_K super-block.
#[inline(always)]
fn q45(five: bool, b: &[u8], i: usize) -> i32 {
    let (chunk, half, l) = (i / 64, (i / 32) % 2, i % 32);
    let qs = if five {
        &b[48..Q5_K_BYTES]
    } else {
        &b[16..Q4_K_BYTES]
    };
    let byte = qs[32 * chunk + l];
    let mut v = if half == 0 { byte & 0xF } else { byte >> 4 } as i32;
    if five && b[16 + l] & (1 << (2 * chunk + half)) != 0 {
        v += 16;
    }
    v
}

/// Signed quant `i` (0..256) of a Q6_K super-block (`q - 32`) and its group scale.
#[inline(always)]
fn q6(b: &[u8], i: usize) -> (i32, i32) {
    let (n, j) = (i / 128, i % 128);
    let (quarter, l) = (j / 32, j % 32);
    let ql = &b[64 * n..64 * n + 64];
    let qh = b[128 + 32 * n + l];
    let low = match quarter {
        0 => ql[l] & 0xF,
        1 => ql[l + 32] & 0xF,
        2 => ql[l] >> 4,
        _ => ql[l + 32] >> 4,
    };
    let high = (qh >> (2 * quarter)) & 3;
    let sc = b[192 + 8 * n + l / 16 + 2 * quarter] as i8 as i32;
    (((low | (high << 4)) as i32) - 32, sc)
}

/// Quant `i` (0..256) of a Q2_K (`q`, 0..4) or Q3_K (`q - 4` where the high bit is clear,
/// -4..4) super-block: the 2-bit planes of `qs` take 32 weights each, byte `l` holding weight
/// `l` of four consecutive 32s; Q3_K's third bit of weight `32 k + l` of the `n`-th 128 is bit
/// `4 n + k` of `hmask[l]`.
#[inline(always)]
fn q23(three: bool, b: &[u8], i: usize) -> i32 {
    let (n, k, l) = (i / 128, (i / 32) % 4, i % 32);
    let qs = if three { &b[32..96] } else { &b[16..80] };
    let low = ((qs[32 * n + l] >> (2 * k)) & 3) as i32;
    if three && b[l] & (1 << (4 * n + k)) == 0 {
        low - 4
    } else {
        low
    }
}

/// Level `i` (0..256) of an IQ4_XS super-block.
#[inline(always)]
fn iq4xs(b: &[u8], i: usize) -> i32 {
    let (j, l) = (i / 32, i % 32);
    let byte = b[8 + 16 * j + l % 16];
    let nib = if l < 16 { byte & 0xF } else { byte >> 4 };
    KVALUES_IQ4NL[usize::from(nib)] as i32
}

/// IQ4_XS sub-block `j`'s scale, `ls - 32`.
#[inline(always)]
pub(crate) fn iq4xs_scale(b: &[u8], j: usize) -> i32 {
    let low = (b[4 + j / 2] >> (4 * (j % 2))) & 0xF;
    let high = (u16::from_le_bytes([b[2], b[3]]) >> (2 * j)) & 3;
    (low as i32 | (high as i32) << 4) - 32
}

/// The integer sum `sum_g scale_g * (q . a)_g` of one super-block over `groups` groups of
/// `256 / groups` weights.
#[inline(always)]
fn scaled_isum(
    a: &[i8],
    groups: usize,
    q: impl Fn(usize) -> i32,
    scale: impl Fn(usize) -> i32,
) -> i32 {
    let len = QK_K / groups;
    (0..groups)
        .map(|g| {
            let dot: i32 = (len * g..len * (g + 1)).map(|i| q(i) * a[i] as i32).sum();
            scale(g) * dot
        })
        .sum()
}

/// The scalar reference dot of one row with token `t`.
fn dot<const TY: u8>(row: &[u8], acts: &QuantActs, t: usize) -> f32 {
    let (qs, d, bsums32) = (acts.tok_qs(t), acts.tok_d(t), acts.tok_bsums32(t));
    let bsums16 = acts.tok_bsums16(t);
    let mut sum = 0.0f32;
    for (sb, b) in row.chunks_exact(block_bytes(TY)).enumerate() {
        let a = &qs[QK_K * sb..QK_K * (sb + 1)];
        if TY == Q2_K {
            let isum = scaled_isum(a, 16, |i| q23(false, b, i), |g| (b[g] & 0xF) as i32);
            let msum: i32 = (0..16)
                .map(|g| (b[g] >> 4) as i32 * bsums16[16 * sb + g] as i32)
                .sum();
            sum += (f16_at(b, 80) * d[sb]) * isum as f32;
            sum -= (f16_at(b, 82) * d[sb]) * msum as f32;
        } else if TY == Q3_K {
            let scales: &[u8; 12] = b[96..108].try_into().expect("12 scale bytes");
            let isum = scaled_isum(a, 16, |i| q23(true, b, i), |g| scale_q3_k(g, scales) as i32);
            sum += (f16_at(b, 108) * d[sb]) * isum as f32;
        } else if TY == IQ4_XS {
            let isum = scaled_isum(a, 8, |i| iq4xs(b, i), |j| iq4xs_scale(b, j));
            sum += (f16_at(b, 0) * d[sb]) * isum as f32;
        } else if TY == Q6_K {
            let mut isum = 0i32;
            for g in 0..16 {
                let mut gsum = 0i32;
                let mut scale = 0;
                for (i, &av) in a.iter().enumerate().skip(16 * g).take(16) {
                    let (q, sc) = q6(b, i);
                    gsum += q * av as i32;
                    scale = sc;
                }
                isum += scale * gsum;
            }
            sum += (f16_at(b, 208) * d[sb]) * isum as f32;
        } else {
            let (sc, mn) = scales_mins_k4(&b[4..16]);
            let (mut isum, mut msum) = (0i32, 0i32);
            for j in 0..8 {
                let dotj: i32 = (32 * j..32 * j + 32)
                    .map(|i| q45(TY == Q5_K, b, i) * a[i] as i32)
                    .sum();
                isum += sc[j] as i32 * dotj;
                msum += mn[j] as i32 * bsums32[8 * sb + j] as i32;
            }
            sum += (f16_at(b, 0) * d[sb]) * isum as f32;
            sum -= (f16_at(b, 2) * d[sb]) * msum as f32;
        }
    }
    sum
}

unsafe fn tile<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    for r in 0..R {
        let row = std::slice::from_raw_parts(a.w.add(r * a.w_stride), a.row_bytes);
        for t in 0..T {
            *a.y.add((a.t0 + t) * a.y_stride + a.r0 + r * a.y_step) =
                dot::<TY>(row, a.acts, a.t0 + t);
        }
    }
}
