//! CPU compute kernels, with no luminal in them: what the luminal operators of `crate::ops` call.
//!
//! - [`matmul`] multiplies a GGUF weight matrix, read in place, by a batch of f32 activations:
//!   integer dot products on activations quantized to 8 bits as llama.cpp does ([`quantize`]:
//!   Q8_0/Q8_1/Q8_K), or f32 FMAs for F32/F16/BF16 weights; the tile and panel kernels per weight
//!   family and ISA are in [`dot`]; SIMD paths chosen at run time ([`CpuFeatures`]),
//!   multi-threaded on a persistent [`ThreadPool`]. Block geometry and the list of supported
//!   types are `crate::quant`'s.
//! - [`plans`] searches and caches the fastest matmul plan per job ([`tune`] times candidates);
//!   [`bandwidth`] measures (and caches) the memory read bandwidth the roofline compares with.
//! - [`ggml_math`] reproduces ggml's summation orders and `exp` for the standard path's exact
//!   numerics; [`flash`] holds the parallel attention's tiled loops over the f16 KV cache.
//! - [`moe`] runs a mixture-of-experts layer's router and routed experts on the same kernels.
//! - [`delta`] holds the gated DeltaNet layers' convolution, recurrence and norms (Qwen3.5).

pub mod amx;
pub mod bandwidth;
pub mod delta;
pub mod dot;
pub mod error;
pub mod features;
pub mod flash;
pub mod ggml_math;
pub mod matmul;
pub mod moe;
pub mod plans;
pub mod pool;
pub mod quantize;
pub mod repack;
pub mod repack_store;
pub(crate) mod shared;
pub mod synth;

pub use error::KernelError;
pub use features::{cpu_features, CpuFeatures, Isa};
pub use matmul::{
    dequantize_row, matmul, matmul_multi, MatmulPlan, Scratch, WeightMatrix, MAX_MATRICES,
};
pub use pool::ThreadPool;
