//! Our own luminal operators and the compiler passes that put them in the graph.
//!
//! The standard path is luminal's `GenericCompiler` plus the passes here that stock luminal 0.2
//! needs to be correct and usable on a CPU: weight matmuls on GGUF-encoded weights, and
//! elementwise ops without per-element symbolic indexing. Embedding and attention with a KV cache
//! are our ops from the start (see `model.rs`). `CPUCompiler` is not used: its `Equal` is wrong
//! and our passes cover what the rest of it does for this graph.

pub mod cached_attention;
pub mod embedding;
pub mod input;
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
