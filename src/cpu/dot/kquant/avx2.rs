//! AVX2 kernels for the Q8_K family: 32 weights per 256-bit vector.
//!
//! Unsigned quants (`vpmaddubsw` against signed activations), `vpmaddwd` with the 16-bit
//! sub-block scales, 32-bit sums per super-block; Q6_K's `-32` and Q3_K's `-4` come from the
//! activation sums, the mins of Q4_K/Q5_K/Q2_K likewise (ggml's AVX2 scheme). IQ4_XS's signed
//! levels take the sign trick (`|w|` times `a` with `w`'s sign) instead.

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ptr::read_unaligned;

use super::{block_bytes, groups_of_16, iq4xs_scale, IQ4_XS, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K};
use crate::cpu::dot::float::hsum_avx2 as hsum;
use crate::cpu::dot::{tile_table, Tile, TileEntry};
use crate::quant::blocks::{scale_q3_k, scales_mins_k4, KVALUES_IQ4NL};

pub fn tiles(c: u8) -> &'static [TileEntry] {
    macro_rules! shapes {
        ($ty:tt) => {
            tile_table!(tile, $ty; (1, 1), (1, 2), (1, 4), (1, 8), (2, 1), (2, 2), (2, 4), (4, 1))
        };
    }
    match c {
        Q4_K => shapes!(Q4_K),
        Q5_K => shapes!(Q5_K),
        Q2_K => shapes!(Q2_K),
        Q3_K => shapes!(Q3_K),
        IQ4_XS => shapes!(IQ4_XS),
        _ => shapes!(Q6_K),
    }
}

#[derive(Clone, Copy)]
struct Header {
    d: f32,
    dmin: f32,
    /// Q4_K/Q5_K: 8 scales then 8 mins; Q6_K, Q2_K, Q3_K: 16 scales; IQ4_XS: 8 scales.
    sc: [i16; 16],
    /// Multipliers of the activation sums: Q4_K/Q5_K/Q2_K the mins, Q6_K `-32 * scale`,
    /// Q3_K `-4 * scale`.
    corr: __m256i,
}

#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn f16_at(p: *const u8) -> f32 {
    let h = read_unaligned(p as *const u16) as i32;
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)))
}

#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn header<const TY: u8>(p: *const u8) -> Header {
    let mut sc = [0i16; 16];
    let blk = std::slice::from_raw_parts(p, block_bytes(TY));
    match TY {
        Q2_K => {
            let mut mins = [0i16; 16];
            for g in 0..16 {
                (sc[g], mins[g]) = ((blk[g] & 0xF) as i16, (blk[g] >> 4) as i16);
            }
            return Header {
                d: f16_at(p.add(80)),
                dmin: f16_at(p.add(82)),
                sc,
                corr: _mm256_loadu_si256(mins.as_ptr() as *const __m256i),
            };
        }
        Q3_K => {
            let scales: &[u8; 12] = blk[96..108].try_into().expect("12 scale bytes");
            for (g, s) in sc.iter_mut().enumerate() {
                *s = scale_q3_k(g, scales) as i16;
            }
            let v = _mm256_loadu_si256(sc.as_ptr() as *const __m256i);
            return Header {
                d: f16_at(p.add(108)),
                dmin: 0.0,
                sc,
                corr: _mm256_mullo_epi16(v, _mm256_set1_epi16(-4)),
            };
        }
        IQ4_XS => {
            for (j, s) in sc.iter_mut().take(8).enumerate() {
                *s = iq4xs_scale(blk, j) as i16;
            }
            return Header {
                d: f16_at(p),
                dmin: 0.0,
                sc,
                corr: _mm256_setzero_si256(),
            };
        }
        _ => {}
    }
    if TY == Q6_K {
        for (g, s) in sc.iter_mut().enumerate() {
            *s = *(p.add(192 + g) as *const i8) as i16;
        }
        let v = _mm256_loadu_si256(sc.as_ptr() as *const __m256i);
        let corr = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16::<5>(v));
        return Header {
            d: f16_at(p.add(208)),
            dmin: 0.0,
            sc,
            corr,
        };
    }
    let (s, m) = scales_mins_k4(std::slice::from_raw_parts(p.add(4), 12));
    for j in 0..8 {
        sc[j] = s[j] as i16;
        sc[8 + j] = m[j] as i16;
    }
    let corr = _mm256_castsi128_si256(_mm_loadu_si128(sc.as_ptr().add(8) as *const __m128i));
    Header {
        d: f16_at(p),
        dmin: f16_at(p.add(2)),
        sc,
        corr,
    }
}

/// Sub-block `j` (weights 32j..32j+32) of the super-block at `p`: unsigned quants and the
/// 16-bit scale of each pair sum.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn sub<const TY: u8>(p: *const u8, j: usize, h: &Header) -> (__m256i, __m256i) {
    let nib = _mm256_set1_epi8(0x0F);
    if TY == IQ4_XS {
        // Signed levels: the caller applies the sign trick.
        let x = _mm_loadu_si128(p.add(8 + 16 * j) as *const __m128i);
        let lo = _mm_and_si128(x, _mm_set1_epi8(0x0F));
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(x), _mm_set1_epi8(0x0F));
        let levels = _mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i);
        let q = _mm256_shuffle_epi8(_mm256_set_m128i(levels, levels), _mm256_set_m128i(hi, lo));
        return (q, _mm256_set1_epi16(h.sc[j]));
    }
    if TY == Q2_K || TY == Q3_K {
        // Weights 128n + 32k + l are bits 2k of qs[32n + l] (Q3_K: plus bit 4n + k of
        // hmask[l], which when set cancels the -4 the activation sums subtract).
        let (n, k) = (j / 4, j % 4);
        let qs = if TY == Q2_K { 16 } else { 32 };
        let raw = _mm256_loadu_si256(p.add(qs + 32 * n) as *const __m256i);
        let shift = _mm_cvtsi32_si128(2 * k as i32);
        let mut q = _mm256_and_si256(_mm256_srl_epi16(raw, shift), _mm256_set1_epi8(3));
        if TY == Q3_K {
            let hm = _mm256_loadu_si256(p as *const __m256i);
            let bit = _mm256_srl_epi16(hm, _mm_cvtsi32_si128((4 * n + k) as i32));
            let bit = _mm256_and_si256(bit, _mm256_set1_epi8(1));
            q = _mm256_or_si256(q, _mm256_slli_epi16::<2>(bit));
        }
        let g = 2 * j;
        let sc = _mm256_set_m128i(_mm_set1_epi16(h.sc[g + 1]), _mm_set1_epi16(h.sc[g]));
        return (q, sc);
    }
    let shift = _mm_cvtsi32_si128(if j.is_multiple_of(2) { 0 } else { 4 });
    if TY == Q6_K {
        let (n, quarter) = (j / 4, j % 4);
        let ql = _mm256_loadu_si256(p.add(64 * n + 32 * (quarter % 2)) as *const __m256i);
        let lo = _mm256_and_si256(
            _mm256_srl_epi16(ql, _mm_cvtsi32_si128(4 * (quarter as i32 / 2))),
            nib,
        );
        let qh = _mm256_loadu_si256(p.add(128 + 32 * n) as *const __m256i);
        let hb = _mm256_and_si256(
            _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * quarter as i32)),
            _mm256_set1_epi8(3),
        );
        let q = _mm256_or_si256(lo, _mm256_slli_epi16::<4>(hb));
        let g = 8 * n + 2 * quarter;
        let sc = _mm256_set_m128i(_mm_set1_epi16(h.sc[g + 1]), _mm_set1_epi16(h.sc[g]));
        return (q, sc);
    }
    let qs = if TY == Q4_K { 16 } else { 48 };
    let raw = _mm256_loadu_si256(p.add(qs + 32 * (j / 2)) as *const __m256i);
    let mut q = _mm256_and_si256(_mm256_srl_epi16(raw, shift), nib);
    if TY == Q5_K {
        let qh = _mm256_loadu_si256(p.add(16) as *const __m256i);
        let bit = _mm256_and_si256(
            _mm256_srl_epi16(qh, _mm_cvtsi32_si128(j as i32)),
            _mm256_set1_epi8(1),
        );
        q = _mm256_or_si256(q, _mm256_slli_epi16::<4>(bit));
    }
    (q, _mm256_set1_epi16(h.sc[j]))
}

#[target_feature(enable = "avx2,f16c,fma")]
unsafe fn tile<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    let bs = block_bytes(TY);
    let nsb = a.cols / 256;
    let acts = a.acts;
    let mut qs = [std::ptr::null::<i8>(); T];
    let mut ds = [std::ptr::null::<f32>(); T];
    let mut sums = [std::ptr::null::<i16>(); T];
    for t in 0..T {
        let tok = a.t0 + t;
        qs[t] = acts.tok_qs(tok).as_ptr();
        ds[t] = acts.tok_d(tok).as_ptr();
        sums[t] = if groups_of_16(TY) {
            acts.tok_bsums16(tok).as_ptr()
        } else {
            acts.tok_bsums32(tok).as_ptr()
        };
    }
    let zi = _mm256_setzero_si256();
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let mut hdr = [Header {
        d: 0.0,
        dmin: 0.0,
        sc: [0; 16],
        corr: zi,
    }; R];
    let mut w = [(zi, zi); R];
    for sb in 0..nsb {
        for r in 0..R {
            hdr[r] = header::<TY>(a.w.add(r * a.w_stride + sb * bs));
        }
        let mut isum = [[zi; T]; R];
        for j in 0..8 {
            for r in 0..R {
                w[r] = sub::<TY>(a.w.add(r * a.w_stride + sb * bs), j, &hdr[r]);
            }
            for t in 0..T {
                let av = _mm256_loadu_si256(qs[t].add(256 * sb + 32 * j) as *const __m256i);
                for r in 0..R {
                    let pairs = if TY == IQ4_XS {
                        let u = _mm256_sign_epi8(w[r].0, w[r].0);
                        _mm256_maddubs_epi16(u, _mm256_sign_epi8(av, w[r].0))
                    } else {
                        _mm256_maddubs_epi16(w[r].0, av)
                    };
                    isum[r][t] = _mm256_add_epi32(isum[r][t], _mm256_madd_epi16(pairs, w[r].1));
                }
            }
        }
        for t in 0..T {
            let da = *ds[t].add(sb);
            for r in 0..R {
                let h = &hdr[r];
                let dd = _mm256_set1_ps(h.d * da);
                if TY == Q2_K {
                    let bs16 = _mm256_loadu_si256(sums[t].add(16 * sb) as *const __m256i);
                    let m = _mm256_madd_epi16(h.corr, bs16);
                    let v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), dd, acc[r][t]);
                    let dm = _mm256_set1_ps(-(h.dmin * da));
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), dm, v);
                } else if TY == IQ4_XS {
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), dd, acc[r][t]);
                } else if groups_of_16(TY) {
                    let bs16 = _mm256_loadu_si256(sums[t].add(16 * sb) as *const __m256i);
                    let i = _mm256_add_epi32(isum[r][t], _mm256_madd_epi16(h.corr, bs16));
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), dd, acc[r][t]);
                } else {
                    let bs32 = _mm256_castsi128_si256(_mm_loadu_si128(
                        sums[t].add(8 * sb) as *const __m128i
                    ));
                    // Upper halves are garbage in both; only the low 4 lanes are kept.
                    let m = _mm256_madd_epi16(h.corr, bs32);
                    let m = _mm256_set_m128i(_mm_setzero_si128(), _mm256_castsi256_si128(m));
                    let v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), dd, acc[r][t]);
                    let dm = _mm256_set1_ps(-(h.dmin * da));
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), dm, v);
                }
            }
        }
    }
    for r in 0..R {
        for t in 0..T {
            *a.y.add((a.t0 + t) * a.y_stride + a.r0 + r * a.y_step) = hsum(acc[r][t]);
        }
    }
}
