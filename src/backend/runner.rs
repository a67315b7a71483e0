//! What generation needs from an engine, whichever backend runs it: the [`Runner`] trait, the
//! contract of one step ([`Logits`], [`check_step`], [`EngineError`]) and the [`Features`] an
//! engine reports.

use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use crate::node_record::NodeRecord;

use super::device::GpuError;
use super::loader::LoadError;

/// A compiled model ready to run steps over its KV cache.
pub trait Runner {
    /// Runs `tokens` at the next positions; the logits asked for, `[rows, vocab]`.
    fn forward(&mut self, tokens: &[u32], want: Logits) -> Result<Vec<f32>, EngineError>;
    /// Positions already in the KV cache.
    fn position(&self) -> usize;
    /// Positions the KV cache holds.
    fn max_context(&self) -> usize;
    /// Forgets the KV cache: the next forward pass starts at position 0.
    fn reset(&mut self);
    /// Keeps at most the first `len` positions of the KV cache; returns how many were kept
    /// (a backend that cannot cut its cache starts over and returns 0).
    fn truncate(&mut self, len: usize) -> usize;
    /// Whether [`Runner::truncate`] keeps any prefix (a backend whose cache only grows starts
    /// over instead).
    fn can_cut_cache(&self) -> bool {
        true
    }
    fn compile_time(&self) -> Duration;
    fn features(&self) -> Features;
    /// Per-node timings since the last call, when the engine profiles (CPU only).
    fn take_profile(&mut self) -> Option<Vec<NodeRecord>> {
        None
    }
    /// The final-normed hidden state of every position of the last pass, `[tokens, hidden]`,
    /// when the engine was built to keep them (for a multi-token-prediction block).
    fn hidden_rows(&mut self) -> Option<Vec<f32>> {
        None
    }
    /// Has the next pass keep what it needs to be cut back to any position inside it without
    /// running tokens again (a speculative verification: a hybrid model's recurrent states
    /// after each token). The KV cache needs nothing: later entries are overwritten.
    fn keep_steps(&mut self) {}
}

/// Which positions of a forward pass need logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position (generation).
    Last,
    /// Every position of the pass (teacher-forced evaluation).
    All,
}

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("nothing to run: no tokens given")]
    NoTokens,
    #[error("token id {id} is outside the model's vocabulary of {vocab} tokens")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error(
        "the context is full: {needed} positions needed, the KV cache holds {max_context} \
         (raise --ctx-size or shorten the prompt)"
    )]
    ContextFull { needed: usize, max_context: usize },
    #[error("cannot start the kernel threads: {0}")]
    Threads(#[from] crate::cpu::KernelError),
    #[error(transparent)]
    KvCache(#[from] crate::ops::cached_attention::KvCacheError),
    /// A Ctrl-C stopped the pass between two ops; the position did not advance.
    #[error("interrupted")]
    Interrupted,
}

/// What every engine checks before a forward pass: tokens given, inside the vocabulary, and
/// room for them in the KV cache after `position`.
pub fn check_step(
    tokens: &[u32],
    vocab: usize,
    position: usize,
    max_context: usize,
) -> Result<(), EngineError> {
    if tokens.is_empty() {
        return Err(EngineError::NoTokens);
    }
    if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(EngineError::TokenOutOfRange { id, vocab });
    }
    let needed = position + tokens.len();
    if needed > max_context {
        return Err(EngineError::ContextFull {
            needed,
            max_context,
        });
    }
    Ok(())
}

/// Which compilation path an engine took: the report's `mode` (`"standard"`, `"parallel"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompiledMode {
    /// Exact f32 on the CPU; f32 on a GPU.
    Standard,
    /// `--parallel`: fused SIMD kernels on the CPU; f16 on a GPU.
    Parallel,
}

impl CompiledMode {
    pub fn is_parallel(self) -> bool {
        self == CompiledMode::Parallel
    }
}

impl std::fmt::Display for CompiledMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CompiledMode::Standard => "standard",
            CompiledMode::Parallel => "parallel",
        })
    }
}

/// Which enhanced features a compiled engine uses, for the timing report.
#[derive(Debug, Clone, Serialize)]
pub struct Features {
    pub backend: &'static str,
    pub mode: CompiledMode,
    pub threads: usize,
    /// Instruction set the kernels use.
    pub simd: String,
    /// Compiler passes, in the order they ran.
    pub compiler_passes: Vec<&'static str>,
    /// Our kernels in the graph and what they do.
    pub kernels: Vec<&'static str>,
    pub kv_cache: String,
    /// A mixture of experts: experts per layer, experts per token and what the MoE ops read;
    /// absent for a dense model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experts: Option<String>,
    /// Nodes in the compiled graph.
    pub graph_nodes: usize,
    /// The matmul plans the kernel search chose (parallel mode), one line per job.
    pub kernel_plans: Vec<String>,
    /// Where chosen plans are cached, if anywhere.
    pub plan_cache: Option<String>,
    /// The weights repacked into panels once at compile (parallel mode), with the time it
    /// took and the mapped bytes given back; absent where none were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repacked: Option<String>,
}
