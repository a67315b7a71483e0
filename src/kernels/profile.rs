//! Per-kernel profiling: a decorator op that times the op it wraps.
//!
//! Installed only with `--kernel-timing`, after compilation (passes match on concrete op types),
//! so the normal path pays nothing. Every graph node gets its own record; the report groups them
//! by operator kind and also lists the slowest individual nodes.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use luminal::op::{InputTensor, Operator};
use luminal::prelude::*;

/// Time spent in one graph node, summed over the executions recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeRecord {
    /// The operator's debug name, e.g. `WeightMatMul` or `Add`.
    pub kind: String,
    pub node: usize,
    pub calls: u64,
    pub total_ns: u64,
}

/// Records of every profiled node, shared between the decorators and the reader.
pub type ProfileBook = Rc<RefCell<Vec<NodeRecord>>>;

/// Times `inner` on every call and adds the duration to its record in the book.
pub struct Profiled {
    inner: Box<dyn Operator>,
    slot: usize,
    book: ProfileBook,
}

impl std::fmt::Debug for Profiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl PartialEq for Profiled {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

impl Operator for Profiled {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let start = Instant::now();
        let out = self.inner.process(inp);
        let ns = start.elapsed().as_nanos() as u64;
        let mut book = self.book.borrow_mut();
        let record = &mut book[self.slot];
        record.calls += 1;
        record.total_ns += ns;
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

/// Wraps every operator of a compiled graph in a [`Profiled`] decorator and returns the book
/// their timings go to. Weight and input loads are skipped: their data is set by the host.
pub fn install(graph: &mut Graph) -> ProfileBook {
    let book: ProfileBook = Rc::default();
    let nodes: Vec<NodeIndex> = graph.graph.node_indices().collect();
    for node in nodes {
        let Some(slot_op) = graph.graph.node_weight_mut(node) else {
            continue;
        };
        if slot_op.as_any().is::<luminal::op::Function>() {
            continue;
        }
        let inner = std::mem::replace(slot_op, Box::new(Placeholder));
        let kind = kind_name(&format!("{inner:?}"));
        let slot = {
            let mut b = book.borrow_mut();
            b.push(NodeRecord {
                kind,
                node: node.index(),
                ..Default::default()
            });
            b.len() - 1
        };
        *slot_op = Box::new(Profiled {
            inner,
            slot,
            book: book.clone(),
        });
    }
    book
}

/// The operator kind from its debug text: `SumReduce(2)` and `SumReduce(1)` are one kind.
fn kind_name(debug: &str) -> String {
    debug
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or(debug)
        .to_string()
}

/// Stands in for an op while it is being moved into its decorator.
#[derive(Debug, PartialEq)]
struct Placeholder;

impl Operator for Placeholder {
    fn process(&mut self, _: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        vec![]
    }
}

/// Clears the counts, e.g. after the prompt pass so that the book covers decode steps only.
pub fn reset(book: &ProfileBook) {
    for r in book.borrow_mut().iter_mut() {
        r.calls = 0;
        r.total_ns = 0;
    }
}
