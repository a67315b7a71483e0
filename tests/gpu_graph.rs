//! The GPU graph (stock luminal ops, graph-held KV cache) checked on the CPU through the reference
//! backend: teacher-forced against llama.cpp's logits, as `numerics.rs` checks the CPU engine.
//!
//! Tolerance: 0.05 absolute per logit, and the same argmax wherever llama.cpp's top-2 gap exceeds
//! 0.1. Looser than the CPU engine's 0.01 because this graph keeps keys, values and attention
//! probabilities in full f32 where llama.cpp rounds them to f16 (0.015 to 0.043 apart on these
//! models, see also `kernels/attention.rs`). Quantized models are compared with llama.cpp on their
//! F32 twin. Stock CPU ops are slow: the two larger models are `#[ignore]`d (run them with
//! `cargo test --release --test gpu_graph -- --ignored`).

mod common;

use qwen::config::Qwen3Config;
use qwen::engine::Logits;
use qwen::gguf::GgufFile;
use qwen::gpu::backend::Reference;
use qwen::gpu::engine::{GpuEngine, GpuOptions};
use serde_json::Value;

const TOLERANCE: f32 = 0.05;
const ARGMAX_GAP: f32 = 0.1;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// Checks one position's logits (full rows or top-k `[id, logit]` pairs); the largest difference.
fn compare(ours: &[f32], reference: &Value, what: &str) -> f32 {
    let row: Vec<(usize, f32)> = reference
        .as_array()
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
        .collect();
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
        let best = (0..ours.len())
            .max_by(|&a, &b| ours[a].total_cmp(&ours[b]))
            .unwrap();
        assert_eq!(best, sorted[0].0, "{what}: argmax differs from llama.cpp's");
    }
    worst
}

/// Prefill (in chunks when `budget` is small), then KV-cache decode, against the references.
fn teacher_forced(model: &str, reference: &str, budget: usize, backend: Reference) {
    let file = GgufFile::open(common::fixture(&format!("models/{model}"))).unwrap();
    let config = Qwen3Config::from_gguf(&file).unwrap();
    let refs: Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixture(&format!("refs/{reference}"))).unwrap(),
    )
    .unwrap();
    let (prompt, greedy) = (ids(&refs["prompt_ids"]), ids(&refs["greedy_ids"]));
    let options = GpuOptions {
        max_context: 256,
        attention_budget: budget,
    };
    let mut engine = GpuEngine::new(&file, &config, options, backend).unwrap();
    let vocab = config.vocab;

    let prefill = engine.forward(&prompt, Logits::All).unwrap();
    assert_eq!(prefill.len(), prompt.len() * vocab);
    let mut worst = 0.0f32;
    for (i, row) in prefill.chunks_exact(vocab).enumerate() {
        let what = format!("{model} prefill position {i}");
        worst = worst.max(compare(row, &refs["prefill_logits"][i], &what));
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
    eprintln!("{model} vs {reference} ({backend:?}, budget {budget}): max |diff| {worst:e}");
}

const WHOLE: usize = GpuOptions::DEFAULT_ATTENTION_BUDGET;
/// Enough for 4 or 5 prompt tokens at a time on the tiny models (heads x head_dim = 64).
const CHUNKED: usize = 64 * 80;
const F32: Reference = Reference { f16_graph: false };
const F16_GRAPH: Reference = Reference { f16_graph: true };

macro_rules! cases {
    ($($(#[$attr:meta])* $name:ident: $model:expr, $reference:expr, $budget:expr, $backend:expr;)*) => {$(
        #[test]
        $(#[$attr])*
        fn $name() {
            teacher_forced($model, $reference, $budget, $backend);
        }
    )*};
}

cases! {
    reference_tiny_f32: "tiny-f32.gguf", "tiny-f32.json", WHOLE, F32;
    reference_tiny_f32_chunked_prefill: "tiny-f32.gguf", "tiny-f32.json", CHUNKED, F32;
    reference_tiny_f32_f16_safe_norms: "tiny-f32.gguf", "tiny-f32.json", WHOLE, F16_GRAPH;
    reference_tiny_f16: "tiny-f16.gguf", "tiny-f16.deq.json", WHOLE, F32;
    reference_tiny_bf16: "tiny-bf16.gguf", "tiny-bf16.deq.json", WHOLE, F32;
    reference_tiny_q8_0: "tiny-q8_0.gguf", "tiny-q8_0.deq.json", CHUNKED, F32;
    reference_tiny_q4_0: "tiny-q4_0.gguf", "tiny-q4_0.deq.json", WHOLE, F16_GRAPH;
    #[ignore = "about a minute on stock CPU ops"]
    reference_small_q4_k_m: "small-q4_k_m.gguf", "small-q4_k_m.deq.json", WHOLE, F32;
    #[ignore = "about a minute on stock CPU ops (151936-row head)"]
    reference_qwen3vocab_q8_0: "tiny-qwen3vocab-q8_0.gguf", "tiny-qwen3vocab-q8_0.deq.json", WHOLE, F32;
}

/// The cache is really reset: a second prefill gives the first one's logits.
#[test]
fn reset_forgets_the_cache() {
    let file = GgufFile::open(common::fixture("models/tiny-q8_0.gguf")).unwrap();
    let config = Qwen3Config::from_gguf(&file).unwrap();
    let mut engine = GpuEngine::new(&file, &config, GpuOptions::new(64), F32).unwrap();
    let first = engine.forward(&[5, 6, 7], Logits::Last).unwrap();
    engine.forward(&[8], Logits::Last).unwrap();
    engine.reset();
    assert_eq!(engine.position(), 0);
    let again = engine.forward(&[5, 6, 7], Logits::Last).unwrap();
    assert_eq!(first, again);
}

/// Prompt chunking changes nothing but memory: same logits as one pass (within f32 rounding).
#[test]
fn chunked_prefill_matches_one_pass() {
    let file = GgufFile::open(common::fixture("models/tiny-f32.gguf")).unwrap();
    let config = Qwen3Config::from_gguf(&file).unwrap();
    let prompt: Vec<u32> = (1..=20).collect();
    let run = |budget: usize| {
        let options = GpuOptions {
            max_context: 64,
            attention_budget: budget,
        };
        let mut engine = GpuEngine::new(&file, &config, options, F32).unwrap();
        engine.forward(&prompt, Logits::All).unwrap()
    };
    let (whole, chunked) = (run(WHOLE), run(CHUNKED));
    assert_eq!(whole.len(), chunked.len());
    for (i, (a, b)) in whole.iter().zip(&chunked).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4,
            "logit {i}: {a} in one pass, {b} chunked"
        );
    }
}

#[test]
fn errors_match_the_cpu_engine() {
    let file = GgufFile::open(common::fixture("models/tiny-f32.gguf")).unwrap();
    let config = Qwen3Config::from_gguf(&file).unwrap();
    let mut engine = GpuEngine::new(&file, &config, GpuOptions::new(4), F32).unwrap();
    use qwen::engine::EngineError;
    assert!(matches!(
        engine.forward(&[], Logits::Last),
        Err(EngineError::NoTokens)
    ));
    assert!(matches!(
        engine.forward(&[512], Logits::Last),
        Err(EngineError::TokenOutOfRange {
            id: 512,
            vocab: 512
        })
    ));
    assert!(matches!(
        engine.forward(&[1, 2, 3, 4, 5], Logits::Last),
        Err(EngineError::ContextFull {
            needed: 5,
            max_context: 4
        })
    ));
    assert_eq!(engine.position(), 0);
}
