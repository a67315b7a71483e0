//! What the op decorators ([`super::instrument`], [`super::interruptible`]) share: which nodes
//! of a compiled graph they wrap, the swap of an op for its wrapped self, and the inner op's
//! identity (its text names kernels in the profile; no two decorated ops compare equal).

use luminal::op::{InputTensor, Operator};
use luminal::prelude::*;

/// The nodes a decorator wraps: every op but luminal's `Function` loads (weights and inputs,
/// whose data the host sets).
pub fn decorated_nodes(graph: &Graph) -> Vec<NodeIndex> {
    graph
        .graph
        .node_indices()
        .filter(|&n| {
            graph
                .graph
                .node_weight(n)
                .is_some_and(|op| !op.as_any().is::<luminal::op::Function>())
        })
        .collect()
}

/// Replaces the op at `node` with `wrap(op)`.
pub fn wrap(
    graph: &mut Graph,
    node: NodeIndex,
    wrap: impl FnOnce(Box<dyn Operator>) -> Box<dyn Operator>,
) {
    if let Some(op) = graph.graph.node_weight_mut(node) {
        let inner = std::mem::replace(op, Box::new(Placeholder));
        *op = wrap(inner);
    }
}

/// Stands in for an op while it is being moved into its decorator; also the no-op op that
/// measures a decorator's own cost.
#[derive(Debug, PartialEq)]
pub struct Placeholder;

impl Operator for Placeholder {
    fn process(&mut self, _: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        vec![]
    }
}

/// `Debug` as the inner op (the profile names kinds by that text) and a `PartialEq` that never
/// holds, for a decorator struct with an `inner: Box<dyn Operator>` field.
macro_rules! decorator_identity {
    ($decorator:ty) => {
        impl std::fmt::Debug for $decorator {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.inner.fmt(f)
            }
        }

        impl PartialEq for $decorator {
            fn eq(&self, _: &Self) -> bool {
                false
            }
        }
    };
}
pub(crate) use decorator_identity;
