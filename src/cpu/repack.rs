//! Weights laid out for the kernels once: a matrix repacked into the 16-row panels the panel
//! kernels read ([`super::dot::panel`]), kept in anonymous memory for the whole run.
//!
//! The panel path repacks 16 rows per call, which a prompt pays back over its tokens but a
//! decode step or a speculative verification pass of 2-8 tokens does not: there the repack
//! costs as much as the products. Packed once, every call reads the panels as they lie (one
//! sequential stream per thread, lane `r` holding row `r`), at any token count, 1 included.
//!
//! Only where the panel is about the size of the GGUF rows, on AVX-512 VNNI: Q8_0, whose panel
//! (16 rows x 32 quants, then the 16 rows' f16 scales) takes the rows' 544 bytes; Q4_K, two
//! quants a byte with the rows' scale bits (296 bytes where the rows take 288); Q6_K, four and
//! two bits a quant with the rows' scales (their 420 bytes). The other types' per-call panels
//! hold a byte per weight (twice the nibble types' rows): they keep reading in place, as does
//! Q5_K, whose compact panels decoded slower than its tiles (`dot/panel/avx512_repacked.rs`).
//! The caller releases the file's pages of a repacked matrix ([`release_pages`]), so a run
//! holds the repacked copy instead of the mapped rows, not both.

use super::dot::panel::{self, Panel, ROWS};
use super::error::KernelError;
use super::features::Isa;
use super::pool::ThreadPool;
use super::shared::SharedMut;
use crate::quant::GgmlType;

/// Panels one thread packs at a time: their rows (a megabyte or more) are released together,
/// so only the pages at the ends of each range are shared with another range.
const PANELS_PER_TAKE: usize = 64;

/// One cache line: the unit the repacked buffer is allocated in, so every panel is 64-byte
/// aligned as the kernels' aligned loads require.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Bytes of one panel's block of 32 columns when `ty` is repacked for `isa`, or `None` where
/// it is not (no panel kernels, or a panel much larger than the rows).
pub fn panel_block_bytes(ty: GgmlType, isa: Isa) -> Option<usize> {
    match (ty, isa) {
        // 16 rows x 32 unsigned quants, then the 16 rows' scales as f16.
        (GgmlType::Q8_0, Isa::Avx512Vnni) if panel::supports(ty, isa) => Some(512 + 32),
        // Two quants a byte, the rows' scale bits ([`Panel::repacked_q4k`]).
        (GgmlType::Q4_K, Isa::Avx512Vnni) if panel::supports(ty, isa) => {
            Some(panel::Q4K_REPACKED_BLOCK)
        }
        // Four bits and two bits a quant, the rows' scales ([`Panel::repacked_q6k`]).
        (GgmlType::Q6_K, Isa::Avx512Vnni) if panel::supports(ty, isa) => {
            Some(panel::Q6K_REPACKED_BLOCK)
        }
        _ => None,
    }
}

/// Whether a `rows` x `cols` matrix of `ty` can be repacked for `isa`.
pub fn repackable(ty: GgmlType, rows: usize, cols: usize, isa: Isa) -> bool {
    panel_block_bytes(ty, isa).is_some() && rows > 0 && cols >= 32
}

/// The rows a [`RepackedMatrix`] is made from: `rows` rows of `row_bytes` in `data`.
#[derive(Clone, Copy)]
pub(super) struct Source<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub row_bytes: usize,
    pub data: &'a [u8],
}

/// A weight matrix repacked into panels: panel `p` holds rows `16p..16p + 16` (the last one
/// repeats the matrix's last row where `rows` is not a multiple of 16; those outputs are
/// never stored).
pub struct RepackedMatrix {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    /// The ISA whose panel kernels the layout is for.
    pub isa: Isa,
    lines: Vec<Line>,
    /// Bytes of one panel (a multiple of 64).
    panel_bytes: usize,
}

impl std::fmt::Debug for RepackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RepackedMatrix({} [{}, {}], {})",
            self.ty, self.rows, self.cols, self.isa
        )
    }
}

impl RepackedMatrix {
    /// Repacks `w` (rows of `row_bytes`, checked by the caller: `WeightMatrix::repack`) for
    /// `isa` on `pool`'s threads. With `release`, the pages of `w` (a read-only file map) are
    /// released as their panels are done, so the copy never sits beside the whole mapped
    /// matrix ([`release_pages`]).
    pub(super) fn new(
        pool: &ThreadPool,
        isa: Isa,
        w: Source<'_>,
        release: bool,
    ) -> Result<Self, KernelError> {
        let row_bytes = w.row_bytes;
        if !super::features::cpu_features().supports(isa) {
            return Err(KernelError::IsaUnavailable(isa));
        }
        let per_block = panel_block_bytes(w.ty, isa)
            .filter(|_| repackable(w.ty, w.rows, w.cols, isa))
            .ok_or(KernelError::UnsupportedType(w.ty))?;
        let blocks = w.cols / 32;
        // Whole lines, so that every panel starts 64-byte aligned (a line of padding after
        // the scales where `blocks` is odd).
        let panel_bytes = (blocks * per_block).next_multiple_of(64);
        let panels = w.rows.div_ceil(ROWS);
        let n_lines = panels
            .checked_mul(panel_bytes)
            .ok_or(KernelError::Overflow)?
            / 64;
        let mut lines = Vec::with_capacity(n_lines);
        huge_pages(lines.spare_capacity_mut());
        lines.resize(n_lines, Line([0; 64]));
        let shared = SharedMut::new(&mut lines[..]);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let data = w.data;
        pool.run(pool.n_threads().min(panels), |_| loop {
            let first = next.fetch_add(PANELS_PER_TAKE, std::sync::atomic::Ordering::Relaxed);
            if first >= panels {
                break;
            }
            let end = (first + PANELS_PER_TAKE).min(panels);
            for p in first..end {
                let r0 = p * ROWS;
                let valid = (w.rows - r0).min(ROWS);
                let rows: [*const u8; ROWS] = std::array::from_fn(|i| {
                    // SAFETY: row r0 + min(i, valid - 1) < rows: inside the checked weight data.
                    unsafe { data.as_ptr().add((r0 + i.min(valid - 1)) * row_bytes) }
                });
                // SAFETY: panel `p` is this thread's alone (the counter hands each range out
                // once).
                let dst = unsafe { shared.slice(p * panel_bytes / 64, panel_bytes / 64) };
                let view = panel_view(w.ty, dst.as_ptr() as *const u8, blocks);
                // SAFETY: whole rows of a type with panel kernels on `isa` (checked above),
                // which the CPU has; the view spans `panel_bytes` of this panel's lines.
                unsafe { panel::pack(isa, w.ty, &rows, &view) };
            }
            if release {
                let rows = first * ROWS..(end * ROWS).min(w.rows);
                release_pages(&data[rows.start * row_bytes..rows.end * row_bytes]);
            }
        });
        Ok(RepackedMatrix {
            ty: w.ty,
            rows: w.rows,
            cols: w.cols,
            isa,
            lines,
            panel_bytes,
        })
    }

    /// The panel holding rows `16p..16p + 16`, for the kernels to read.
    pub fn panel(&self, p: usize) -> Panel {
        let lines = &self.lines[p * self.panel_bytes / 64..(p + 1) * self.panel_bytes / 64];
        panel_view(self.ty, lines.as_ptr() as *const u8, self.cols / 32)
    }

    /// The row scales of panel `p` (the lines after its quants), to prefetch: the
    /// kernel reads them beside the quants, a second stream that the hardware prefetchers
    /// pick up too late in each panel (the profile put a third of the decode kernel's time on
    /// the first use of each block's scales).
    pub fn scales(&self, p: usize) -> &[u8] {
        let lines = &self.lines[p * self.panel_bytes / 64..(p + 1) * self.panel_bytes / 64];
        let tail = &lines[self.panel(p).scales_offset() / 64..];
        // SAFETY: `Line` is 64 plain bytes; the view covers exactly `tail`.
        unsafe { std::slice::from_raw_parts(tail.as_ptr() as *const u8, tail.len() * 64) }
    }

    /// Bytes of the repacked copy.
    pub fn bytes(&self) -> usize {
        self.lines.len() * 64
    }
}

/// A panel of `blocks` blocks of `ty` laid out at `base`: the quants, then the scales.
fn panel_view(ty: GgmlType, base: *const u8, blocks: usize) -> Panel {
    match ty {
        GgmlType::Q4_K => Panel::repacked_q4k(base as *mut u8, blocks),
        GgmlType::Q6_K => Panel::repacked_q6k(base as *mut u8, blocks),
        _ => Panel::repacked(base as *mut u8, blocks),
    }
}

/// Asks for transparent huge pages under `buf` (not yet touched) where the system gives them
/// on request: a decode step streams every panel once, and 2 MiB pages spare it a page walk per
/// 4 KiB (the file's map, in the page cache, has small pages).
fn huge_pages<T>(buf: &mut [std::mem::MaybeUninit<T>]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let (start, len) = (buf.as_ptr() as usize, std::mem::size_of_val(buf));
        let first = start.next_multiple_of(HUGE);
        let end = (start + len) / HUGE * HUGE;
        if end > first {
            // SAFETY: [first, end) lies inside `buf`, memory this process owns; the advice
            // changes how it is backed, never its contents.
            unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

/// The most a read fault maps at once in a file map: Linux maps the page cache's pages around
/// the faulting one too (64 KiB "fault-around", or the whole large folio holding it, up to 2
/// MiB), aligned to the span. A read of one row of a 1 MiB file mapped all of it here.
const READ_SPAN: usize = 2 << 20;

/// Gives back the pages a read of `row` brought into `table`'s map (a weight in the model
/// file's read-only map, `row` inside it): the aligned spans holding the row, as far as they
/// lie inside `table` (a later read of a neighbour faults its pages in again, a minor fault).
/// The embedding lookup of a tied LM head whose copy was repacked reads a row per token;
/// without this, the spans around those rows came back into the map and, over a few thousand
/// tokens, half the table with them.
pub fn release_read(row: &[u8], table: &[u8]) {
    let base = table.as_ptr() as usize;
    let start = (row.as_ptr() as usize) / READ_SPAN * READ_SPAN;
    let end = (row.as_ptr() as usize + row.len()).next_multiple_of(READ_SPAN);
    let (lo, hi) = (start.max(base) - base, end.min(base + table.len()) - base);
    if lo < hi {
        release_pages(&table[lo..hi]);
    }
}

/// Gives the pages of `bytes` (a weight in the model file's map) back to the kernel: they are
/// read again from the page cache only if something touches them (the embedding rows of a
/// tied LM head, for one). Only whole pages inside the range are released.
pub fn release_pages(bytes: &[u8]) {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => return,
        };
        let start = (bytes.as_ptr() as usize).next_multiple_of(page);
        let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
        if end > start {
            // SAFETY: [start, end) lies inside `bytes`, a read-only file mapping: MADV_DONTNEED
            // drops our mapping's pages, and a later read faults them in again with the same
            // contents (file-backed, never written), so no reference into it sees a change.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
    #[cfg(not(unix))]
    let _ = bytes;
}
