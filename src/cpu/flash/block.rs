//! What the drivers and every ISA's kernels of the tiled attention share: block and segment
//! sizes, a KV head's cache, the softmax state, one thread's scratch and one block of keys.

/// Keys per online-softmax step.
pub const KEY_BLOCK: usize = 32;

/// Positions per independently computed softmax segment (a multiple of [`KEY_BLOCK`]).
pub const SEGMENT: usize = 512;

const _: () = assert!(SEGMENT.is_multiple_of(KEY_BLOCK) && KEY_BLOCK.is_multiple_of(16));

/// Rows per register block of the portable `P·V` kernel (they share each value loaded).
pub(super) const PV_ROWS: usize = 4;

/// The cached keys and values of one KV head, positions `0..len`, `head_dim` f16 bits each.
#[derive(Clone, Copy)]
pub struct HeadCache<'a> {
    pub keys: &'a [u16],
    pub values: &'a [u16],
    pub head_dim: usize,
}

/// Softmax state of query rows over some positions: per row the largest score `m`, the sum
/// `l` of `exp(score - m)` and the unnormalised output `o` (`head_dim` per row).
pub struct Partial<'a> {
    pub m: &'a mut [f32],
    pub l: &'a mut [f32],
    pub o: &'a mut [f32],
}

/// Buffers of one thread's attention calls.
#[derive(Debug, Default)]
pub struct FlashScratch {
    /// The portable path's current block of keys and values widened to f32, `[KEY_BLOCK,
    /// head_dim]`.
    pub(super) keys: Vec<f32>,
    pub(super) values: Vec<f32>,
    /// Per row: the block's probabilities `[KEY_BLOCK]` and the rescale of what came before.
    pub(super) probs: Vec<f32>,
    pub(super) alpha: Vec<f32>,
    /// A later segment's state before it is merged (the first is computed in place).
    pub(super) part: PartialBuf,
    /// The running state of [`attend_rows`].
    pub(super) total: PartialBuf,
}

/// The storage of a [`Partial`].
#[derive(Debug, Default)]
pub(super) struct PartialBuf {
    m: Vec<f32>,
    l: Vec<f32>,
    o: Vec<f32>,
}

impl PartialBuf {
    /// The state of `rows` rows of `hd` values (zeroed; `segment_partial` initialises it).
    pub(super) fn rows(&mut self, rows: usize, hd: usize) -> Partial<'_> {
        resize(&mut self.m, rows);
        resize(&mut self.l, rows);
        resize(&mut self.o, rows * hd);
        Partial {
            m: &mut self.m,
            l: &mut self.l,
            o: &mut self.o,
        }
    }
}

/// One block of keys: positions `start..start + valid`, seen by the rows from `first` on.
pub(crate) struct KeyBlock {
    pub(super) start: usize,
    pub(super) valid: usize,
    pub(super) first: usize,
}

impl KeyBlock {
    /// How many of the block's keys a row whose last position is `last` sees (it sees one).
    pub(super) fn visible(&self, last: usize) -> usize {
        (last + 1 - self.start).min(KEY_BLOCK)
    }
}

/// `v` as `n` zeros.
pub(super) fn resize(v: &mut Vec<f32>, n: usize) {
    v.clear();
    v.resize(n, 0.0);
}
