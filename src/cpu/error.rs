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
    #[error("matrix size overflows usize")]
    Overflow,
    #[error("could not start thread pool worker: {0}")]
    Spawn(String),
}
