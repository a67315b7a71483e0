//! Where the model runs: the engines side by side, the interface generation sees ([`Runner`]),
//! and the choice between them ([`open`]).
//!
//! - `cpu_engine` (+ `cpu_graph`): the Qwen3 graph with our CPU ops, compiled by the standard
//!   or the `--parallel` passes (`crate::ops`); the kernels are `crate::cpu`'s.
//! - `gpu_engine` (+ `gpu_graph`, `gpu_weights`): the same Qwen3 graph with stock luminal ops
//!   only, on a [`device::Device`]: `cuda` (`--features cuda`), `metal` (`--features metal`,
//!   macOS), or `reference` (luminal's stock CPU ops: how the default test suite checks the GPU
//!   graph's numerics on a machine without a GPU).
//! - `cpu_mtp`: a file's multi-token-prediction block as a [`DraftHead`] beside the CPU
//!   engine (`--mtp`).
//! - `loader`: GGUF tensors to graph weights, for every engine.

pub mod cpu_engine;
pub mod cpu_graph;
pub mod cpu_mtp;
pub mod device;
pub mod draft_head;
pub mod gpu_engine;
pub mod gpu_graph;
pub mod gpu_weights;
pub mod loader;
mod options;
pub mod reference;
pub mod runner;

#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(all(feature = "metal", target_os = "macos"))]
pub mod metal;

#[cfg(all(feature = "metal", not(target_os = "macos")))]
compile_error!(
    "feature `metal` needs macOS (Apple GPUs): build without it here, or with `--features cuda` for NVIDIA GPUs"
);

pub use cpu_engine::SAVED_STATES;
pub use draft_head::{DraftHead, DraftStep};
pub use options::EngineOptions;
pub use runner::{check_step, CompiledMode, EngineError, Features, Logits, Runner};

use crate::gguf::GgufFile;
use crate::model::config::{Arch, MtpBlock, Qwen3Config};
use crate::settings::{BackendChoice, Mode};

use cpu_engine::Engine;
use device::{GpuError, Precision};
use gpu_engine::{GpuEngine, GpuOptions};

/// Builds the engine for `choice`. On a GPU the parallel mode selects f16 (the enhanced path
/// there): half the weight memory and bandwidth, cuBLAS/Metal half-precision matmuls, f16-safe
/// norms.
pub fn open(
    choice: BackendChoice,
    file: &GgufFile,
    config: &Qwen3Config,
    options: EngineOptions,
) -> Result<Box<dyn Runner>, EngineError> {
    let precision = match options.mode {
        Mode::Standard => Precision::F32,
        Mode::Parallel { .. } => Precision::F16,
    };
    let gpu = GpuOptions::new(options.max_context);
    let dense_attention = matches!(config.arch, Arch::Qwen3 | Arch::Qwen3Vl);
    if !dense_attention && choice != BackendChoice::Cpu {
        // The GPU graph is stock luminal ops, which cannot express the routing or the
        // recurrent layers: the CPU engine's ops do. (Qwen3-VL's sections live in the
        // rotary tables, which the GPU engine builds as the CPU one does.)
        return Err(GpuError::CpuOnly {
            backend: choice.name(),
            arch: config.arch.name(),
        }
        .into());
    }
    Ok(match choice {
        BackendChoice::Cpu => Box::new(Engine::new(file, config, options)?),
        BackendChoice::Cuda => open_cuda(file, config, gpu, precision)?,
        BackendChoice::Reference => {
            let device = reference::Reference {
                f16_graph: precision == Precision::F16,
            };
            Box::new(GpuEngine::new(file, config, gpu, device)?)
        }
        BackendChoice::Metal => open_metal(file, config, gpu, precision)?,
    })
}

/// A trunk that keeps its hidden rows and the draft model beside it.
pub type Drafting = (Box<dyn Runner>, Box<dyn DraftHead>);

/// Builds the CPU engine keeping its hidden rows, and the prediction block `mtp` beside it on
/// the same compilation path and thread pool (`--mtp`; the GPU engines run no hybrid file).
pub fn open_drafting(
    choice: BackendChoice,
    file: &GgufFile,
    config: &Qwen3Config,
    mtp: &MtpBlock,
    options: EngineOptions,
) -> Result<Drafting, EngineError> {
    let hybrid = match (&config.hybrid, choice) {
        (Some(h), BackendChoice::Cpu) => h,
        _ => {
            return Err(GpuError::CpuOnly {
                backend: choice.name(),
                arch: config.arch.name(),
            }
            .into())
        }
    };
    let (mode, max_context) = (options.mode, options.max_context);
    let trunk = Engine::with_hidden_rows(file, config, options)?;
    let runtime = trunk.runtime();
    let head = cpu_mtp::MtpEngine::new(
        file,
        config,
        hybrid,
        mtp,
        mode,
        max_context,
        runtime.as_ref(),
    )?;
    Ok((Box::new(trunk), Box::new(head)))
}

#[cfg(feature = "cuda")]
fn open_cuda(
    file: &GgufFile,
    config: &Qwen3Config,
    options: GpuOptions,
    precision: Precision,
) -> Result<Box<dyn Runner>, GpuError> {
    let device = cuda::Cuda::new(precision)?;
    Ok(Box::new(GpuEngine::new(file, config, options, device)?))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(
    _: &GgufFile,
    _: &Qwen3Config,
    _: GpuOptions,
    _: Precision,
) -> Result<Box<dyn Runner>, GpuError> {
    Err(GpuError::NotBuilt {
        backend: "cuda",
        needs: "needs the CUDA toolkit",
    })
}

#[cfg(all(feature = "metal", target_os = "macos"))]
fn open_metal(
    file: &GgufFile,
    config: &Qwen3Config,
    options: GpuOptions,
    precision: Precision,
) -> Result<Box<dyn Runner>, GpuError> {
    let device = metal::Metal::new(precision)?;
    Ok(Box::new(GpuEngine::new(file, config, options, device)?))
}

#[cfg(not(all(feature = "metal", target_os = "macos")))]
fn open_metal(
    _: &GgufFile,
    _: &Qwen3Config,
    _: GpuOptions,
    _: Precision,
) -> Result<Box<dyn Runner>, GpuError> {
    Err(GpuError::NotBuilt {
        backend: "metal",
        needs: "macOS only",
    })
}
