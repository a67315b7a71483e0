//! One interface over the CPU engine and the GPU engines, and the choice between them, so that
//! generation and the timing report do not care which one runs.

use std::time::Duration;

use crate::backend::cpu_engine::{Engine, EngineError, EngineOptions, Features, Logits};
use crate::gguf::GgufFile;
use crate::model::config::Qwen3Config;
use crate::ops::profile::NodeRecord;

use super::device::Backend;
use super::gpu_engine::{GpuEngine, GpuOptions};
use super::GpuError;

/// What generation needs from an engine.
pub trait Runner {
    /// Runs `tokens` at the next positions; the logits asked for, `[rows, vocab]`.
    fn forward(&mut self, tokens: &[u32], want: Logits) -> Result<Vec<f32>, EngineError>;
    /// Positions already in the KV cache.
    fn position(&self) -> usize;
    /// Positions the KV cache holds.
    fn max_context(&self) -> usize;
    /// Forgets the KV cache.
    fn reset(&mut self);
    /// Keeps at most the first `len` positions of the KV cache; returns how many were kept
    /// (a backend that cannot cut its cache starts over and returns 0).
    fn truncate(&mut self, len: usize) -> usize;
    fn compile_time(&self) -> Duration;
    fn features(&self) -> Features;
    /// Per-node timings since the last call, when the engine profiles (CPU only).
    fn take_profile(&mut self) -> Option<Vec<NodeRecord>> {
        None
    }
}

impl Runner for Engine {
    fn truncate(&mut self, len: usize) -> usize {
        Engine::truncate(self, len);
        Engine::position(self)
    }
    fn forward(&mut self, tokens: &[u32], want: Logits) -> Result<Vec<f32>, EngineError> {
        Engine::forward(self, tokens, want)
    }
    fn position(&self) -> usize {
        Engine::position(self)
    }
    fn max_context(&self) -> usize {
        self.options().max_context
    }
    fn reset(&mut self) {
        Engine::reset(self)
    }
    fn compile_time(&self) -> Duration {
        Engine::compile_time(self)
    }
    fn features(&self) -> Features {
        Engine::features(self)
    }
    fn take_profile(&mut self) -> Option<Vec<NodeRecord>> {
        Engine::take_profile(self)
    }
}

impl<B: Backend> Runner for GpuEngine<B> {
    fn truncate(&mut self, len: usize) -> usize {
        // The device cache grows by concatenation and cannot be cut: keep it only when whole.
        if len < self.position() {
            self.reset();
        }
        self.position()
    }
    fn forward(&mut self, tokens: &[u32], want: Logits) -> Result<Vec<f32>, EngineError> {
        GpuEngine::forward(self, tokens, want)
    }
    fn position(&self) -> usize {
        GpuEngine::position(self)
    }
    fn max_context(&self) -> usize {
        self.options().max_context
    }
    fn reset(&mut self) {
        GpuEngine::reset(self)
    }
    fn compile_time(&self) -> Duration {
        GpuEngine::compile_time(self)
    }
    fn features(&self) -> Features {
        GpuEngine::features(self)
    }
}

/// Where the model runs (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BackendChoice {
    /// The CPU engine (always built).
    #[default]
    Cpu,
    /// NVIDIA GPU 0 (built with `--features cuda`).
    Cuda,
    /// The Apple GPU (built with `--features metal`, macOS).
    Metal,
    /// The GPU graph on luminal's stock CPU ops: checks the GPU path without a GPU (slow).
    #[value(hide = true)]
    Reference,
}

impl BackendChoice {
    /// The backends this binary was built with.
    pub fn available() -> Vec<BackendChoice> {
        let mut out = vec![BackendChoice::Cpu, BackendChoice::Reference];
        if cfg!(feature = "cuda") {
            out.push(BackendChoice::Cuda);
        }
        if cfg!(all(feature = "metal", target_os = "macos")) {
            out.push(BackendChoice::Metal);
        }
        out
    }
}

/// Builds the engine for `choice`. On a GPU, `parallel` selects f16 (the enhanced path there):
/// half the weight memory and bandwidth, cuBLAS/Metal half-precision matmuls, f16-safe norms.
pub fn open(
    choice: BackendChoice,
    file: &GgufFile,
    config: &Qwen3Config,
    cpu: EngineOptions,
    parallel: bool,
) -> Result<Box<dyn Runner>, GpuError> {
    let precision = if parallel {
        super::Precision::F16
    } else {
        super::Precision::F32
    };
    let gpu = GpuOptions::new(cpu.max_context);
    match choice {
        BackendChoice::Cpu => Ok(Box::new(Engine::new(file, config, cpu)?)),
        BackendChoice::Cuda => open_cuda(file, config, gpu, precision),
        BackendChoice::Reference => {
            let backend = super::device::Reference {
                f16_graph: precision == super::Precision::F16,
            };
            Ok(Box::new(GpuEngine::new(file, config, gpu, backend)?))
        }
        BackendChoice::Metal => open_metal(file, config, gpu, precision),
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(
    file: &GgufFile,
    config: &Qwen3Config,
    options: GpuOptions,
    precision: super::Precision,
) -> Result<Box<dyn Runner>, GpuError> {
    let backend = super::cuda::Cuda::new(precision)?;
    Ok(Box::new(GpuEngine::new(file, config, options, backend)?))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(
    _: &GgufFile,
    _: &Qwen3Config,
    _: GpuOptions,
    _: super::Precision,
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
    precision: super::Precision,
) -> Result<Box<dyn Runner>, GpuError> {
    let backend = super::metal::Metal::new(precision)?;
    Ok(Box::new(GpuEngine::new(file, config, options, backend)?))
}

#[cfg(not(all(feature = "metal", target_os = "macos")))]
fn open_metal(
    _: &GgufFile,
    _: &Qwen3Config,
    _: GpuOptions,
    _: super::Precision,
) -> Result<Box<dyn Runner>, GpuError> {
    Err(GpuError::NotBuilt {
        backend: "metal",
        needs: "macOS only",
    })
}
