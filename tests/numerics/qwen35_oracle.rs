//! The gated DeltaNet kernels and our reading of the `qwen35` architecture, end to end: a
//! plain test-only forward pass (`qwen35_oracle_model.rs`) over whole fixture models, teacher-forced against
//! llama.cpp's references at every prefill and decode position, within 0.01 on every logit
//! (the standard path's bound). F32 file: llama.cpp on the file; Q8_0 file: llama.cpp on its
//! F32 twin (`.deq.json`; we compute in f32 on the dequantized weights).
//!
//! The prompts are 80 tokens, so a chunked prefill of 64 crosses a chunk boundary; the decode
//! steps carry the recurrent and convolution states (and the KV cache) across calls.

use super::qwen35_oracle_model::{Kernels, Model};
use qwen::cpu::cpu_features;
use qwen::cpu::delta::{FusedOptions, Prefill};
use qwen::gguf::GgufFile;
use serde_json::Value;

use crate::common::fixture;

const TOLERANCE: f32 = 0.01;
const ARGMAX_GAP: f32 = 0.02;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// Largest difference at one position (full rows in these references); asserts the bound and
/// the argmax where llama.cpp's top two are clearly apart.
fn compare(ours: &[f32], reference: &Value, what: &str) -> f32 {
    let row: Vec<f32> = reference
        .as_array()
        .expect("full logit row")
        .iter()
        .map(|v| v.as_f64().expect("logit") as f32)
        .collect();
    assert_eq!(ours.len(), row.len(), "{what}: vocabulary size");
    let mut worst = 0.0f32;
    for (id, (a, b)) in ours.iter().zip(&row).enumerate() {
        let diff = (a - b).abs();
        assert!(
            diff <= TOLERANCE,
            "{what}: logit {id} is {a}, llama.cpp has {b}"
        );
        worst = worst.max(diff);
    }
    let argmax = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
    let mut sorted = row.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    if sorted[0] - sorted[1] > ARGMAX_GAP {
        assert_eq!(argmax(ours), argmax(&row), "{what}: argmax");
    }
    worst
}

fn teacher_forced(model_file: &str, reference: &str, kernels: Kernels) {
    let file = GgufFile::open(fixture(&format!("models/{model_file}"))).unwrap();
    let refs: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("refs/{reference}"))).unwrap(),
    )
    .unwrap();
    let (prompt, greedy) = (ids(&refs["prompt_ids"]), ids(&refs["greedy_ids"]));
    let mut model = Model::load(&file, kernels, 2);
    let vocab = refs["n_vocab"].as_u64().unwrap() as usize;

    let prefill = model.forward(&prompt);
    let mut worst = 0.0f32;
    for (i, row) in prefill.chunks_exact(vocab).enumerate() {
        let what = format!("{model_file} prefill position {i}");
        worst = worst.max(compare(row, &refs["prefill_logits"][i], &what));
    }
    let steps = refs["step_logits"].as_array().unwrap();
    for (j, expected) in steps.iter().enumerate() {
        let logits = model.forward(&greedy[j..j + 1]);
        let what = format!("{model_file} decode step {j}");
        worst = worst.max(compare(&logits, expected, &what));
    }
    eprintln!("{model_file} vs {reference} ({kernels:?}): max |diff| {worst:e}");
}

fn fused(prefill: Prefill) -> Kernels {
    Kernels::Fused(FusedOptions {
        prefill,
        isa: cpu_features().best(),
    })
}

#[test]
fn tiny_f32_standard_kernels() {
    teacher_forced(
        "tiny-qwen35-f32.gguf",
        "tiny-qwen35-f32.json",
        Kernels::Standard,
    );
}

#[test]
fn tiny_f32_fused_kernels_token_by_token() {
    let kernels = fused(Prefill::Sequential { tile: 16 });
    teacher_forced("tiny-qwen35-f32.gguf", "tiny-qwen35-f32.json", kernels);
}

#[test]
fn tiny_f32_fused_kernels_in_chunks() {
    for size in [16, 64] {
        let kernels = fused(Prefill::Chunked { size });
        teacher_forced("tiny-qwen35-f32.gguf", "tiny-qwen35-f32.json", kernels);
    }
}

#[test]
fn small_q4_k_m_standard_kernels() {
    let reference = "small-qwen35-q4_k_m.deq.json";
    teacher_forced("small-qwen35-q4_k_m.gguf", reference, Kernels::Standard);
}

#[test]
fn small_q4_k_m_fused_kernels() {
    let reference = "small-qwen35-q4_k_m.deq.json";
    for prefill in [
        Prefill::Sequential { tile: 16 },
        Prefill::Chunked { size: 64 },
    ] {
        teacher_forced("small-qwen35-q4_k_m.gguf", reference, fused(prefill));
    }
}
