//! NEON kernels for the Q8_K family: quants unpacked to signed bytes 16 at a time (IQ4_XS's
//! levels looked up with `tbl`), signed dots (`sdot` where available), 32-bit scaled sums per
//! super-block as ggml's NEON path.

#![allow(clippy::needless_range_loop)]

use std::arch::aarch64::*;

use super::{block_bytes, groups_of_16, iq4xs_scale, IQ4_XS, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K};
use crate::cpu::dot::neon::dot;
use crate::cpu::dot::{tile_table, Tile, TileEntry};
use crate::cpu::features::cpu_features;
use crate::quant::blocks::{f16_at, scale_q3_k, scales_mins_k4, KVALUES_IQ4NL};

pub fn tiles(c: u8) -> &'static [TileEntry] {
    macro_rules! shapes {
        ($f:ident, $ty:tt) => {
            tile_table!($f, $ty; (1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (2, 4), (4, 1))
        };
    }
    macro_rules! pick {
        ($ty:tt) => {
            if cpu_features().dotprod {
                shapes!(tile_dot, $ty)
            } else {
                shapes!(tile_plain, $ty)
            }
        };
    }
    match c {
        Q4_K => pick!(Q4_K),
        Q5_K => pick!(Q5_K),
        Q2_K => pick!(Q2_K),
        Q3_K => pick!(Q3_K),
        IQ4_XS => pick!(IQ4_XS),
        _ => pick!(Q6_K),
    }
}

#[derive(Clone, Copy)]
struct Header {
    d: f32,
    dmin: f32,
    /// Q4_K/Q5_K/IQ4_XS: scales of the 8 sub-blocks; Q6_K, Q2_K, Q3_K: the 16 group scales.
    sc: [i32; 16],
    /// Q4_K/Q5_K: the 8 sub-block mins; Q2_K: the 16 group mins.
    mins: [i32; 16],
}

#[inline(always)]
unsafe fn header<const TY: u8>(b: &[u8]) -> Header {
    let mut sc = [0i32; 16];
    let mut mins = [0i32; 16];
    match TY {
        Q2_K => {
            for g in 0..16 {
                (sc[g], mins[g]) = ((b[g] & 0xF) as i32, (b[g] >> 4) as i32);
            }
            let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
            return Header { d, dmin, sc, mins };
        }
        Q3_K => {
            let scales: &[u8; 12] = b[96..108].try_into().expect("12 scale bytes");
            for (g, s) in sc.iter_mut().enumerate() {
                *s = scale_q3_k(g, scales) as i32;
            }
            let d = f16_at(b, 108);
            return Header {
                d,
                dmin: 0.0,
                sc,
                mins,
            };
        }
        IQ4_XS => {
            for (j, s) in sc.iter_mut().take(8).enumerate() {
                *s = iq4xs_scale(b, j);
            }
            let d = f16_at(b, 0);
            return Header {
                d,
                dmin: 0.0,
                sc,
                mins,
            };
        }
        _ => {}
    }
    if TY == Q6_K {
        for (g, s) in sc.iter_mut().enumerate() {
            *s = b[192 + g] as i8 as i32;
        }
        return Header {
            d: f16_at(b, 208),
            dmin: 0.0,
            sc,
            mins,
        };
    }
    let (s, m) = scales_mins_k4(&b[4..16]);
    for j in 0..8 {
        sc[j] = s[j] as i32;
        mins[j] = m[j] as i32;
    }
    Header {
        d: f16_at(b, 0),
        dmin: f16_at(b, 2),
        sc,
        mins,
    }
}

/// Weights 32j..32j+32 of the super-block at `p` as signed bytes (Q6_K: `q - 32`, Q3_K:
/// `q - 4` where the high bit is clear, IQ4_XS: the levels).
#[inline(always)]
unsafe fn sub<const TY: u8>(p: *const u8, j: usize) -> (int8x16_t, int8x16_t) {
    let nib = vdupq_n_u8(0x0F);
    if TY == IQ4_XS {
        let x = vld1q_u8(p.add(8 + 16 * j));
        let levels = vld1q_s8(KVALUES_IQ4NL.as_ptr());
        return (
            vqtbl1q_s8(levels, vandq_u8(x, nib)),
            vqtbl1q_s8(levels, vshrq_n_u8::<4>(x)),
        );
    }
    if TY == Q2_K || TY == Q3_K {
        // Weights 128n + 32k + l are bits 2k of qs[32n + l]; Q3_K's third bit is bit 4n + k
        // of hmask[l], a clear one meaning -4.
        let (n, k) = (j / 4, j % 4);
        let qs = p.add(if TY == Q2_K { 16 } else { 32 } + 32 * n);
        let shift = vdupq_n_s8(-2 * k as i8);
        let mut out = [vdupq_n_s8(0); 2];
        for (h, o) in out.iter_mut().enumerate() {
            let low = vandq_u8(vshlq_u8(vld1q_u8(qs.add(16 * h)), shift), vdupq_n_u8(3));
            *o = vreinterpretq_s8_u8(low);
            if TY == Q3_K {
                let bit = vdupq_n_u8(1 << (4 * n + k));
                let set = vtstq_u8(vld1q_u8(p.add(16 * h)), bit);
                let minus = vbicq_u8(vdupq_n_u8(4), set);
                *o = vsubq_s8(*o, vreinterpretq_s8_u8(minus));
            }
        }
        return (out[0], out[1]);
    }
    if TY == Q6_K {
        let (n, quarter) = (j / 4, j % 4);
        let ql = p.add(64 * n + 32 * (quarter % 2));
        let qh = p.add(128 + 32 * n);
        let mut out = [vdupq_n_s8(0); 2];
        for (h, o) in out.iter_mut().enumerate() {
            let l = vld1q_u8(ql.add(16 * h));
            let low = if quarter < 2 {
                vandq_u8(l, nib)
            } else {
                vshrq_n_u8::<4>(l)
            };
            let hb = vld1q_u8(qh.add(16 * h));
            let hb = match quarter {
                0 => hb,
                1 => vshrq_n_u8::<2>(hb),
                2 => vshrq_n_u8::<4>(hb),
                _ => vshrq_n_u8::<6>(hb),
            };
            let high = vshlq_n_u8::<4>(vandq_u8(hb, vdupq_n_u8(3)));
            *o = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(low, high)), vdupq_n_s8(32));
        }
        return (out[0], out[1]);
    }
    let qs = p.add(if TY == Q4_K { 16 } else { 48 } + 32 * (j / 2));
    let mut out = [vdupq_n_s8(0); 2];
    for (h, o) in out.iter_mut().enumerate() {
        let x = vld1q_u8(qs.add(16 * h));
        let mut q = if j.is_multiple_of(2) {
            vandq_u8(x, nib)
        } else {
            vshrq_n_u8::<4>(x)
        };
        if TY == Q5_K {
            let qh = vld1q_u8(p.add(16 + 16 * h));
            let bit = vtstq_u8(qh, vdupq_n_u8(1 << j));
            q = vorrq_u8(q, vandq_u8(bit, vdupq_n_u8(16)));
        }
        *o = vreinterpretq_s8_u8(q);
    }
    (out[0], out[1])
}

unsafe fn tile_plain<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    body::<TY, false, R, T>(a)
}

unsafe fn tile_dot<const TY: u8, const R: usize, const T: usize>(a: &Tile<'_>) {
    body::<TY, true, R, T>(a)
}

#[inline(always)]
unsafe fn body<const TY: u8, const DOT: bool, const R: usize, const T: usize>(a: &Tile<'_>) {
    let bs = block_bytes(TY);
    let nsb = a.cols / 256;
    let acts = a.acts;
    let mut qs = [std::ptr::null::<i8>(); T];
    let mut ds = [std::ptr::null::<f32>(); T];
    let mut b32 = [std::ptr::null::<i16>(); T];
    let mut b16 = [std::ptr::null::<i16>(); T];
    for t in 0..T {
        let tok = a.t0 + t;
        qs[t] = acts.tok_qs(tok).as_ptr();
        ds[t] = acts.tok_d(tok).as_ptr();
        if matches!(TY, Q4_K | Q5_K) {
            b32[t] = acts.tok_bsums32(tok).as_ptr();
        }
        if TY == Q2_K {
            b16[t] = acts.tok_bsums16(tok).as_ptr();
        }
    }
    let zero = vdupq_n_s32(0);
    let mut acc = [[vdupq_n_f32(0.0); T]; R];
    let mut minacc = [[0.0f32; T]; R];
    let mut hdr = [Header {
        d: 0.0,
        dmin: 0.0,
        sc: [0; 16],
        mins: [0; 16],
    }; R];
    let mut w = [(vdupq_n_s8(0), vdupq_n_s8(0)); R];
    for sb in 0..nsb {
        for r in 0..R {
            let p = a.w.add(r * a.w_stride + sb * bs);
            hdr[r] = header::<TY>(std::slice::from_raw_parts(p, bs));
        }
        let mut isum = [[zero; T]; R];
        for j in 0..8 {
            for r in 0..R {
                w[r] = sub::<TY>(a.w.add(r * a.w_stride + sb * bs), j);
            }
            for t in 0..T {
                let a0 = vld1q_s8(qs[t].add(256 * sb + 32 * j));
                let a1 = vld1q_s8(qs[t].add(256 * sb + 32 * j + 16));
                for r in 0..R {
                    let (w0, w1) = w[r];
                    let sc = &hdr[r].sc;
                    isum[r][t] = if groups_of_16(TY) {
                        let g = 8 * (j / 4) + 2 * (j % 4);
                        let s = vmlaq_n_s32(isum[r][t], dot::<DOT>(zero, w0, a0), sc[g]);
                        vmlaq_n_s32(s, dot::<DOT>(zero, w1, a1), sc[g + 1])
                    } else {
                        vmlaq_n_s32(
                            isum[r][t],
                            dot::<DOT>(dot::<DOT>(zero, w0, a0), w1, a1),
                            sc[j],
                        )
                    };
                }
            }
        }
        for t in 0..T {
            let da = *ds[t].add(sb);
            for r in 0..R {
                let h = &hdr[r];
                acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(isum[r][t]), h.d * da);
                if matches!(TY, Q4_K | Q5_K) {
                    let msum: i32 = (0..8)
                        .map(|j| h.mins[j] * *b32[t].add(8 * sb + j) as i32)
                        .sum();
                    minacc[r][t] -= (h.dmin * da) * msum as f32;
                }
                if TY == Q2_K {
                    let msum: i32 = (0..16)
                        .map(|g| h.mins[g] * *b16[t].add(16 * sb + g) as i32)
                        .sum();
                    minacc[r][t] -= (h.dmin * da) * msum as f32;
                }
            }
        }
    }
    for r in 0..R {
        for t in 0..T {
            *a.y.add((a.t0 + t) * a.y_stride + a.r0 + r * a.y_step) =
                vaddvq_f32(acc[r][t]) + minacc[r][t];
        }
    }
}
