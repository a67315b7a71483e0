//! Panels on AMX tiles (Intel Xeon since Sapphire Rapids): each block's integer dots of up to 16
//! tokens and the panel's 16 rows in one `tdpbsud`, the scaling as the AVX-512 kernel does it.
//!
//! A panel's block already lies as AMX's B operand wants it: eight 64-byte rows of four quants
//! from each of the 16 weight rows (the VNNI layout), unsigned; the activations' 32 bytes of
//! that block, one row per token, are A, signed. So `tdpbsud` (signed A, unsigned B) forms for
//! every token and row the very integer sum of the `vpdpbusd` kernel, and the rest (the
//! starting value, `acc += isum * (d_w * d_a)`, the min term) is that kernel's code: the outputs
//! are its bits. The 32-block panels read in place or repacked (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
//! IQ4_NL, MXFP4) and the K-quants and i-quants that enter as blocks of 32 (Q4_K, Q5_K and the
//! i-quants without scales per 16) take this path; the compact Q4_K/Q6_K layouts and the
//! half-block kernels do not.
//!
//! Before the kernel search may offer it, [`usable`] runs the instructions once against the
//! AVX-512 kernel on a random panel: a machine whose tiles disagree keeps the AVX-512 path.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::super::{iquant, kquant, legacy};
use super::avx512::{self, add_scaled, prefetch_stream, row_scales, store};
use super::layout::{Kernel, Out, Panel, Tables};
use crate::cpu::amx::{self, AmxSupport, Hardware, TileConfig, TileOps};
use crate::cpu::features::{cpu_features, Isa};
use crate::quant::GgmlType;

/// Most tokens one call takes: the rows of a tile.
pub const MAX_TOKENS: usize = 16;

/// Whether `ty`'s panels, as `panel` lays them out, run on tiles.
pub fn supports(ty: GgmlType, panel: &Panel) -> bool {
    panel.compact.is_none() && supports_type(ty)
}

/// Whether `ty`'s byte-per-quant panels run on tiles (its blocks of 32 have one scale each).
pub fn supports_type(ty: GgmlType) -> bool {
    let panels =
        iquant::code(ty).is_some() || legacy::code(ty).is_some() || kquant::code(ty).is_some();
    panels && matches!(Kernel::of(ty), Kernel::Blocks { .. })
}

/// Whether this process runs panels on AMX tiles: granted by the CPU and the OS, and the
/// instructions agree with the AVX-512 kernel on a random panel (checked once).
pub fn usable() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        amx::support() == AmxSupport::Granted
            && cpu_features().supports(Isa::Avx512Vnni)
            && check::agrees(&mut Hardware, 0x5EED)
    })
}

/// One line for the timing report's features.
pub fn describe() -> String {
    match amx::support() {
        AmxSupport::Absent => "AMX: absent".to_string(),
        AmxSupport::Granted if usable() => {
            "AMX: granted and checked, prompt panels on tiles offered to the kernel search"
                .to_string()
        }
        AmxSupport::Granted => "AMX: disagreed with AVX-512 on a test panel, not used".to_string(),
        s => format!("AMX: {}", s.name()),
    }
}

/// One block's 32-bit sums of up to 16 tokens, as `tilestored` writes them.
#[repr(align(64))]
struct Sums([[i32; 16]; MAX_TOKENS]);

/// Per-token table pointers: the scales `d`, the starting values `c`, the min factors `s`.
type TokenTables<'a, const T: usize> = (
    &'a [*const f32; T],
    &'a [*const i32; T],
    &'a [*const f32; T],
);

/// Block `b` from its sums, as the AVX-512 kernel finishes a block after its dots (a helper
/// without target features of its own: it runs inlined into [`gemm`], as the AVX-512 kernel's
/// helpers do).
#[inline(always)]
unsafe fn finish<const MIN: bool, const T: usize>(
    acc: &mut [__m512; T],
    sums: &Sums,
    panel: &Panel,
    (d, c, s): TokenTables<'_, T>,
    b: usize,
) {
    // A loop, not a closure: a closure stays out of line, without the kernel's target
    // features, and its intrinsics become calls.
    let mut isum = [_mm512_setzero_si512(); T];
    for t in 0..T {
        let v = _mm512_load_si512(sums.0[t].as_ptr() as *const _);
        isum[t] = _mm512_add_epi32(v, _mm512_set1_epi32(*c[t].add(b)));
    }
    add_scaled(acc, isum, row_scales(panel, b), d, b);
    if MIN {
        let mw = _mm512_load_ps(panel.m.add(16 * b));
        for t in 0..T {
            acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(*s[t].add(b)), acc[t]);
        }
    }
}

/// Tokens `t0..t0 + T` times the panel into `out`, the integer dots on `ops`' tiles.
///
/// # Safety
/// As the AVX-512 kernel ([`avx512::gemm`]), plus: `ops` may run tile instructions here
/// (AMX granted, for [`Hardware`]), and `T <= MAX_TOKENS`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")]
pub unsafe fn gemm<O: TileOps, const MIN: bool, const T: usize>(
    ops: &mut O,
    panel: &Panel,
    tables: &Tables,
    t0: usize,
    out: &Out,
) {
    let tb = tables;
    let a0 = tb.qs.add(t0 * tb.qs_step) as *const u8;
    let d: [*const f32; T] = std::array::from_fn(|t| tb.d.add((t0 + t) * tb.d_step));
    let c: [*const i32; T] = std::array::from_fn(|t| tb.c.wrapping_add((t0 + t) * tb.c_step));
    let s: [*const f32; T] = std::array::from_fn(|t| tb.s.wrapping_add((t0 + t) * tb.s_step));
    let mut acc = [_mm512_setzero_ps(); T];
    let (mut even, mut odd) = (Sums([[0; 16]; MAX_TOKENS]), Sums([[0; 16]; MAX_TOKENS]));
    ops.configure(&TileConfig::for_products(T, 32));
    let mut b = 0;
    while b + 2 <= panel.blocks {
        if panel.ahead > 0 {
            prefetch_stream(panel, b);
            prefetch_stream(panel, b + 1);
        }
        ops.load_a::<0>(a0.add(32 * b), tb.qs_step);
        ops.load_b::<0>(panel.q.add(512 * b), 64);
        ops.product::<0>();
        ops.load_a::<1>(a0.add(32 * (b + 1)), tb.qs_step);
        ops.load_b::<1>(panel.q.add(512 * (b + 1)), 64);
        ops.product::<1>();
        ops.store_c::<0>(even.0.as_mut_ptr() as *mut u8, 64);
        ops.store_c::<1>(odd.0.as_mut_ptr() as *mut u8, 64);
        finish::<MIN, T>(&mut acc, &even, panel, (&d, &c, &s), b);
        finish::<MIN, T>(&mut acc, &odd, panel, (&d, &c, &s), b + 1);
        b += 2;
    }
    if b < panel.blocks {
        ops.load_a::<0>(a0.add(32 * b), tb.qs_step);
        ops.load_b::<0>(panel.q.add(512 * b), 64);
        ops.product::<0>();
        ops.store_c::<0>(even.0.as_mut_ptr() as *mut u8, 64);
        finish::<MIN, T>(&mut acc, &even, panel, (&d, &c, &s), b);
    }
    ops.release();
    store(&acc, t0, out);
}

/// Calls `$f::<$g, MIN, n>` with `MIN` from `$min` and the token count `$n` (1..=16).
macro_rules! for_tokens16 {
    ($n:expr, $min:expr, $f:ident::<$g:ty>$args:tt) => {
        for_tokens16!(@arms $n, $min, $f, $g, $args; 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
    };
    (@arms $n:expr, $min:expr, $f:ident, $g:ty, $args:tt; $($k:literal)*) => {
        match $n {
            $($k => if $min {
                for_tokens16!(@call $f, $g, true, $k, $args)
            } else {
                for_tokens16!(@call $f, $g, false, $k, $args)
            },)*
            _ => unreachable!("1..=16 tokens a call"),
        }
    };
    (@call $f:ident, $g:ty, $min:literal, $k:literal, ($($a:expr),*)) => {
        $f::<$g, $min, $k>($($a),*)
    };
}

/// Tokens `tokens` times the panel into `out`, 16 at a time, on `ops`' tiles.
///
/// # Safety
/// As the AVX-512 VNNI panel kernels, `ty` supported ([`supports`]), and `ops` may run tile
/// instructions.
pub unsafe fn gemm_tokens<O: TileOps>(
    ops: &mut O,
    ty: GgmlType,
    panel: &Panel,
    tables: &Tables,
    tokens: std::ops::Range<usize>,
    out: &Out,
) {
    let min = matches!(Kernel::of(ty), Kernel::Blocks { min: true });
    let mut t = tokens.start;
    while t < tokens.end {
        let n = MAX_TOKENS.min(tokens.end - t);
        for_tokens16!(n, min, gemm::<O>(ops, panel, tables, t, out));
        t += n;
    }
}

/// The check [`usable`] runs, and the tests with [`crate::cpu::amx::Emulated`]: random panels
/// (scales as f32 and as the repacked f16, with and without mins, an odd and an even number
/// of blocks) times 1..=16 random tokens, on tiles and with the AVX-512 kernel.
pub mod check {
    use super::super::layout::{scratch_bytes, MAX_TOKENS as VNNI_TOKENS, ROWS};
    use super::*;
    use crate::cpu::synth::Rng;

    /// Whether the tile kernel gives the AVX-512 kernel's bits on every case of `seed`.
    pub fn agrees<O: TileOps>(ops: &mut O, seed: u64) -> bool {
        let mut rng = Rng::new(seed);
        [(3, false, false), (8, true, false), (5, false, true)]
            .into_iter()
            .all(|(blocks, min, f16_scales)| {
                (1..=MAX_TOKENS).all(|n| case(ops, &mut rng, blocks, min, f16_scales, n))
            })
    }

    /// One random case: whether both kernels write the same bits.
    fn case<O: TileOps>(
        ops: &mut O,
        rng: &mut Rng,
        blocks: usize,
        min: bool,
        f16_scales: bool,
        n: usize,
    ) -> bool {
        let cols = 32 * blocks;
        let mut buf = vec![0u8; scratch_bytes(cols) + blocks * 32 * 4];
        let panel = if f16_scales {
            let off = buf.as_ptr().align_offset(64);
            Panel::repacked(buf[off..].as_mut_ptr(), blocks)
        } else {
            Panel::new(&mut buf, cols)
        };
        let scales = |rng: &mut Rng| (0..blocks * ROWS).map(|_| rng.uniform(-0.1, 0.1)).collect();
        let (dw, mw): (Vec<f32>, Vec<f32>) = (scales(rng), scales(rng));
        // SAFETY: the panel's quants and scales lie inside `buf` (sized for both layouts).
        unsafe {
            let q = std::slice::from_raw_parts_mut(panel.q, blocks * 512);
            q.copy_from_slice(&rng.bytes(blocks * 512));
            for (i, &v) in dw.iter().enumerate() {
                if f16_scales {
                    *(panel.d as *mut u16).add(i) = half::f16::from_f32(v).to_bits();
                } else {
                    *panel.d.add(i) = v;
                    *panel.m.add(i) = mw[i];
                }
            }
        }
        let qs: Vec<i8> = rng.bytes(n * cols).into_iter().map(|b| b as i8).collect();
        let da: Vec<f32> = (0..n * blocks).map(|_| rng.uniform(0.001, 0.02)).collect();
        let ca: Vec<i32> = (0..n * blocks)
            .map(|_| (rng.next_u64() % 4096) as i32 - 2048)
            .collect();
        let sa: Vec<f32> = (0..n * blocks).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let tables = Tables {
            qs: qs.as_ptr(),
            qs_step: cols,
            d: da.as_ptr(),
            d_step: blocks,
            c: ca.as_ptr(),
            c_step: blocks,
            s: if min { sa.as_ptr() } else { std::ptr::null() },
            s_step: if min { blocks } else { 0 },
        };
        let (mut tiles, mut vnni) = (vec![0f32; n * ROWS], vec![0f32; n * ROWS]);
        let out = |y: &mut Vec<f32>| Out {
            y: y.as_mut_ptr(),
            stride: ROWS,
            row0: 0,
            valid: ROWS,
        };
        let ty = if min { GgmlType::Q4_1 } else { GgmlType::Q8_0 };
        // SAFETY: the tables hold `n` tokens of `blocks` blocks, the outputs `n` x 16; the
        // callers run this only where AVX-512 VNNI is (and tiles, for the hardware).
        unsafe {
            gemm_tokens(ops, ty, &panel, &tables, 0..n, &out(&mut tiles));
            let o = out(&mut vnni);
            let mut t = 0;
            while t < n {
                let k = (n - t).min(VNNI_TOKENS);
                match (min, k) {
                    (false, _) => for_tokens!(k, avx512::gemm[false](&panel, &tables, t, &o)),
                    (true, _) => for_tokens!(k, avx512::gemm[true](&panel, &tables, t, &o)),
                }
                t += k;
            }
        }
        tiles
            .iter()
            .zip(&vnni)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::amx::Emulated;

    #[test]
    fn tiles_give_the_avx512_kernels_bits() {
        if !cpu_features().supports(Isa::Avx512Vnni) {
            eprintln!("no AVX-512 VNNI here: the tile kernel's scaling is not run");
            return;
        }
        assert!(check::agrees(&mut Emulated::new(), 1), "emulated tiles");
        if amx::support() == AmxSupport::Granted {
            assert!(check::agrees(&mut Hardware, 2), "AMX tiles");
        } else {
            eprintln!(
                "AMX tiles {}: checked through the emulation only",
                amx::support().name()
            );
        }
    }

    #[test]
    fn tiles_take_the_panels_of_single_scale_blocks() {
        assert!(supports_type(GgmlType::Q8_0) && supports_type(GgmlType::Q4_K));
        assert!(supports_type(GgmlType::IQ4_NL) && supports_type(GgmlType::Q5_1));
        assert!(!supports_type(GgmlType::Q6_K) && !supports_type(GgmlType::Q2_K));
        assert!(!supports_type(GgmlType::F32));
    }
}
