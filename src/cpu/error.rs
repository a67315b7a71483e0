//! Errors the CPU kernels report instead of panicking on bad shapes or types.

use crate::quant::GgmlType;

use super::features::Isa;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    #[error("the CPU matmul kernels do not handle weight type {0}")]
    UnsupportedType(GgmlType),
    #[error("{cols} columns is not a whole number of {ty} blocks ({block} weights each)")]
    PartialBlock {
        ty: GgmlType,
        cols: usize,
        block: usize,
    },
    #[error("a {rows}x{cols} {ty} matrix takes {expected} bytes, but {got} were given")]
    WeightBytes {
        ty: GgmlType,
        rows: usize,
        cols: usize,
        expected: usize,
        got: usize,
    },
    #[error("{what} holds {got} values, expected {expected} ({n_tokens} tokens x {width})")]
    SliceLen {
        what: &'static str,
        n_tokens: usize,
        width: usize,
        expected: usize,
        got: usize,
    },
    #[error("the {0} kernels need CPU features this machine lacks")]
    IsaUnavailable(Isa),
    #[error("one call takes at most 8 matrices, {0} were given")]
    TooManyMatrices(usize),
    #[error("{matrices} matrices need {matrices} outputs, {outputs} were given")]
    OutputCount { matrices: usize, outputs: usize },
    #[error("matrices sharing an input need the same columns ({first} and {other})")]
    ColsMismatch { first: usize, other: usize },
    #[error("{first} and {other} weights quantize activations differently; multiply them in separate calls")]
    FormatMismatch { first: GgmlType, other: GgmlType },
    #[error("expert tensors do not fit together: gate {gate:?}, up {up:?}, down {down:?} ([experts, rows, cols]; gate and up [E, ffn, hidden], down [E, hidden, ffn])")]
    ExpertShapes {
        gate: [usize; 3],
        up: [usize; 3],
        down: [usize; 3],
    },
    #[error("a token is routed to an expert outside the layer's {experts} experts")]
    ExpertIndex { experts: usize },
    #[error("matrix size overflows usize")]
    Overflow,
    #[error("could not start thread pool worker: {0}")]
    Spawn(String),
}
