//! Our own luminal operators and the compiler passes that put them in the graph: the CPU
//! engine's half of luminal (the kernels they call, with no luminal in them, are `crate::cpu`'s).
//! Each file is one op family: its `Operator`, the `Compiler` pass that rewrites the graph to use
//! it, and its tests; [`standard`] and [`parallel::compiler`] compose the passes, as luminal
//! composes `GenericCompiler`.
//!
//! The standard path is luminal's `GenericCompiler` plus the passes here that stock luminal 0.2
//! needs to be correct and usable on a CPU: weight matmuls on GGUF-encoded weights, and
//! elementwise ops without per-element symbolic indexing. Embedding and attention with a KV cache
//! are our ops from the start (the CPU engine's variation points of `model::qwen3`, in
//! `backend::cpu_graph`). `CPUCompiler` is not used: its `Equal` is wrong and our passes cover
//! what the rest of it does for this graph.

pub mod cached_attention;
pub mod cost;
mod decorator;
pub mod delta_net;
pub mod embedding;
pub mod gated_attention;
pub mod gather_columns;
pub mod input;
pub mod instrument;
pub mod interruptible;
pub mod moe_ffn;
pub mod parallel;
pub mod profile;
pub mod rewrite;
pub mod rms_norm;
pub mod rope;
pub mod strided;
pub mod swiglu;
pub mod weight;
pub mod weight_matmul;

use luminal::prelude::*;

/// Standard mode: luminal's generic passes, then ours. Weights must be bound before compiling;
/// `rope_tables` are the graph's `rope_cos` and `rope_sin` inputs.
pub fn standard(rope_tables: [NodeIndex; 2]) -> impl Compiler {
    (
        GenericCompiler::default(),
        weight_matmul::WeightMatMulCompiler,
        rms_norm::RmsNormCompiler,
        rope::RopeCompiler {
            tables: rope_tables,
        },
        swiglu::SwiGluCompiler,
        strided::StridedCompiler,
    )
}
