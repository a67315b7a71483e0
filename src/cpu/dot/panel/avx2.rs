//! Row panels on AVX2 (no VNNI): the layouts every AVX2 pack fills and the kernels over them.
//!
//! The AVX2 tile kernels decode a block once per tile of one to eight (row, token) pairs and
//! sum each pair across the lanes of its own vector; on a prompt that decoding and the lane
//! sums, not the integer dots, set the pace. Here a thread decodes 16 rows once per call and
//! every token of the batch reuses them. Each half-panel of 8 rows fills one 256-bit vector
//! per group of 4 quants, row `r` in 32-bit lane `r`: one group of one token is a broadcast
//! of its 4 activations and a `vpmaddubsw`, and a row's scale is applied by one `vpmaddwd`
//! for `S` groups at once.
//!
//! Without VNNI the products go through `vpmaddubsw`: unsigned quants times signed 8-bit
//! activations, pair sums in 16 bits that must not saturate. So the quants enter unsigned
//! and small: the K-quants as they are stored (Q4_K 0..16, Q5_K 0..32, Q6_K 0..64, Q2_K
//! 0..4, Q3_K 0..8; the pair sums of 8, 4, 2, 4 and 4 groups added in 16 bits before the
//! scale), the i-quants as their integer form + 64 (within 2..127, one group per scale). What
//! the stored quants carry beyond the true ones (Q6_K's 32, Q3_K's 4, the i-quants' 64) comes
//! back out per block and row as
//! `offset * (ls_lo * bsum_lo + ls_hi * bsum_hi)`, one `vpmaddwd` of the row's scales with
//! the token's Q8_K sums of 16; Q4_K, Q5_K and Q2_K's mins likewise (`m * bsum`), kept apart as
//! the scalar kernel keeps them. Every (row, token) super-block sum is then the scalar
//! kernel's exact integer, and the float work is the scalar kernel's, in its order
//! (`sum += (d_w * d_a * F) * isum`, then `sum -= (dmin_w * d_a) * msum`): panels give the
//! portable bits.
//!
//! Layout in the panel's scratch:
//! - quants `[block][half][group][row][4]`, 512 bytes per block of 32;
//! - scales `[block][half][3][row]`, pairs of 16-bit values per row: the scale of the block's
//!   first 16 weights twice, that of its last 16 twice, and the third vector: the offset's
//!   `(o * ls_lo, o * ls_hi)`, or the min twice; 192 bytes per block;
//! - per super-block, the rows' `d_w` (`[super-block][row]`, f32), then likewise `dmin_w`.
//!
//! The 32-block types (Q8_0, Q4_0, Q5_0, IQ4_NL, MXFP4; Q4_1, Q5_1 with their min) enter as
//! the AVX2 tile kernels unpack them, signed bytes, and meet the activations with the sign
//! trick (`|w|` times `a` carrying `w`'s sign: one more instruction per group, the `|w|` made
//! once per call of `T` tokens); the pair sums of up to 8 groups are added in 16 bits where
//! the type's quants are small. Per block and token: `sum += (d_w * d_a) * isum`, then
//! `+ m_w * s_a`, the portable kernel's order. Their layout: the quants as above, then the
//! rows' `d_w` per block (`[block][row]`, f32), then likewise `m_w`.

// Token and group indices address several arrays at once.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ptr::read_unaligned;

use super::layout::{Out, Panel, BYTES_PER_BLOCK, ROWS};
use crate::cpu::quantize::QuantActs;

/// Rows per 256-bit vector: one per 32-bit lane.
pub(super) const HALF: usize = 8;

/// Scale bytes per block of 32: three vectors for each half.
const SCALE_BYTES: usize = 2 * 3 * 32;

// The layouts fit the panel's scratch (two f32 per row and super-block: 16 bytes per block;
// two f32 per row and block: 128).
const _: () = assert!(512 + SCALE_BYTES + 2 * ROWS * 4 / 8 <= BYTES_PER_BLOCK);
const _: () = assert!(512 + 2 * ROWS * 4 <= BYTES_PER_BLOCK);

/// Where the 8 rows of half `h` of block `b` keep their quants (8 vectors, one per group).
#[inline(always)]
pub(super) unsafe fn quants(panel: &Panel, b: usize, h: usize) -> *mut __m256i {
    panel.q.add(b * 512 + h * 256) as *mut __m256i
}

/// The three scale vectors of half `h` of block `b`.
#[inline(always)]
pub(super) unsafe fn scales(panel: &Panel, b: usize, h: usize) -> *mut __m256i {
    let base = panel.q.add(panel.blocks * 512);
    base.add(b * SCALE_BYTES + h * 96) as *mut __m256i
}

/// The 16 rows' `d_w` of super-block `sb`.
#[inline(always)]
pub(super) unsafe fn row_scales(panel: &Panel, sb: usize) -> *mut f32 {
    let base = panel.q.add(panel.blocks * (512 + SCALE_BYTES)) as *mut f32;
    base.add(sb * ROWS)
}

/// The 16 rows' `dmin_w` of super-block `sb`.
#[inline(always)]
pub(super) unsafe fn row_mins(panel: &Panel, sb: usize) -> *mut f32 {
    row_scales(panel, panel.blocks / 8 + sb)
}

/// The 16 rows' `d_w` of block `b` (32-block types).
#[inline(always)]
pub(super) unsafe fn block_d(panel: &Panel, b: usize) -> *mut f32 {
    (panel.q.add(panel.blocks * 512) as *mut f32).add(b * ROWS)
}

/// The 16 rows' `m_w` of block `b` (32-block types with a min).
#[inline(always)]
pub(super) unsafe fn block_m(panel: &Panel, b: usize) -> *mut f32 {
    block_d(panel, panel.blocks + b)
}

/// Stores the quants of 8 rows (`q[r]`: row `r`'s 32 quants of the block) as half `h` of
/// block `b`.
#[inline(always)]
pub(super) unsafe fn put_quants(panel: &Panel, b: usize, h: usize, q: [__m256i; HALF]) {
    let dst = quants(panel, b, h);
    for (g, v) in transpose8(q).into_iter().enumerate() {
        _mm256_store_si256(dst.add(g), v);
    }
}

/// The 8x8 transpose of 32-bit elements: `out[g]` lane `r` is `v[r]` lane `g`.
#[inline(always)]
unsafe fn transpose8(v: [__m256i; 8]) -> [__m256i; 8] {
    let t: [__m256i; 8] = std::array::from_fn(|i| {
        let (a, b) = (v[2 * (i / 2)], v[2 * (i / 2) + 1]);
        match i % 2 {
            0 => _mm256_unpacklo_epi32(a, b),
            _ => _mm256_unpackhi_epi32(a, b),
        }
    });
    // u[4k + j]: rows 4k..4k+4 of groups j and j + 4 (j = 0..4).
    let u: [__m256i; 8] = std::array::from_fn(|i| {
        let (k, j) = (i / 4, i % 4);
        let (a, b) = (t[4 * k + j / 2], t[4 * k + 2 + j / 2]);
        match j % 2 {
            0 => _mm256_unpacklo_epi64(a, b),
            _ => _mm256_unpackhi_epi64(a, b),
        }
    });
    std::array::from_fn(|g| match g / 4 {
        0 => _mm256_permute2x128_si256::<0x20>(u[g % 4], u[4 + g % 4]),
        _ => _mm256_permute2x128_si256::<0x31>(u[g % 4], u[4 + g % 4]),
    })
}

/// Tokens `t0..t0 + T` times the panel into `out`: `S` groups of 4 quants share a
/// `vpmaddwd` (their 16-bit pair sums cannot saturate), `MIN` says whether the third scale
/// vector holds mins (else an offset's correction), `factor` is the type's `F`.
///
/// # Safety
/// The panel must hold rows packed by this file's layout from rows of the activations'
/// width; the activations must be Q8_K with those tokens; `out` as [`super::gemm`]; the CPU
/// must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gemm<const S: usize, const MIN: bool, const T: usize>(
    panel: &Panel,
    acts: &QuantActs,
    factor: f32,
    t0: usize,
    out: &Out,
) {
    for h in 0..2 {
        if h * HALF < out.valid {
            gemm_half::<S, MIN, T>(panel, acts, factor, t0, h, out);
        }
    }
}

#[inline(always)]
unsafe fn gemm_half<const S: usize, const MIN: bool, const T: usize>(
    panel: &Panel,
    acts: &QuantActs,
    factor: f32,
    t0: usize,
    h: usize,
    out: &Out,
) {
    let qs: [*const i8; T] = std::array::from_fn(|t| acts.tok_qs(t0 + t).as_ptr());
    let ds: [*const f32; T] = std::array::from_fn(|t| acts.tok_d(t0 + t).as_ptr());
    let sums: [*const i16; T] = std::array::from_fn(|t| acts.tok_bsums16(t0 + t).as_ptr());
    // The token's 4 activations of group `g` of block `b` in every lane; its two sums of 16.
    let group = |t: usize, b: usize, g: usize| {
        _mm256_set1_epi32(read_unaligned(qs[t].add(32 * b + 4 * g) as *const i32))
    };
    let bsums =
        |t: usize, b: usize| _mm256_set1_epi32(read_unaligned(sums[t].add(2 * b) as *const i32));
    let mut acc = [_mm256_setzero_ps(); T];
    for sb in 0..panel.blocks / 8 {
        let mut isum = [_mm256_setzero_si256(); T];
        for b in 8 * sb..8 * sb + 8 {
            let w = quants(panel, b, h) as *const __m256i;
            let s = scales(panel, b, h) as *const __m256i;
            for g0 in (0..8).step_by(S) {
                let sc = _mm256_load_si256(s.add(g0 / 4));
                let wv: [__m256i; S] = std::array::from_fn(|k| _mm256_load_si256(w.add(g0 + k)));
                for t in 0..T {
                    let mut pairs = _mm256_maddubs_epi16(wv[0], group(t, b, g0));
                    for k in 1..S {
                        let more = _mm256_maddubs_epi16(wv[k], group(t, b, g0 + k));
                        pairs = _mm256_add_epi16(pairs, more);
                    }
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(pairs, sc));
                }
            }
            if !MIN {
                let offsets = _mm256_load_si256(s.add(2));
                for t in 0..T {
                    let off = _mm256_madd_epi16(offsets, bsums(t, b));
                    isum[t] = _mm256_sub_epi32(isum[t], off);
                }
            }
        }
        let dw = _mm256_loadu_ps(row_scales(panel, sb).add(h * HALF));
        let dmin = _mm256_loadu_ps(row_mins(panel, sb).add(h * HALF));
        for t in 0..T {
            // The scalar kernel's `(d_w * d_a * F) * isum` added to the running sum, then
            // `(dmin_w * d_a) * msum` taken from it.
            let da = _mm256_set1_ps(*ds[t].add(sb));
            let dd = _mm256_mul_ps(_mm256_mul_ps(dw, da), _mm256_set1_ps(factor));
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_cvtepi32_ps(isum[t]), dd));
            if MIN {
                let mut msum = _mm256_setzero_si256();
                for b in 8 * sb..8 * sb + 8 {
                    let mins = _mm256_load_si256((scales(panel, b, h) as *const __m256i).add(2));
                    msum = _mm256_add_epi32(msum, _mm256_madd_epi16(mins, bsums(t, b)));
                }
                let dm = _mm256_mul_ps(dmin, da);
                acc[t] = _mm256_sub_ps(acc[t], _mm256_mul_ps(_mm256_cvtepi32_ps(msum), dm));
            }
        }
    }
    store(&acc, t0, h, out);
}

/// Each token's sums of half `h` into `out`, its valid rows only: a whole half with one
/// store, a partial one through a lane mask (a copy through the stack cost a `memmove` call
/// per token and half, 5% of a MoE prompt).
#[inline(always)]
unsafe fn store<const T: usize>(acc: &[__m256; T], t0: usize, h: usize, out: &Out) {
    let rows = out.valid.saturating_sub(h * HALF).min(HALF);
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(rows as i32), lane);
    for (t, &sum) in acc.iter().enumerate() {
        let y = out.y.add((t0 + t) * out.stride + out.row0 + h * HALF);
        if rows == HALF {
            _mm256_storeu_ps(y, sum);
        } else {
            _mm256_maskstore_ps(y, mask, sum);
        }
    }
}

/// Tokens `t0..t0 + T` times a panel of a 32-block type into `out`: signed quants through
/// the sign trick, `S` groups' pair sums added in 16 bits, `MIN` for the types with a min.
///
/// # Safety
/// As [`gemm`], the panel packed from a 32-block type and the activations in its format.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gemm_blocks<const S: usize, const MIN: bool, const T: usize>(
    panel: &Panel,
    acts: &QuantActs,
    t0: usize,
    out: &Out,
) {
    for h in 0..2 {
        if h * HALF < out.valid {
            gemm_blocks_half::<S, MIN, T>(panel, acts, t0, h, out);
        }
    }
}

#[inline(always)]
unsafe fn gemm_blocks_half<const S: usize, const MIN: bool, const T: usize>(
    panel: &Panel,
    acts: &QuantActs,
    t0: usize,
    h: usize,
    out: &Out,
) {
    let qs: [*const i8; T] = std::array::from_fn(|t| acts.tok_qs(t0 + t).as_ptr());
    let ds: [*const f32; T] = std::array::from_fn(|t| acts.tok_d(t0 + t).as_ptr());
    let ss: [*const f32; T] = match MIN {
        true => std::array::from_fn(|t| acts.tok_s(t0 + t).as_ptr()),
        false => [std::ptr::null(); T],
    };
    let group = |t: usize, b: usize, g: usize| {
        _mm256_set1_epi32(read_unaligned(qs[t].add(32 * b + 4 * g) as *const i32))
    };
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); T];
    for b in 0..panel.blocks {
        let w = quants(panel, b, h) as *const __m256i;
        let mut isum = [_mm256_setzero_si256(); T];
        for g0 in (0..8).step_by(S) {
            let v: [__m256i; S] = std::array::from_fn(|k| _mm256_load_si256(w.add(g0 + k)));
            let u = v.map(|v| _mm256_abs_epi8(v));
            for t in 0..T {
                let signed = |k: usize| _mm256_sign_epi8(group(t, b, g0 + k), v[k]);
                let mut pairs = _mm256_maddubs_epi16(u[0], signed(0));
                for k in 1..S {
                    pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(u[k], signed(k)));
                }
                isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(pairs, ones));
            }
        }
        let dw = _mm256_loadu_ps(block_d(panel, b).add(h * HALF));
        let mw = _mm256_loadu_ps(block_m(panel, b).add(h * HALF));
        for t in 0..T {
            // The portable kernel's `isum * (d_w * d_a)`, then `m_w * s_a`.
            let dd = _mm256_mul_ps(dw, _mm256_set1_ps(*ds[t].add(b)));
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_cvtepi32_ps(isum[t]), dd));
            if MIN {
                acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(mw, _mm256_set1_ps(*ss[t].add(b))));
            }
        }
    }
    store(&acc, t0, h, out);
}
