//! CPU compute kernels for quantized and float matrix products, with no luminal in them.
//!
//! [`matmul`] multiplies a GGUF weight matrix, read in place, by a batch of f32 activations:
//! integer dot products on activations quantized to 8 bits as llama.cpp does (Q8_0/Q8_1/Q8_K),
//! or f32 FMAs for F32/F16/BF16 weights; SIMD paths chosen at run time ([`CpuFeatures`]),
//! multi-threaded on a persistent [`ThreadPool`].

pub mod blocks;
pub mod dot;
pub mod error;
pub mod features;
pub mod ggml_math;
pub mod kv_simd;
pub mod matmul;
pub mod plans;
pub mod pool;
pub mod quantize;
pub(crate) mod shared;
pub mod synth;
pub mod tune;

pub use blocks::{dequantize_row, KERNEL_TYPES};
pub use error::KernelError;
pub use features::{CpuFeatures, Isa};
pub use matmul::{
    cpu_features, matmul, matmul_multi, MatmulPlan, Scratch, WeightMatrix, MAX_MATRICES,
};
pub use pool::ThreadPool;
