//! The gated DeltaNet of `--parallel`: [`super::super::delta_net`]'s op with the fused kernels
//! (`crate::cpu::delta::fused`: convolution, norms, gates, the delta rule and the gated norm in
//! one pass per key-head group, the state read and written once per step, groups across the
//! thread pool, SIMD by run-time ISA). [`FusedDeltaNetCompiler`] swaps each [`DeltaNet`] op for
//! one, which takes over its state; the inputs are the same.

use std::sync::Arc;

use luminal::op::{InputTensor, Operator};
use luminal::prelude::*;

use super::super::cost::{self, Cost, OpCost};
use super::super::delta_net::{call_cost, weights, DeltaNet, LayerState, Projections};
use super::super::rewrite::is_op;
use super::runtime::Runtime;
use crate::cpu::delta::{self, FusedOptions, FusedScratch, FusedWeights, Prefill};

/// The gated DeltaNet on the fused kernels.
pub struct FusedDeltaNet {
    state: LayerState,
    /// The layer's parameters laid out for the kernels, at the first call (they are inputs).
    weights: Option<FusedWeights>,
    runtime: Arc<Runtime>,
    scratch: FusedScratch,
    options: FusedOptions,
}

impl std::fmt::Debug for FusedDeltaNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FusedDeltaNet")
    }
}

impl PartialEq for FusedDeltaNet {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

impl Operator for FusedDeltaNet {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let shape = self.state.shape;
        let fused = match &self.weights {
            Some(w) => w,
            None => self.weights.insert(
                FusedWeights::new(&shape, &weights(&inp))
                    .expect("the graph gives a DeltaNet op parameters of its config's shape"),
            ),
        };
        let projections = Projections::of(&inp);
        let inputs = projections.inputs();
        let n = inputs.n_tokens(&shape);
        let mut out = self.runtime.buffers.take_stale(n * shape.value_dim());
        let (pool, scratch, options) = (&self.runtime.pool, &mut self.scratch, self.options);
        self.state.run(&inputs, &mut out, |state, inputs, out| {
            delta::fused::layer(pool, fused, state, inputs, out, scratch, options)
                .expect("the graph gives a DeltaNet op inputs of its config's shape");
        });
        drop(projections);
        self.runtime.buffers.recycle(inp);
        vec![Tensor::new(out)]
    }

    /// The cost model and kind, for the profiler; state commands, for the engine.
    fn custom(
        &mut self,
        key: &str,
        input: Box<dyn std::any::Any>,
    ) -> Option<Box<dyn std::any::Any>> {
        if let Some(answer) = cost::answer(self, key) {
            return Some(answer);
        }
        let (pool, scratch, options) = (&self.runtime.pool, &mut self.scratch, self.options);
        let weights = &self.weights;
        self.state.answer(key, input, |state, inputs, out| {
            // Tokens to replay come from a pass this op ran, so its weights are there.
            let fused = weights.as_ref().expect("a replayed pass ran with weights");
            delta::fused::layer(pool, fused, state, inputs, out, scratch, options)
                .expect("replayed inputs have the layer's shape");
        })
    }
}

impl OpCost for FusedDeltaNet {
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        call_cost(&self.state.shape, inp)
    }
}

/// Replaces every [`DeltaNet`] op with a [`FusedDeltaNet`] that takes over its state.
pub struct FusedDeltaNetCompiler {
    pub runtime: Arc<Runtime>,
}

impl Compiler for FusedDeltaNetCompiler {
    fn compile<T: ToIdsMut>(&self, graph: &mut Graph, _: T) {
        let nodes: Vec<NodeIndex> = graph
            .graph
            .node_indices()
            .filter(|&n| is_op::<DeltaNet>(graph, n))
            .collect();
        for node in nodes {
            let Some(op) = graph.graph.node_weight_mut(node) else {
                continue;
            };
            let Some(standard) = op.as_any_mut().downcast_mut::<DeltaNet>() else {
                continue;
            };
            let state = LayerState::new(standard.state.shape);
            let mut state = std::mem::replace(&mut standard.state, state);
            let options = FusedOptions::default();
            // The sequential kernels' results over a run of tokens are those of one call per
            // token (`cpu::delta::rows`), so a verification pass runs in one call and is
            // replayed on a rewind; the chunked form's last bits depend on the run.
            if matches!(options.prefill, Prefill::Sequential { .. }) {
                state = state.replaying();
            }
            *op = Box::new(FusedDeltaNet {
                state,
                weights: None,
                runtime: self.runtime.clone(),
                scratch: FusedScratch::default(),
                options,
            });
        }
    }
}
