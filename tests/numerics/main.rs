//! Numerics against llama.cpp's references: teacher-forced logits in both modes, the fusion contract of --parallel, the last block on the logit rows alone, and the GPU graph on luminal's stock CPU ops.

#[path = "../common/mod.rs"]
mod common;

mod fusion_contract;
mod gpu_graph;
mod logit_rows;
mod logits;
mod mtp;
mod qwen35_oracle;
mod qwen35_oracle_model;
