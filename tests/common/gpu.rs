//! Teacher-forced comparison of a GPU-graph engine with llama.cpp's logits, shared by the
//! reference-backend tests (`gpu_graph.rs`) and the device tests (`gpu_numerics.rs`).

use qwen::backend::device::Device;
use qwen::backend::gpu_engine::{GpuEngine, GpuOptions};
use qwen::backend::{Logits, Runner};
use qwen::gguf::GgufFile;
use qwen::model::config::Qwen3Config;
use serde_json::Value;

// `$QWEN_FIXTURES` where set: a test binary carried to a machine without this checkout's
// build path (see `.ci/gpu-carry.sh`).
pub use super::fixture;

/// How far a run may be from llama.cpp.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Largest absolute difference of any logit.
    pub logit: f32,
    /// The argmax must agree wherever llama.cpp's top-2 gap exceeds this.
    pub argmax_gap: f32,
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// Checks one position's logits (full rows or top-k `[id, logit]` pairs); the largest difference.
fn compare(ours: &[f32], reference: &Value, tol: Tolerance, what: &str) -> f32 {
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
            diff <= tol.logit,
            "{what}: logit {id} is {} but llama.cpp has {expected}",
            ours[id]
        );
        worst = worst.max(diff);
    }
    let mut sorted = row.clone();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    if sorted.len() > 1 && sorted[0].1 - sorted[1].1 > tol.argmax_gap {
        let best = (0..ours.len())
            .max_by(|&a, &b| ours[a].total_cmp(&ours[b]))
            .unwrap();
        assert_eq!(best, sorted[0].0, "{what}: argmax differs from llama.cpp's");
    }
    worst
}

/// Prefill, then KV-cache decode of llama.cpp's greedy tokens, every position compared with
/// `refs/<reference>`; returns the largest difference seen.
pub fn teacher_forced<D: Device + std::fmt::Debug>(
    model: &str,
    reference: &str,
    options: GpuOptions,
    backend: D,
    tol: Tolerance,
) -> f32 {
    let file = GgufFile::open(fixture(&format!("models/{model}"))).unwrap();
    let config = Qwen3Config::from_gguf(&file).unwrap();
    let refs: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("refs/{reference}"))).unwrap(),
    )
    .unwrap();
    let (prompt, greedy) = (ids(&refs["prompt_ids"]), ids(&refs["greedy_ids"]));
    let label = format!("{model} on {backend:?}");
    let mut engine = GpuEngine::new(&file, &config, options, backend).unwrap();
    let vocab = config.vocab;

    let prefill = engine.forward(&prompt, Logits::All).unwrap();
    assert_eq!(prefill.len(), prompt.len() * vocab);
    let mut worst = 0.0f32;
    for (i, row) in prefill.chunks_exact(vocab).enumerate() {
        let what = format!("{label}: prefill position {i}");
        worst = worst.max(compare(row, &refs["prefill_logits"][i], tol, &what));
    }
    let steps = refs["step_logits"].as_array().unwrap();
    for (j, expected) in steps.iter().enumerate() {
        let logits = engine.forward(&greedy[j..j + 1], Logits::Last).unwrap();
        let what = format!("{label}: decode step {j}");
        worst = worst.max(compare(&logits, expected, tol, &what));
    }
    assert_eq!(engine.position(), prompt.len() + steps.len());
    eprintln!("{label} vs {reference}: max |diff| {worst:e}");
    worst
}
