//! Teacher-forced comparison with llama.cpp: feed each fixture's prompt and llama.cpp's greedy
//! tokens through prefill and KV-cache decode, and compare the logits at every position.
//!
//! Tolerance: 0.01 absolute on every logit (logits spread over about ±20 here), and the same argmax
//! wherever the reference's top-2 gap exceeds 0.02. Quantized models are compared with llama.cpp
//! on their F32 twin (`*.deq.json`): the standard path computes in f32 on dequantized weights.

use std::path::PathBuf;

use qwen::config::Qwen3Config;
use qwen::engine::{Engine, EngineOptions, Logits, Mode};
use qwen::gguf::GgufFile;
use serde_json::Value;

const TOLERANCE: f32 = 0.01;
const ARGMAX_GAP: f32 = 0.02;

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

/// One position's reference logits: full rows, or top-k `[id, logit]` pairs.
fn reference_row(row: &Value) -> Vec<(usize, f32)> {
    row.as_array()
        .expect("logit row")
        .iter()
        .enumerate()
        .map(|(i, v)| match v.as_array() {
            Some(pair) => (
                pair[0].as_u64().unwrap() as usize,
                pair[1].as_f64().unwrap() as f32,
            ),
            None => (i, v.as_f64().unwrap() as f32),
        })
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Checks one position; returns the largest absolute difference.
fn compare(ours: &[f32], reference: &Value, what: &str) -> f32 {
    let row = reference_row(reference);
    let mut worst = 0.0f32;
    for &(id, expected) in &row {
        let diff = (ours[id] - expected).abs();
        assert!(
            diff <= TOLERANCE,
            "{what}: logit {id} is {} but llama.cpp has {expected}",
            ours[id]
        );
        worst = worst.max(diff);
    }
    let mut sorted = row.clone();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    if sorted.len() > 1 && sorted[0].1 - sorted[1].1 > ARGMAX_GAP {
        let ours_best = (0..ours.len())
            .max_by(|&a, &b| ours[a].total_cmp(&ours[b]))
            .unwrap();
        assert_eq!(
            ours_best, sorted[0].0,
            "{what}: argmax differs from llama.cpp's"
        );
    }
    worst
}

fn teacher_forced(model: &str, reference: &str, mode: Mode) {
    let file = GgufFile::open(fixture(&format!("models/{model}"))).unwrap();
    let config = Qwen3Config::from_gguf(&file).unwrap();
    let refs: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("refs/{reference}"))).unwrap(),
    )
    .unwrap();
    let (prompt, greedy) = (ids(&refs["prompt_ids"]), ids(&refs["greedy_ids"]));
    let options = EngineOptions {
        mode,
        max_context: 256,
        profile: false,
    };
    let mut engine = Engine::new(&file, &config, options).unwrap();
    let vocab = config.vocab;

    let prefill = engine.forward(&prompt, Logits::All).unwrap();
    let mut worst = 0.0f32;
    for (i, row) in prefill.chunks_exact(vocab).enumerate() {
        worst = worst.max(compare(
            row,
            &refs["prefill_logits"][i],
            &format!("{model} prefill position {i}"),
        ));
    }
    let steps = refs["step_logits"].as_array().unwrap();
    for (j, expected) in steps.iter().enumerate() {
        let logits = engine.forward(&greedy[j..j + 1], Logits::Last).unwrap();
        worst = worst.max(compare(
            &logits,
            expected,
            &format!("{model} decode step {j}"),
        ));
    }
    assert_eq!(engine.position(), prompt.len() + steps.len());
    eprintln!("{model} vs {reference} ({mode:?}): max |diff| {worst:e}");
}

macro_rules! standard_cases {
    ($($name:ident: $model:expr, $reference:expr;)*) => {$(
        #[test]
        fn $name() {
            teacher_forced($model, $reference, Mode::Standard);
        }
    )*};
}

standard_cases! {
    standard_tiny_f32: "tiny-f32.gguf", "tiny-f32.json";
    standard_tiny_f16: "tiny-f16.gguf", "tiny-f16.deq.json";
    standard_tiny_bf16: "tiny-bf16.gguf", "tiny-bf16.deq.json";
    standard_tiny_q8_0: "tiny-q8_0.gguf", "tiny-q8_0.deq.json";
    standard_tiny_q4_0: "tiny-q4_0.gguf", "tiny-q4_0.deq.json";
    standard_small_f32: "small-f32.gguf", "small-f32.json";
    standard_small_q4_k_m: "small-q4_k_m.gguf", "small-q4_k_m.deq.json";
    standard_small_q5_k_m: "small-q5_k_m.gguf", "small-q5_k_m.deq.json";
    standard_small_q6_k: "small-q6_k.gguf", "small-q6_k.deq.json";
    standard_qwen3vocab_q8_0: "tiny-qwen3vocab-q8_0.gguf", "tiny-qwen3vocab-q8_0.deq.json";
}
