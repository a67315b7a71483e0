//! GPU backends: the Qwen3 graph built from stock luminal ops, compiled by luminal's CUDA
//! (`--features cuda`) or Metal (`--features metal`, macOS) compiler.
//!
//! The graph ([`graph`]), the weight handling ([`weights`]) and the engine ([`engine`]) are the
//! same for every backend and are always built: the [`backend::Reference`] backend runs them on
//! luminal's stock CPU ops, which is how the default test suite checks the GPU graph's numerics on
//! a machine without a GPU. Only the device glue ([`cuda`], [`metal`]) needs the features.

pub mod cpu_engine;
pub mod device;
pub mod gpu_engine;
pub mod gpu_graph;
pub mod gpu_weights;
pub mod runner;
pub mod weights;

#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(all(feature = "metal", target_os = "macos"))]
pub mod metal;

#[cfg(all(feature = "metal", not(target_os = "macos")))]
compile_error!(
    "feature `metal` needs macOS (Apple GPUs): build without it here, or with `--features cuda` for NVIDIA GPUs"
);

use thiserror::Error;

use crate::backend::cpu_engine::EngineError;
use crate::backend::weights::LoadError;

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
        "this qwen was built without the {backend} backend: rebuild with \
         `cargo build --release --features {backend}` ({needs})"
    )]
    NotBuilt {
        backend: &'static str,
        needs: &'static str,
    },
    #[error(transparent)]
    Cpu(#[from] EngineError),
}
