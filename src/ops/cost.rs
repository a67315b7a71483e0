//! What one call of an op reads and computes, from its inputs' shapes and types: the roofline
//! figures of the kernel profile (achieved GB/s and GFLOP/s beside each kernel's time).
//!
//! Every op of ours implements [`OpCost`] next to its `Operator`, and [`model_of`] lists them:
//! a new op implements the trait and adds its type to that list; an op without a model shows
//! no figures rather than guessed ones.
//!
//! The conventions, the same for every op so that kernels compare:
//! - Bytes read are what the call must read at least once: weights in their stored encoding
//!   (a Q4_K matrix counts its 4.5 bits per weight, not f32), the KV-cache entries attended
//!   over (f16 keys and values), and the f32 activations it takes (the elements of the view it
//!   reads: a slice counts its part, a broadcast input its data once). Outputs written are not
//!   counted, nor re-reads from cache: this is the traffic a perfect kernel would move.
//! - Arithmetic counts a multiply-add as two operations and every other arithmetic step (add,
//!   multiply, divide, square root, exp) as one; an integer dot product of quantized weights
//!   counts as the float operations it stands for.

use luminal::op::{InputTensor, Operator};
use luminal::prelude::*;

use super::cached_attention::{AttentionShape, CachedAttention};
use super::embedding::Embedding;
use super::moe_ffn::{MoeExperts, MoeRouter};
use super::parallel::fused_attention::FusedAttention;
use super::parallel::fused_matmul::FusedMatMul;
use super::parallel::fused_moe::{FusedMoeExperts, FusedMoeRouter};
use super::rms_norm::RmsNorm;
use super::rope::Rope;
use super::strided::{StridedBinary, StridedContiguous, StridedReduce};
use super::swiglu::SwiGlu;
use super::weight::WeightData;
use super::weight_matmul::WeightMatMul;

/// Bytes read and arithmetic done by one op call (or a sum of calls).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Weights, in their stored encoding.
    pub weight_bytes: u64,
    /// KV-cache entries (f16 keys and values).
    pub kv_bytes: u64,
    /// f32 activations and small f32 parameters (norm weights, rotary tables).
    pub activation_bytes: u64,
    /// Arithmetic operations (a multiply-add counts two).
    pub flops: u64,
}

impl Cost {
    pub fn bytes_read(&self) -> u64 {
        self.weight_bytes + self.kv_bytes + self.activation_bytes
    }

    /// f32 activations of `elements` values.
    pub fn activations(elements: u64) -> Self {
        Cost {
            activation_bytes: 4 * elements,
            ..Cost::default()
        }
    }

    /// The matmul `x [n_tokens, cols] · Wᵀ` reading all of `w`: its weight bytes and
    /// `2 · n_tokens · rows · cols` operations (activations not included).
    pub fn matmul(w: &WeightData, n_tokens: u64) -> Self {
        Cost {
            weight_bytes: w.bytes().len() as u64,
            flops: 2 * n_tokens * w.rows as u64 * w.cols as u64,
            ..Cost::default()
        }
    }
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            weight_bytes: self.weight_bytes + o.weight_bytes,
            kv_bytes: self.kv_bytes + o.kv_bytes,
            activation_bytes: self.activation_bytes + o.activation_bytes,
            flops: self.flops + o.flops,
        }
    }
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        *self = *self + o;
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::default(), |a, b| a + b)
    }
}

/// An op's cost model: what one call on `inputs` (dynamic dims resolved, as `process` sees
/// them) reads and computes. Called before the op runs, only while profiling or tracing.
pub trait OpCost {
    fn cost(&self, inputs: &[(InputTensor, ShapeTracker)]) -> Cost;
}

/// The cost model of an op, looked up once per graph node.
pub type CostFn = fn(&dyn Operator, &[(InputTensor, ShapeTracker)]) -> Cost;

fn cost_via<T: OpCost + 'static>(
    op: &dyn Operator,
    inputs: &[(InputTensor, ShapeTracker)],
) -> Cost {
    op.as_any()
        .downcast_ref::<T>()
        .map_or_else(Cost::default, |op| op.cost(inputs))
}

/// The cost model of `op`'s type, if it has one: the one list of costed op types.
pub fn model_of(op: &dyn Operator) -> Option<CostFn> {
    macro_rules! costed {
        ($($t:ty),* $(,)?) => {
            $(if op.as_any().is::<$t>() {
                return Some(cost_via::<$t>);
            })*
        };
    }
    costed!(
        Embedding,
        WeightMatMul,
        RmsNorm,
        Rope,
        SwiGlu,
        StridedBinary,
        StridedReduce,
        StridedContiguous,
        CachedAttention,
        FusedMatMul,
        FusedAttention,
        MoeRouter,
        MoeExperts,
        FusedMoeRouter,
        FusedMoeExperts,
    );
    None
}

fn dim(e: luminal::prelude::symbolic::Expression) -> u64 {
    e.to_usize().map_or(0, |v| v as u64)
}

/// Elements of the view `t` presents (padding included, slices cut), as `ShapeTracker::shape`.
pub fn logical_len(t: &ShapeTracker) -> u64 {
    t.indexes
        .iter()
        .map(|&i| {
            let (p0, p1) = (dim(t.padding[i].0), dim(t.padding[i].1));
            let (s0, s1) = (dim(t.slices[i].0), dim(t.slices[i].1));
            (dim(t.dims[i]) + p0 + p1).min(s1).saturating_sub(s0)
        })
        .product()
}

/// Elements of the data under the view (broadcast dims not repeated).
pub fn physical_len(t: &ShapeTracker) -> u64 {
    t.dims
        .iter()
        .zip(t.fake.iter())
        .filter(|(_, fake)| !**fake)
        .map(|(d, _)| dim(*d))
        .product()
}

/// Elements a call reading the view `t` must read: the view's part of the data (a slice), or
/// the data once (a broadcast or padded view).
pub fn read_len(t: &ShapeTracker) -> u64 {
    logical_len(t).min(physical_len(t))
}

/// Input `i` as f32 activations read in full.
pub fn input_activations(inputs: &[(InputTensor, ShapeTracker)], i: usize) -> Cost {
    inputs
        .get(i)
        .map_or_else(Cost::default, |(_, t)| Cost::activations(read_len(t)))
}

/// Causal attention of `seq` tokens at positions `start..start + seq` over a cache of
/// `shape`: the cache entries read (positions `0..start + seq`, keys and values, f16, once
/// each) and the arithmetic (per query head and attended position: `q·k` and `p·v` over
/// `head_dim`, scale, exp, softmax sum and normalise).
pub fn attention(shape: &AttentionShape, start: u64, seq: u64) -> Cost {
    let (heads, hd, kv_dim) = (
        shape.heads as u64,
        shape.head_dim as u64,
        shape.kv_dim() as u64,
    );
    // Σ over the tokens of the positions each attends: (start + 1) + ... + (start + seq).
    let attended = seq * start + seq * (seq + 1) / 2;
    Cost {
        kv_bytes: (start + seq) * kv_dim * 2 * 2,
        flops: heads * attended * (4 * hd + 4),
        ..Cost::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(dims: &[usize]) -> ShapeTracker {
        let dims: Vec<luminal::prelude::symbolic::Expression> =
            dims.iter().map(|&d| d.into()).collect();
        ShapeTracker::new(&dims)
    }

    #[test]
    fn views_count_what_they_read() {
        let plain = tracker(&[5, 8]);
        assert_eq!(
            (logical_len(&plain), physical_len(&plain), read_len(&plain)),
            (40, 40, 40)
        );
        // The last row of [5, 8]: 8 elements read of 40.
        let mut last = plain;
        last.slice(&[(4.into(), 5.into()), (0.into(), i32::MAX.into())]);
        assert_eq!((logical_len(&last), read_len(&last)), (8, 8));
        // [8] broadcast to [5, 8]: the 8 values are read once.
        let mut broadcast = tracker(&[8]);
        broadcast.expand(0, 5.into());
        assert_eq!((logical_len(&broadcast), read_len(&broadcast)), (40, 8));
        // [5, 8] padded by one column: 5 x 9 logical, 40 read.
        let mut padded = plain;
        padded.pad(&[(0.into(), 0.into()), (0.into(), 1.into())]);
        assert_eq!((logical_len(&padded), read_len(&padded)), (45, 40));
    }

    #[test]
    fn attention_counts_every_attended_position() {
        let shape = AttentionShape {
            heads: 4,
            kv_heads: 2,
            head_dim: 16,
            max_context: 64,
        };
        // Decode at position 9: 10 positions of keys and values, 2 heads x 16 each, f16.
        let decode = attention(&shape, 9, 1);
        assert_eq!(decode.kv_bytes, 10 * 32 * 2 * 2);
        assert_eq!(decode.flops, 4 * 10 * (4 * 16 + 4));
        // A prompt of 3 from 0: tokens attend 1, 2 and 3 positions.
        let prompt = attention(&shape, 0, 3);
        assert_eq!(prompt.kv_bytes, 3 * 32 * 4);
        assert_eq!(prompt.flops, 4 * 6 * 68);
    }

    #[test]
    fn costs_add_up() {
        let a = Cost {
            weight_bytes: 1,
            kv_bytes: 2,
            activation_bytes: 3,
            flops: 4,
        };
        let total: Cost = [a, a].into_iter().sum();
        assert_eq!(total.bytes_read(), 12);
        assert_eq!(total.flops, 8);
    }
}
