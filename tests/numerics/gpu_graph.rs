//! The GPU graph (stock luminal ops, graph-held KV cache) checked on the CPU through the reference
//! backend: teacher-forced against llama.cpp's logits, as `numerics.rs` checks the CPU engine.
//!
//! Tolerance: 0.05 absolute per logit, and the same argmax wherever llama.cpp's top-2 gap exceeds
//! 0.1. Looser than the CPU engine's 0.01 because this graph keeps keys, values and attention
//! probabilities in full f32 where llama.cpp rounds them to f16 (0.015 to 0.043 apart on these
//! models, see also `ops/cached_attention.rs`). Quantized models are compared with llama.cpp on their
//! F32 twin. Stock CPU ops are slow: the two larger models are `#[ignore]`d (run them with
//! `cargo test --release --test gpu_graph -- --ignored`).

use crate::common::gpu::{fixture, teacher_forced, Tolerance};
use qwen::backend::gpu_engine::{GpuEngine, GpuOptions};
use qwen::backend::reference::Reference;
use qwen::backend::{EngineError, Logits, Runner};
use qwen::gguf::GgufFile;
use qwen::model::config::Qwen3Config;

const TOLERANCE: Tolerance = Tolerance {
    logit: 0.05,
    argmax_gap: 0.1,
};

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
            let options = GpuOptions {
                max_context: 256,
                attention_budget: $budget,
            };
            teacher_forced($model, $reference, options, $backend, TOLERANCE);
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
    let file = GgufFile::open(fixture("models/tiny-q8_0.gguf")).unwrap();
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
    let file = GgufFile::open(fixture("models/tiny-f32.gguf")).unwrap();
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
    let file = GgufFile::open(fixture("models/tiny-f32.gguf")).unwrap();
    let config = Qwen3Config::from_gguf(&file).unwrap();
    let mut engine = GpuEngine::new(&file, &config, GpuOptions::new(4), F32).unwrap();
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
