//! The `--parallel` path: fused, multi-threaded SIMD kernels on the quantized weights, put in the
//! graph by compiler passes that run after the standard ones.
//!
//! A layer of the standard graph is seventeen ops; here it is five: RMSNorm + q/k/v matmuls,
//! fused attention (q/k norms, RoPE, KV cache, attention over heads in parallel), output
//! projection + residual, RMSNorm + gate/up matmuls + SwiGLU, down projection + residual.

pub mod buffers;
pub mod fused_attention;
pub mod fused_delta_net;
pub mod fused_matmul;
pub mod fused_moe;
mod runtime;

use std::sync::Arc;

use luminal::prelude::*;

pub use runtime::Runtime;

/// The standard passes, then ours. Weights must be bound before compiling; `rope_tables` are the
/// graph's `rope_cos` and `rope_sin` inputs.
pub fn compiler(runtime: &Arc<Runtime>, rope_tables: [NodeIndex; 2]) -> impl Compiler {
    (
        super::standard(rope_tables),
        fused_attention::FusedAttentionCompiler {
            runtime: runtime.clone(),
            rope_inputs: rope_tables,
        },
        fused_delta_net::FusedDeltaNetCompiler {
            runtime: runtime.clone(),
        },
        fused_moe::FusedMoeCompiler {
            runtime: runtime.clone(),
        },
        fused_matmul::FusedMatMulCompiler {
            runtime: runtime.clone(),
        },
    )
}
