//! Causal grouped-query attention over a KV cache that the op owns.
//!
//! Stock luminal can only grow a cache by concatenating tensors and copying them back after each
//! step, and its broadcast attention costs tens of seconds per token at 1k context. This op keeps
//! one layer's keys and values in buffers sized for the whole context (zeroed pages the OS commits
//! only when written), appends the step's rows at their positions and attends in place, so prefill
//! and decode run the same compiled graph.
//!
//! Numerics follow llama.cpp's CPU attention with its default f16 KV cache (non-flash path): keys
//! and values are stored rounded to f16, the query is rounded to f16 for the `K·q` product (ggml
//! converts the f32 operand of an f16 matmul), softmax is ggml's, and the probabilities are rounded
//! to f16 for the `V·p` product; every sum runs in ggml's order (`ggml_math`). Without the f16
//! roundings the logits of a random-weight model drift ~0.04 from llama.cpp's. The cache holds
//! f16 bits; each call widens the run of positions it reads to f32 once (exactly).

use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use luminal::op::{InputTensor, Operator};
use luminal::prelude::*;
use thiserror::Error;

use super::cost::{self, Cost, OpCost};
use super::input::{contiguous, f32_data};
use crate::cpu::flash::HeadCache;
use crate::cpu::ggml_math::{self, LANES};
use crate::quant::blocks::round_f16;

/// Attention geometry of one layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Positions the cache can hold.
    pub max_context: usize,
}

impl AttentionShape {
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }
    /// Query heads sharing one KV head.
    pub fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// Causal attention of `seq` tokens at positions `start..start + seq` over this
    /// cache: the cache entries read (positions `0..start + seq`, keys and values, f16, once
    /// each) and the arithmetic (per query head and attended position: `q·k` and `p·v` over
    /// `head_dim`, scale, exp, softmax sum and normalise).
    pub fn cost(&self, start: u64, seq: u64) -> Cost {
        let (heads, hd, kv_dim) = (
            self.heads as u64,
            self.head_dim as u64,
            self.kv_dim() as u64,
        );
        // Σ over the tokens of the positions each attends: (start + 1) + ... + (start + seq).
        let attended = seq * start + seq * (seq + 1) / 2;
        Cost {
            kv_bytes: (start + seq) * kv_dim * 2 * 2,
            flops: heads * attended * (4 * hd + 4),
            ..Cost::default()
        }
    }
}

/// `len` f16 values from `bits[at..]` as f32 in `out` (exact; SIMD where the CPU has F16C).
fn widen(bits: &[u16], at: usize, len: usize, out: &mut Vec<f32>) {
    out.resize(len, 0.0);
    let halves: &[f16] = bits[at..at + len].reinterpret_cast();
    halves.convert_to_f32_slice(out);
}

/// One layer's keys and values, `[kv_head, position, head_dim]`, stored as f16 (llama.cpp's
/// default cache type, and half the memory traffic of f32). Kept as raw bits: a zeroed `u16`
/// allocation comes from fresh pages the OS maps on first write, so a cache sized for the
/// whole context only costs what is used.
#[derive(Debug, Clone)]
pub struct KvCache {
    shape: AttentionShape,
    keys: Vec<u16>,
    values: Vec<u16>,
}

/// A KV cache that cannot be allocated (the context is larger than the memory there is).
#[derive(Debug, Error, PartialEq)]
#[error(
    "cannot allocate the KV cache: {positions} positions need {gib:.1} GiB ({bytes} bytes for \
     each of {buffers} buffers) and the system refused; lower --ctx-size"
)]
pub struct KvCacheError {
    pub positions: usize,
    pub bytes: u128,
    pub buffers: usize,
    gib: f64,
}

impl KvCacheError {
    /// Keys and values of `layers` layers of `shape`.
    pub fn new(shape: &AttentionShape, layers: usize) -> Self {
        let bytes = shape.max_context as u128 * shape.kv_dim() as u128 * 2;
        let buffers = 2 * layers;
        KvCacheError {
            positions: shape.max_context,
            bytes,
            buffers,
            gib: (bytes * buffers as u128) as f64 / (1u64 << 30) as f64,
        }
    }
}

/// `n` zeroed f16 bit patterns, or `None` when the allocator refuses (or `n` overflows).
/// `alloc_zeroed` is the fallible form of `vec![0; n]`: like it, it takes fresh pages that the
/// OS commits only when written (`Vec::try_reserve` plus a fill would touch every page).
fn zeroed_bits(n: usize) -> Option<Vec<u16>> {
    if n == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u16>(n).ok()?;
    // SAFETY: the layout has a non-zero size; a non-null result is an allocation of the global
    // allocator with the layout of `n` u16s, which a Vec of capacity `n` owns and frees the
    // same way; zero bytes are valid u16s.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout) as *mut u16;
        (!p.is_null()).then(|| Vec::from_raw_parts(p, n, n))
    }
}

impl KvCache {
    /// A cache for `shape`, zeroed; an error (for `layers` layers, the message's total) when
    /// memory refuses it: a context far beyond memory must end with a message, not an abort.
    pub fn new(shape: AttentionShape, layers: usize) -> Result<Self, KvCacheError> {
        let n = shape.max_context.checked_mul(shape.kv_dim());
        let buffer = || n.and_then(zeroed_bits);
        let fail = || KvCacheError::new(&shape, layers);
        Ok(Self {
            shape,
            keys: buffer().ok_or_else(fail)?,
            values: buffer().ok_or_else(fail)?,
        })
    }

    pub fn shape(&self) -> &AttentionShape {
        &self.shape
    }

    /// Moves the cache out (to the op that replaces this one), leaving an empty one.
    pub fn take(&mut self) -> KvCache {
        let empty = KvCache {
            shape: self.shape,
            keys: Vec::new(),
            values: Vec::new(),
        };
        std::mem::replace(self, empty)
    }

    /// Stores keys and values `[seq, kv_dim]` at positions `start..start + seq`, rounded to
    /// the nearest f16 (ties to even).
    pub fn append(&mut self, start: usize, k: &[f32], v: &[f32]) {
        let hd = self.shape.head_dim;
        for (i, (k_row, v_row)) in k.chunks_exact(hd).zip(v.chunks_exact(hd)).enumerate() {
            let (pos, kv_head) = (start + i / self.shape.kv_heads, i % self.shape.kv_heads);
            let at = self.offset(pos, kv_head);
            let keys: &mut [f16] = self.keys[at..at + hd].reinterpret_cast_mut();
            keys.convert_from_f32_slice(k_row);
            let values: &mut [f16] = self.values[at..at + hd].reinterpret_cast_mut();
            values.convert_from_f32_slice(v_row);
        }
    }

    /// Where head `kv_head` at position `pos` starts. Heads are outermost (`[kv_head, position,
    /// head_dim]`), so attention streams through one contiguous run of memory per head.
    #[inline(always)]
    fn offset(&self, pos: usize, kv_head: usize) -> usize {
        (kv_head * self.shape.max_context + pos) * self.shape.head_dim
    }

    /// The stored keys and values of head `kv_head` at positions `0..n`, as they lie.
    pub fn head(&self, kv_head: usize, n: usize) -> HeadCache<'_> {
        let run = self.offset(0, kv_head)..self.offset(n, kv_head);
        HeadCache {
            keys: &self.keys[run.clone()],
            values: &self.values[run],
            head_dim: self.shape.head_dim,
        }
    }

    /// Keys of head `kv_head` at positions `0..n`, widened to f32 into `out` (`[n, head_dim]`).
    pub fn keys_f32(&self, kv_head: usize, n: usize, out: &mut Vec<f32>) {
        widen(
            &self.keys,
            self.offset(0, kv_head),
            n * self.shape.head_dim,
            out,
        );
    }

    /// Values of head `kv_head` at positions `0..n`, widened to f32 into `out`.
    pub fn values_f32(&self, kv_head: usize, n: usize, out: &mut Vec<f32>) {
        widen(
            &self.values,
            self.offset(0, kv_head),
            n * self.shape.head_dim,
            out,
        );
    }

    /// Attention of one query head `q` at absolute position `pos` over KV head `kv_head`, causal:
    /// keys `0..=pos`; the result goes to `out` (`head_dim` long). `batch` says whether the step
    /// is a batch of tokens, which llama.cpp computes with tinyBLAS rather than `ggml_vec_dot_f16`
    /// (another summation order; see `ggml_math`). Call from a function compiled with FMA (`ggml_math::fma_dispatch!`).
    #[inline(always)]
    pub fn attend(
        &self,
        q: &[f32],
        pos: usize,
        kv_head: usize,
        batch: bool,
        scratch: &mut AttendScratch,
        out: &mut [f32],
    ) {
        let hd = self.shape.head_dim;
        let scale = 1.0 / (hd as f32).sqrt();
        let AttendScratch {
            q16,
            scores,
            lanes,
            sums,
            keys,
            values,
        } = scratch;
        self.keys_f32(kv_head, pos + 1, keys);
        self.values_f32(kv_head, pos + 1, values);
        q16.clear();
        // Plain loops, not closures: a closure is compiled apart from this FMA-enabled body.
        for x in q {
            q16.push(round_f16(*x));
        }
        scores.clear();
        for k in keys.chunks_exact(hd) {
            let kq = if batch {
                let mut acc = [0.0; LANES];
                ggml_math::tinyblas_feed(&mut acc, k, q16);
                ggml_math::reduce16(&acc)
            } else {
                ggml_math::vec_dot_f16(k, q16)
            };
            scores.push(kq * scale);
        }
        ggml_math::soft_max(scores);
        // V·P over positions, `lanes[slot][lane][d]`: position j goes to lane j % 16 and, one
        // token at a time, to accumulator (j / 16) % 4, as ggml's f16 dot product sums them.
        // Only the lane rows some position reaches are zeroed and summed: an untouched row
        // holds +0.0, and adding +0.0 changes no sum.
        let slots = if batch { 1 } else { 4 };
        let used = scores.len().min(slots * LANES);
        lanes.clear();
        lanes.resize(used * hd, 0.0);
        for (j, (p, v)) in scores.iter().zip(values.chunks_exact(hd)).enumerate() {
            let p = round_f16(*p);
            let acc = &mut lanes[(j % (slots * LANES)) * hd..][..hd];
            for (a, v) in acc.iter_mut().zip(v) {
                *a = v.mul_add(p, *a);
            }
        }
        reduce_lanes(lanes, used, slots, sums, out);
    }
}

/// `out[d]` = the ggml sum of the lane rows (`lanes[row][d]`, `used` rows, row = slot * 16 +
/// lane): per lane `(s0 + s2) + (s1 + s3)` across slots, then [`ggml_math::reduce16`] across
/// lanes. Computed for all `d` at once, so every step is a vector operation over `head_dim`.
#[inline(always)]
fn reduce_lanes(lanes: &[f32], used: usize, slots: usize, sums: &mut Vec<f32>, out: &mut [f32]) {
    let hd = out.len();
    sums.clear();
    sums.resize(LANES * hd, 0.0);
    for r in 0..used {
        let (slot, l) = (r / LANES, r % LANES);
        if slots == 4 && slot >= 2 {
            continue; // added below, pairwise with slots 0 and 1
        }
        let dst = &mut sums[l * hd..(l + 1) * hd];
        let row = |k: usize| (k < used).then(|| &lanes[k * hd..(k + 1) * hd]);
        match (slots, row(r + 2 * LANES)) {
            (4, Some(far)) => {
                for ((d, a), b) in dst.iter_mut().zip(&lanes[r * hd..(r + 1) * hd]).zip(far) {
                    *d += a + b;
                }
            }
            _ => {
                for (d, a) in dst.iter_mut().zip(&lanes[r * hd..(r + 1) * hd]) {
                    *d += a;
                }
            }
        }
    }
    // `sums[l]` now holds (s0 + s2) + (s1 + s3): slot 0's pair is added to +0.0 first, then
    // slot 1's pair to it — the same grouping, since x + 0.0 == x.
    // reduce16 over lanes, elementwise in d: halves added pairwise, then (t0 + t2) + (t1 + t3).
    let (lo, hi) = sums.split_at_mut(8 * hd);
    for (a, b) in lo.iter_mut().zip(hi.iter()) {
        *a += b;
    }
    let (lo, hi) = lo.split_at_mut(4 * hd);
    for (a, b) in lo.iter_mut().zip(hi.iter()) {
        *a += b;
    }
    let t = |i: usize, d: usize| lo[i * hd + d];
    for (d, o) in out.iter_mut().enumerate() {
        *o = (t(0, d) + t(2, d)) + (t(1, d) + t(3, d));
    }
}

/// Buffers reused across the heads of one attention call.
#[derive(Debug, Default)]
pub struct AttendScratch {
    q16: Vec<f32>,
    scores: Vec<f32>,
    lanes: Vec<f32>,
    sums: Vec<f32>,
    keys: Vec<f32>,
    values: Vec<f32>,
}

/// Inputs: `q [seq, heads, head_dim]`, `k [seq, kv_heads, head_dim]`, `v [seq, kv_heads * head_dim]`
/// (q and k already normed and rotated), absolute `positions [seq]` (consecutive).
/// Output: `[seq, heads * head_dim]`.
#[derive(Debug, Clone)]
pub struct CachedAttention {
    pub cache: KvCache,
}

impl PartialEq for CachedAttention {
    /// Each layer's cache is its own: never merge two attention ops.
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

impl Operator for CachedAttention {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let q = contiguous(&inp[0].0, &inp[0].1);
        let k = contiguous(&inp[1].0, &inp[1].1);
        let v = contiguous(&inp[2].0, &inp[2].1);
        let positions = f32_data(&inp[3].0).expect("attention: positions must be f32 data");
        let start = positions.first().map_or(0, |p| *p as usize);
        self.cache.append(start, &k, &v);

        let mut out = vec![0.0; positions.len() * self.cache.shape.q_dim()];
        let mut scratch = AttendScratch::default();
        let batch = positions.len() > 1;
        attend_all(&self.cache, &q, start, batch, &mut scratch, &mut out);
        vec![Tensor::new(out)]
    }
    /// The cost model and kind, for the profiler (`cost::model_of`, `cost::kind_of`).
    fn custom(&mut self, key: &str, _: Box<dyn std::any::Any>) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key)
    }
}

impl OpCost for CachedAttention {
    /// q, k, v and the positions, and the cache over every attended position.
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        let (start, seq) = attention_span(inp, 3);
        (0..4)
            .map(|i| cost::input_activations(inp, i))
            .sum::<Cost>()
            + self.cache.shape.cost(start, seq)
    }
}

/// The first position and the token count of an attention call, from its `positions` input.
pub fn attention_span(inp: &[(InputTensor, ShapeTracker)], positions: usize) -> (u64, u64) {
    let p = inp.get(positions).and_then(|(t, _)| f32_data(t));
    let start = p.and_then(|p| p.first()).map_or(0, |&v| v as u64);
    (start, p.map_or(0, |p| p.len() as u64))
}

ggml_math::fma_dispatch! {
    /// Attention of every query head of every token (`q [tokens, q_dim]`, first at position
    /// `start`) into `out`.
    fn attend_all(
        cache: &KvCache,
        q: &[f32],
        start: usize,
        batch: bool,
        scratch: &mut AttendScratch,
        out: &mut [f32],
    ) => attend_all_body
}

#[inline(always)]
fn attend_all_body(
    cache: &KvCache,
    q: &[f32],
    start: usize,
    batch: bool,
    scratch: &mut AttendScratch,
    out: &mut [f32],
) {
    let shape = cache.shape;
    let (q_dim, hd) = (shape.q_dim(), shape.head_dim);
    for (i, row) in out.chunks_exact_mut(q_dim).enumerate() {
        for (h, head_out) in row.chunks_exact_mut(hd).enumerate() {
            let at = i * q_dim + h * hd;
            let kv_head = h / shape.group();
            cache.attend(
                &q[at..at + hd],
                start + i,
                kv_head,
                batch,
                scratch,
                head_out,
            );
        }
    }
}

/// Adds attention with a KV cache (of one layer, made by the caller) to the graph.
pub fn cached_attention<S, H, G, D, C, Q>(
    q: GraphTensor<(S, H, D)>,
    k: GraphTensor<(S, G, D)>,
    v: GraphTensor<(S, C)>,
    positions: GraphTensor<(S,)>,
    cache: KvCache,
) -> GraphTensor<(S, Q)>
where
    S: Dimension,
    H: Dimension,
    G: Dimension,
    D: Dimension,
    C: Dimension,
    Q: Dimension,
{
    let id = q
        .graph()
        .add_op(CachedAttention { cache })
        .input(q.id, 0, q.shape)
        .input(k.id, 0, k.shape)
        .input(v.id, 0, v.shape)
        .input(positions.id, 0, positions.shape)
        .finish();
    GraphTensor::from_id(
        id,
        ShapeTracker::new(&[S::const_size(), Q::const_size()]),
        q.graph_ref,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_counts_every_attended_position() {
        let shape = AttentionShape {
            heads: 4,
            kv_heads: 2,
            head_dim: 16,
            max_context: 64,
        };
        // Decode at position 9: 10 positions of keys and values, 2 heads x 16 each, f16.
        let decode = shape.cost(9, 1);
        assert_eq!(decode.kv_bytes, 10 * 32 * 2 * 2);
        assert_eq!(decode.flops, 4 * 10 * (4 * 16 + 4));
        // A prompt of 3 from 0: tokens attend 1, 2 and 3 positions.
        let prompt = shape.cost(0, 3);
        assert_eq!(prompt.kv_bytes, 3 * 32 * 4);
        assert_eq!(prompt.flops, 4 * 6 * 68);
    }
}
