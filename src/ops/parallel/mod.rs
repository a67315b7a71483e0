//! The `--parallel` path: fused, multi-threaded SIMD kernels on the quantized weights, put in the
//! graph by compiler passes that run after the standard ones.
//!
//! A layer of the standard graph is seventeen ops; here it is five: RMSNorm + q/k/v matmuls,
//! fused attention (q/k norms, RoPE, KV cache, attention over heads in parallel), output
//! projection + residual, RMSNorm + gate/up matmuls + SwiGLU, down projection + residual.

pub mod buffers;
pub mod fused_attention;
pub mod fused_matmul;
pub mod fused_moe;

use std::sync::{Arc, Mutex};

use luminal::prelude::*;

use crate::cpu::matmul::Scratch;
use crate::cpu::moe::MoeScratch;
use crate::cpu::plans;
use crate::cpu::pool::ThreadPool;
use crate::cpu::KernelError;
use crate::trace::Tracer;

/// What the parallel ops of one engine share.
pub struct Runtime {
    pub pool: ThreadPool,
    /// Quantized activations and dequantized rows, reused by every matmul (ops run one at a time).
    pub scratch: Mutex<Scratch>,
    /// The mixture-of-experts ops' buffers (one layer runs at a time).
    pub moe_scratch: Mutex<MoeScratch>,
    pub plans: plans::PlanBook,
    pub buffers: buffers::BufferPool,
}

impl Runtime {
    /// The runtime of `threads` threads; with a tracer, the pool records every thread's share
    /// of every job and the kernel search every search it makes.
    pub fn new(threads: usize, trace: Option<&Arc<Tracer>>) -> Result<Arc<Self>, KernelError> {
        let pool = match trace {
            Some(tracer) => ThreadPool::traced(threads, tracer)?,
            None => ThreadPool::new(threads)?,
        };
        Ok(Arc::new(Runtime {
            pool,
            scratch: Mutex::new(Scratch::default()),
            moe_scratch: Mutex::new(MoeScratch::default()),
            plans: plans::PlanBook::load(threads).traced(trace.cloned()),
            buffers: buffers::BufferPool::default(),
        }))
    }
}

/// The standard passes, then ours. Weights must be bound before compiling; `rope_tables` are the
/// graph's `rope_cos` and `rope_sin` inputs.
pub fn compiler(runtime: &Arc<Runtime>, rope_tables: [NodeIndex; 2]) -> impl Compiler {
    (
        super::standard(rope_tables),
        fused_attention::FusedAttentionCompiler {
            runtime: runtime.clone(),
            rope_inputs: rope_tables,
        },
        fused_moe::FusedMoeCompiler {
            runtime: runtime.clone(),
        },
        fused_matmul::FusedMatMulCompiler {
            runtime: runtime.clone(),
        },
    )
}
