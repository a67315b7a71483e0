//! The repacked matrices of one engine ([`super::repack`]), shared by its graphs, with what
//! repacking cost the run.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::features::Isa;
use super::matmul::WeightMatrix;
use super::pool::ThreadPool;
use super::repack::{release_pages, RepackedMatrix};

/// The repacked matrices of one engine, shared by its graphs (the trunk and a draft head read
/// the same LM head: one copy), with what repacking cost.
#[derive(Default)]
pub struct RepackStore {
    /// By the address and length of the matrix's bytes in the map.
    held: Mutex<HashMap<(usize, usize), Arc<RepackedMatrix>>>,
    released: Mutex<HashSet<(usize, usize)>>,
    totals: Mutex<RepackTotals>,
}

/// What repacking cost a run: time and bytes (the copies it holds) and the mapped bytes it gave
/// back.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RepackTotals {
    pub matrices: usize,
    pub bytes: usize,
    /// The GGUF bytes of those matrices.
    pub source_bytes: usize,
    pub seconds: f64,
    /// Mapped bytes released after repacking ([`release_pages`]).
    pub released_bytes: usize,
}

fn key(w: &WeightMatrix<'_>) -> (usize, usize) {
    (w.data.as_ptr() as usize, w.data.len())
}

impl RepackStore {
    /// Every matrix of `ws` repacked for `isa` (held ones reused), or `None` unless all of
    /// them can be. With `file_backed` (the matrices are a file's read-only map) their pages
    /// are released as they are packed: a matrix read in place after all faults them in again.
    pub fn pack_all(
        &self,
        pool: &ThreadPool,
        isa: Isa,
        ws: &[WeightMatrix<'_>],
        file_backed: bool,
    ) -> Option<Vec<Arc<RepackedMatrix>>> {
        if ws.is_empty() || !ws.iter().all(|w| w.repackable(isa)) {
            return None;
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(ws.len());
        for w in ws {
            if let Some(rp) = held.get(&key(w)).filter(|rp| rp.isa == isa) {
                out.push(rp.clone());
                continue;
            }
            let start = std::time::Instant::now();
            let rp = Arc::new(w.repack(pool, isa, file_backed).ok()?);
            let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
            totals.matrices += 1;
            totals.bytes += rp.bytes();
            totals.source_bytes += w.data.len();
            totals.seconds += start.elapsed().as_secs_f64();
            held.insert(key(w), rp.clone());
            out.push(rp);
        }
        Some(out)
    }

    /// Drops the copies of `ws` (the kernel search chose to read them in place).
    pub fn forget(&self, ws: &[WeightMatrix<'_>]) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        for w in ws {
            if let Some(rp) = held.remove(&key(w)) {
                totals.matrices -= 1;
                totals.bytes -= rp.bytes();
                totals.source_bytes -= w.data.len();
            }
        }
    }

    /// Releases the mapped pages of `ws`, read from their copies from now on (again: the kernel
    /// search's timings of in-place plans read them after the repack had released them).
    pub fn release(&self, ws: &[WeightMatrix<'_>]) {
        let mut released = self.released.lock().unwrap_or_else(|e| e.into_inner());
        let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        for w in ws {
            release_pages(w.data);
            if released.insert(key(w)) {
                totals.released_bytes += w.data.len();
            }
        }
    }

    pub fn totals(&self) -> RepackTotals {
        *self.totals.lock().unwrap_or_else(|e| e.into_inner())
    }
}
