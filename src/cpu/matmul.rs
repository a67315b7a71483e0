//! The matmul entry point: checks shapes, quantizes activations once, splits rows over threads.
//!
//! `y[t * rows + r] = sum_c x[t * cols + c] * W[r, c]`. Threads take chunks of rows from an
//! atomic counter; inside a chunk, groups of `row_tile` rows stay in L1 while every token tile
//! passes over them, so a decoded weight block serves several tokens. Each output is computed
//! by one thread with a fixed operation order: results do not depend on the thread count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::quant::GgmlType;

use super::blocks::{dequantize_row, row_bytes};
use super::dot::{kernel_set, KernelSet, Tile};
use super::error::KernelError;
use super::features::{CpuFeatures, Isa};
use super::pool::ThreadPool;
use super::quantize::{ActFormat, QuantActs};
use super::shared::SharedMut;

/// A weight matrix in GGUF layout, read in place: `rows` rows of `cols` weights, each row
/// `cols / block_size * type_size` bytes (typically a slice of a memory-mapped file).
#[derive(Debug, Clone, Copy)]
pub struct WeightMatrix<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> WeightMatrix<'a> {
    /// Checks the type, the block alignment of `cols` and the byte count.
    pub fn new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, KernelError> {
        let w = WeightMatrix {
            ty,
            rows,
            cols,
            data,
        };
        w.row_bytes()?;
        Ok(w)
    }

    /// Bytes per row, after checking everything [`WeightMatrix::new`] checks.
    pub fn row_bytes(&self) -> Result<usize, KernelError> {
        let rb = row_bytes(self.ty, self.cols)?;
        let expected = rb.checked_mul(self.rows).ok_or(KernelError::Overflow)?;
        if self.data.len() != expected {
            return Err(KernelError::WeightBytes {
                ty: self.ty,
                rows: self.rows,
                cols: self.cols,
                expected,
                got: self.data.len(),
            });
        }
        Ok(rb)
    }
}

/// How one matmul runs: the knobs an autotuner searches over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatmulPlan {
    /// The SIMD path.
    pub isa: Isa,
    /// Threads to use, capped at the pool's size; 0 means all of the pool.
    pub threads: usize,
    /// Rows per work unit taken from the shared counter (rounded up to `row_tile`).
    pub rows_per_chunk: usize,
    /// Weight rows per tile (capped at what the kernels offer).
    pub row_tile: usize,
    /// Tokens per tile (capped at what the kernels offer).
    pub token_tile: usize,
    /// Quantized weights: integer dots on 8-bit activations (true, as llama.cpp) or weights
    /// dequantized to f32 and f32 activations (false).
    pub quantize_activations: bool,
}

impl MatmulPlan {
    /// Sensible defaults for this CPU's fastest path.
    pub fn new() -> Self {
        Self::for_isa(cpu_features().best())
    }

    pub fn for_isa(isa: Isa) -> Self {
        MatmulPlan {
            isa,
            threads: 0,
            rows_per_chunk: 16,
            row_tile: 4,
            token_tile: 4,
            quantize_activations: true,
        }
    }

    /// Short description for `--kernel-timing`, e.g. "avx512vnni t2 chunk16 tile4x4 q8".
    pub fn describe(&self) -> String {
        format!(
            "{} t{} chunk{} tile{}x{} {}",
            self.isa,
            self.threads,
            self.rows_per_chunk,
            self.row_tile,
            self.token_tile,
            if self.quantize_activations {
                "q8"
            } else {
                "f32"
            }
        )
    }
}

impl Default for MatmulPlan {
    fn default() -> Self {
        Self::new()
    }
}

/// Buffers reused across calls: quantized activations and dequantized rows.
#[derive(Default)]
pub struct Scratch {
    acts: QuantActs,
    rows_f32: Vec<f32>,
}

/// This CPU's features, detected once.
pub fn cpu_features() -> &'static CpuFeatures {
    static F: OnceLock<CpuFeatures> = OnceLock::new();
    F.get_or_init(CpuFeatures::detect)
}

fn check_len(
    what: &'static str,
    got: usize,
    n_tokens: usize,
    width: usize,
) -> Result<(), KernelError> {
    let expected = n_tokens.checked_mul(width).ok_or(KernelError::Overflow)?;
    if got != expected {
        return Err(KernelError::SliceLen {
            what,
            n_tokens,
            width,
            expected,
            got,
        });
    }
    Ok(())
}

/// `y[t * rows + r] = sum_c x[t * cols + c] * W[r, c]` for `t in 0..n_tokens`, on `pool`.
pub fn matmul(
    pool: &ThreadPool,
    w: &WeightMatrix<'_>,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    plan: &MatmulPlan,
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    let row_bytes = w.row_bytes()?;
    check_len("input x", x.len(), n_tokens, w.cols)?;
    check_len("output y", y.len(), n_tokens, w.rows)?;
    if !cpu_features().supports(plan.isa) {
        return Err(KernelError::IsaUnavailable(plan.isa));
    }
    let ks = kernel_set(w.ty, plan.isa, plan.quantize_activations)?;
    if n_tokens == 0 || w.rows == 0 {
        return Ok(());
    }
    let threads = match plan.threads {
        0 => pool.n_threads(),
        n => n.min(pool.n_threads()),
    };
    scratch.acts.prepare(ks.fmt, n_tokens, w.cols);
    scratch.acts.quantize(pool, threads, x, plan.isa);

    let row_tile = plan.row_tile.clamp(1, ks.max_rows());
    let dequant = ks.fmt == ActFormat::F32 && !is_float(w.ty);
    if dequant && scratch.rows_f32.len() < threads * row_tile * w.cols {
        scratch.rows_f32.resize(threads * row_tile * w.cols, 0.0);
    }
    let job = Job {
        w,
        row_bytes,
        x,
        n_tokens,
        ks,
        row_tile,
        token_tile: plan.token_tile.clamp(1, ks.max_tokens()),
        acts: &scratch.acts,
        dequant: dequant.then(|| SharedMut::new(&mut scratch.rows_f32[..])),
        y: SharedMut::new(y),
    };
    let chunk = plan.rows_per_chunk.max(1).div_ceil(row_tile) * row_tile;
    let n_chunks = w.rows.div_ceil(chunk);
    let next = AtomicUsize::new(0);
    pool.run(threads.min(n_chunks), |tid| loop {
        let c = next.fetch_add(1, Ordering::Relaxed);
        if c >= n_chunks {
            break;
        }
        job.rows(tid, c * chunk, ((c + 1) * chunk).min(w.rows));
    });
    Ok(())
}

fn is_float(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

/// Everything the threads of one call share.
struct Job<'a> {
    w: &'a WeightMatrix<'a>,
    row_bytes: usize,
    x: &'a [f32],
    n_tokens: usize,
    ks: KernelSet,
    row_tile: usize,
    token_tile: usize,
    acts: &'a QuantActs,
    /// Per-thread f32 rows (`row_tile * cols` each) when quantized weights run in f32.
    dequant: Option<SharedMut<'a, f32>>,
    y: SharedMut<'a, f32>,
}

impl Job<'_> {
    /// Rows `begin..end` for every token, on thread `tid`.
    fn rows(&self, tid: usize, begin: usize, end: usize) {
        let cols = self.w.cols;
        let mut r = begin;
        while r < end {
            let tt = self.token_tile.min(self.n_tokens);
            let nr = self.ks.best_fit(self.row_tile.min(end - r), tt).rows;
            let (wp, rb) = match &self.dequant {
                None => (self.w.data[r * self.row_bytes..].as_ptr(), self.row_bytes),
                Some(buf) => {
                    // SAFETY: thread `tid` alone uses this part of the buffer.
                    let f = unsafe { buf.slice(tid * self.row_tile * cols, nr * cols) };
                    for (i, out) in f.chunks_exact_mut(cols).enumerate() {
                        let row = &self.w.data[(r + i) * self.row_bytes..][..self.row_bytes];
                        // Cannot fail: the matrix was checked before the threads started.
                        let _ = dequantize_row(self.w.ty, row, out);
                    }
                    (f.as_ptr() as *const u8, cols * 4)
                }
            };
            let mut t = 0;
            while t < self.n_tokens {
                let e = self
                    .ks
                    .with_rows(nr, self.token_tile.min(self.n_tokens - t));
                let tile = Tile {
                    w: wp,
                    row_bytes: rb,
                    cols,
                    r0: r,
                    t0: t,
                    acts: self.acts,
                    x: self.x,
                    y: self.y.as_ptr(),
                    y_stride: self.w.rows,
                };
                // SAFETY: rows r..r+nr and tokens t..t+e.tokens exist (checked above and by
                // best_fit); this thread alone owns rows r..r+nr of every token's output; the
                // activations were prepared in the set's format; the ISA was checked.
                unsafe { (e.f)(&tile) };
                t += e.tokens;
            }
            r += nr;
        }
    }
}
