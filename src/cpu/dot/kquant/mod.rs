//! Q4_K, Q5_K, Q6_K super-blocks of 256 times Q8_K activations (ggml's `*_K_q8_K` dots).
//!
//! Q4_K/Q5_K: `y.d * (d * sum_j sc_j * (q . a)_j - dmin * sum_j m_j * bsum_j)` over eight
//! sub-blocks of 32; Q6_K: `y.d * d * sum_g sc_g * ((q - 32) . a)_g` over sixteen groups of 16.

use crate::quant::GgmlType;

use super::{tile_table, KernelSet, Tile, TileEntry};
use crate::cpu::features::Isa;
use crate::cpu::quantize::{ActFormat, QuantActs};
use crate::quant::blocks::{f16_at, scales_mins_k4, Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES, QK_K};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

pub const Q4_K: u8 = 0;
pub const Q5_K: u8 = 1;
pub const Q6_K: u8 = 2;

pub const fn block_bytes(ty: u8) -> usize {
    match ty {
        Q4_K => Q4_K_BYTES,
        Q5_K => Q5_K_BYTES,
        _ => Q6_K_BYTES,
    }
}

pub(crate) fn code(ty: GgmlType) -> Option<u8> {
    match ty {
        GgmlType::Q4_K => Some(Q4_K),
        GgmlType::Q5_K => Some(Q5_K),
        GgmlType::Q6_K => Some(Q6_K),
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

/// The scalar reference dot of one row with token `t`.
fn dot<const TY: u8>(row: &[u8], acts: &QuantActs, t: usize) -> f32 {
    let (qs, d, bsums32) = (acts.tok_qs(t), acts.tok_d(t), acts.tok_bsums32(t));
    let mut sum = 0.0f32;
    for (sb, b) in row.chunks_exact(block_bytes(TY)).enumerate() {
        let a = &qs[QK_K * sb..QK_K * (sb + 1)];
        if TY == Q6_K {
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
