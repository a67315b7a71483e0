//! One graph node's time and cost over the calls recorded, and the decode steps' records kept
//! step by step: what an engine hands the report of a profiled run (a neutral leaf, so that
//! neither side owns the other's types).

use crate::ops::cost::Cost;

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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
