//! What the parallel ops of one engine share: the thread pool, scratch buffers, the kernel plans.

use std::sync::{Arc, Mutex};

use crate::cpu::matmul::Scratch;
use crate::cpu::moe::MoeScratch;
use crate::cpu::plans;
use crate::cpu::pool::ThreadPool;
use crate::cpu::repack_store::RepackStore;
use crate::cpu::KernelError;
use crate::trace::Tracer;

use super::buffers;

/// What the parallel ops of one engine share.
pub struct Runtime {
    pub pool: ThreadPool,
    /// Quantized activations and dequantized rows, reused by every matmul (ops run one at a time).
    pub scratch: Mutex<Scratch>,
    /// The mixture-of-experts ops' buffers (one layer runs at a time).
    pub moe_scratch: Mutex<MoeScratch>,
    pub plans: plans::PlanBook,
    /// Matrices repacked into panels once, where the kernel search reads them so.
    pub repacked: RepackStore,
    pub buffers: buffers::BufferPool,
}

impl Runtime {
    /// The runtime of `threads` threads, its kernel search as `plans` asks; with a tracer, the
    /// pool records every thread's share of every job and the kernel search every search it
    /// makes.
    pub fn new(
        threads: usize,
        plans: &plans::PlanOptions,
        trace: Option<&Arc<Tracer>>,
    ) -> Result<Arc<Self>, KernelError> {
        let pool = match trace {
            Some(tracer) => ThreadPool::traced(threads, tracer)?,
            None => ThreadPool::new(threads)?,
        };
        Ok(Arc::new(Runtime {
            pool,
            scratch: Mutex::new(Scratch::default()),
            moe_scratch: Mutex::new(MoeScratch::default()),
            plans: plans::PlanBook::load(threads, plans).traced(trace.cloned()),
            repacked: RepackStore::default(),
            buffers: buffers::BufferPool::default(),
        }))
    }
}
