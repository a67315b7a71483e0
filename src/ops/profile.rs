//! Per-kernel profile: what the timing decorators (`instrument`) record per graph node, and the
//! profile the report shows: time per operator kind and for the slowest nodes, with the bytes
//! read and arithmetic done (from each op's cost model, `cost`) as achieved GB/s and GFLOP/s.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Serialize;

use super::cost::Cost;

/// Time spent in one graph node, summed over the executions recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeRecord {
    /// What the profile groups it under: the operator's kind (`WeightMatMul`,
    /// `StridedBinary(Add)`), or its role where that says more (`LM head: WeightMatMul`).
    pub kind: String,
    /// What this node is, for a person: the kind and the weight it reads, or its node index.
    pub label: String,
    pub calls: u64,
    pub total_ns: u64,
    /// Bytes read and arithmetic done over the calls, when the op has a cost model.
    pub cost: Option<Cost>,
}

impl NodeRecord {
    /// Adds one call of `ns` that cost `cost`.
    pub fn add(&mut self, ns: u64, cost: Option<Cost>) {
        self.calls += 1;
        self.total_ns += ns;
        if let Some(c) = cost {
            *self.cost.get_or_insert_with(Cost::default) += c;
        }
    }
}

/// Records of every profiled node, shared between the decorators and the reader.
pub type ProfileBook = Rc<RefCell<Vec<NodeRecord>>>;

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

/// The records so far, with the counts then cleared (so the prompt pass and the decode steps
/// can be reported apart).
pub fn take(book: &ProfileBook) -> Vec<NodeRecord> {
    let mut b = book.borrow_mut();
    let records = b.clone();
    for r in b.iter_mut() {
        r.calls = 0;
        r.total_ns = 0;
        r.cost = None;
    }
    records
}

/// The decode steps' profile, taken step by step: the records summed over every step, and each
/// kind's time in every complete step.
#[derive(Debug, Clone, Default)]
pub struct StepProfile {
    records: Vec<NodeRecord>,
    kinds: Vec<String>,
    /// `steps[s][k]`: nanoseconds of `kinds[k]` in step `s`.
    steps: Vec<Vec<u64>>,
}

impl StepProfile {
    /// Adds the records of one complete step.
    pub fn add_step(&mut self, records: Vec<NodeRecord>) {
        let mut step = vec![0; self.kinds.len()];
        for r in records.iter().filter(|r| r.calls > 0) {
            let k = match self.kinds.iter().position(|k| *k == r.kind) {
                Some(k) => k,
                None => {
                    self.kinds.push(r.kind.clone());
                    step.push(0);
                    self.kinds.len() - 1
                }
            };
            step[k] += r.total_ns;
        }
        self.steps.push(step);
        self.add_rest(records);
    }

    /// Adds records that belong to no complete step (one that a Ctrl-C cut short): they count
    /// in the totals only.
    pub fn add_rest(&mut self, records: Vec<NodeRecord>) {
        if self.records.is_empty() {
            self.records = records;
            return;
        }
        for r in records {
            // The engine's book lists its nodes in the same order each time: the same index is
            // nearly always the same node.
            match self
                .records
                .iter_mut()
                .find(|t| t.label == r.label && t.kind == r.kind)
            {
                Some(t) => {
                    t.calls += r.calls;
                    t.total_ns += r.total_ns;
                    if let Some(c) = r.cost {
                        *t.cost.get_or_insert_with(Cost::default) += c;
                    }
                }
                None => self.records.push(r),
            }
        }
    }

    /// The records summed over every step.
    pub fn records(&self) -> &[NodeRecord] {
        &self.records
    }

    /// `kind`'s time in each complete step (0 in steps where it did not run); `None` for a kind
    /// no step ran.
    pub fn kind_samples(&self, kind: &str) -> Option<Vec<u64>> {
        let k = self.kinds.iter().position(|n| n == kind)?;
        Some(
            self.steps
                .iter()
                .map(|s| s.get(k).copied().unwrap_or(0))
                .collect(),
        )
    }
}

/// One line of a kernel profile: an operator kind or a single node, with its roofline figures
/// (`None` for an op without a cost model).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelTime {
    pub name: String,
    pub calls: u64,
    pub total_ns: u64,
    /// Fraction of the phase's measured time (the sum of its step times).
    pub share: f64,
    #[serde(skip)]
    cost: Option<Cost>,
    /// Bytes read over all calls: weights in their stored type, KV cache, activations.
    pub bytes_read: Option<u64>,
    /// Of those, the weights' and the KV cache's.
    pub weight_bytes: Option<u64>,
    pub kv_bytes: Option<u64>,
    /// Arithmetic operations over all calls (a multiply-add counts two).
    pub flops: Option<u64>,
    /// `bytes_read` over `total_ns`, in GB/s (10^9 bytes).
    pub gb_per_s: Option<f64>,
    /// `flops` over `total_ns`, in GFLOP/s.
    pub gflop_per_s: Option<f64>,
    /// The kind's time in each decode step, in step order (decode kinds only): the samples
    /// `qwen compare` puts its intervals on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples_ns: Option<Vec<u64>>,
}

impl KernelTime {
    fn new(name: &str, r: &NodeRecord) -> Self {
        KernelTime {
            name: name.to_string(),
            calls: r.calls,
            total_ns: r.total_ns,
            share: 0.0,
            cost: r.cost,
            bytes_read: None,
            weight_bytes: None,
            kv_bytes: None,
            flops: None,
            gb_per_s: None,
            gflop_per_s: None,
            samples_ns: None,
        }
    }

    /// Adds another node's calls; the cost stays known only while every part has one.
    fn merge(&mut self, r: &NodeRecord) {
        self.calls += r.calls;
        self.total_ns += r.total_ns;
        self.cost = match (self.cost, r.cost) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
    }
}

/// Time (and cost) per operator kind, slowest first.
pub fn by_kind(records: &[NodeRecord], phase_ns: u64) -> Vec<KernelTime> {
    let mut kinds: Vec<KernelTime> = Vec::new();
    for r in records.iter().filter(|r| r.calls > 0) {
        match kinds.iter_mut().find(|k| k.name == r.kind) {
            Some(k) => k.merge(r),
            None => kinds.push(KernelTime::new(&r.kind, r)),
        }
    }
    finish(kinds, phase_ns)
}

/// The `n` slowest individual nodes.
pub fn top_nodes(records: &[NodeRecord], n: usize, phase_ns: u64) -> Vec<KernelTime> {
    let nodes = records
        .iter()
        .filter(|r| r.calls > 0)
        .map(|r| KernelTime::new(&r.label, r))
        .collect();
    let mut nodes = finish(nodes, phase_ns);
    nodes.truncate(n);
    nodes
}

/// The cost of every call recorded, over the nodes that have a cost model.
pub fn total_cost(records: &[NodeRecord]) -> Cost {
    records.iter().filter_map(|r| r.cost).sum()
}

fn finish(mut lines: Vec<KernelTime>, phase_ns: u64) -> Vec<KernelTime> {
    for l in &mut lines {
        l.share = if phase_ns > 0 {
            l.total_ns as f64 / phase_ns as f64
        } else {
            0.0
        };
        if let Some(c) = l.cost {
            l.bytes_read = Some(c.bytes_read());
            l.weight_bytes = Some(c.weight_bytes);
            l.kv_bytes = Some(c.kv_bytes);
            l.flops = Some(c.flops);
            let seconds = l.total_ns as f64 / 1e9;
            if seconds > 0.0 {
                l.gb_per_s = Some(c.bytes_read() as f64 / seconds / 1e9);
                l.gflop_per_s = Some(c.flops as f64 / seconds / 1e9);
            }
        }
    }
    lines.sort_by_key(|l| std::cmp::Reverse(l.total_ns));
    lines
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
            cost: None,
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
    fn step_profile_keeps_each_kind_per_step_and_sums_the_rest() {
        let rec = |kind: &str, label: &str, calls, total_ns| NodeRecord {
            kind: kind.into(),
            label: label.into(),
            calls,
            total_ns,
            cost: None,
        };
        let mut p = StepProfile::default();
        p.add_step(vec![
            rec("MatMul", "a", 1, 30),
            rec("MatMul", "b", 1, 20),
            rec("Norm", "c", 1, 5),
        ]);
        p.add_step(vec![
            rec("MatMul", "a", 1, 40),
            rec("MatMul", "b", 1, 10),
            rec("Norm", "c", 0, 0),
        ]);
        // A step cut short: in the totals, not a sample.
        p.add_rest(vec![
            rec("MatMul", "a", 1, 7),
            rec("MatMul", "b", 0, 0),
            rec("Norm", "c", 0, 0),
        ]);
        assert_eq!(p.kind_samples("MatMul"), Some(vec![50, 50]));
        assert_eq!(p.kind_samples("Norm"), Some(vec![5, 0]));
        assert_eq!(p.kind_samples("Idle"), None);
        let totals: Vec<(u64, u64)> = p.records().iter().map(|r| (r.calls, r.total_ns)).collect();
        assert_eq!(totals, [(3, 77), (2, 30), (1, 5)]);
        let kinds = by_kind(p.records(), 112);
        assert_eq!((kinds[0].name.as_str(), kinds[0].total_ns), ("MatMul", 107));
    }

    #[test]
    fn kinds_carry_bytes_and_rates_when_every_node_has_a_cost() {
        let cost = |weight_bytes, flops| Cost {
            weight_bytes,
            kv_bytes: 10,
            activation_bytes: 5,
            flops,
        };
        let mut a = NodeRecord {
            kind: "MatMul".into(),
            label: "MatMul a".into(),
            ..Default::default()
        };
        a.add(1_000, Some(cost(985, 2_000)));
        a.add(1_000, Some(cost(985, 2_000)));
        let mut b = NodeRecord {
            kind: "MatMul".into(),
            label: "MatMul b".into(),
            ..Default::default()
        };
        b.add(2_000, Some(cost(1985, 6_000)));
        let mut c = NodeRecord {
            kind: "Other".into(),
            label: "Other c".into(),
            ..Default::default()
        };
        c.add(500, None);
        let records = [a, b, c];
        let kinds = by_kind(&records, 10_000);
        let m = &kinds[0];
        assert_eq!((m.calls, m.total_ns), (3, 4_000));
        // a's two calls of 1000 bytes each, b's one of 2000.
        assert_eq!(m.bytes_read, Some(4000));
        assert_eq!(m.weight_bytes, Some(2 * 985 + 1985));
        assert_eq!(m.kv_bytes, Some(30));
        assert_eq!(m.flops, Some(10_000));
        // 4000 bytes in 4 us: 1 GB/s; 10^4 operations in 4 us: 2.5 GFLOP/s.
        assert!((m.gb_per_s.unwrap() - 1.0).abs() < 1e-9);
        assert!((m.gflop_per_s.unwrap() - 2.5).abs() < 1e-9);
        let other = &kinds[1];
        assert_eq!((other.bytes_read, other.gb_per_s), (None, None));
        assert_eq!(total_cost(&records).bytes_read(), 4000);
    }
}
