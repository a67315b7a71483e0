//! The reference device: the GPU graph on luminal's stock CPU ops with only `GenericCompiler`,
//! so the GPU path's numerics can be checked on any machine.
//!
//! Slow (scalar loops, see LUMINAL-0.2-NOTES), so for tests on small models. `CPUCompiler` is
//! left out: its `Equal` is wrong, and what else it does is speed.

use luminal::prelude::*;

use crate::gguf::GgufFile;
use crate::model::norm::NormKind;

use super::device::{Device, GpuError, Precision};
use super::gpu_weights::WeightSlot;

/// luminal's stock CPU ops, computing in f32.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reference {
    /// Build the f16 devices' graph (f16-safe norms), computed in f32.
    pub f16_graph: bool,
}

impl Device for Reference {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn precision(&self) -> Precision {
        Precision::F32
    }

    fn norm(&self) -> NormKind {
        if self.f16_graph {
            NormKind::F16Safe
        } else {
            NormKind::Plain
        }
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
            let data = slot.decode(file)?;
            cx.set_tensor(slot.node, 0, Tensor::new(data));
            cx.keep_tensors(slot.node);
        }
        Ok(())
    }

    fn passes(&self) -> Vec<&'static str> {
        vec!["GenericCompiler"]
    }
}
