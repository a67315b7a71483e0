//! The kernel profile the report shows: time per operator kind and for the slowest nodes, with
//! the bytes read and arithmetic done (each op's cost model) as achieved GB/s and GFLOP/s.

use serde::Serialize;

use crate::node_record::NodeRecord;
use crate::ops::cost::Cost;

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
    use crate::ops::cost::Cost;

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
