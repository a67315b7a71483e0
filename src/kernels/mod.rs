//! Our own luminal operators and the compiler passes that put them in the graph.

pub mod attention;
pub mod embedding;
pub mod input;
pub mod matmul;
pub mod weight;
pub mod profile;
pub mod strided;
