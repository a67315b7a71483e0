//! What differs between the backends of the GPU graph: how it is compiled and how weights get to
//! the device. Everything else (graph, inputs, KV cache hand-over) is the engine's.

use luminal::prelude::*;

use crate::gguf::GgufFile;

use super::gpu_graph::GraphOptions;
use super::gpu_weights::{self, WeightSlot};
use super::{GpuError, Precision};

pub trait Backend {
    /// Short name for reports: `cuda`, `metal`, `reference`.
    fn name(&self) -> &'static str;

    fn precision(&self) -> Precision;

    /// How the graph is built for this backend: f16 needs the f16-safe norms.
    fn graph_options(&self) -> GraphOptions {
        GraphOptions {
            f16_safe_norms: self.precision() == Precision::F16,
        }
    }

    /// Compiles `cx`, then gives every weight node in `slots` its data from `file`. `remap` holds
    /// the ids the engine uses afterwards (inputs, caches, logits); the compilers update them.
    fn compile_and_bind(
        &mut self,
        cx: &mut Graph,
        remap: Vec<&mut NodeIndex>,
        slots: &[WeightSlot],
        file: &GgufFile,
    ) -> Result<(), GpuError>;

    /// Compiler passes in the order they run, for the report.
    fn passes(&self) -> Vec<&'static str>;
}

/// luminal's stock CPU ops with only `GenericCompiler`: the GPU graph's numerics on any machine.
/// Slow (scalar loops, see LUMINAL-0.2-NOTES), so for tests on small models. `CPUCompiler` is left
/// out: its `Equal` is wrong, and what else it does is speed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reference {
    /// Build the f16 backends' graph (f16-safe norms), computed in f32.
    pub f16_graph: bool,
}

impl Backend for Reference {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn precision(&self) -> Precision {
        Precision::F32
    }

    fn compile_and_bind(
        &mut self,
        cx: &mut Graph,
        remap: Vec<&mut NodeIndex>,
        slots: &[WeightSlot],
        file: &GgufFile,
    ) -> Result<(), GpuError> {
        cx.compile(GenericCompiler::default(), remap);
        for slot in slots {
            let data = gpu_weights::decode(file, &slot.name)?;
            cx.set_tensor(slot.node, 0, Tensor::new(data));
            cx.keep_tensors(slot.node);
        }
        Ok(())
    }

    fn graph_options(&self) -> GraphOptions {
        GraphOptions {
            f16_safe_norms: self.f16_graph,
        }
    }

    fn passes(&self) -> Vec<&'static str> {
        vec!["GenericCompiler"]
    }
}
