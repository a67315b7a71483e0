//! GGML tensor types: ids, names and block geometry (ggml's `ggml_type_traits`).
//!
//! Every GGUF tensor is stored as a sequence of blocks; a block holds `block_size` weights in
//! `type_size` bytes. Only the types Qwen3 files use are computed on (see [`GgmlType::is_supported`]);
//! the others are known by name so errors can say what a file holds.
//!
//! [`blocks`] holds the byte layout of each quantized block; [`dequantize_row`] turns a row of
//! any supported type into f32 exactly as llama.cpp does.

pub mod blocks;
mod dequant;
mod ggml_type;
mod grid_data;
pub mod grids;
pub mod iquants;

pub use dequant::{
    dequantize_bf16, dequantize_f16, dequantize_f32, dequantize_iq1_m, dequantize_iq1_s,
    dequantize_iq2_s, dequantize_iq2_xs, dequantize_iq2_xxs, dequantize_iq3_s, dequantize_iq3_xxs,
    dequantize_iq4_nl, dequantize_iq4_xs, dequantize_mxfp4, dequantize_q2_k, dequantize_q3_k,
    dequantize_q4_0, dequantize_q4_1, dequantize_q4_k, dequantize_q5_0, dequantize_q5_1,
    dequantize_q5_k, dequantize_q6_k, dequantize_q8_0, dequantize_row, dequantize_rows, QuantError,
};
pub use ggml_type::{supported_type_names, GgmlType, SUPPORTED_TYPES};
