//! What differs between the GPU engine's devices (CUDA, Metal, the reference CPU ops): how the
//! graph is compiled and how weights get to the device. Everything else (the graph, its inputs,
//! the KV cache hand-over) is the engine's (`gpu_engine`).

use luminal::prelude::*;
use thiserror::Error;

use crate::gguf::GgufFile;
use crate::model::norm::NormKind;

use super::gpu_weights::WeightSlot;
use super::loader::LoadError;

/// A device the GPU graph runs on.
pub trait Device {
    /// Short name for reports: `cuda`, `metal`, `reference`.
    fn name(&self) -> &'static str;

    fn precision(&self) -> Precision;

    /// The graph's RMSNorms: f16 needs the f16-safe form.
    fn norm(&self) -> NormKind {
        match self.precision() {
            Precision::F32 => NormKind::Plain,
            Precision::F16 => NormKind::F16Safe,
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

/// The float type a GPU graph computes and stores weights in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    /// Half the memory and bandwidth; RMSNorms switch to their f16-safe form.
    F16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

#[derive(Debug, Error)]
pub enum GpuError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("no {backend} device: {reason}")]
    NoDevice {
        backend: &'static str,
        reason: String,
    },
    #[error("{backend}: {detail}")]
    Device {
        backend: &'static str,
        detail: String,
    },
    #[error("weight '{name}' is not read through an upload op after compiling (found {found})")]
    Unbindable { name: String, found: String },
    #[error(
        "the {backend} GPU graph runs dense Qwen3 only (qwen3, qwen3vl), and this file is {arch}: run it \
         on the CPU (without --backend {backend})"
    )]
    CpuOnly {
        backend: &'static str,
        arch: &'static str,
    },
    #[error(
        "this qwen was built without the {backend} backend: rebuild with \
         `cargo build --release --features {backend}` ({needs})"
    )]
    NotBuilt {
        backend: &'static str,
        needs: &'static str,
    },
}
