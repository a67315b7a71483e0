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
    /// The operator's kind, e.g. `WeightMatMul` or `StridedBinary`.
    pub kind: String,
    /// What this node is, for a person: the kind and the weight it reads, or its node index.
    pub label: String,
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
/// `label` names a node for the report.
pub fn install(
    graph: &mut Graph,
    label: impl Fn(&Graph, NodeIndex, &str) -> String,
) -> ProfileBook {
    let book: ProfileBook = Rc::default();
    let nodes: Vec<NodeIndex> = graph.graph.node_indices().collect();
    for node in nodes {
        let Some(op) = graph.graph.node_weight(node) else {
            continue;
        };
        if op.as_any().is::<luminal::op::Function>() {
            continue;
        }
        let kind = kind_name(&format!("{op:?}"));
        let label = label(graph, node, &kind);
        let slot = {
            let mut b = book.borrow_mut();
            b.push(NodeRecord {
                kind,
                label,
                ..Default::default()
            });
            b.len() - 1
        };
        if let Some(op) = graph.graph.node_weight_mut(node) {
            let inner = std::mem::replace(op, Box::new(Placeholder));
            *op = Box::new(Profiled {
                inner,
                slot,
                book: book.clone(),
            });
        }
    }
    book
}

/// The operator kind from its debug text: `SumReduce(2)` and `SumReduce(1)` are one kind.
pub fn kind_name(debug: &str) -> String {
    let head = debug.split([' ', '{']).next().unwrap_or(debug);
    match head.split_once('(') {
        // Keep a variant name (`StridedBinary(Mul)`), drop values (`SumReduce(2)`, `Constant(h)`).
        Some((name, rest)) if !rest.starts_with(|c: char| c.is_ascii_uppercase()) => {
            name.to_string()
        }
        _ => head.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_variants_and_drop_numbers() {
        assert_eq!(kind_name("StridedBinary(Mul)"), "StridedBinary(Mul)");
        assert_eq!(kind_name("SumReduce(2)"), "SumReduce");
        assert_eq!(
            kind_name("CachedAttention { cache: .. }"),
            "CachedAttention"
        );
        assert_eq!(kind_name("Constant(1e-6)"), "Constant");
        assert_eq!(kind_name("Constant(h)"), "Constant");
    }

    #[test]
    fn kinds_are_summed_and_sorted_with_shares() {
        let rec = |kind: &str, label: &str, calls, total_ns| NodeRecord {
            kind: kind.into(),
            label: label.into(),
            calls,
            total_ns,
        };
        let records = [
            rec("MatMul", "MatMul a", 2, 300),
            rec("Norm", "Norm b", 2, 100),
            rec("MatMul", "MatMul c", 2, 500),
            rec("Idle", "Idle d", 0, 0),
        ];
        let kinds = by_kind(&records, 1000);
        assert_eq!(kinds.len(), 2);
        assert_eq!(
            (kinds[0].name.as_str(), kinds[0].calls, kinds[0].total_ns),
            ("MatMul", 4, 800)
        );
        assert!((kinds[0].share - 0.8).abs() < 1e-12);
        let top = top_nodes(&records, 2, 1000);
        assert_eq!(
            top.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["MatMul c", "MatMul a"]
        );
    }

    #[test]
    fn taking_the_book_clears_it() {
        let book: ProfileBook = Rc::new(RefCell::new(vec![NodeRecord::default()]));
        let mut op = Profiled {
            inner: Box::new(Placeholder),
            slot: 0,
            book: book.clone(),
        };
        op.process(vec![]);
        op.process(vec![]);
        assert_eq!(take(&book)[0].calls, 2);
        assert_eq!(take(&book)[0].calls, 0);
    }
}

/// Stands in for an op while it is being moved into its decorator.
#[derive(Debug, PartialEq)]
struct Placeholder;

impl Operator for Placeholder {
    fn process(&mut self, _: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        vec![]
    }
}

/// The records so far, with the counts then cleared (so the prompt pass and the decode steps
/// can be reported apart).
pub fn take(book: &ProfileBook) -> Vec<NodeRecord> {
    let mut b = book.borrow_mut();
    let records = b.clone();
    for r in b.iter_mut() {
        r.calls = 0;
        r.total_ns = 0;
    }
    records
}

/// One line of a kernel profile: an operator kind or a single node.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KernelTime {
    pub name: String,
    pub calls: u64,
    pub total_ns: u64,
    /// Fraction of the phase's measured time (the sum of its step times).
    pub share: f64,
}

/// Time per operator kind, slowest first.
pub fn by_kind(records: &[NodeRecord], phase_ns: u64) -> Vec<KernelTime> {
    let mut kinds: Vec<KernelTime> = Vec::new();
    for r in records.iter().filter(|r| r.calls > 0) {
        match kinds.iter_mut().find(|k| k.name == r.kind) {
            Some(k) => {
                k.calls += r.calls;
                k.total_ns += r.total_ns;
            }
            None => kinds.push(KernelTime {
                name: r.kind.clone(),
                calls: r.calls,
                total_ns: r.total_ns,
                share: 0.0,
            }),
        }
    }
    finish(kinds, phase_ns)
}

/// The `n` slowest individual nodes.
pub fn top_nodes(records: &[NodeRecord], n: usize, phase_ns: u64) -> Vec<KernelTime> {
    let nodes = records
        .iter()
        .filter(|r| r.calls > 0)
        .map(|r| KernelTime {
            name: r.label.clone(),
            calls: r.calls,
            total_ns: r.total_ns,
            share: 0.0,
        })
        .collect();
    let mut nodes = finish(nodes, phase_ns);
    nodes.truncate(n);
    nodes
}

fn finish(mut lines: Vec<KernelTime>, phase_ns: u64) -> Vec<KernelTime> {
    for l in &mut lines {
        l.share = if phase_ns > 0 {
            l.total_ns as f64 / phase_ns as f64
        } else {
            0.0
        };
    }
    lines.sort_by_key(|l| std::cmp::Reverse(l.total_ns));
    lines
}

/// The profiler's own cost per wrapped op call in ns: a no-op op timed bare and wrapped, many
/// times each, on this machine now.
pub fn overhead_per_call_ns() -> f64 {
    const CALLS: u32 = 20_000;
    let book: ProfileBook = Rc::new(RefCell::new(vec![NodeRecord::default()]));
    let mut bare = Placeholder;
    let mut wrapped = Profiled {
        inner: Box::new(Placeholder),
        slot: 0,
        book,
    };
    let time = |op: &mut dyn Operator| {
        let start = Instant::now();
        for _ in 0..CALLS {
            std::hint::black_box(op.process(vec![]));
        }
        start.elapsed().as_nanos() as f64 / f64::from(CALLS)
    };
    // Warm both paths, then take the best of a few rounds: the machine may be busy.
    let rounds = 5;
    let (mut best_bare, mut best_wrapped) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..rounds {
        best_bare = best_bare.min(time(&mut bare));
        best_wrapped = best_wrapped.min(time(&mut wrapped));
    }
    (best_wrapped - best_bare).max(0.0)
}
