//! The matmul entry point: checks shapes, quantizes activations once, splits rows over threads.
//!
//! `y[t * rows + r] = sum_c x[t * cols + c] * W[r, c]`. Threads take chunks of rows from an
//! atomic counter; inside a chunk, groups of `row_tile` rows stay in L1 while every token tile
//! passes over them, so a decoded weight block serves several tokens. Each output is computed
//! by one thread with a fixed operation order: results do not depend on the thread count.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::quant::GgmlType;

use super::dot::{kernel_set, panel, KernelSet, Tile};
use super::error::KernelError;
use super::features::{cpu_features, Isa};
use super::pool::ThreadPool;
use super::quantize::{ActFormat, QuantActs};
use super::repack::{self, RepackedMatrix};
use super::shared::SharedMut;

/// Checks that the kernels take `ty` and that `cols` is a whole number of its blocks; returns
/// the bytes of one row.
pub fn row_bytes(ty: GgmlType, cols: usize) -> Result<usize, KernelError> {
    if !ty.is_supported() {
        return Err(KernelError::UnsupportedType(ty));
    }
    let block = ty.block_size();
    if !cols.is_multiple_of(block) {
        return Err(KernelError::PartialBlock { ty, cols, block });
    }
    (cols / block)
        .checked_mul(ty.type_size())
        .ok_or(KernelError::Overflow)
}

/// Dequantizes one row (`row.len()` bytes, `out.len()` weights) with the crate's own
/// dequantization (`crate::quant`, checked bit for bit against the F32 twins), with the
/// kernels' error type.
pub fn dequantize_row(ty: GgmlType, row: &[u8], out: &mut [f32]) -> Result<(), KernelError> {
    let expected = row_bytes(ty, out.len())?;
    if row.len() != expected {
        return Err(KernelError::WeightBytes {
            ty,
            rows: 1,
            cols: out.len(),
            expected,
            got: row.len(),
        });
    }
    crate::quant::dequantize_row(ty, row, out).map_err(|_| KernelError::UnsupportedType(ty))
}

/// A weight matrix in GGUF layout, read in place: `rows` rows of `cols` weights, each row
/// `cols / block_size * type_size` bytes (typically a slice of a memory-mapped file).
#[derive(Debug, Clone, Copy)]
pub struct WeightMatrix<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
    /// The same matrix repacked into panels ([`RepackedMatrix`]), where the caller holds one:
    /// plans with `repacked` read it instead of `data`.
    pub repacked: Option<&'a RepackedMatrix>,
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
            repacked: None,
        };
        w.row_bytes()?;
        Ok(w)
    }

    /// Whether the matrix can be repacked into panels for `isa` ([`super::repack`]).
    pub fn repackable(&self, isa: Isa) -> bool {
        repack::repackable(self.ty, self.rows, self.cols, isa)
    }

    /// The matrix repacked into panels for `isa` on `pool`'s threads; with `release` (the
    /// bytes are a read-only file map) its pages are released as they are packed.
    pub fn repack(
        &self,
        pool: &ThreadPool,
        isa: Isa,
        release: bool,
    ) -> Result<RepackedMatrix, KernelError> {
        let source = repack::Source {
            ty: self.ty,
            rows: self.rows,
            cols: self.cols,
            row_bytes: self.row_bytes()?,
            data: self.data,
        };
        RepackedMatrix::new(pool, isa, source, release)
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MatmulPlan {
    /// The SIMD path.
    pub isa: Isa,
    /// Threads to use, capped at the pool's size; 0 means all of the pool.
    pub threads: usize,
    /// Rows per work unit taken from the shared counter (rounded up to `row_tile`); 0 picks
    /// `rows / (2 * threads)` within 64..=256, which keeps the row streams long enough for
    /// the hardware prefetchers and the threads busy to the end.
    pub rows_per_chunk: usize,
    /// Weight rows per tile (capped at what the kernels offer).
    pub row_tile: usize,
    /// Tokens per tile (capped at what the kernels offer).
    pub token_tile: usize,
    /// Quantized weights: integer dots on 8-bit activations (true, as llama.cpp) or weights
    /// dequantized to f32 and f32 activations (false).
    pub quantize_activations: bool,
    /// Batches: repack rows into 16-row panels where the ISA and type have panel kernels
    /// ([`super::dot::panel`]); `row_tile` then has no effect.
    #[serde(default)]
    pub panel: bool,
    /// Read the matrices' repacked panels ([`RepackedMatrix`]) at every token count, 1
    /// included, where each has one; others take the plan's other fields.
    #[serde(default)]
    pub repacked: bool,
    /// Panels of the types AMX takes run their integer dots on AMX tiles, 16 tokens a call,
    /// where [`panel::amx::usable`] says yes (elsewhere the flag changes nothing).
    #[serde(default)]
    pub amx: bool,
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
            rows_per_chunk: 0,
            row_tile: 4,
            token_tile: 8,
            quantize_activations: true,
            panel: panel::any(isa),
            repacked: false,
            amx: false,
        }
    }

    /// Short description for `--kernel-timing`, e.g. "avx512vnni t2 chunk16 tile4x4 q8".
    pub fn describe(&self) -> String {
        let chunk = match self.rows_per_chunk {
            0 => "auto".to_string(),
            n => n.to_string(),
        };
        format!(
            "{} t{} chunk{} tile{}x{} {}{}{}",
            self.isa,
            self.threads,
            chunk,
            self.row_tile,
            self.token_tile,
            if self.quantize_activations {
                "q8"
            } else {
                "f32"
            },
            if self.repacked {
                " repacked16"
            } else if self.panel {
                " panel16"
            } else {
                ""
            },
            if self.amx { " amx" } else { "" }
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
    panels: Vec<u8>,
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
    matmul_multi(
        pool,
        std::slice::from_ref(w),
        x,
        n_tokens,
        &mut [y],
        plan,
        scratch,
    )
}

/// The most matrices one [`matmul_multi`] call takes.
pub const MAX_MATRICES: usize = 8;

/// [`matmul`] for several matrices sharing one input (q/k/v, gate/up): the activations are
/// quantized once and all rows go through one pool job, with one wait at the end.
/// `ys[i]` receives `ws[i]`'s output. All matrices need the same `cols` and the same
/// activation format (e.g. K-quants together, Q8_0 with Q8_0).
pub fn matmul_multi(
    pool: &ThreadPool,
    ws: &[WeightMatrix<'_>],
    x: &[f32],
    n_tokens: usize,
    ys: &mut [&mut [f32]],
    plan: &MatmulPlan,
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    let Some(first) = ws.first() else {
        return Ok(());
    };
    if ws.len() > MAX_MATRICES {
        return Err(KernelError::TooManyMatrices(ws.len()));
    }
    if ys.len() != ws.len() {
        return Err(KernelError::OutputCount {
            matrices: ws.len(),
            outputs: ys.len(),
        });
    }
    if !cpu_features().supports(plan.isa) {
        return Err(KernelError::IsaUnavailable(plan.isa));
    }
    check_len("input x", x.len(), n_tokens, first.cols)?;
    let mut sets = [None; MAX_MATRICES];
    for (i, (w, y)) in ws.iter().zip(ys.iter()).enumerate() {
        w.row_bytes()?;
        if w.cols != first.cols {
            return Err(KernelError::ColsMismatch {
                first: first.cols,
                other: w.cols,
            });
        }
        check_len("output y", y.len(), n_tokens, w.rows)?;
        let ks = kernel_set(w.ty, plan.isa, plan.quantize_activations)?;
        if let Some(Some(k0)) = sets.first() {
            let k0: &KernelSet = k0;
            if k0.fmt != ks.fmt {
                return Err(KernelError::FormatMismatch {
                    first: first.ty,
                    other: w.ty,
                });
            }
        }
        sets[i] = Some(ks);
    }
    if n_tokens == 0 {
        return Ok(());
    }
    let threads = match plan.threads {
        0 => pool.n_threads(),
        n => n.min(pool.n_threads()),
    };
    let fmt = sets[0].map_or(ActFormat::F32, |k| k.fmt);

    let mut parts: [Option<Part<'_>>; MAX_MATRICES] = Default::default();
    let mut n_chunks = 0;
    let mut dequant_rows = 0;
    let mut any_panel = false;
    for (i, (w, y)) in ws.iter().zip(ys.iter_mut()).enumerate() {
        let Some(ks) = sets[i] else { continue };
        let repacked = w
            .repacked
            .filter(|rp| plan.repacked && rp.isa == plan.isa && ks.fmt != ActFormat::F32)
            .filter(|rp| (rp.ty, rp.rows, rp.cols) == (w.ty, w.rows, w.cols));
        let use_panel = repacked.is_some()
            || (plan.panel
                && n_tokens > 1
                && ks.fmt != ActFormat::F32
                && panel::supports(w.ty, plan.isa));
        let row_tile = if use_panel {
            panel::ROWS
        } else {
            plan.row_tile.clamp(1, ks.max_rows())
        };
        let chunk = match plan.rows_per_chunk {
            0 => (w.rows / (2 * threads)).clamp(64, 256),
            n => n,
        };
        // Never more than the matrix (a plan may come from a cache file): no overflow below.
        let chunk = chunk.min(w.rows.max(1)).div_ceil(row_tile) * row_tile;
        let dequant = ks.fmt == ActFormat::F32 && !is_float(w.ty);
        any_panel |= use_panel && repacked.is_none();
        if dequant {
            dequant_rows = dequant_rows.max(row_tile);
        }
        parts[i] = Some(Part {
            w,
            row_bytes: w.row_bytes()?,
            ks,
            row_tile,
            chunk,
            first_chunk: n_chunks,
            dequant,
            panel: use_panel,
            repacked,
            y: SharedMut::new(y),
        });
        n_chunks += w.rows.div_ceil(chunk);
    }
    let all_panels = parts.iter().flatten().all(|p| p.panel);
    scratch
        .acts
        .prepare_for(fmt, n_tokens, first.cols, !all_panels);
    scratch.acts.quantize(pool, threads, x, plan.isa);
    let per_thread = dequant_rows * first.cols;
    if scratch.rows_f32.len() < threads * per_thread {
        scratch.rows_f32.resize(threads * per_thread, 0.0);
    }
    let panel_bytes = if any_panel {
        panel::scratch_bytes(first.cols)
    } else {
        0
    };
    if scratch.panels.len() < threads * panel_bytes {
        scratch.panels.resize(threads * panel_bytes, 0);
    }
    let job = Job {
        parts,
        x,
        cols: first.cols,
        n_tokens,
        token_tile: plan.token_tile.max(1),
        isa: plan.isa,
        amx: amx_tiles(plan),
        acts: &scratch.acts,
        rows_f32: SharedMut::new(&mut scratch.rows_f32[..]),
        per_thread,
        panels: SharedMut::new(&mut scratch.panels[..]),
        panel_bytes,
    };
    let next = AtomicUsize::new(0);
    pool.run(threads.min(n_chunks), |tid| loop {
        let c = next.fetch_add(1, Ordering::Relaxed);
        if c >= n_chunks {
            break;
        }
        job.chunk(tid, c);
    });
    Ok(())
}

/// Whether a call of `plan` runs its panels on AMX tiles: asked for, on the AVX-512 panels,
/// and usable in this process.
fn amx_tiles(plan: &MatmulPlan) -> bool {
    #[cfg(target_arch = "x86_64")]
    return plan.amx && plan.isa == Isa::Avx512Vnni && panel::amx::usable();
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = plan;
        false
    }
}

fn is_float(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

/// How far ahead of its reads a kernel on repacked panels prefetches: without it a call of 2-8
/// tokens waited on memory between its dot products and cost up to 1.8x a one-token call
/// (`cargo bench --bench matmul -- verify`, Zen 4); 4-16 KiB brought 8 tokens within
/// 1.05-1.2x, and 8 KiB is well inside L2 on every CPU with AVX-512.
const REPACKED_AHEAD: usize = 8 << 10;

/// One matrix of a call, as the threads see it.
struct Part<'a> {
    w: &'a WeightMatrix<'a>,
    row_bytes: usize,
    ks: KernelSet,
    row_tile: usize,
    chunk: usize,
    /// Index of this matrix's first chunk in the call's chunk numbering.
    first_chunk: usize,
    /// Quantized weights on the f32 path: rows are dequantized into the thread's buffer.
    dequant: bool,
    /// Rows go through 16-row panels ([`panel`]).
    panel: bool,
    /// The panels, packed once: read as they lie.
    repacked: Option<&'a RepackedMatrix>,
    y: SharedMut<'a, f32>,
}

/// Everything the threads of one call share.
struct Job<'a> {
    parts: [Option<Part<'a>>; MAX_MATRICES],
    x: &'a [f32],
    cols: usize,
    n_tokens: usize,
    token_tile: usize,
    /// The plan's ISA: which panel kernels run.
    isa: Isa,
    /// Panels run their integer dots on AMX tiles.
    amx: bool,
    acts: &'a QuantActs,
    /// `per_thread` f32s per job index, for dequantized rows.
    rows_f32: SharedMut<'a, f32>,
    per_thread: usize,
    /// `panel_bytes` per job index, for panels.
    panels: SharedMut<'a, u8>,
    panel_bytes: usize,
}

impl Job<'_> {
    /// Chunk `c` of the call's numbering, on job index `tid`.
    fn chunk(&self, tid: usize, c: usize) {
        let part = self
            .parts
            .iter()
            .flatten()
            .take_while(|p| p.first_chunk <= c)
            .last();
        if let Some(p) = part {
            let begin = (c - p.first_chunk) * p.chunk;
            self.rows(p, tid, begin, (begin + p.chunk).min(p.w.rows));
        }
    }

    /// Rows `begin..end` of `p` for every token, on job index `tid`.
    ///
    /// A tile of `nr` rows takes one row from each of `nr` equal stretches of the range
    /// (rows `i, i + len, i + 2 len, ...`), so each of its rows streams through memory in
    /// order as `i` advances: hardware prefetchers follow that, and not `nr` adjacent rows
    /// read side by side.
    fn rows(&self, p: &Part<'_>, tid: usize, begin: usize, end: usize) {
        if let Some(rp) = p.repacked {
            return self.repacked_rows(p, rp, begin, end);
        }
        if p.panel {
            return self.panel_rows(p, tid, begin, end);
        }
        let tt = self.token_tile.min(p.ks.max_tokens()).min(self.n_tokens);
        let mut r = begin;
        while r < end {
            let nr = p.ks.best_fit(p.row_tile.min(end - r), tt).rows;
            let len = (end - r) / nr;
            for i in 0..len {
                self.tile_rows(p, tid, r + i, nr, len, tt);
            }
            r += nr * len;
        }
    }

    /// Rows `begin..end` of `p` for every token, 16 rows at a time through a panel.
    fn panel_rows(&self, p: &Part<'_>, tid: usize, begin: usize, end: usize) {
        // SAFETY: job index `tid` runs on one thread at a time and owns this scratch.
        let buf = unsafe { self.panels.slice(tid * self.panel_bytes, self.panel_bytes) };
        let pan = panel::Panel::new(buf, self.cols);
        let base = p.w.data.as_ptr();
        let mut r = begin;
        while r < end {
            let valid = (end - r).min(panel::ROWS);
            // Past the matrix's last row the panel repeats it; those outputs are not stored.
            let rows: [*const u8; panel::ROWS] = std::array::from_fn(|i| {
                // SAFETY: row r + min(i, valid - 1) < rows: inside the checked weight data.
                unsafe { base.add((r + i.min(valid - 1)) * p.row_bytes) }
            });
            let next = (r + valid)..(r + valid + panel::ROWS).min(end);
            panel::prefetch(&p.w.data[next.start * p.row_bytes..next.end * p.row_bytes]);
            // SAFETY: the rows are whole rows of a supported type (checked when the part was
            // made, with the ISA), packed here into this thread's panel; this thread alone
            // owns rows r..r + valid of the output.
            unsafe {
                panel::pack(self.isa, p.w.ty, &rows, &pan);
                self.panel_gemm(p, &pan, r, valid);
            }
            r += valid;
        }
    }

    /// Rows `begin..end` (`begin` a multiple of 16) of `p` for every token, from its panels
    /// packed once. The panels of a chunk lie end to end: each panel's kernel prefetches the
    /// stream [`REPACKED_AHEAD`] bytes ahead (the last panel of the chunk does not: what
    /// follows is another thread's), and the next panel's scales before it starts.
    fn repacked_rows(&self, p: &Part<'_>, rp: &RepackedMatrix, begin: usize, end: usize) {
        let mut r = begin;
        panel::prefetch(rp.scales(r / panel::ROWS));
        while r < end {
            let valid = (end - r).min(panel::ROWS);
            let pan = rp.panel(r / panel::ROWS);
            let pan = if r + valid < end {
                panel::prefetch(rp.scales(r / panel::ROWS + 1));
                pan.streamed(REPACKED_AHEAD)
            } else {
                pan
            };
            // SAFETY: the panel was packed for this ISA from this matrix's rows (type and
            // shape checked when the part was made); this thread alone owns rows r..r + valid
            // of the output.
            unsafe { self.panel_gemm(p, &pan, r, valid) };
            r += valid;
        }
    }

    /// Every token's outputs of rows `r..r + valid` of `p` from `pan`.
    ///
    /// # Safety
    /// `pan` holds those rows of `p`, packed for the call's ISA; this thread alone owns them in
    /// the output.
    unsafe fn panel_gemm(&self, p: &Part<'_>, pan: &panel::Panel, r: usize, valid: usize) {
        let out = panel::Out {
            y: p.y.as_ptr(),
            stride: p.w.rows,
            row0: r,
            valid,
        };
        let tt = self.token_tile.clamp(1, panel::MAX_TOKENS);
        let tokens = 0..self.n_tokens;
        // SAFETY: the caller's contract; the activations hold every token in the type's format
        // (prepared for the call's kernel set); `amx` only where the tiles were checked.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            if self.amx {
                return panel::gemm_amx(p.w.ty, pan, self.acts, tokens, &out);
            }
            panel::gemm(self.isa, p.w.ty, pan, self.acts, tokens, tt, &out)
        };
    }

    /// Rows `first + k * step` for `k in 0..nr`, every token.
    fn tile_rows(&self, p: &Part<'_>, tid: usize, first: usize, nr: usize, step: usize, tt: usize) {
        let cols = self.cols;
        let (wp, w_stride, row_bytes) = if p.dequant {
            // SAFETY: job index `tid` runs on one thread at a time and owns this part.
            let f = unsafe { self.rows_f32.slice(tid * self.per_thread, nr * cols) };
            for (k, out) in f.chunks_exact_mut(cols).enumerate() {
                let row = &p.w.data[(first + k * step) * p.row_bytes..][..p.row_bytes];
                // Cannot fail: the matrix was checked before the threads started.
                let _ = dequantize_row(p.w.ty, row, out);
            }
            (f.as_ptr() as *const u8, cols * 4, cols * 4)
        } else {
            let wp = p.w.data[first * p.row_bytes..].as_ptr();
            (wp, step * p.row_bytes, p.row_bytes)
        };
        let mut t = 0;
        while t < self.n_tokens {
            let e = p.ks.with_rows(nr, tt.min(self.n_tokens - t));
            let tile = Tile {
                w: wp,
                w_stride,
                row_bytes,
                cols,
                r0: first,
                y_step: step,
                t0: t,
                acts: self.acts,
                x: self.x,
                y: p.y.as_ptr(),
                y_stride: p.w.rows,
            };
            // SAFETY: rows first + k * step (k < nr) and tokens t..t + e.tokens exist (the
            // caller stays inside the matrix; with_rows stays inside the batch); this thread
            // alone owns those rows' outputs; the activations were prepared in the set's
            // format; the ISA was checked.
            unsafe { (e.f)(&tile) };
            t += e.tokens;
        }
    }
}
