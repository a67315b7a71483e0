//! Ctrl-C between ops: a decorator that ends a forward pass at the next op boundary once the
//! interrupt flag is set ([`crate::interrupt`]), so that a long prompt pass (seconds to
//! minutes on a large model) stops within one op instead of at its end.
//!
//! luminal's `execute` has no way out of its loop, so the decorator unwinds with a
//! [`Stopped`] payload (`resume_unwind`: no panic message) and [`execute`] catches it, then
//! drops the pass's intermediate tensors (luminal's `reset`), so that the next pass computes
//! every node again. Weights and the KV caches are untouched: the caches' entries past the
//! engine's position are overwritten by later passes.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use luminal::op::{InputTensor, Operator};
use luminal::prelude::*;

use super::decorator::{decorated_nodes, decorator_identity, wrap};

/// The payload of a pass that a Ctrl-C stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// Runs `inner` unless a Ctrl-C came, else stops the pass.
pub struct Interruptible {
    inner: Box<dyn Operator>,
}

decorator_identity!(Interruptible);

impl Operator for Interruptible {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        if crate::interrupt::requested() {
            resume_unwind(Box::new(Stopped));
        }
        self.inner.process(inp)
    }

    fn custom(
        &mut self,
        key: &str,
        input: Box<dyn std::any::Any>,
    ) -> Option<Box<dyn std::any::Any>> {
        self.inner.custom(key, input)
    }
}

/// Wraps every operator of a compiled graph (weight and input loads aside: the host sets
/// their data) in an [`Interruptible`].
pub fn install(graph: &mut Graph) {
    for node in decorated_nodes(graph) {
        wrap(graph, node, |inner| Box::new(Interruptible { inner }));
    }
}

/// `graph.execute()`, or `Err(Stopped)` when a Ctrl-C stopped it between two ops (the graph is
/// then ready for another pass). Any other panic goes on unwinding.
pub fn execute(graph: &mut Graph) -> Result<(), Stopped> {
    match catch_unwind(AssertUnwindSafe(|| graph.execute())) {
        Ok(()) => Ok(()),
        Err(payload) if payload.is::<Stopped>() => {
            graph.reset();
            Err(Stopped)
        }
        Err(payload) => resume_unwind(payload),
    }
}
