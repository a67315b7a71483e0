//! One graph node's time and cost over the calls recorded: what an engine hands the report of a
//! profiled run (a neutral leaf, so that neither side owns the other's types).

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
