//! Row panels for Q2_K, Q3_K and IQ4_XS (AVX-512 VNNI): the types added for the other
//! published Qwen3 files, in the same panel layout and API as the others.
//!
//! IQ4_XS enters as blocks of 32 with effective scales `d * (ls - 32)` and its levels + 128
//! as unsigned quants; the `+ 128` comes back out through the K-quant min term (`m = 128 *
//! scale` against the activations' `-d * sum` per 32), so it runs [`super::avx512::gemm`]. Q2_K and
//! Q3_K change scales every 16 weights: they enter as half-blocks of 16 with effective scales
//! and mins, and [`gemm16_min`] adds each half's min against the activations' `-d * sum` per 16
//! (Q2_K: `dmin * m`; Q3_K, whose quants are packed as `q + 4`: `4 * scale`).

use std::arch::x86_64::*;

use super::super::kquant::{self, IQ4_XS, Q2_K};
use super::super::legacy::iq4nl_offset_levels;
use super::avx512::{add_scaled, dots, store, transpose};
use super::layout::{Out, Panel, Tables, ROWS};
use crate::quant::blocks::{f16_at, scale_q3_k};

/// Block `j` (weights 32j..32j+32) of the super-block at `p`, unsigned, in weight order.
#[inline(always)]
unsafe fn quants<const TY: u8>(p: *const u8, j: usize) -> __m256i {
    if TY == IQ4_XS {
        let v = _mm_loadu_si128(p.add(8 + 16 * j) as *const __m128i);
        let nib = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(v, nib);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), nib);
        let idx = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi);
        return _mm256_shuffle_epi8(_mm512_castsi512_si256(iq4nl_offset_levels()), idx);
    }
    // Weights 128n + 32k + l are bits 2k of qs[32n + l]; Q3_K adds 4 where bit 4n + k of
    // hmask[l] is set (a clear bit is its -4, which the min term subtracts from every quant).
    let (n, k) = (j / 4, j % 4);
    let qs = if TY == Q2_K { 16 } else { 32 };
    let raw = _mm256_loadu_si256(p.add(qs + 32 * n) as *const __m256i);
    let low = _mm256_srl_epi16(raw, _mm_cvtsi32_si128(2 * k as i32));
    let q = _mm256_and_si256(low, _mm256_set1_epi8(3));
    if TY == Q2_K {
        return q;
    }
    let hm = _mm256_loadu_si256(p as *const __m256i);
    let hit = _mm256_test_epi8_mask(hm, _mm256_set1_epi8((1u8 << (4 * n + k)) as i8));
    _mm256_mask_add_epi8(q, hit, q, _mm256_set1_epi8(4))
}

/// Each row's effective scales and mins: per block of 32 (IQ4_XS) or half-block of 16.
unsafe fn scales<const TY: u8>(rows: &[*const u8; ROWS], sb: usize, panel: &Panel) {
    let bs = kquant::block_bytes(TY);
    for (r, &row) in rows.iter().enumerate() {
        let blk = std::slice::from_raw_parts(row.add(sb * bs), bs);
        let put = |i: usize, d: f32, m: f32| {
            *panel.d.add(i * ROWS + r) = d;
            *panel.m.add(i * ROWS + r) = m;
        };
        match TY {
            IQ4_XS => {
                let d = f16_at(blk, 0);
                for j in 0..8 {
                    let dl = d * kquant::iq4xs_scale(blk, j) as f32;
                    put(8 * sb + j, dl, 128.0 * dl);
                }
            }
            Q2_K => {
                let (d, dmin) = (f16_at(blk, 80), f16_at(blk, 82));
                for (g, &sc) in blk[..16].iter().enumerate() {
                    put(16 * sb + g, d * (sc & 0xF) as f32, dmin * (sc >> 4) as f32);
                }
            }
            _ => {
                let d = f16_at(blk, 108);
                let packed: &[u8; 12] = blk[96..108].try_into().expect("12 scale bytes");
                for g in 0..16 {
                    let dl = d * scale_q3_k(g, packed) as f32;
                    put(16 * sb + g, dl, 4.0 * dl);
                }
            }
        }
    }
}

/// Repacks the rows (Q2_K, Q3_K or IQ4_XS) into `panel`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
pub unsafe fn pack_low_bit<const TY: u8>(rows: &[*const u8; ROWS], panel: &Panel) {
    let bs = kquant::block_bytes(TY);
    for sb in 0..panel.blocks / 8 {
        for j in 0..8 {
            let z: [__m512i; 8] = std::array::from_fn(|i| {
                let lo = quants::<TY>(rows[i].add(sb * bs), j);
                let hi = quants::<TY>(rows[i + 8].add(sb * bs), j);
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
            });
            let dst = panel.q.add((8 * sb + j) * 512);
            for (g, v) in transpose(z).into_iter().enumerate() {
                _mm512_store_si512(dst.add(64 * g) as *mut _, v);
            }
        }
        scales::<TY>(rows, sb, panel);
    }
}

/// Q2_K and Q3_K: each block of 32 is two halves of 16 with scales and mins of their own;
/// `acc += isum * (d_h * d_a) + m_h * (-d_a * sum_h)` per half.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma")]
pub unsafe fn gemm16_min<const T: usize>(panel: &Panel, tables: &Tables, t0: usize, out: &Out) {
    let tb = tables;
    let qs: [*const i8; T] = std::array::from_fn(|t| tb.qs.add((t0 + t) * tb.qs_step));
    let d: [*const f32; T] = std::array::from_fn(|t| tb.d.add((t0 + t) * tb.d_step));
    let s: [*const f32; T] = std::array::from_fn(|t| tb.s.add((t0 + t) * tb.s_step));
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..panel.blocks {
        for h in 0..2 {
            let g = 2 * b + h;
            let isum = dots(panel, &qs, b, 4 * h..4 * h + 4, [0; T]);
            add_scaled(&mut acc, isum, _mm512_load_ps(panel.d.add(ROWS * g)), &d, b);
            let mw = _mm512_load_ps(panel.m.add(ROWS * g));
            for t in 0..T {
                acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(*s[t].add(g)), acc[t]);
            }
        }
    }
    store(&acc, t0, out);
}
