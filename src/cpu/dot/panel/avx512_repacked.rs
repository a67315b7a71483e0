//! Q4_K and Q6_K repacked once ([`Panel::repacked_q4k`], [`Panel::repacked_q6k`]): the packs
//! and the kernels over the compact layouts. The per-call panels hold a byte per weight and
//! f32 scales, twice the rows or more; these keep the rows' bits (Q4_K 3% over the rows, Q6_K
//! their size), and the kernels unpack them in registers. Same integer sums, same f32 products
//! (`d * scale`, `dmin * min`, formed from the same values), same order: the per-call panels'
//! bits. (Q5_K in Q4_K's layout with a plane of fifth bits decoded a Qwen3-0.6B Q5_K_M file
//! 5-10% slower than its tiles in place, two more operations per group; it reads in place.)

use std::arch::x86_64::*;
use std::ptr::read_unaligned;

use super::super::kquant::{self, Q4_K, Q6_K};
use super::avx512::{add_scaled, k_block_groups, prefetch_stream, store};
use super::layout::{Out, Panel, Tables, ROWS};
use crate::quant::blocks::scales_mins_k4;

/// Where the compact scales of a Q4_K panel lie, after its quants: (scales, mins, d, dmin).
#[inline(always)]
unsafe fn scale_regions(panel: &Panel) -> (*mut u8, *mut u8, *mut u16, *mut u16) {
    let n = panel.blocks;
    let at = panel.d as *mut u8;
    (
        at,
        at.add(n * 16),
        at.add(n * 32) as *mut u16,
        at.add(n * 36) as *mut u16,
    )
}

/// Packs 16 Q4_K rows into the compact panel ([`Panel::repacked_q4k`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
pub unsafe fn pack_q4k(rows: &[*const u8; ROWS], panel: &Panel) {
    let bs = kquant::block_bytes(Q4_K);
    let (sc, mn, dd, dm) = scale_regions(panel);
    let nib = _mm512_set1_epi8(0x0F);
    for sb in 0..panel.blocks / 8 {
        for j in 0..8 {
            let g = k_block_groups::<Q4_K>(rows, sb, j);
            let dst = panel.q.add((8 * sb + j) * 256);
            for k in 0..4 {
                // Quants are below 16: the shift moves nothing across a byte.
                let pair = _mm512_or_si512(
                    _mm512_and_si512(g[k], nib),
                    _mm512_slli_epi16::<4>(g[k + 4]),
                );
                _mm512_store_si512(dst.add(64 * k) as *mut _, pair);
            }
        }
        for (r, &row) in rows.iter().enumerate() {
            let blk = std::slice::from_raw_parts(row.add(sb * bs), bs);
            let (s, m) = scales_mins_k4(&blk[4..16]);
            for j in 0..8 {
                *sc.add((8 * sb + j) * ROWS + r) = s[j];
                *mn.add((8 * sb + j) * ROWS + r) = m[j];
            }
            *dd.add(sb * ROWS + r) = read_unaligned(blk.as_ptr() as *const u16);
            *dm.add(sb * ROWS + r) = read_unaligned(blk.as_ptr().add(2) as *const u16);
        }
    }
}

/// The 16 rows' `f * v` for the block's u8 values at `v`: `f` the super-block's f32 factors.
#[inline(always)]
unsafe fn times_bytes(f: __m512, v: *const u8) -> __m512 {
    let v = _mm512_cvtepu8_epi32(_mm_load_si128(v as *const __m128i));
    _mm512_mul_ps(f, _mm512_cvtepi32_ps(v))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")]
pub unsafe fn gemm_q4k<const T: usize>(panel: &Panel, tables: &Tables, t0: usize, out: &Out) {
    let tb = tables;
    let qs: [*const i8; T] = std::array::from_fn(|t| tb.qs.add((t0 + t) * tb.qs_step));
    let d: [*const f32; T] = std::array::from_fn(|t| tb.d.add((t0 + t) * tb.d_step));
    let c: [*const i32; T] = std::array::from_fn(|t| tb.c.wrapping_add((t0 + t) * tb.c_step));
    let s: [*const f32; T] = std::array::from_fn(|t| tb.s.wrapping_add((t0 + t) * tb.s_step));
    let (sc, mn, dd, dm) = scale_regions(panel);
    let nib = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); T];
    let (mut d_sb, mut m_sb) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for b in 0..panel.blocks {
        if panel.ahead > 0 {
            prefetch_stream(panel, b);
        }
        if b % 8 == 0 {
            let at = b / 8 * ROWS;
            d_sb = _mm512_cvtph_ps(_mm256_load_si256(dd.add(at) as *const __m256i));
            m_sb = _mm512_cvtph_ps(_mm256_load_si256(dm.add(at) as *const __m256i));
        }
        let mut isum: [__m512i; T] = std::array::from_fn(|t| _mm512_set1_epi32(*c[t].add(b)));
        let w = panel.q.add(b * 256);
        for k in 0..4 {
            let pair = _mm512_load_si512(w.add(64 * k) as *const _);
            let lo = _mm512_and_si512(pair, nib);
            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(pair), nib);
            for t in 0..T {
                let a_lo = read_unaligned(qs[t].add(32 * b + 4 * k) as *const i32);
                let a_hi = read_unaligned(qs[t].add(32 * b + 4 * (k + 4)) as *const i32);
                isum[t] = _mm512_dpbusd_epi32(isum[t], lo, _mm512_set1_epi32(a_lo));
                isum[t] = _mm512_dpbusd_epi32(isum[t], hi, _mm512_set1_epi32(a_hi));
            }
        }
        add_scaled(&mut acc, isum, times_bytes(d_sb, sc.add(ROWS * b)), &d, b);
        let mw = times_bytes(m_sb, mn.add(ROWS * b));
        for t in 0..T {
            acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(*s[t].add(b)), acc[t]);
        }
    }
    store(&acc, t0, out);
}

/// Where the scales of a Q6_K panel of `blocks` blocks lie: (i8 scales, d).
#[inline(always)]
unsafe fn q6k_scale_regions(panel: &Panel) -> (*mut u8, *mut u16) {
    let at = panel.d as *mut u8;
    (at, at.add(panel.blocks * 32) as *mut u16)
}

/// Packs 16 Q6_K rows into the compact panel ([`Panel::repacked_q6k`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn pack_q6k(rows: &[*const u8; ROWS], panel: &Panel) {
    let bs = kquant::block_bytes(Q6_K);
    let (sc, dd) = q6k_scale_regions(panel);
    let (nib, two_bits) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(3));
    for sb in 0..panel.blocks / 8 {
        for j in 0..8 {
            // Quants below 64: masked to a nibble or two bits before each shift, nothing
            // crosses a byte.
            let g = k_block_groups::<Q6_K>(rows, sb, j);
            let dst = panel.q.add((8 * sb + j) * 384);
            for k in 0..4 {
                let high = _mm512_slli_epi16::<4>(_mm512_and_si512(g[k + 4], nib));
                let pair = _mm512_or_si512(_mm512_and_si512(g[k], nib), high);
                _mm512_store_si512(dst.add(64 * k) as *mut _, pair);
            }
            for m in 0..2 {
                let mut top = _mm512_setzero_si512();
                for i in 0..4 {
                    let t = _mm512_and_si512(_mm512_srli_epi16::<4>(g[m + 2 * i]), two_bits);
                    let t = _mm512_sll_epi16(t, _mm_cvtsi32_si128(2 * i as i32));
                    top = _mm512_or_si512(top, t);
                }
                _mm512_store_si512(dst.add(256 + 64 * m) as *mut _, top);
            }
        }
        for (r, &row) in rows.iter().enumerate() {
            let blk = std::slice::from_raw_parts(row.add(sb * bs), bs);
            for (h, &scale) in blk[192..208].iter().enumerate() {
                *sc.add((16 * sb + h) * ROWS + r) = scale;
            }
            *dd.add(sb * ROWS + r) = read_unaligned(blk.as_ptr().add(208) as *const u16);
        }
    }
}

/// Group `g`'s top two bits from the vector holding them (bits `2 (g / 2)`), moved to bits
/// 4-5 of each byte (still to be masked: the 16-bit shifts carry bits across bytes).
#[inline(always)]
unsafe fn top_bits(v: __m512i, g: usize) -> __m512i {
    match g / 2 {
        0 => _mm512_slli_epi16::<4>(v),
        1 => _mm512_slli_epi16::<2>(v),
        2 => v,
        _ => _mm512_srli_epi16::<2>(v),
    }
}

/// Q6_K in halves of 16 as the per-call kernel (`avx512::gemm16`): each half's sum starts
/// from `-32 *` its activations' sum, its scale is `d * scale` of the half.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")]
pub unsafe fn gemm_q6k<const T: usize>(panel: &Panel, tables: &Tables, t0: usize, out: &Out) {
    let tb = tables;
    let qs: [*const i8; T] = std::array::from_fn(|t| tb.qs.add((t0 + t) * tb.qs_step));
    let d: [*const f32; T] = std::array::from_fn(|t| tb.d.add((t0 + t) * tb.d_step));
    let c: [*const i32; T] = std::array::from_fn(|t| tb.c.wrapping_add((t0 + t) * tb.c_step));
    let (sc, dd) = q6k_scale_regions(panel);
    let (nib, bits_45) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x30));
    let mut acc = [_mm512_setzero_ps(); T];
    let mut d_sb = _mm512_setzero_ps();
    for b in 0..panel.blocks {
        if panel.ahead > 0 {
            prefetch_stream(panel, b);
        }
        if b % 8 == 0 {
            d_sb = _mm512_cvtph_ps(_mm256_load_si256(dd.add(b / 8 * ROWS) as *const __m256i));
        }
        let w = panel.q.add(b * 384);
        let pairs: [__m512i; 4] =
            std::array::from_fn(|k| _mm512_load_si512(w.add(64 * k) as *const _));
        let tops: [__m512i; 2] =
            std::array::from_fn(|m| _mm512_load_si512(w.add(256 + 64 * m) as *const _));
        for h in 0..2 {
            let half = 2 * b + h;
            let mut isum: [__m512i; T] =
                std::array::from_fn(|t| _mm512_set1_epi32(*c[t].add(half)));
            for (k, &pair) in pairs.iter().enumerate() {
                let g = 4 * h + k;
                let low = if h == 0 {
                    _mm512_and_si512(pair, nib)
                } else {
                    _mm512_and_si512(_mm512_srli_epi16::<4>(pair), nib)
                };
                // low | (top & 0x30): the group's six bits.
                let q = _mm512_ternarylogic_epi32::<0xF8>(low, top_bits(tops[g % 2], g), bits_45);
                for t in 0..T {
                    let a = read_unaligned(qs[t].add(32 * b + 4 * g) as *const i32);
                    isum[t] = _mm512_dpbusd_epi32(isum[t], q, _mm512_set1_epi32(a));
                }
            }
            let scale = _mm512_cvtepi8_epi32(_mm_load_si128(sc.add(ROWS * half) as *const __m128i));
            add_scaled(
                &mut acc,
                isum,
                _mm512_mul_ps(d_sb, _mm512_cvtepi32_ps(scale)),
                &d,
                b,
            );
        }
    }
    store(&acc, t0, out);
}
