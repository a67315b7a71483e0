//! The portable kernels for super-blocks of 256 (Q2_K ... Q6_K, IQ4_XS): plain Rust, the
//! reference every SIMD path is tested against.

use super::formats::*;
use crate::cpu::dot::{tile_table, Tile, TileEntry};
use crate::cpu::quantize::QuantActs;
use crate::quant::blocks::{
    f16_at, scale_q3_k, scales_mins_k4, KVALUES_IQ4NL, Q4_K_BYTES, Q5_K_BYTES, QK_K,
};

pub(super) fn scalar_tiles(c: u8) -> &'static [TileEntry] {
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
