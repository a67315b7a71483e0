//! The timing decorator behind `--kernel-timing` and `--trace`: it wraps every op of a compiled
//! graph, times each call, and adds it to the op's profile record and/or the trace, with what
//! the call read and computed (the op's cost model, evaluated before the call and outside its
//! timed span).
//!
//! Installed only when a run profiles or traces, after compilation (passes match on concrete op
//! types), so the normal path pays nothing. [`overhead_per_call_ns`] measures its own cost.

use std::sync::Arc;
use std::time::Instant;

use luminal::op::{InputTensor, Operator};
use luminal::prelude::*;

use super::cost::{self, Cost, CostFn, OpCost};
use super::decorator::{decorated_nodes, decorator_identity, wrap, Placeholder};
use super::profile::{NodeRecord, ProfileBook};
use super::weight_matmul::WeightMatMul;
use crate::trace::{OpInfo, Tracer};

/// What a run wants recorded per op call.
#[derive(Clone, Default)]
pub struct Instruments {
    /// Per-node profile records (`--kernel-timing`).
    pub profile: bool,
    /// Op spans (`--trace`).
    pub trace: Option<Arc<Tracer>>,
}

impl Instruments {
    pub fn any(&self) -> bool {
        self.profile || self.trace.is_some()
    }
}

/// How the profile and the trace name a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeName {
    /// The profile's kind row (`FusedMatMul(RmsNorm+MatMulx3)`, `LM head: WeightMatMul`).
    pub kind: String,
    /// The slowest-node row (`FusedMatMul(RmsNorm+MatMulx3) blk.3`).
    pub label: String,
    /// The GGUF tensors it reads, without `.weight`.
    pub weights: Vec<String>,
}

/// Times `inner` on every call, for the profile and/or the trace.
pub struct Instrumented {
    inner: Box<dyn Operator>,
    cost: Option<CostFn>,
    record: Option<(ProfileBook, usize)>,
    trace: Option<(Arc<Tracer>, u32)>,
}

decorator_identity!(Instrumented);

impl Operator for Instrumented {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let cost = self.cost.map(|model| model(self.inner.as_ref(), &inp));
        let start = Instant::now();
        let out = self.inner.process(inp);
        let end = Instant::now();
        if let Some((book, slot)) = &self.record {
            let ns = u64::try_from((end - start).as_nanos()).unwrap_or(u64::MAX);
            book.borrow_mut()[*slot].add(ns, cost);
        }
        if let Some((tracer, id)) = &self.trace {
            tracer.op_call(*id, start, end, cost.map(|c| (c.bytes_read(), c.flops)));
        }
        out
    }

    fn custom(
        &mut self,
        key: &str,
        input: Box<dyn std::any::Any>,
    ) -> Option<Box<dyn std::any::Any>> {
        self.inner.custom(key, input)
    }
}

/// Wraps every operator of a compiled graph in an [`Instrumented`] decorator (weight and input
/// loads aside: the host sets their data); returns the profile book when `instruments.profile`.
/// The cost model of each op is looked up here, on the op itself, so this must be the innermost
/// decorator.
pub fn install(
    graph: &mut Graph,
    instruments: &Instruments,
    name: impl Fn(&Graph, NodeIndex, &str) -> NodeName,
) -> Option<ProfileBook> {
    let book = instruments.profile.then(ProfileBook::default);
    for node in decorated_nodes(graph) {
        let Some(op) = graph.graph.node_weight_mut(node) else {
            continue;
        };
        let kind = cost::kind_of(op.as_mut());
        let cost = cost::model_of(op.as_mut());
        let named = name(graph, node, &kind);
        let record = book.as_ref().map(|b| {
            let mut records = b.borrow_mut();
            records.push(NodeRecord {
                kind: named.kind.clone(),
                label: named.label.clone(),
                ..Default::default()
            });
            (b.clone(), records.len() - 1)
        });
        let trace = instruments.trace.as_ref().map(|t| {
            let id = t.register_op(OpInfo {
                name: named.kind.clone(),
                label: named.label.clone(),
                weights: named.weights.clone(),
                node: node.index(),
            });
            (t.clone(), id)
        });
        wrap(graph, node, |inner| {
            Box::new(Instrumented {
                inner,
                cost,
                record,
                trace,
            })
        });
    }
    book
}

/// The overhead is measured on the no-op op with the weight matmul's cost model, a typical one.
impl OpCost for Placeholder {
    fn cost(&self, inputs: &[(InputTensor, ShapeTracker)]) -> Cost {
        WeightMatMul.cost(inputs)
    }
}

fn placeholder_cost(op: &dyn Operator, inputs: &[(InputTensor, ShapeTracker)]) -> Cost {
    op.as_any()
        .downcast_ref::<Placeholder>()
        .map_or_else(Cost::default, |p| p.cost(inputs))
}

/// The decorator's own cost per op call in ns, as `instruments` install it: a no-op op on a
/// matmul's inputs, timed bare and wrapped, many times each, on this machine now.
pub fn overhead_per_call_ns(instruments: &Instruments) -> f64 {
    const CALLS: u32 = 20_000;
    let x = Tensor::new(vec![0.0f32; 64]);
    let w = Tensor::new(
        super::weight::WeightData::from_f32(&[0.0; 64 * 2], 2, 64).expect("a 2 x 64 matrix"),
    );
    let inputs = || {
        vec![
            (
                InputTensor::Borrowed(&x),
                ShapeTracker::new(&[1.into(), 64.into()]),
            ),
            (
                InputTensor::Borrowed(&w),
                ShapeTracker::new(&[2.into(), 64.into()]),
            ),
        ]
    };
    // A tracer of its own: the run's trace must not hold these calls.
    let scratch_tracer = instruments.trace.as_ref().map(|_| Tracer::new());
    let book = instruments
        .profile
        .then(|| ProfileBook::new(std::cell::RefCell::new(vec![NodeRecord::default()])));
    let mut bare = Placeholder;
    let mut wrapped = Instrumented {
        inner: Box::new(Placeholder),
        cost: Some(placeholder_cost),
        record: book.map(|b| (b, 0)),
        trace: scratch_tracer.map(|t| (t, 0)),
    };
    let time = |op: &mut dyn Operator| {
        let start = Instant::now();
        for _ in 0..CALLS {
            std::hint::black_box(op.process(inputs()));
        }
        start.elapsed().as_nanos() as f64 / f64::from(CALLS)
    };
    // Warm both paths, then take the best of a few rounds: the machine may be busy.
    let (mut best_bare, mut best_wrapped) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..5 {
        best_bare = best_bare.min(time(&mut bare));
        best_wrapped = best_wrapped.min(time(&mut wrapped));
    }
    (best_wrapped - best_bare).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_op_records_its_calls_and_cost() {
        let book = ProfileBook::new(std::cell::RefCell::new(vec![NodeRecord::default()]));
        let tracer = Tracer::new();
        let mut op = Instrumented {
            inner: Box::new(Placeholder),
            cost: Some(placeholder_cost),
            record: Some((book.clone(), 0)),
            trace: Some((tracer.clone(), 0)),
        };
        let x = Tensor::new(vec![0.0f32; 3 * 64]);
        let w =
            Tensor::new(super::super::weight::WeightData::from_f32(&[0.0; 5 * 64], 5, 64).unwrap());
        for _ in 0..2 {
            op.process(vec![
                (
                    InputTensor::Borrowed(&x),
                    ShapeTracker::new(&[3.into(), 64.into()]),
                ),
                (
                    InputTensor::Borrowed(&w),
                    ShapeTracker::new(&[5.into(), 64.into()]),
                ),
            ]);
        }
        let r = super::super::profile::take(&book).remove(0);
        assert_eq!(r.calls, 2);
        // Per call: 5 x 64 f32 weights, 3 x 64 f32 activations, 2 x 3 x 5 x 64 operations.
        let c = r.cost.unwrap();
        assert_eq!(
            (c.weight_bytes, c.activation_bytes, c.flops),
            (2 * 1280, 2 * 768, 2 * 1920)
        );
        let calls = tracer.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].bytes_read, Some(1280 + 768));
        assert!(calls[0].start_ns + calls[0].dur_ns <= calls[1].start_ns);
        assert_eq!(super::super::profile::take(&book)[0].calls, 0);
    }
}
