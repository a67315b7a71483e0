//! Row panels on AVX-512 VNNI for the 32-block types, Q4_K, Q5_K and Q6_K: the repack of 16 rows
//! into a panel and the kernels over it.

use std::arch::x86_64::*;
use std::ops::Range;
use std::ptr::read_unaligned;

// The helpers below are `#[inline(always)]` and carry no target features of their own (Rust
// does not allow both): they run only inlined into the `#[target_feature]` kernels. Left
// out of line, a helper returns its vectors through memory: the profile showed a block's
// dot products spilled to the stack and reloaded by the kernel.

use super::super::kquant::{self, Q4_K, Q5_K, Q6_K};
use super::super::legacy::{block_bytes, has_min, IQ4_NL, Q4_0, Q4_1, Q5_0, Q8_0};
use super::layout::{Out, Panel, Tables, ROWS};
use crate::quant::blocks::{f16_at, scales_mins_k4};

/// The 32 quants of the block at `p`, unsigned (Q8_0 with its sign bit flipped, the
/// nibble types with their fifth bit added, IQ4_NL's levels + 128), in weight order.
#[inline(always)]
unsafe fn quants<const TY: u8>(p: *const u8) -> __m256i {
    if TY == Q8_0 {
        let v = _mm256_loadu_si256(p.add(2) as *const __m256i);
        return _mm256_xor_si256(v, _mm256_set1_epi8(-128));
    }
    let qs = match TY {
        Q4_0 | IQ4_NL => 2,
        Q4_1 => 4,
        Q5_0 => 6,
        _ => 8,
    };
    let v = _mm_loadu_si128(p.add(qs) as *const __m128i);
    let nib = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(v, nib);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), nib);
    let q = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi);
    if TY == IQ4_NL {
        let levels = _mm512_castsi512_si256(crate::cpu::dot::legacy::iq4nl_offset_levels());
        return _mm256_shuffle_epi8(levels, q);
    }
    if TY == Q4_0 || TY == Q4_1 {
        return q;
    }
    // Bit i of qh is the fifth bit of weight i.
    let qh = read_unaligned(p.add(if TY == Q5_0 { 2 } else { 4 }) as *const u32);
    _mm256_mask_add_epi8(q, qh, q, _mm256_set1_epi8(16))
}

/// Transposes 16 rows x 8 dwords: `z[i]` holds rows `i` (low half) and `i + 8` (high
/// half); output `j` holds dword `j` of rows 0..16 in lane order.
#[inline(always)]
pub(super) unsafe fn transpose(z: [__m512i; 8]) -> [__m512i; 8] {
    let t: [__m512i; 8] = std::array::from_fn(|k| {
        let (a, b) = (z[k / 2 * 2], z[k / 2 * 2 + 1]);
        if k % 2 == 0 {
            _mm512_unpacklo_epi32(a, b)
        } else {
            _mm512_unpackhi_epi32(a, b)
        }
    });
    // u[j] (j < 4) holds dwords j and j + 4 of rows 0-3 (and 8-11); u[j + 4] of rows 4-7.
    let u: [__m512i; 8] = std::array::from_fn(|k| {
        let g = (k / 4) * 4;
        let (a, b) = match k % 4 {
            0 | 1 => (t[g], t[g + 2]),
            _ => (t[g + 1], t[g + 3]),
        };
        if k % 2 == 0 {
            _mm512_unpacklo_epi64(a, b)
        } else {
            _mm512_unpackhi_epi64(a, b)
        }
    });
    let first = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    let second = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    std::array::from_fn(|j| {
        let idx = if j < 4 { first } else { second };
        _mm512_permutex2var_epi64(u[j % 4], idx, u[j % 4 + 4])
    })
}

/// The f16 at byte `at` of each row, widened.
#[inline(always)]
unsafe fn row_halves(rows: &[*const u8; ROWS], at: usize) -> __m512 {
    let h: [u16; ROWS] = std::array::from_fn(|r| read_unaligned(rows[r].add(at) as *const u16));
    _mm512_cvtph_ps(_mm256_loadu_si256(h.as_ptr() as *const __m256i))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
pub unsafe fn pack<const TY: u8>(rows: &[*const u8; ROWS], panel: &Panel) {
    let bs = block_bytes(TY);
    for b in 0..panel.blocks {
        let z: [__m512i; 8] = std::array::from_fn(|i| {
            let lo = quants::<TY>(rows[i].add(b * bs));
            let hi = quants::<TY>(rows[i + 8].add(b * bs));
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
        });
        let dst = panel.q.add(b * 512);
        for (j, v) in transpose(z).into_iter().enumerate() {
            _mm512_store_si512(dst.add(64 * j) as *mut _, v);
        }
        if panel.half_scales {
            // Kept as stored (the repacked types have no mins); `row_scales` widens them.
            debug_assert!(!has_min(TY), "f16 scales leave no room for mins");
            let h: [u16; ROWS] =
                std::array::from_fn(|r| read_unaligned(rows[r].add(b * bs) as *const u16));
            let dst = (panel.d as *mut u16).add(16 * b) as *mut __m256i;
            _mm256_store_si256(dst, _mm256_loadu_si256(h.as_ptr() as *const __m256i));
            continue;
        }
        _mm512_store_ps(panel.d.add(16 * b), row_halves(rows, b * bs));
        if has_min(TY) {
            _mm512_store_ps(panel.m.add(16 * b), row_halves(rows, b * bs + 2));
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma")]
pub unsafe fn gemm<const MIN: bool, const T: usize>(
    panel: &Panel,
    tables: &Tables,
    t0: usize,
    out: &Out,
) {
    // The panel's kind is settled before the block loop: a branch inside it (on the scales'
    // width, on prefetching) split each block's code, and the compiler, no longer folding the
    // activations' broadcasts into `vpdpbusd`, built them in vectors spilled to the stack
    // (the kernels with a min ran at half the rate of those without).
    match (panel.half_scales, panel.ahead > 0) {
        (false, false) => blocks::<MIN, T, false, false>(panel, tables, t0, out),
        (false, true) => blocks::<MIN, T, false, true>(panel, tables, t0, out),
        (true, false) => blocks::<MIN, T, true, false>(panel, tables, t0, out),
        (true, true) => blocks::<MIN, T, true, true>(panel, tables, t0, out),
    }
}

/// [`gemm`] for a panel whose scales are f16 (`HALF`) or f32, prefetched (`AHEAD`) or not.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma")]
unsafe fn blocks<const MIN: bool, const T: usize, const HALF: bool, const AHEAD: bool>(
    panel: &Panel,
    tables: &Tables,
    t0: usize,
    out: &Out,
) {
    let tb = tables;
    let qs: [*const i8; T] = std::array::from_fn(|t| tb.qs.add((t0 + t) * tb.qs_step));
    let d: [*const f32; T] = std::array::from_fn(|t| tb.d.add((t0 + t) * tb.d_step));
    let c: [*const i32; T] = std::array::from_fn(|t| tb.c.wrapping_add((t0 + t) * tb.c_step));
    let s: [*const f32; T] = std::array::from_fn(|t| tb.s.wrapping_add((t0 + t) * tb.s_step));
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..panel.blocks {
        if AHEAD {
            prefetch_stream(panel, b);
        }
        // The offset correction (`-offset * sum` of the token's block) starts each lane.
        let isum = dots(panel, &qs, b, 0..8, std::array::from_fn(|t| *c[t].add(b)));
        add_scaled(&mut acc, isum, scales_of::<HALF>(panel, b), &d, b);
        if MIN {
            let mw = _mm512_load_ps(panel.m.add(16 * b));
            for t in 0..T {
                acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(*s[t].add(b)), acc[t]);
            }
        }
    }
    store(&acc, t0, out);
}

/// Each token's integer dots of 4-quant groups `groups` of block `b` with the panel's 16
/// rows, starting from `init`.
#[inline(always)]
pub(super) unsafe fn dots<const T: usize>(
    panel: &Panel,
    qs: &[*const i8; T],
    b: usize,
    groups: Range<usize>,
    init: [i32; T],
) -> [__m512i; T] {
    let mut isum: [__m512i; T] = std::array::from_fn(|t| _mm512_set1_epi32(init[t]));
    let w = panel.q.add(b * 512);
    for j in groups {
        let wv = _mm512_load_si512(w.add(64 * j) as *const _);
        for t in 0..T {
            let a = read_unaligned(qs[t].add(32 * b + 4 * j) as *const i32);
            isum[t] = _mm512_dpbusd_epi32(isum[t], wv, _mm512_set1_epi32(a));
        }
    }
    isum
}

/// Prefetches block `b`'s share of the stream `panel.ahead` bytes ahead, into L2.
#[inline(always)]
pub(super) unsafe fn prefetch_stream(panel: &Panel, b: usize) {
    let at = panel.q.wrapping_add(b * panel.stream_step + panel.ahead);
    let mut off = 0;
    while off < panel.stream_step {
        _mm_prefetch::<_MM_HINT_T1>(at.wrapping_add(off) as *const i8);
        off += 64;
    }
}

/// The 16 rows' scales of block `b`, widened where the panel keeps them as f16.
#[inline(always)]
pub(super) unsafe fn row_scales(panel: &Panel, b: usize) -> __m512 {
    if panel.half_scales {
        return scales_of::<true>(panel, b);
    }
    scales_of::<false>(panel, b)
}

/// [`row_scales`] for a panel known to keep f16 (`HALF`) or f32 scales.
#[inline(always)]
unsafe fn scales_of<const HALF: bool>(panel: &Panel, b: usize) -> __m512 {
    if HALF {
        let h = _mm256_load_si256((panel.d as *const u16).add(16 * b) as *const __m256i);
        return _mm512_cvtph_ps(h);
    }
    _mm512_load_ps(panel.d.add(16 * b))
}

/// `acc[t] += isum[t] * (row scales dw * token t's scale of block b)`.
#[inline(always)]
pub(super) unsafe fn add_scaled<const T: usize>(
    acc: &mut [__m512; T],
    isum: [__m512i; T],
    dw: __m512,
    d: &[*const f32; T],
    b: usize,
) {
    for t in 0..T {
        let scale = _mm512_mul_ps(dw, _mm512_set1_ps(*d[t].add(b)));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), scale, acc[t]);
    }
}

/// Writes the panel's valid rows of each token's accumulator.
#[inline(always)]
pub(super) unsafe fn store<const T: usize>(acc: &[__m512; T], t0: usize, out: &Out) {
    let mask: __mmask16 = if out.valid >= ROWS {
        0xFFFF
    } else {
        (1u16 << out.valid) - 1
    };
    for (t, v) in acc.iter().enumerate() {
        let y = out.y.add((t0 + t) * out.stride + out.row0);
        _mm512_mask_storeu_ps(y, mask, *v);
    }
}

/// Q6_K: each block of 32 is two halves of 16 with scales of their own; each half's sum
/// starts from `-32 * (sum of its activations)`, which makes it the exact `(q - 32) . a`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma")]
pub unsafe fn gemm16<const T: usize>(panel: &Panel, tables: &Tables, t0: usize, out: &Out) {
    let tb = tables;
    let qs: [*const i8; T] = std::array::from_fn(|t| tb.qs.add((t0 + t) * tb.qs_step));
    let d: [*const f32; T] = std::array::from_fn(|t| tb.d.add((t0 + t) * tb.d_step));
    let c: [*const i32; T] = std::array::from_fn(|t| tb.c.wrapping_add((t0 + t) * tb.c_step));
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..panel.blocks {
        for h in 0..2 {
            let g = 2 * b + h;
            let init = std::array::from_fn(|t| *c[t].add(g));
            let isum = dots(panel, &qs, b, 4 * h..4 * h + 4, init);
            add_scaled(&mut acc, isum, _mm512_load_ps(panel.d.add(16 * g)), &d, b);
        }
    }
    store(&acc, t0, out);
}

/// The low (or high) nibble of each byte of `v`.
#[inline(always)]
unsafe fn nibbles(v: __m256i, high: bool) -> __m256i {
    let v = if high { _mm256_srli_epi16::<4>(v) } else { v };
    _mm256_and_si256(v, _mm256_set1_epi8(0x0F))
}

/// Block `j` (weights 32j..32j+32) of the K-quant super-block at `p`, unsigned, in
/// weight order (ggml's `dequantize_row_q*_K` layouts).
#[inline(always)]
unsafe fn k_quants<const TY: u8>(p: *const u8, j: usize) -> __m256i {
    match TY {
        Q4_K | Q5_K => {
            // 64 weights per 32 bytes of quants: low nibbles first, then high.
            let qs = if TY == Q4_K { 16 } else { 48 };
            let v = _mm256_loadu_si256(p.add(qs + 32 * (j / 2)) as *const __m256i);
            let q = nibbles(v, j % 2 == 1);
            if TY == Q4_K {
                return q;
            }
            // Bit j of qh byte l is the fifth bit of the block's weight l.
            let qh = _mm256_loadu_si256(p.add(16) as *const __m256i);
            let hit = _mm256_test_epi8_mask(qh, _mm256_set1_epi8(1 << j));
            _mm256_mask_add_epi8(q, hit, q, _mm256_set1_epi8(16))
        }
        _ => {
            // Per half n of 128 weights: ql 64 bytes, qh 32; block k of the half takes
            // nibbles of ql[32 (k % 2)..] (high ones for k >= 2) and qh bits 2k, 2k + 1.
            let (n, k) = (j / 4, j % 4);
            let ql = _mm256_loadu_si256(p.add(64 * n + 32 * (k % 2)) as *const __m256i);
            let qh = _mm256_loadu_si256(p.add(128 + 32 * n) as *const __m256i);
            let lo = nibbles(ql, k >= 2);
            let hi = _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * k as i32));
            let hi = _mm256_and_si256(_mm256_slli_epi16::<4>(hi), _mm256_set1_epi8(0x30));
            _mm256_or_si256(lo, hi)
        }
    }
}

/// Block `j` of super-block `sb` of the 16 rows, unsigned, as 8 vectors: vector `g` holds
/// quants `4g..4g + 4` of rows 0..16 in lane order (the panel's `[group][row][4]`).
#[inline(always)]
pub(super) unsafe fn k_block_groups<const TY: u8>(
    rows: &[*const u8; ROWS],
    sb: usize,
    j: usize,
) -> [__m512i; 8] {
    let bs = kquant::block_bytes(TY);
    // A loop, not `array::from_fn`: that closure stays out of line, without the kernel's
    // target features, and its intrinsics become calls (the profile of a prompt showed
    // `_mm256_and_si256` as a function; the pack ran 6x slower).
    let mut z = [_mm512_setzero_si512(); 8];
    for (i, v) in z.iter_mut().enumerate() {
        let lo = k_quants::<TY>(rows[i].add(sb * bs), j);
        let hi = k_quants::<TY>(rows[i + 8].add(sb * bs), j);
        *v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
    }
    transpose(z)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
pub unsafe fn pack_k<const TY: u8>(rows: &[*const u8; ROWS], panel: &Panel) {
    let bs = kquant::block_bytes(TY);
    for sb in 0..panel.blocks / 8 {
        for j in 0..8 {
            let dst = panel.q.add((8 * sb + j) * 512);
            for (g, v) in k_block_groups::<TY>(rows, sb, j).into_iter().enumerate() {
                _mm512_store_si512(dst.add(64 * g) as *mut _, v);
            }
        }
        for (r, &row) in rows.iter().enumerate() {
            let blk = std::slice::from_raw_parts(row.add(sb * bs), bs);
            if TY == Q6_K {
                let d = f16_at(blk, 208);
                for g in 0..16 {
                    *panel.d.add((16 * sb + g) * 16 + r) = d * (blk[192 + g] as i8) as f32;
                }
            } else {
                let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
                let (sc, mn) = scales_mins_k4(&blk[4..16]);
                for j in 0..8 {
                    *panel.d.add((8 * sb + j) * 16 + r) = d * sc[j] as f32;
                    *panel.m.add((8 * sb + j) * 16 + r) = dmin * mn[j] as f32;
                }
            }
        }
    }
}
