//! Activations quantized to 8 bits, as llama.cpp does before its integer dot products.
//!
//! Follows ggml's reference quantizers exactly (`quantize_row_q8_0_ref`, `quantize_row_q8_1_ref`,
//! `quantize_row_q8_K_ref`): the same scale formulas, `roundf` (ties away from zero) for Q8_0
//! and Q8_1, round-to-nearest-even (`nearest_int`) for Q8_K, and Q8_0/Q8_1 scales rounded
//! through f16. The SIMD versions produce bit-identical blocks. Besides ggml's block contents
//! the buffers hold per-lane tables (one entry per 4 activations) that the SIMD kernels load
//! instead of rebuilding per row.

use super::features::cpu_features;
use super::features::Isa;
use super::pool::ThreadPool;
use super::shared::SharedMut;
use crate::quant::blocks::{round_f16, QK, QK_K};

/// The form activations take for a weight type (ggml's `vec_dot_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActFormat {
    /// f32 as given: float weights, or quantized weights on the f32 path.
    F32,
    /// Q8_0 blocks of 32. The x86 kernels feed unsigned weights `w + offset` to
    /// unsigned-by-signed dot instructions, so the tables carry `-offset * sum` per lane.
    Q8_0 { offset: i32 },
    /// Q8_1 blocks of 32 with their scaled sums (Q4_1, Q5_1 weights).
    Q8_1,
    /// Q8_K super-blocks of 256 with sums per 16 (K-quant weights).
    Q8K,
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
/// The reference quantizers, one token row at a time: what the SIMD versions must equal.
pub mod reference;
mod rows;

/// The activations of one matmul call, quantized; buffers grow once and are reused.
#[derive(Default)]
pub struct QuantActs {
    pub fmt: Option<ActFormat>,
    pub cols: usize,
    pub n_tokens: usize,
    /// Whether the tables only the tile kernels read (per lane; Q8_K's quants in Q4_K order)
    /// are filled: a prompt whose matmuls all run on panels skips them.
    pub tile_tables: bool,
    /// Distance between tokens in `qs` (cols rounded up to 64, so rows start cache-aligned).
    pub stride: usize,
    qs_buf: Vec<i8>,
    /// Per block of 32 (Q8_0/Q8_1) or 256 (Q8_K): the scale as the dot products use it.
    pub d: Vec<f32>,
    /// Q8_1: `f16(d * sum)` per block.
    pub s: Vec<f32>,
    /// Per lane (4 activations, `stride / 4` per token): the lane's block scale.
    pub d4: Vec<f32>,
    /// Per lane: `-offset * (sum of the lane's 4 quants)` for the unsigned-weight trick.
    pub c4: Vec<i32>,
    /// Per lane, Q8_1: `s / 8` of the lane's block (8 lanes share a block).
    pub s4: Vec<f32>,
    /// Per block of 32: `-offset * (sum of the block's quants)`, for the panel kernels
    /// (zero for Q8_K, whose weights need no offset there).
    pub c32: Vec<i32>,
    /// Q8_K, per block of 32, for the panel kernels: the super-block's scale, and
    /// `-scale * (sum of the block's quants)` (the K-quant mins' factor).
    pub d32: Vec<f32>,
    pub s32: Vec<f32>,
    /// Q8_K, per group of 16, for the Q6_K panel kernel: `-32 * (sum of the group's quants)`.
    pub c16: Vec<i32>,
    /// Q8_K, per group of 16, for the panel kernels with a min per 16 (Q2_K, Q3_K; on AVX-512
    /// also IQ2_XS, IQ2_S, IQ1_M): `-scale * (sum of the group's quants)` (the factor of their
    /// mins, of Q3_K's `-4` and of the i-quants' `+128`).
    pub s16: Vec<f32>,
    /// Q8_K: sums of 16 quants, as ggml's `bsums` (16 per super-block).
    pub bsums16: Vec<i16>,
    /// Q8_K: sums of 32 quants (8 per super-block), for the K-quant mins.
    pub bsums32: Vec<i16>,
    /// Q8_K: the quants again, sub-blocks of each super-block in Q4_K/Q5_K nibble order
    /// (0, 2, 1, 3, 4, 6, 5, 7), so one 64-byte load of Q4_K quants meets its activations
    /// as two whole vectors (low nibbles, high nibbles).
    qs_k4_buf: Vec<i8>,
}

fn grow<T: Clone + Default>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::default());
    }
}

impl QuantActs {
    /// The quants, `stride` apart per token, starting 64-byte aligned.
    pub fn qs(&self) -> &[i8] {
        let off = self.qs_buf.as_ptr().align_offset(64).min(63);
        &self.qs_buf[off..off + self.n_tokens * self.stride]
    }

    fn block_len(&self) -> usize {
        if self.fmt == Some(ActFormat::Q8K) {
            QK_K
        } else {
            QK
        }
    }

    /// Token `t`'s quants (`stride` long, zero past `cols`).
    pub fn tok_qs(&self, t: usize) -> &[i8] {
        &self.qs()[t * self.stride..(t + 1) * self.stride]
    }

    /// Token `t`'s block scales.
    pub fn tok_d(&self, t: usize) -> &[f32] {
        let n = self.stride / self.block_len();
        &self.d[t * n..(t + 1) * n]
    }

    /// Token `t`'s Q8_1 block sums `s`.
    pub fn tok_s(&self, t: usize) -> &[f32] {
        let n = self.stride / QK;
        &self.s[t * n..(t + 1) * n]
    }

    /// Token `t`'s per-lane scales.
    pub fn tok_d4(&self, t: usize) -> &[f32] {
        let n = self.stride / 4;
        &self.d4[t * n..(t + 1) * n]
    }

    /// Token `t`'s per-lane offset corrections.
    pub fn tok_c4(&self, t: usize) -> &[i32] {
        let n = self.stride / 4;
        &self.c4[t * n..(t + 1) * n]
    }

    /// Token `t`'s per-block offset corrections.
    pub fn tok_c32(&self, t: usize) -> &[i32] {
        let n = self.stride / QK;
        &self.c32[t * n..(t + 1) * n]
    }

    /// Token `t`'s Q8_K per-block scales (the super-block's, repeated).
    pub fn tok_d32(&self, t: usize) -> &[f32] {
        let n = self.stride / QK;
        &self.d32[t * n..(t + 1) * n]
    }

    /// Token `t`'s Q8_K per-block `-d * sum`.
    pub fn tok_s32(&self, t: usize) -> &[f32] {
        let n = self.stride / QK;
        &self.s32[t * n..(t + 1) * n]
    }

    /// Token `t`'s Q8_K `-32 * sum` per group of 16.
    pub fn tok_c16(&self, t: usize) -> &[i32] {
        let n = self.stride / 16;
        &self.c16[t * n..(t + 1) * n]
    }

    /// Token `t`'s Q8_K `-d * sum` per group of 16.
    pub fn tok_s16(&self, t: usize) -> &[f32] {
        let n = self.stride / 16;
        &self.s16[t * n..(t + 1) * n]
    }

    /// Token `t`'s per-lane Q8_1 `s / 8`.
    pub fn tok_s4(&self, t: usize) -> &[f32] {
        let n = self.stride / 4;
        &self.s4[t * n..(t + 1) * n]
    }

    /// Token `t`'s Q8_K sums per 16.
    pub fn tok_bsums16(&self, t: usize) -> &[i16] {
        let n = self.stride / 16;
        &self.bsums16[t * n..(t + 1) * n]
    }

    /// Token `t`'s Q8_K quants in Q4_K nibble order (see the field).
    pub fn tok_qs_k4(&self, t: usize) -> &[i8] {
        let off = self.qs_k4_buf.as_ptr().align_offset(64).min(63);
        &self.qs_k4_buf[off + t * self.stride..off + (t + 1) * self.stride]
    }

    /// Token `t`'s Q8_K sums per 32.
    pub fn tok_bsums32(&self, t: usize) -> &[i16] {
        let n = self.stride / QK;
        &self.bsums32[t * n..(t + 1) * n]
    }

    /// Sizes the buffers for `n_tokens` rows of `cols` in `fmt`, with every table.
    pub fn prepare(&mut self, fmt: ActFormat, n_tokens: usize, cols: usize) {
        self.prepare_for(fmt, n_tokens, cols, true);
    }

    /// As [`QuantActs::prepare`]; `tile_tables` false leaves out the tables only the tile
    /// kernels read (for calls that run on panels alone).
    pub fn prepare_for(&mut self, fmt: ActFormat, n_tokens: usize, cols: usize, tile_tables: bool) {
        self.tile_tables = tile_tables;
        self.fmt = Some(fmt);
        self.cols = cols;
        self.n_tokens = n_tokens;
        self.stride = cols.div_ceil(64) * 64;
        if fmt == ActFormat::F32 {
            return;
        }
        let lanes = n_tokens * self.stride / 4;
        let blocks = n_tokens * self.stride / QK;
        grow(&mut self.qs_buf, n_tokens * self.stride + 64);
        grow(&mut self.d, blocks);
        match fmt {
            ActFormat::Q8K => {
                grow(&mut self.bsums16, n_tokens * self.stride / 16);
                grow(&mut self.bsums32, blocks);
                grow(&mut self.qs_k4_buf, n_tokens * self.stride + 64);
                grow(&mut self.c32, blocks);
                grow(&mut self.d32, blocks);
                grow(&mut self.s32, blocks);
                grow(&mut self.c16, n_tokens * self.stride / 16);
                grow(&mut self.s16, n_tokens * self.stride / 16);
            }
            ActFormat::Q8_0 { .. } | ActFormat::Q8_1 => {
                grow(&mut self.d4, lanes);
                grow(&mut self.c4, lanes);
                grow(&mut self.c32, blocks);
                if fmt == ActFormat::Q8_1 {
                    grow(&mut self.s, blocks);
                    grow(&mut self.s4, lanes);
                }
            }
            ActFormat::F32 => {}
        }
    }

    /// Quantizes `x` (`[n_tokens, cols]`, as prepared) with `isa`'s quantizer, splitting the
    /// tokens over up to `threads` pool threads (0: the whole pool) when there is enough work.
    /// An `isa` this CPU lacks takes the portable quantizer, whose blocks are the same bit for
    /// bit: the SIMD quantizers must never run on a CPU without their instructions.
    pub fn quantize(&mut self, pool: &ThreadPool, threads: usize, x: &[f32], isa: Isa) {
        let Some(fmt) = self.fmt else { return };
        if fmt == ActFormat::F32 {
            return;
        }
        let isa = if cpu_features().supports(isa) {
            isa
        } else {
            Isa::Scalar
        };
        let (n, cols) = (self.n_tokens, self.cols);
        let parts = self.parts();
        // `pool.run` runs at most the pool's size of indices: tokens must be split over no more.
        let threads = match threads {
            0 => pool.n_threads(),
            t => t.min(pool.n_threads()),
        };
        let threads = if n * cols < 16 * 1024 {
            1
        } else {
            threads.min(n).max(1)
        };
        pool.run(threads, |tid| {
            for t in n * tid / threads..n * (tid + 1) / threads {
                // SAFETY: each token belongs to exactly one thread.
                let mut bufs = unsafe { parts.token(t) };
                bufs.quantize(fmt, &x[t * cols..(t + 1) * cols], isa);
            }
        });
    }

    /// Makes these activations `src`'s tokens `rows[0], rows[1], ...` (a token may repeat), copied
    /// block for block: a mixture-of-experts batch regroups its quantized tokens by expert
    /// instead of quantizing a token once per expert. Rows are split over `threads` pool threads.
    pub fn gather(&mut self, pool: &ThreadPool, threads: usize, src: &QuantActs, rows: &[u32]) {
        let Some(fmt) = src.fmt else { return };
        self.prepare(fmt, rows.len(), src.cols);
        if fmt == ActFormat::F32 {
            return;
        }
        let parts = self.parts();
        let n = rows.len();
        let threads = if n * src.cols < 64 * 1024 {
            1
        } else {
            threads.min(n)
        };
        pool.run(threads, |tid| {
            for (i, &t) in rows
                .iter()
                .enumerate()
                .take(n * (tid + 1) / threads)
                .skip(n * tid / threads)
            {
                // SAFETY: each destination row belongs to exactly one thread.
                let mut bufs = unsafe { parts.token(i) };
                bufs.copy_from(fmt, src, t as usize);
            }
        });
    }

    fn parts(&mut self) -> Parts<'_> {
        let off = self.qs_buf.as_ptr().align_offset(64).min(63);
        let qs_len = self.n_tokens * self.stride;
        let block_len = self.block_len();
        Parts {
            cols: self.cols,
            stride: self.stride,
            tile_tables: self.tile_tables,
            block_len,
            qs: SharedMut::new(&mut self.qs_buf[off..off + qs_len]),
            d: SharedMut::new(&mut self.d),
            s: SharedMut::new(&mut self.s),
            d4: SharedMut::new(&mut self.d4),
            c4: SharedMut::new(&mut self.c4),
            c32: SharedMut::new(&mut self.c32),
            d32: SharedMut::new(&mut self.d32),
            s32: SharedMut::new(&mut self.s32),
            c16: SharedMut::new(&mut self.c16),
            s16: SharedMut::new(&mut self.s16),
            s4: SharedMut::new(&mut self.s4),
            bsums16: SharedMut::new(&mut self.bsums16),
            bsums32: SharedMut::new(&mut self.bsums32),
            qs_k4: SharedMut::new(k4_slice(&mut self.qs_k4_buf, qs_len)),
        }
    }
}

/// The 64-byte aligned `len` bytes of the Q4_K-order buffer (empty when not in use).
fn k4_slice(buf: &mut [i8], len: usize) -> &mut [i8] {
    if buf.len() < len + 64 {
        return &mut [];
    }
    let off = buf.as_ptr().align_offset(64).min(63);
    &mut buf[off..off + len]
}

/// The activation buffers, shared by the threads quantizing disjoint tokens.
struct Parts<'a> {
    cols: usize,
    stride: usize,
    tile_tables: bool,
    block_len: usize,
    qs: SharedMut<'a, i8>,
    d: SharedMut<'a, f32>,
    s: SharedMut<'a, f32>,
    d4: SharedMut<'a, f32>,
    c4: SharedMut<'a, i32>,
    c32: SharedMut<'a, i32>,
    d32: SharedMut<'a, f32>,
    s32: SharedMut<'a, f32>,
    c16: SharedMut<'a, i32>,
    s16: SharedMut<'a, f32>,
    s4: SharedMut<'a, f32>,
    bsums16: SharedMut<'a, i16>,
    bsums32: SharedMut<'a, i16>,
    qs_k4: SharedMut<'a, i8>,
}

impl<'a> Parts<'a> {
    /// Token `t`'s part of every buffer (empty where the format has no such buffer).
    ///
    /// # Safety
    /// No other thread may use token `t`'s parts meanwhile.
    unsafe fn token(&self, t: usize) -> TokenBufs<'a> {
        unsafe fn part<'a, T>(v: &SharedMut<'a, T>, t: usize, n: usize) -> &'a mut [T] {
            if v.len() >= (t + 1) * n {
                v.slice(t * n, n)
            } else {
                v.slice(0, 0)
            }
        }
        let lanes = self.stride / 4;
        TokenBufs {
            cols: self.cols,
            tile_tables: self.tile_tables,
            qs: part(&self.qs, t, self.stride),
            d: part(&self.d, t, self.stride / self.block_len),
            s: part(&self.s, t, self.stride / QK),
            d4: part(&self.d4, t, lanes),
            c4: part(&self.c4, t, lanes),
            c32: part(&self.c32, t, self.stride / QK),
            d32: part(&self.d32, t, self.stride / QK),
            s32: part(&self.s32, t, self.stride / QK),
            c16: part(&self.c16, t, self.stride / 16),
            s16: part(&self.s16, t, self.stride / 16),
            s4: part(&self.s4, t, lanes),
            bsums16: part(&self.bsums16, t, self.stride / 16),
            bsums32: part(&self.bsums32, t, self.stride / QK),
            qs_k4: part(&self.qs_k4, t, self.stride),
        }
    }
}

/// One token's slices of the activation buffers.
struct TokenBufs<'a> {
    cols: usize,
    tile_tables: bool,
    qs: &'a mut [i8],
    d: &'a mut [f32],
    s: &'a mut [f32],
    d4: &'a mut [f32],
    c4: &'a mut [i32],
    c32: &'a mut [i32],
    d32: &'a mut [f32],
    s32: &'a mut [f32],
    c16: &'a mut [i32],
    s16: &'a mut [f32],
    s4: &'a mut [f32],
    bsums16: &'a mut [i16],
    bsums32: &'a mut [i16],
    qs_k4: &'a mut [i8],
}

impl TokenBufs<'_> {
    /// Token `t` of `src` (prepared in `fmt`, of the same width), every table the format has.
    fn copy_from(&mut self, fmt: ActFormat, src: &QuantActs, t: usize) {
        self.qs.copy_from_slice(src.tok_qs(t));
        self.d.copy_from_slice(src.tok_d(t));
        self.c32.copy_from_slice(src.tok_c32(t));
        match fmt {
            ActFormat::F32 => {}
            ActFormat::Q8_0 { .. } | ActFormat::Q8_1 => {
                self.d4.copy_from_slice(src.tok_d4(t));
                self.c4.copy_from_slice(src.tok_c4(t));
                if fmt == ActFormat::Q8_1 {
                    self.s.copy_from_slice(src.tok_s(t));
                    self.s4.copy_from_slice(src.tok_s4(t));
                }
            }
            ActFormat::Q8K => {
                self.bsums16.copy_from_slice(src.tok_bsums16(t));
                self.bsums32.copy_from_slice(src.tok_bsums32(t));
                self.qs_k4.copy_from_slice(src.tok_qs_k4(t));
                self.d32.copy_from_slice(src.tok_d32(t));
                self.s32.copy_from_slice(src.tok_s32(t));
                self.c16.copy_from_slice(src.tok_c16(t));
                self.s16.copy_from_slice(src.tok_s16(t));
            }
        }
    }

    fn quantize(&mut self, fmt: ActFormat, x: &[f32], isa: Isa) {
        let cols = self.cols;
        // Padding past `cols` stays zero so kernels may read whole 64-byte lines.
        self.qs[cols..].fill(0);
        match fmt {
            ActFormat::F32 => {}
            ActFormat::Q8_0 { offset } => {
                let nb = cols / QK;
                rows::q8_row(isa, x, &mut self.qs[..cols], &mut self.d[..nb]);
                for d in self.d[..nb].iter_mut() {
                    *d = round_f16(*d);
                }
                self.fill_lanes(offset, None);
            }
            ActFormat::Q8_1 => {
                let nb = cols / QK;
                rows::q8_row(isa, x, &mut self.qs[..cols], &mut self.d[..nb]);
                for (q, (d, s)) in self.qs[..cols]
                    .chunks_exact(QK)
                    .zip(self.d.iter_mut().zip(self.s.iter_mut()))
                {
                    let sum: i32 = q.iter().map(|&v| v as i32).sum();
                    *s = round_f16(sum as f32 * *d);
                    *d = round_f16(*d);
                }
                self.fill_lanes(0, Some(nb));
            }
            ActFormat::Q8K => {
                let nb = cols / QK_K;
                rows::q8k_row(
                    isa,
                    x,
                    &mut self.qs[..cols],
                    &mut self.d[..nb],
                    &mut self.bsums16[..cols / 16],
                );
                for (b32, b16) in self.bsums32.iter_mut().zip(self.bsums16.chunks_exact(2)) {
                    *b32 = b16[0] + b16[1];
                }
                self.fill_panel_tables(nb);
                if !self.tile_tables {
                    return;
                }
                let blocks = self.qs[..cols].chunks_exact(QK_K);
                for (q, k4) in blocks.zip(self.qs_k4.chunks_exact_mut(QK_K)) {
                    for (dst, src) in [0, 2, 1, 3, 4, 6, 5, 7].into_iter().enumerate() {
                        k4[QK * dst..QK * (dst + 1)].copy_from_slice(&q[QK * src..QK * (src + 1)]);
                    }
                }
            }
        }
    }

    /// Q8_K's per-block tables for the panel kernels (zero past `cols`).
    fn fill_panel_tables(&mut self, superblocks: usize) {
        let blocks = superblocks * (QK_K / QK);
        self.c32.fill(0);
        self.d32.fill(0.0);
        self.s32.fill(0.0);
        self.c16.fill(0);
        self.s16.fill(0.0);
        for b in 0..blocks {
            let d = self.d[b / (QK_K / QK)];
            self.d32[b] = d;
            self.s32[b] = -d * self.bsums32[b] as f32;
        }
        for (c, &s) in self.c16.iter_mut().zip(&self.bsums16[..2 * blocks]) {
            *c = -32 * s as i32;
        }
        for (g, (m, &s)) in self
            .s16
            .iter_mut()
            .zip(&self.bsums16[..2 * blocks])
            .enumerate()
        {
            *m = -self.d[g / (QK_K / 16)] * s as f32;
        }
    }

    /// The per-block (and, for the tile kernels, per-lane) tables of the 32-block formats
    /// (zero past `cols`).
    fn fill_lanes(&mut self, offset: i32, q8_1_blocks: Option<usize>) {
        if !self.tile_tables {
            let blocks = self.qs[..self.cols].chunks_exact(QK);
            let n = blocks.len();
            for (c, q) in self.c32.iter_mut().zip(blocks) {
                *c = -offset * q.iter().map(|&v| v as i32).sum::<i32>();
            }
            self.c32[n..].fill(0);
            return;
        }
        let lanes = self.cols / 4;
        for (l, q) in self.qs[..self.cols].chunks_exact(4).enumerate() {
            let sum: i32 = q.iter().map(|&v| v as i32).sum();
            self.c4[l] = -offset * sum;
            self.d4[l] = self.d[l / 8];
        }
        self.c4[lanes..].fill(0);
        for (c, lanes) in self.c32.iter_mut().zip(self.c4.chunks_exact(8)) {
            *c = lanes.iter().sum();
        }
        self.d4[lanes..].fill(0.0);
        if q8_1_blocks.is_some() {
            for l in 0..lanes {
                self.s4[l] = self.s[l / 8] / 8.0;
            }
            self.s4[lanes..].fill(0.0);
        }
    }
}
