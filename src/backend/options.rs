//! How to build an engine: the options every backend reads.

use std::sync::Arc;

use crate::cpu::plans::PlanOptions;
use crate::settings::Mode;
use crate::trace::Tracer;

/// How to build an engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub mode: Mode,
    /// Positions the KV cache holds (prompt plus generated tokens).
    pub max_context: usize,
    /// Wrap every op in a timing decorator (for `--kernel-timing`; CPU only).
    pub profile: bool,
    /// Record the op calls, the pool threads' shares and the kernel searches (`--trace`; op
    /// spans on the CPU only).
    pub trace: Option<Arc<Tracer>>,
    /// The kernel search (`--parallel`): whether it runs, and where its choices are cached.
    pub plans: PlanOptions,
}
