//! `--trace FILE.json`: the run's timeline on one monotonic clock: the load, the compile (with
//! each kernel search), every step (the prompt pass and each decode step), every operator call
//! inside them and each pool thread's share of a parallel op, written as Chrome trace-event JSON
//! (`chrome.rs`) for Perfetto and chrome://tracing.
//!
//! Nothing here runs unless a run asks for a trace: the engine installs its op decorator and the
//! pool its per-thread lanes only when it is given a [`Tracer`], so an untraced run reads no
//! extra clock and takes no extra lock. While tracing, each op call costs one uncontended lock
//! and a push of a small record (its name and arguments are stored once, at install), each
//! thread share likewise on that thread's own lane (`ops::instrument` and `cpu::pool` measure
//! what that costs, for the report).

mod chrome;
mod tracer;

pub use chrome::{write, TraceSummary};
pub use tracer::{args, Category, OpCall, OpInfo, PoolLanes, Share, Span, StepKind, Tracer};
