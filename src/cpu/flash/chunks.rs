//! What the SIMD kernels of the tiled attention share: the f16 block read in place, chunks of
//! query rows, and the loop of one block over the chunks. Each instruction set supplies the
//! three steps of a chunk ([`ChunkKernels`]).

use super::block::{FlashScratch, HeadCache, KeyBlock, Partial, KEY_BLOCK};

/// Rows per chunk: their accumulators fill the vector registers.
pub(super) const ROWS: usize = 4;

/// A chunk of query rows: their vectors, how many of the block's keys each sees, and their
/// probabilities (`[n, KEY_BLOCK]`).
pub(super) struct Rows<'a> {
    pub q: &'a [f32],
    pub visible: [usize; ROWS],
    pub probs: &'a mut [f32],
}

/// One block of the f16 cache as it lies: `valid` keys and values of `hd` each, and how far
/// ahead (in elements) to prefetch the next block, 0 for not at all.
pub(super) struct InPlace<'a> {
    pub keys: &'a [u16],
    pub values: &'a [u16],
    pub hd: usize,
    pub valid: usize,
    pub ahead: usize,
}

impl InPlace<'_> {
    /// Hints that the line `ahead` elements past `at` will be read soon.
    #[inline(always)]
    pub(super) fn prefetch(&self, at: *const u16) {
        #[cfg(target_arch = "x86_64")]
        if self.ahead != 0 {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: a prefetch of any address is harmless (the address may lie past the
            // cache near its end: `wrapping_add` never promises otherwise).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(self.ahead) as *const i8) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = at;
    }
}

/// The steps of one chunk of `n` rows (1 to [`ROWS`]) on one instruction set.
///
/// # Safety
/// Every method needs the CPU features its kernels are compiled for.
pub(super) trait ChunkKernels {
    /// The scaled scores of the chunk's rows against the block's keys into `rows.probs`, a
    /// row's keys from its `visible` on masked (-inf).
    unsafe fn scores(b: &InPlace<'_>, n: usize, rows: &mut Rows<'_>, scale: f32);
    /// One online-softmax step: the scores become `exp(score - m_new)`; `m` and `l` are
    /// updated; returns `exp(m_old - m_new)`, the rescale of what came before.
    unsafe fn softmax_step(p: &mut [f32; KEY_BLOCK], m: &mut f32, l: &mut f32) -> f32;
    /// `o[r] = o[r] * alpha[r] + sum_j p[r][j] * values[j]` for the chunk's rows.
    unsafe fn pv(b: &InPlace<'_>, n: usize, p: &[f32], alpha: &[f32], o: &mut [f32]);
}

/// One block against the rows `first..`, [`ROWS`] at a time: each f16 key and value is widened
/// in registers once per chunk of rows (no scratch copy of the block), and the next block of
/// the head is prefetched while the first chunk runs.
///
/// # Safety
/// The CPU must have `K`'s features.
pub(super) unsafe fn attend_block<K: ChunkKernels>(
    kv: HeadCache<'_>,
    q: &[f32],
    last: &[usize],
    block: &KeyBlock,
    scale: f32,
    s: &mut FlashScratch,
    part: &mut Partial<'_>,
) {
    let hd = kv.head_dim;
    let span = block.start * hd..(block.start + block.valid) * hd;
    let (keys, values) = (&kv.keys[span.clone()], &kv.values[span]);
    let next_in_cache = (block.start + KEY_BLOCK) * hd < kv.keys.len();
    let mut ahead = if next_in_cache { KEY_BLOCK * hd } else { 0 };
    let mut r = block.first;
    while r < last.len() {
        let n = ROWS.min(last.len() - r);
        let visible: [usize; ROWS] =
            std::array::from_fn(|i| last.get(r + i).map_or(0, |&p| block.visible(p)));
        let mut rows = Rows {
            q: &q[r * hd..(r + n) * hd],
            visible,
            probs: &mut s.probs[r * KEY_BLOCK..(r + n) * KEY_BLOCK],
        };
        let b = InPlace {
            keys,
            values,
            hd,
            valid: block.valid,
            ahead,
        };
        K::scores(&b, n, &mut rows, scale);
        for i in 0..n {
            let probs: &mut [f32; KEY_BLOCK] = (&mut rows.probs[i * KEY_BLOCK..][..KEY_BLOCK])
                .try_into()
                .expect("KEY_BLOCK probabilities");
            s.alpha[r + i] = K::softmax_step(probs, &mut part.m[r + i], &mut part.l[r + i]);
        }
        let (p, alpha) = (&*rows.probs, &s.alpha[r..r + n]);
        K::pv(&b, n, p, alpha, &mut part.o[r * hd..(r + n) * hd]);
        ahead = 0;
        r += n;
    }
}
