//! Elementwise, reduce and copy ops that walk their inputs with precomputed strides.
//!
//! Stock luminal 0.2 evaluates a symbolic index expression (and a validity expression) for every
//! element of every binary op, reduction and copy: ~43 ns per element, and microseconds per element
//! once a view is sliced or padded (the rotary embedding's halves). [`StridedCompiler`] swaps those
//! ops for versions that resolve the shape tracker to plain numbers once per call, then copy or
//! combine with tight loops. Semantics are the stock ops' exactly: same index and padding rules
//! (padded elements read as 0, or are skipped by max), same summation order.

use std::borrow::Cow;

use luminal::op::{self, InputTensor, Operator};
use luminal::prelude::symbolic::Expression;
use luminal::prelude::*;

use super::cost::{self, Cost, OpCost};
use super::input::f32_data;

/// One logical dimension of a view, resolved to numbers.
#[derive(Debug, Clone, Copy)]
struct ViewDim {
    /// Logical length (after padding and slicing).
    len: usize,
    /// Physical stride (0 for a broadcast dim).
    stride: isize,
    /// Physical offset contributed at logical index 0.
    base: isize,
    /// Logical indices in `lo..hi` read data; the others are padding.
    lo: usize,
    hi: usize,
}

/// A luminal `ShapeTracker` with every dim resolved: logical order, strides, offsets and the
/// padding window, following `ShapeTracker::index_expression` / `valid_expression`.
#[derive(Debug, Clone)]
pub struct StridedView {
    dims: Vec<ViewDim>,
    plain: bool,
}

fn num(e: Expression) -> isize {
    e.to_usize().map_or(i32::MAX as isize, |v| v as isize)
}

impl StridedView {
    /// Resolves `t`, whose dynamic dims must already be substituted (as they are inside `process`).
    pub fn new(t: &ShapeTracker) -> Self {
        let n = t.dims.len();
        let mut strides = vec![0isize; n];
        let mut acc = 1isize;
        for p in (0..n).rev() {
            strides[p] = acc;
            if !t.fake[p] {
                acc *= num(t.dims[p]);
            }
        }
        let dims = t
            .indexes
            .iter()
            .map(|&p| {
                let (dim, (p0, p1), (s0, s1)) = (
                    num(t.dims[p]),
                    (num(t.padding[p].0), num(t.padding[p].1)),
                    (num(t.slices[p].0), num(t.slices[p].1)),
                );
                let len = ((dim + p0 + p1).min(s1) - s0).max(0) as usize;
                if t.fake[p] {
                    return ViewDim {
                        len,
                        stride: 0,
                        base: 0,
                        lo: 0,
                        hi: len,
                    };
                }
                let stride = strides[p];
                ViewDim {
                    len,
                    stride,
                    base: (-p0 + s0 - p0.min(s0)) * stride,
                    lo: (p0 - s0.min(p0)).max(0) as usize,
                    hi: (dim + p0).min(s1).max(0) as usize,
                }
            })
            .collect();
        Self {
            dims,
            plain: t.is_contiguous() && !t.is_sliced() && !t.is_padded(),
        }
    }

    /// Elements in logical order.
    pub fn len(&self) -> usize {
        self.dims.iter().map(|d| d.len).product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `data` laid out in logical order, borrowed when the view is already plain. Padding reads as
    /// `fill`.
    pub fn gather<'a>(&self, data: &'a [f32], fill: f32) -> Cow<'a, [f32]> {
        let n = self.len();
        if self.plain && data.len() >= n {
            return Cow::Borrowed(&data[..n]);
        }
        let mut out = Vec::with_capacity(n);
        if self.dims.is_empty() {
            out.push(data.first().copied().unwrap_or(fill));
            return Cow::Owned(out);
        }
        self.gather_dim(0, 0, data, fill, &mut out);
        Cow::Owned(out)
    }

    fn gather_dim(&self, d: usize, offset: isize, data: &[f32], fill: f32, out: &mut Vec<f32>) {
        let dim = self.dims[d];
        let last = d + 1 == self.dims.len();
        for i in 0..dim.len {
            let valid = i >= dim.lo && i < dim.hi;
            let at = offset + dim.base + i as isize * dim.stride;
            if last {
                out.push(if valid { data[at as usize] } else { fill });
            } else if valid {
                self.gather_dim(d + 1, at, data, fill, out);
            } else {
                let inner: usize = self.dims[d + 1..].iter().map(|d| d.len).product();
                out.extend(std::iter::repeat_n(fill, inner));
            }
        }
    }
}

/// The input's elements in logical order, padding read as `fill`.
fn logical<'a>(input: &'a (InputTensor<'a>, ShapeTracker), fill: f32) -> Cow<'a, [f32]> {
    let data = f32_data(&input.0).map(Vec::as_slice).unwrap_or(&[]);
    StridedView::new(&input.1).gather(data, fill)
}

/// Binary elementwise operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    Add,
    Mul,
    Mod,
    LessThan,
}

/// A stock binary op with strided input walks.
#[derive(Debug, Clone, PartialEq)]
pub struct StridedBinary(pub BinaryKind);

impl Operator for StridedBinary {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let (a, b) = (logical(&inp[0], 0.0), logical(&inp[1], 0.0));
        let pairs = a.iter().zip(b.iter());
        let out: Vec<f32> = match self.0 {
            BinaryKind::Add => pairs.map(|(x, y)| x + y).collect(),
            BinaryKind::Mul => pairs.map(|(x, y)| x * y).collect(),
            BinaryKind::Mod => pairs.map(|(x, y)| x % y).collect(),
            BinaryKind::LessThan => pairs.map(|(x, y)| f32::from(u8::from(x < y))).collect(),
        };
        vec![Tensor::new(out)]
    }
    /// The cost model and kind, for the profiler (`cost::model_of`, `cost::kind_of`).
    fn custom(&mut self, key: &str, _: Box<dyn std::any::Any>) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key)
    }
}

impl OpCost for StridedBinary {
    fn kind(&self) -> String {
        format!("StridedBinary({:?})", self.0)
    }

    /// Both inputs; one operation per output element.
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        let out = inp.first().map_or(0, |(_, t)| cost::logical_len(t));
        Cost {
            flops: out,
            ..cost::input_activations(inp, 0) + cost::input_activations(inp, 1)
        }
    }
}

/// Reduction kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceKind {
    Sum,
    Max,
}

/// A stock reduction over one axis with a strided input walk. Sums accumulate in the stock order
/// (ascending along the axis, in f32), so results are bit-identical.
#[derive(Clone, PartialEq)]
pub struct StridedReduce {
    pub kind: ReduceKind,
    pub axis: usize,
}

impl std::fmt::Debug for StridedReduce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StridedReduce({:?})", self.kind)
    }
}

impl Operator for StridedReduce {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let view = StridedView::new(&inp[0].1);
        let lens: Vec<usize> = view.dims.iter().map(|d| d.len).collect();
        let front: usize = lens[..self.axis].iter().product();
        let dim = lens[self.axis];
        let back: usize = lens[self.axis + 1..].iter().product();
        // Stock max skips padded elements; reading them as -inf does the same.
        let (fill, init) = match self.kind {
            ReduceKind::Sum => (0.0, 0.0),
            ReduceKind::Max => (f32::NEG_INFINITY, f32::NEG_INFINITY),
        };
        let data = logical(&inp[0], fill);
        let mut out = vec![init; front * back];
        for i in 0..front {
            let acc = &mut out[i * back..(i + 1) * back];
            for k in 0..dim {
                let row = &data[(i * dim + k) * back..(i * dim + k + 1) * back];
                match self.kind {
                    ReduceKind::Sum => acc.iter_mut().zip(row).for_each(|(a, x)| *a += x),
                    ReduceKind::Max => acc.iter_mut().zip(row).for_each(|(a, x)| *a = a.max(*x)),
                }
            }
        }
        vec![Tensor::new(out)]
    }
    /// The cost model and kind, for the profiler (`cost::model_of`, `cost::kind_of`).
    fn custom(&mut self, key: &str, _: Box<dyn std::any::Any>) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key)
    }
}

impl OpCost for StridedReduce {
    fn kind(&self) -> String {
        format!("StridedReduce({:?})", self.kind)
    }

    /// The input; one operation per element reduced.
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        let n = inp.first().map_or(0, |(_, t)| cost::logical_len(t));
        Cost {
            flops: n,
            ..cost::input_activations(inp, 0)
        }
    }
}

/// A stock `Contiguous` copy with a strided walk.
#[derive(Debug, Clone, PartialEq)]
pub struct StridedContiguous;

impl Operator for StridedContiguous {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        vec![Tensor::new(logical(&inp[0], 0.0).into_owned())]
    }
    /// The cost model and kind, for the profiler (`cost::model_of`, `cost::kind_of`).
    fn custom(&mut self, key: &str, _: Box<dyn std::any::Any>) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key)
    }
}

impl OpCost for StridedContiguous {
    /// The input, copied: no arithmetic.
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        cost::input_activations(inp, 0)
    }
}

/// Replaces stock `Add`, `Mul`, `Mod`, `LessThan`, `SumReduce`, `MaxReduce` and `Contiguous` in
/// place (same inputs, same outputs) with their strided versions.
#[derive(Debug, Default)]
pub struct StridedCompiler;

impl Compiler for StridedCompiler {
    fn compile<T: ToIdsMut>(&self, graph: &mut Graph, _: T) {
        let nodes: Vec<NodeIndex> = graph.graph.node_indices().collect();
        for node in nodes {
            let Some(weight) = graph.graph.node_weight_mut(node) else {
                continue;
            };
            if let Some(replacement) = strided_version(weight.as_ref()) {
                *weight = replacement;
            }
        }
    }
}

fn strided_version(op: &dyn Operator) -> Option<Box<dyn Operator>> {
    let any = op.as_any();
    let binary = |k| Some(Box::new(StridedBinary(k)) as Box<dyn Operator>);
    if any.is::<op::Add>() {
        binary(BinaryKind::Add)
    } else if any.is::<op::Mul>() {
        binary(BinaryKind::Mul)
    } else if any.is::<op::Mod>() {
        binary(BinaryKind::Mod)
    } else if any.is::<op::LessThan>() {
        binary(BinaryKind::LessThan)
    } else if let Some(op::SumReduce(axis)) = any.downcast_ref::<op::SumReduce>() {
        Some(Box::new(StridedReduce {
            kind: ReduceKind::Sum,
            axis: *axis,
        }))
    } else if let Some(op::MaxReduce(axis)) = any.downcast_ref::<op::MaxReduce>() {
        Some(Box::new(StridedReduce {
            kind: ReduceKind::Max,
            axis: *axis,
        }))
    } else if any.is::<op::Contiguous>() {
        Some(Box::new(StridedContiguous))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use luminal::prelude::symbolic::Expression;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 100.0 - 5.0
            })
            .collect()
    }

    /// Runs the same graph with stock ops and with the strided ones; results must be identical.
    fn stock_vs_strided(build: impl Fn(&mut Graph) -> Vec<NodeIndex>) {
        let mut stock = Graph::new();
        let outs = build(&mut stock);
        stock.execute();
        let mut strided = Graph::new();
        let outs2 = build(&mut strided);
        strided.compile(StridedCompiler, ());
        strided.execute();
        for (a, b) in outs.iter().zip(&outs2) {
            let a = stock
                .get_tensor_ref(*a, 0)
                .unwrap()
                .data
                .as_any()
                .downcast_ref::<Vec<f32>>()
                .unwrap()
                .clone();
            let b = strided
                .get_tensor_ref(*b, 0)
                .unwrap()
                .data
                .as_any()
                .downcast_ref::<Vec<f32>>()
                .unwrap()
                .clone();
            assert_eq!(a.len(), b.len());
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert!(
                    x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                    "element {i}: stock {x} strided {y}"
                );
            }
        }
    }

    #[test]
    fn binary_ops_on_permuted_and_broadcast_views() {
        stock_vs_strided(|cx| {
            let a = cx.tensor::<R2<3, 4>>().set(values(12, 1));
            let b = cx.tensor::<R2<4, 3>>().set(values(12, 2));
            let c = cx.tensor::<R1<4>>().set(values(4, 3));
            let sum = (a + b.permute::<_, Axes2<1, 0>>()).retrieve();
            let prod = (a * c.expand::<R2<3, 4>, _>()).retrieve();
            let modulo = (a % b.permute::<R2<3, 4>, _>()).retrieve();
            let less = a.less_than(b.permute()).retrieve();
            vec![sum.id, prod.id, modulo.id, less.id]
        });
    }

    #[test]
    fn sliced_padded_and_concatenated_views() {
        stock_vs_strided(|cx| {
            let a = cx.tensor::<R3<2, 2, 5>>().set(values(20, 4));
            let first = a
                .slice((.., ..Expression::from(1), ..))
                .realize::<R3<2, 1, 5>>();
            let second = a
                .slice((.., Expression::from(1).., ..))
                .realize::<R3<2, 1, 5>>();
            let joined = (first * 2.0)
                .concat_along::<R3<2, 2, 5>, Axis<1>, _>(second - 1.0)
                .retrieve();
            let padded = a.pad::<R3<2, 2, 8>, usize, usize>(&[(0, 0), (0, 0), (1, 2)]) + 1.0;
            let padded = padded.retrieve();
            let copy = a
                .slice((.., .., Expression::from(1)..Expression::from(4)))
                .contiguous()
                .retrieve();
            vec![joined.id, padded.id, copy.id]
        });
    }

    #[test]
    fn reductions_match_stock_order() {
        stock_vs_strided(|cx| {
            let a = cx.tensor::<R3<3, 7, 5>>().set(values(105, 5));
            let s0 = a.sum_reduce::<_, Axis<0>>().retrieve();
            let s1 = a.sum_reduce::<_, Axis<1>>().retrieve();
            let s2 = a
                .permute::<R3<5, 3, 7>, _>()
                .sum_reduce::<_, Axis<2>>()
                .retrieve();
            let m1 = a.max_reduce::<_, Axis<1>>().retrieve();
            let mp = a
                .pad::<R3<3, 7, 7>, usize, usize>(&[(0, 0), (0, 0), (0, 2)])
                .max_reduce::<_, Axis<2>>()
                .retrieve();
            vec![s0.id, s1.id, s2.id, m1.id, mp.id]
        });
    }
}
