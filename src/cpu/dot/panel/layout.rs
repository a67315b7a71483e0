//! The panel layout every ISA's panel kernels share: rows per panel, the packed panel in a
//! thread's scratch, where a call writes, and the activation tables a kernel family reads.

use crate::cpu::dot::{iquant, kquant, legacy};
use crate::cpu::quantize::QuantActs;
use crate::quant::GgmlType;

/// Weight rows per panel: one per 32-bit lane of a 512-bit vector.
pub const ROWS: usize = 16;

/// Bytes of a repacked Q4_K panel per block of 32 ([`Panel::repacked_q4k`]).
pub const Q4K_REPACKED_BLOCK: usize = 256 + 16 + 16 + 4 + 4;

/// Bytes of a repacked Q6_K panel per block of 32 ([`Panel::repacked_q6k`]): the rows' own
/// 420 (16 x 26.25).
pub const Q6K_REPACKED_BLOCK: usize = 384 + 32 + 4;

/// Most tokens one kernel call takes (its accumulators must stay in registers).
pub const MAX_TOKENS: usize = 8;

/// Scratch bytes of a panel per block of 32 columns: the quants, then what each family
/// lays out after them.
pub const BYTES_PER_BLOCK: usize = 8 * 64 + 4 * 64;

/// Scratch bytes one panel of `cols` columns needs (alignment slack included).
pub fn scratch_bytes(cols: usize) -> usize {
    cols / 32 * BYTES_PER_BLOCK + 64
}

/// One panel in a thread's scratch: quants `[block][4-quant group][row][4]` (unsigned),
/// then the row scales `[block][row]` (Q6_K, Q2_K, Q3_K: `[half-block][row]`), then the row
/// mins likewise, all 64-byte aligned.
pub struct Panel {
    pub(super) q: *mut u8,
    pub(super) d: *mut f32,
    pub(super) m: *mut f32,
    pub(super) blocks: usize,
    /// The row scales are f16 (`[block][row]`, 32 bytes a block), not f32: a repacked panel.
    pub(super) half_scales: bool,
    /// A repacked K-quant panel in its compact layout ([`Panel::repacked_q4k`],
    /// [`Panel::repacked_q6k`]), or `None`: a byte per quant.
    pub(super) compact: Option<Compact>,
    /// Bytes ahead of block `b`'s place in the panel (at `q + b * stream_step`) that the
    /// kernel prefetches, or 0: a panel read from memory once per call (a repacked one) is a
    /// stream the kernel's arithmetic would otherwise wait on at a few tokens. Only the
    /// kernel of the repackable types (32-block types without a min) reads it.
    pub(super) ahead: usize,
    /// Bytes of the stream per block (quants and scales).
    pub(super) stream_step: usize,
}

impl Panel {
    /// A panel as `crate::cpu::repack` keeps the types it repacks (their kernels read no
    /// mins): `blocks` blocks of quants at `q`, then the row scales `[block][row]` as the f16
    /// the rows store them in, at `q + blocks * 512` (`m` points there too). Half-width
    /// scales make the copy no larger than the rows (544 bytes per 16 rows x 32 quants); the
    /// kernels widen them exactly. `q` must be 64-byte aligned and hold `blocks * 544` bytes
    /// for the kernels to read it.
    pub fn repacked(q: *mut u8, blocks: usize) -> Panel {
        let d = q.wrapping_add(blocks * 512) as *mut f32;
        Panel {
            q,
            d,
            m: d,
            blocks,
            half_scales: true,
            compact: None,
            ahead: 0,
            stream_step: 512 + 32,
        }
    }

    /// A Q4_K panel as `crate::cpu::repack` keeps it, 296 bytes per 16 rows x 32 quants where
    /// the rows take 288: quants `[block][group pair][row][4]` at `q`, groups `g` and `g + 4`
    /// of a block in the low and high nibbles of one byte (256 bytes a block); then each
    /// block's 6-bit scales `[block][row]` (u8), its mins likewise, and per super-block the
    /// rows' `d` and `dmin` as the f16 they are stored as (`[super-block][row]`). The kernel
    /// forms `d * scale` and `dmin * min` in f32 exactly as the per-call panel's pack does.
    /// `blocks` is a multiple of 8; `q` 64-byte aligned, holding `blocks * 296` bytes.
    pub fn repacked_q4k(q: *mut u8, blocks: usize) -> Panel {
        Panel::compact(q, blocks, Compact::Q4K, 256, Q4K_REPACKED_BLOCK)
    }

    /// A Q6_K panel as `crate::cpu::repack` keeps it, the rows' 420 bytes per 16 rows x 32
    /// quants: per block at `q + 384 b`, the low four bits of groups `g` and `g + 4` in the
    /// low and high nibbles of one byte (four vectors, `[group pair][row][4]`), then their top
    /// two bits, groups `m`, `m + 2`, `m + 4`, `m + 6` in bits 0-1 ... 6-7 of vector `m` (two
    /// vectors); then each half-block's i8 scale `[half-block][row]` and per super-block the
    /// rows' `d` as their f16 (`[super-block][row]`). The kernel forms `d * scale` in f32 as
    /// the per-call pack does. `blocks` is a multiple of 8; `q` 64-byte aligned, holding
    /// `blocks * 420` bytes.
    pub fn repacked_q6k(q: *mut u8, blocks: usize) -> Panel {
        Panel::compact(q, blocks, Compact::Q6K, 384, Q6K_REPACKED_BLOCK)
    }

    /// A compact panel: `quant_bytes` of quants a block, then the scales; `block_bytes` in
    /// all a block.
    fn compact(
        q: *mut u8,
        blocks: usize,
        layout: Compact,
        quant_bytes: usize,
        block_bytes: usize,
    ) -> Panel {
        let d = q.wrapping_add(blocks * quant_bytes) as *mut f32;
        Panel {
            q,
            d,
            m: d,
            blocks,
            half_scales: false,
            compact: Some(layout),
            ahead: 0,
            stream_step: block_bytes,
        }
    }

    /// Bytes from the panel's start to its scales (all that follows its quants).
    pub fn scales_offset(&self) -> usize {
        self.d as usize - self.q as usize
    }

    /// The same panel, read from memory: the kernel prefetches `ahead` bytes in front of
    /// where it reads (past the panel's end, into whatever follows it: prefetches never
    /// fault).
    pub fn streamed(self, ahead: usize) -> Panel {
        Panel { ahead, ..self }
    }

    /// Lays a panel of `cols` columns out in `buf` (at least [`scratch_bytes`] long).
    pub fn new(buf: &mut [u8], cols: usize) -> Panel {
        let blocks = cols / 32;
        assert!(buf.len() >= scratch_bytes(cols), "panel scratch too small");
        let off = buf.as_ptr().align_offset(64).min(63);
        let q = buf[off..].as_mut_ptr();
        // SAFETY: all three parts lie inside `buf` (checked above), 64-byte aligned.
        unsafe {
            let d = q.add(blocks * 512) as *mut f32;
            Panel {
                q,
                d,
                m: d.add(blocks * 32),
                blocks,
                half_scales: false,
                compact: None,
                ahead: 0,
                stream_step: 0,
            }
        }
    }
}

/// The compact layouts of repacked K-quant panels.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Compact {
    Q4K,
    Q6K,
}

/// Where one kernel call writes: `y[t * stride + row0 + i]` for the first `valid` panel rows.
pub struct Out {
    pub y: *mut f32,
    pub stride: usize,
    pub row0: usize,
    pub valid: usize,
}

/// The activation tables one family of kernels reads, as base pointers and per-token steps
/// (checked once per call against the buffers, so a kernel call only adds offsets).
#[derive(Clone, Copy)]
pub struct Tables {
    pub(super) qs: *const i8,
    pub(super) qs_step: usize,
    /// Per block of 32: the scale the integer sums are multiplied by.
    pub(super) d: *const f32,
    pub(super) d_step: usize,
    /// Per block of 32 (Q6_K: per 16): the integer sum's starting value (null where the
    /// kernel starts from zero).
    pub(super) c: *const i32,
    pub(super) c_step: usize,
    /// Per block of 32 (Q2_K, Q3_K: per 16): the factor of the row mins (null for the types
    /// without a min).
    pub(super) s: *const f32,
    pub(super) s_step: usize,
}

/// The kernel a type's panels run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    /// Blocks of 32, with or without a min term.
    Blocks { min: bool },
    /// Q6_K: half-blocks of 16, the `-32` offset in each half's starting sum.
    Halves,
    /// Q2_K and Q3_K: half-blocks of 16 with a min each.
    HalvesMin,
}

impl Kernel {
    pub(super) fn of(ty: GgmlType) -> Kernel {
        if let Some(c) = iquant::code(ty) {
            return match iquant::scales_per_16(c) {
                true => Kernel::HalvesMin,
                false => Kernel::Blocks { min: true },
            };
        }
        match (legacy::code(ty), kquant::code(ty)) {
            (Some(c), _) => Kernel::Blocks {
                min: legacy::has_min(c),
            },
            (_, Some(kquant::Q6_K)) => Kernel::Halves,
            (_, Some(kquant::Q2_K | kquant::Q3_K)) => Kernel::HalvesMin,
            _ => Kernel::Blocks { min: true },
        }
    }
}

/// The base of `v` after checking it holds `n` tokens of `step` entries.
fn table<T>(v: &[T], n: usize, step: usize, ty: GgmlType) -> *const T {
    assert!(v.len() >= n * step, "activation tables for {ty}");
    v.as_ptr()
}

impl Tables {
    /// The tables of `ty`'s kernels in `acts` (prepared in `ty`'s format).
    pub(super) fn new(ty: GgmlType, acts: &QuantActs) -> Tables {
        let (n, stride) = (acts.n_tokens, acts.stride);
        let (per32, per16) = (stride / 32, stride / 16);
        let k = kquant::code(ty).is_some() || iquant::code(ty).is_some();
        let d = if k { &acts.d32 } else { &acts.d };
        let (c, c_step, s, s_step): (&[i32], usize, &[f32], usize) = match Kernel::of(ty) {
            Kernel::Halves => (&acts.c16, per16, &[], 0),
            Kernel::HalvesMin => (&[], 0, &acts.s16, per16),
            Kernel::Blocks { min: false } => (&acts.c32, per32, &[], 0),
            Kernel::Blocks { min: true } if k => (&acts.c32, per32, &acts.s32, per32),
            Kernel::Blocks { min: true } => (&acts.c32, per32, &acts.s, per32),
        };
        Tables {
            qs: table(acts.qs(), n, stride, ty),
            qs_step: stride,
            d: table(d, n, per32, ty),
            d_step: per32,
            c: if c_step == 0 {
                std::ptr::null()
            } else {
                table(c, n, c_step, ty)
            },
            c_step,
            s: if s_step == 0 {
                std::ptr::null()
            } else {
                table(s, n, s_step, ty)
            },
            s_step,
        }
    }
}
