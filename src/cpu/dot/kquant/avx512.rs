//! AVX-512 VNNI kernels for the Q8_K family: 64 weights per 512-bit vector.
//!
//! Quants are unpacked to unsigned bytes (Q6_K: `q` in 0..64, Q3_K: `q + 4` in 0..8, their
//! offsets folded into the activation sums). Q4_K/Q5_K read their activations in nibble order
//! (sub-blocks 0, 2, 1, 3, ...), so 64 bytes of quants give two vectors with one AND or a
//! shift and an AND. `vpmaddubsw` forms pair sums against the signed activations and
//! `vpdpwssd` multiplies them by the sub-block scales into 32-bit sums, two instructions per
//! 64 multiply-adds. IQ4_XS's levels + 128 (up to 241) would saturate `vpmaddubsw`'s pair sums,
//! so `vpdpbusd` sums them four at a time and `vpmulld` applies the sub-block scales; the
//! `+ 128` comes back out through the activation sums. Per super-block and (row, token):
//! convert, scale, FMA, plus the mins.

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ptr::read_unaligned;

use super::{block_bytes, groups_of_16, IQ4_XS, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K};
use crate::cpu::dot::legacy::iq4nl_offset_levels;
use crate::cpu::dot::{tile_table, Tile, TileEntry, PREFETCH};

/// No 2x4 or 4x4 tiles: their accumulators spill (measured slower than 1x4 and 1x8).
pub fn tiles(c: u8) -> &'static [TileEntry] {
    macro_rules! shapes {
        ($ty:tt) => {
            tile_table!(tile, $ty; (1, 1), (1, 2), (1, 4), (1, 8), (2, 1), (2, 2), (4, 1))
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

/// Cache lines prefetched per super-block and row in decode: the block's bytes, less one
/// (the stream's neighbours cover the rest; measured no slower than all of them).
const fn prefetch_lines(ty: u8) -> usize {
    (block_bytes(ty) - 1) / 64
}

/// A super-block's scales for one row.
#[derive(Clone, Copy)]
struct Header {
    d: f32,
    dmin: f32,
    /// Q4_K/Q5_K: the 8 mins as i16 (low 128 bits). Q6_K, Q2_K, Q3_K: 16 scales as i16.
    /// IQ4_XS: 8 scales as i32.
    sc: __m256i,
    /// Q4_K/Q5_K: the 8 scale bytes in every 64-bit lane, for `vpshufb`.
    sc_bytes: __m512i,
    /// Multipliers of the activation sums: Q6_K `-32 * scale`, Q3_K `-4 * scale` (the offset
    /// corrections, per 16), IQ4_XS `-128 * scale` (per 32, low 128 bits), Q2_K the 16 mins.
    corr: __m256i,
}

/// The f16 at `p`, widened.
#[inline]
#[target_feature(enable = "avx512f,f16c")]
unsafe fn f16_at(p: *const u8) -> f32 {
    let h = read_unaligned(p as *const u16) as i32;
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)))
}

/// The headers of the types added for the other published files (Q2_K, Q3_K, IQ4_XS).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
unsafe fn header_low_bit<const TY: u8>(p: *const u8) -> Header {
    let none = _mm512_setzero_si512();
    match TY {
        Q2_K => {
            let b = _mm_loadu_si128(p as *const __m128i);
            let nib = _mm_set1_epi8(0x0F);
            let sc = _mm256_cvtepu8_epi16(_mm_and_si128(b, nib));
            let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(b), nib));
            Header {
                d: f16_at(p.add(80)),
                dmin: f16_at(p.add(82)),
                sc,
                sc_bytes: none,
                corr: mins,
            }
        }
        Q3_K => {
            // ggml's kmask unpacking: low nibbles from bytes 0..8, top 2 bits from 8..12.
            let a0 = read_unaligned(p.add(96) as *const u32);
            let a1 = read_unaligned(p.add(100) as *const u32);
            let tmp = read_unaligned(p.add(104) as *const u32);
            let (m1, m2) = (0x0303_0303_u32, 0x0f0f_0f0f_u32);
            let w = [
                (a0 & m2) | ((tmp & m1) << 4),
                (a1 & m2) | (((tmp >> 2) & m1) << 4),
                ((a0 >> 4) & m2) | (((tmp >> 4) & m1) << 4),
                ((a1 >> 4) & m2) | (((tmp >> 6) & m1) << 4),
            ];
            let bytes = _mm_setr_epi32(w[0] as i32, w[1] as i32, w[2] as i32, w[3] as i32);
            let sc = _mm256_sub_epi16(_mm256_cvtepu8_epi16(bytes), _mm256_set1_epi16(32));
            Header {
                d: f16_at(p.add(108)),
                dmin: 0.0,
                sc,
                sc_bytes: none,
                corr: _mm256_mullo_epi16(sc, _mm256_set1_epi16(-4)),
            }
        }
        _ => {
            // ls_j: nibble j of the u32 scales_l, and bits 2j..2j+2 of the u16 scales_h.
            let low = _mm256_set1_epi32(read_unaligned(p.add(4) as *const i32));
            let high = _mm256_set1_epi32(read_unaligned(p.add(2) as *const u16) as i32);
            let low = _mm256_srlv_epi32(low, _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
            let high = _mm256_srlv_epi32(high, _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
            let low = _mm256_and_si256(low, _mm256_set1_epi32(0xF));
            let high = _mm256_slli_epi32::<4>(_mm256_and_si256(high, _mm256_set1_epi32(3)));
            let sc = _mm256_sub_epi32(_mm256_or_si256(low, high), _mm256_set1_epi32(32));
            let corr = _mm256_castsi128_si256(_mm256_cvtepi32_epi16(_mm256_slli_epi32::<7>(sc)));
            Header {
                d: f16_at(p),
                dmin: 0.0,
                sc,
                sc_bytes: none,
                corr: _mm256_sub_epi16(_mm256_setzero_si256(), corr),
            }
        }
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
unsafe fn header<const TY: u8>(p: *const u8) -> Header {
    if matches!(TY, Q2_K | Q3_K | IQ4_XS) {
        return header_low_bit::<TY>(p);
    }
    if TY == Q6_K {
        let h = read_unaligned(p.add(208) as *const u16) as i32;
        let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
        let sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(192) as *const __m128i));
        let corr = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16::<5>(sc));
        return Header {
            d,
            dmin: 0.0,
            sc,
            sc_bytes: _mm512_setzero_si512(),
            corr,
        };
    }
    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(read_unaligned(p as *const i32)));
    let (d, dmin) = (_mm_cvtss_f32(dm), _mm_cvtss_f32(_mm_movehdup_ps(dm)));
    // ggml's 6-bit scale unpacking (get_scale_min_k4), four at a time.
    let u0 = read_unaligned(p.add(4) as *const u32);
    let u1 = read_unaligned(p.add(8) as *const u32);
    let u2 = read_unaligned(p.add(12) as *const u32);
    let (k1, k2, k3) = (0x3f3f_3f3f_u32, 0x0f0f_0f0f_u32, 0x0303_0303_u32);
    let sc = (u0 & k1) as u64 | ((((u2 & k2) | (((u0 >> 6) & k3) << 4)) as u64) << 32);
    let mn = (u1 & k1) as u64 | (((((u2 >> 4) & k2) | (((u1 >> 6) & k3) << 4)) as u64) << 32);
    Header {
        d,
        dmin,
        sc: _mm256_castsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(mn as i64))),
        sc_bytes: _mm512_set1_epi64(sc as i64),
        corr: _mm256_setzero_si256(),
    }
}

/// Which sub-blocks chunk `j` of a Q4_K/Q5_K super-block holds, in nibble order: (low 256
/// bits, high 256 bits).
const fn k4_subs(j: usize) -> (usize, usize) {
    let base = 4 * (j / 2) + j % 2;
    (base, base + 2)
}

/// Indices spreading the scales over chunk `j`'s 32 pair sums. Q6_K: 16-bit lanes for
/// `vpermw` (groups 4j..4j+4, 8 lanes each). Q4_K/Q5_K: bytes for `vpshufb` picking the
/// scale bytes of the chunk's sub-blocks, zero-extended to 16 bits (high byte 0x80).
/// A table in memory, not vectors kept in registers: the big tiles need every register.
const fn scale_index(q6: bool) -> [[i16; 32]; 4] {
    let mut out = [[0i16; 32]; 4];
    let mut j = 0;
    while j < 4 {
        let mut l = 0;
        while l < 32 {
            out[j][l] = if q6 {
                (4 * j + l / 8) as i16
            } else {
                let (lo, hi) = k4_subs(j);
                (0x8000u16 | (if l < 16 { lo } else { hi }) as u16) as i16
            };
            l += 1;
        }
        j += 1;
    }
    out
}

static INDEX_K4: [[i16; 32]; 4] = scale_index(false);
static INDEX_Q6: [[i16; 32]; 4] = scale_index(true);

/// IQ4_XS: 32-bit lanes for `vpermd` spreading sub-block scales `2j` (lanes 0-7) and `2j + 1`
/// (lanes 8-15) over chunk `j`'s lane sums.
static INDEX_XS: [[i32; 16]; 4] = {
    let mut out = [[0i32; 16]; 4];
    let mut j = 0;
    while j < 4 {
        let mut l = 0;
        while l < 16 {
            out[j][l] = (2 * j + l / 8) as i32;
            l += 1;
        }
        j += 1;
    }
    out
};

/// Chunk `j` of a Q2_K, Q3_K or IQ4_XS super-block: unsigned quants and lane scales (16-bit
/// for Q2_K/Q3_K, 32-bit for IQ4_XS).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn chunk_low_bit<const TY: u8>(p: *const u8, j: usize, h: &Header) -> (__m512i, __m512i) {
    if TY == IQ4_XS {
        // Sub-blocks 2j (bytes 0..16) and 2j + 1 (16..32): 128-bit lanes [lo, hi, lo, hi].
        let raw = _mm256_loadu_si256(p.add(8 + 32 * j) as *const __m256i);
        let v = _mm512_permutexvar_epi64(
            _mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3),
            _mm512_castsi256_si512(raw),
        );
        let hi4 = 0x0004_0004_0004_0004;
        let v = _mm512_srlv_epi16(v, _mm512_setr_epi64(0, 0, hi4, hi4, 0, 0, hi4, hi4));
        let q = _mm512_shuffle_epi8(
            iq4nl_offset_levels(),
            _mm512_and_si512(v, _mm512_set1_epi8(0x0F)),
        );
        let idx = _mm512_loadu_si512(INDEX_XS[j].as_ptr() as *const _);
        return (
            q,
            _mm512_permutexvar_epi32(idx, _mm512_castsi256_si512(h.sc)),
        );
    }
    // Weights 128n + 32k + l (l < 32) are bits 2k of qs[32n + l]: chunk j is planes
    // k = 2 (j % 2) and k + 1 of the n = j / 2 -th 32 bytes.
    let (n, k) = (j / 2, 2 * (j % 2));
    let qs = if TY == Q2_K { 16 } else { 32 };
    let raw = _mm512_broadcast_i64x4(_mm256_loadu_si256(p.add(qs + 32 * n) as *const __m256i));
    let (s0, s1) = (2 * k as i64, 2 * k as i64 + 2);
    let shifted = _mm512_srlv_epi64(raw, _mm512_setr_epi64(s0, s0, s0, s0, s1, s1, s1, s1));
    let mut q = _mm512_and_si512(shifted, _mm512_set1_epi8(3));
    if TY == Q3_K {
        // The third bit of weight 32k + l is bit 4n + k of hmask[l]; set means no -4.
        let hm = _mm512_broadcast_i64x4(_mm256_loadu_si256(p as *const __m256i));
        let (b0, b1) = (1u8 << (4 * n + k), 1u8 << (4 * n + k + 1));
        let sel = _mm512_inserti64x4::<1>(_mm512_set1_epi8(b0 as i8), _mm256_set1_epi8(b1 as i8));
        let hit = _mm512_test_epi8_mask(hm, sel);
        q = _mm512_mask_add_epi8(q, hit, q, _mm512_set1_epi8(4));
    }
    let idx = _mm512_loadu_si512(INDEX_Q6[j].as_ptr() as *const _);
    (
        q,
        _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(h.sc)),
    )
}

/// Chunk `j` (weights 64j..64j+64) of the super-block at `p`: unsigned quants, lane scales.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn chunk<const TY: u8>(p: *const u8, j: usize, h: &Header) -> (__m512i, __m512i) {
    if matches!(TY, Q2_K | Q3_K | IQ4_XS) {
        return chunk_low_bit::<TY>(p, j, h);
    }
    let table = if TY == Q6_K { &INDEX_Q6 } else { &INDEX_K4 };
    let idx = _mm512_loadu_si512(table[j].as_ptr() as *const _);
    let sc = if TY == Q6_K {
        _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(h.sc))
    } else {
        _mm512_shuffle_epi8(h.sc_bytes, idx)
    };
    let nib = _mm512_set1_epi8(0x0F);
    let q = match TY {
        Q4_K | Q5_K => {
            // 64 bytes of quants: low nibbles are sub-blocks (4h, 4h+2), high (4h+1, 4h+3).
            let qs = if TY == Q4_K { 16 } else { 48 };
            let raw = _mm512_loadu_si512(p.add(qs + 64 * (j / 2)) as *const _);
            let raw = if j.is_multiple_of(2) {
                raw
            } else {
                _mm512_srli_epi16::<4>(raw)
            };
            let mut q = _mm512_and_si512(raw, nib);
            if TY == Q5_K {
                // qh bit s of byte l is the fifth bit of weight l of sub-block s.
                let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(p.add(16) as *const __m256i));
                let (lo, hi) = k4_subs(j);
                let sel =
                    _mm512_inserti64x4::<1>(_mm512_set1_epi8(1 << lo), _mm256_set1_epi8(1 << hi));
                let hit = _mm512_test_epi8_mask(qh, sel);
                q = _mm512_mask_add_epi8(q, hit, q, _mm512_set1_epi8(16));
            }
            q
        }
        _ => {
            // Half n of 128 weights: chunk A = low nibbles with qh bits 0-1 / 2-3,
            // chunk B = high nibbles with qh bits 4-5 / 6-7.
            let n = j / 2;
            let ql = _mm512_loadu_si512(p.add(64 * n) as *const _);
            let qh = _mm256_loadu_si256(p.add(128 + 32 * n) as *const __m256i);
            let two = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
            let hq = _mm512_srlv_epi64(_mm512_broadcast_i64x4(qh), two);
            let m30 = _mm512_set1_epi8(0x30);
            // ternary logic 0xF8: a | (b & c)
            if j.is_multiple_of(2) {
                let lo = _mm512_and_si512(ql, nib);
                _mm512_ternarylogic_epi32::<0xF8>(lo, _mm512_slli_epi16::<4>(hq), m30)
            } else {
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(ql), nib);
                _mm512_ternarylogic_epi32::<0xF8>(hi, hq, m30)
            }
        }
    };
    (q, sc)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
unsafe fn tile<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    let bs = block_bytes(TY);
    let nsb = a.cols / 256;
    let acts = a.acts;
    let mut qs = [std::ptr::null::<i8>(); T];
    let mut ds = [std::ptr::null::<f32>(); T];
    let mut sums = [std::ptr::null::<i16>(); T];
    for t in 0..T {
        let tok = a.t0 + t;
        qs[t] = if matches!(TY, Q4_K | Q5_K) {
            acts.tok_qs_k4(tok).as_ptr()
        } else {
            acts.tok_qs(tok).as_ptr()
        };
        ds[t] = acts.tok_d(tok).as_ptr();
        sums[t] = if groups_of_16(TY) {
            acts.tok_bsums16(tok).as_ptr()
        } else {
            acts.tok_bsums32(tok).as_ptr()
        };
    }
    let zi = _mm512_setzero_si512();
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    let mut hdr = [Header {
        d: 0.0,
        dmin: 0.0,
        sc: _mm256_setzero_si256(),
        sc_bytes: zi,
        corr: _mm256_setzero_si256(),
    }; R];
    let mut ch = [(zi, zi); R];
    for sb in 0..nsb {
        for r in 0..R {
            let p = a.w.add(r * a.w_stride + sb * bs);
            if T == 1 {
                // Decode reads each weight once: ask for the bytes a little ahead in the stream.
                for line in 0..prefetch_lines(TY) {
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH + 64 * line) as *const i8);
                }
            }
            hdr[r] = header::<TY>(p);
        }
        let mut isum = [[zi; T]; R];
        for j in 0..4 {
            for r in 0..R {
                let p = a.w.add(r * a.w_stride + sb * bs);
                ch[r] = chunk::<TY>(p, j, &hdr[r]);
            }
            for t in 0..T {
                let av = _mm512_loadu_si512(qs[t].add(256 * sb + 64 * j) as *const _);
                for r in 0..R {
                    isum[r][t] = if TY == IQ4_XS {
                        let quads = _mm512_dpbusd_epi32(zi, ch[r].0, av);
                        _mm512_add_epi32(isum[r][t], _mm512_mullo_epi32(quads, ch[r].1))
                    } else {
                        let pairs = _mm512_maddubs_epi16(ch[r].0, av);
                        _mm512_dpwssd_epi32(isum[r][t], pairs, ch[r].1)
                    };
                }
            }
        }
        for t in 0..T {
            let da = *ds[t].add(sb);
            for r in 0..R {
                let h = &hdr[r];
                let dd = _mm512_set1_ps(h.d * da);
                if TY == Q2_K {
                    let bs16 = _mm256_loadu_si256(sums[t].add(16 * sb) as *const __m256i);
                    let m = _mm512_zextsi256_si512(_mm256_madd_epi16(h.corr, bs16));
                    let v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][t]), dd, acc[r][t]);
                    let dm = _mm512_set1_ps(-(h.dmin * da));
                    acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(m), dm, v);
                } else if groups_of_16(TY) {
                    let bs16 = _mm256_loadu_si256(sums[t].add(16 * sb) as *const __m256i);
                    let c = _mm256_madd_epi16(h.corr, bs16);
                    let i = _mm512_add_epi32(isum[r][t], _mm512_zextsi256_si512(c));
                    acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), dd, acc[r][t]);
                } else if TY == IQ4_XS {
                    let bs32 = _mm_loadu_si128(sums[t].add(8 * sb) as *const __m128i);
                    let c = _mm_madd_epi16(_mm256_castsi256_si128(h.corr), bs32);
                    let i = _mm512_add_epi32(isum[r][t], _mm512_zextsi128_si512(c));
                    acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), dd, acc[r][t]);
                } else {
                    let bs32 = _mm_loadu_si128(sums[t].add(8 * sb) as *const __m128i);
                    let m = _mm_madd_epi16(_mm256_castsi256_si128(h.sc), bs32);
                    let v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][t]), dd, acc[r][t]);
                    let mins = _mm512_cvtepi32_ps(_mm512_zextsi128_si512(m));
                    acc[r][t] = _mm512_fmadd_ps(mins, _mm512_set1_ps(-(h.dmin * da)), v);
                }
            }
        }
    }
    for r in 0..R {
        for t in 0..T {
            *a.y.add((a.t0 + t) * a.y_stride + a.r0 + r * a.y_step) =
                _mm512_reduce_add_ps(acc[r][t]);
        }
    }
}
