//! The CPU kernels against their scalar references, the mixture-of-experts kernels, and bit-exact dequantization.

#[path = "../common/mod.rs"]
mod common;

mod cpu;
mod dequant;
mod inlining;
mod moe;
mod repack;
