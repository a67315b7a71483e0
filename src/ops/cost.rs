//! What one call of an op reads and computes, from its inputs' shapes and types: the roofline
//! figures of the kernel profile (achieved GB/s and GFLOP/s beside each kernel's time).
//!
//! Every op of ours implements [`OpCost`] next to its `Operator` and hands its model and its
//! kind out through luminal's `Operator::custom` hook ([`answer`]), which the decorators
//! forward: the profiler asks each node for them ([`model_of`], [`kind_of`]) and no list of op
//! types is kept anywhere. An op without a model shows no figures rather than guessed ones. This
//! module is a leaf: it knows no op.
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

use std::any::Any;

use luminal::op::{InputTensor, Operator};
use luminal::prelude::*;

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

    /// The matmul `x [n_tokens, cols] · Wᵀ` reading all of a `rows x cols` matrix stored in
    /// `weight_bytes`: those bytes and `2 · n_tokens · rows · cols` operations (activations not
    /// included).
    pub fn matmul(weight_bytes: u64, rows: u64, cols: u64, n_tokens: u64) -> Self {
        Cost {
            weight_bytes,
            flops: 2 * n_tokens * rows * cols,
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
pub trait OpCost: 'static {
    fn cost(&self, inputs: &[(InputTensor, ShapeTracker)]) -> Cost;

    /// The kernel kind the profile groups calls under: the op's type name, or more where one
    /// type runs different kernels (`FusedMatMul(RmsNorm+MatMulx3)`, `StridedBinary(Mul)`).
    fn kind(&self) -> String {
        let name = std::any::type_name::<Self>();
        name.rsplit("::").next().unwrap_or(name).to_string()
    }
}

/// The cost model of an op, looked up once per graph node.
pub type CostFn = fn(&dyn Operator, &[(InputTensor, ShapeTracker)]) -> Cost;

/// The `Operator::custom` key under which an op hands out its [`CostFn`].
pub const COST_MODEL: &str = "qwen.cost_model";

/// The `Operator::custom` key under which an op hands out its kind ([`OpCost::kind`]).
pub const KIND: &str = "qwen.kind";

fn cost_via<T: OpCost + 'static>(
    op: &dyn Operator,
    inputs: &[(InputTensor, ShapeTracker)],
) -> Cost {
    op.as_any()
        .downcast_ref::<T>()
        .map_or_else(Cost::default, |op| op.cost(inputs))
}

/// An op's answer to `Operator::custom(key, ..)`: its cost model when asked for [`COST_MODEL`],
/// its kind for [`KIND`]. Each op of ours calls it from its `custom`: `cost::answer(self, key)`.
pub fn answer<T: OpCost>(op: &T, key: &str) -> Option<Box<dyn Any>> {
    match key {
        COST_MODEL => Some(Box::new(cost_via::<T> as CostFn)),
        KIND => Some(Box::new(op.kind())),
        _ => None,
    }
}

/// The cost model `op` hands out, if it has one (through any decorators around it).
pub fn model_of(op: &mut dyn Operator) -> Option<CostFn> {
    let answer = op.custom(COST_MODEL, Box::new(()))?;
    answer.downcast::<CostFn>().ok().map(|f| *f)
}

/// The kind `op` hands out (ours), else the kind of a stock luminal op from its debug text,
/// the only name luminal gives them: `SumReduce(2)` and `SumReduce(1)` are one kind, and a
/// variant stays (`Function(..)` values are dropped).
pub fn kind_of(op: &mut dyn Operator) -> String {
    let ours = op.custom(KIND, Box::new(()));
    match ours.and_then(|k| k.downcast::<String>().ok()) {
        Some(kind) => *kind,
        None => stock_kind(&format!("{op:?}")),
    }
}

/// A stock op's kind from its debug text.
fn stock_kind(debug: &str) -> String {
    let head = debug.split([' ', '{']).next().unwrap_or(debug);
    match head.split_once('(') {
        // Keep a variant name (`Function(Add)`), drop values (`SumReduce(2)`, `Constant(h)`).
        Some((name, rest)) if !rest.starts_with(|c: char| c.is_ascii_uppercase()) => {
            name.to_string()
        }
        _ => head.to_string(),
    }
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
    fn stock_kinds_drop_values() {
        assert_eq!(stock_kind("SumReduce(2)"), "SumReduce");
        assert_eq!(stock_kind("Constant(1e-6)"), "Constant");
        assert_eq!(stock_kind("Constant(h)"), "Constant");
        assert_eq!(stock_kind("Function(Add)"), "Function(Add)");
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
