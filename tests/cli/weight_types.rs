//! Through the binary, both modes, on the fixtures of the weight types published Qwen3 files use
//! besides Q8_0/Q4_0/Q4_K_M/Q5_K_M/Q6_K: Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_M, IQ4_NL, IQ4_XS, and the
//! low-bit i-quants and MXFP4 in one file mixed as a UD-IQ1_S file mixes them.
//!
//! Standard mode is llama.cpp's F32-twin run bit for bit, so its 32 greedy tokens must be that
//! run's. `--parallel` quantizes activations as llama.cpp's own quantized run does, and greedy
//! paths part at near-ties; it must agree with the F32-twin tokens at least as long as
//! llama.cpp's quantized run does (up to two tokens), and its kernel plans must show that the
//! SIMD kernels, not a fallback, ran on the file's own type.

use crate::common::cli::*;
use serde_json::Value;

/// (fixture stem, the types it is about)
const MODELS: [(&str, &[&str]); 8] = [
    ("small-q4_1", &["Q4_1"]),
    ("small-q5_0", &["Q5_0"]),
    ("small-q5_1", &["Q5_1"]),
    ("small-q2_k", &["Q2_K"]),
    ("small-q3_k_m", &["Q3_K"]),
    ("small-iq4_nl", &["IQ4_NL"]),
    ("small-iq4_xs", &["IQ4_XS"]),
    (
        "small-iq-mix",
        &[
            "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "MXFP4", "IQ4_XS",
        ],
    ),
];

/// Whether the plan line `plan` (`TYPE:RxC+TYPE:RxC... decode: ...`) is of a `class` job
/// ("decode", "short" or "batch") with a matrix of type `ty`.
fn plan_covers(plan: &str, ty: &str, class: &str) -> bool {
    let mut words = plan.split(' ');
    let mats = words.next().unwrap_or("");
    let prefix = format!("{ty}:");
    words.next() == Some(&format!("{class}:")[..])
        && mats.split('+').any(|m| m.starts_with(&prefix))
}

fn reference(name: &str) -> Value {
    let text = std::fs::read_to_string(path(&format!("refs/{name}"))).expect("reference");
    serde_json::from_str(&text).expect("reference is JSON")
}

/// How many leading tokens two greedy runs share.
fn agreement(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The logits a reference gives before greedy token `k`: after the prompt for `k = 0`, else
/// after feeding token `k - 1`.
fn logits_before(r: &Value, k: usize) -> Vec<f32> {
    let row = match k {
        0 => r["prefill_logits"].as_array().and_then(|p| p.last()),
        k => r["step_logits"].get(k - 1),
    };
    row.and_then(Value::as_array)
        .expect("a logit row")
        .iter()
        .map(|v| v.as_f64().expect("a full logit row") as f32)
        .collect()
}

/// The top-1 minus top-2 logit of a row.
fn top_gap(row: &[f32]) -> f32 {
    let mut sorted = row.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    sorted[0] - sorted[1]
}

/// llama.cpp's own quantized error on a file: the largest logit difference between its run on
/// the file and on the F32 twin, over the prompt and the steps both runs fed the same tokens.
fn llama_quantized_error(quant: &Value, deq: &Value) -> f32 {
    let shared = agreement(&ids(&quant["greedy_ids"]), &ids(&deq["greedy_ids"]));
    let prefill = |r: &Value| r["prefill_logits"].as_array().expect("prefill").len();
    let rows = (0..prefill(deq)).map(|i| ("prefill_logits", i));
    let steps = (0..shared.min(deq["step_logits"].as_array().map_or(0, Vec::len)))
        .map(|j| ("step_logits", j));
    rows.chain(steps)
        .flat_map(|(key, i)| {
            let (q, d) = (&quant[key][i], &deq[key][i]);
            let q = q.as_array().expect("row").clone();
            let d = d.as_array().expect("row").clone();
            q.into_iter()
                .zip(d)
                .map(|(a, b)| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() as f32)
        })
        .fold(0.0, f32::max)
}

/// Runs `stem`'s fixture on its reference prompt for `tokens` tokens with `extra` flags and
/// returns the JSON report; default plans and a private plan cache, so nothing depends on the
/// machine's timings or on another run's cache.
fn generate(stem: &str, prompt: &[u32], tokens: usize, extra: &[&str]) -> Value {
    let model = path(&format!("models/{stem}.gguf"));
    let ids = prompt
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let cache = tempfile::tempdir().unwrap();
    let n = tokens.to_string();
    let mut args = vec![
        "-m",
        &model,
        "--token-ids",
        &ids,
        "-t",
        &n,
        "--ignore-eos",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = qwen()
        .env("QWEN_PLAN_SEARCH", "off")
        .env("XDG_CACHE_HOME", cache.path())
        .args(&args)
        .output()
        .expect("the binary runs");
    assert_ok(&out);
    json(&out)
}

#[test]
fn standard_mode_gives_the_f32_twins_greedy_tokens() {
    for (stem, _) in MODELS {
        let deq = reference(&format!("{stem}.deq.json"));
        let (prompt, want) = (ids(&deq["prompt_ids"]), ids(&deq["greedy_ids"]));
        let r = generate(stem, &prompt, want.len(), &[]);
        assert_eq!(ids(&r["generated_token_ids"]), want, "{stem}");
        assert_eq!(r["parallel"].as_bool(), Some(false), "{stem}");
    }
}

#[test]
fn parallel_mode_runs_the_simd_kernels_on_every_type() {
    for (stem, types) in MODELS {
        let (deq, quant) = (
            reference(&format!("{stem}.deq.json")),
            reference(&format!("{stem}.json")),
        );
        let prompt = ids(&deq["prompt_ids"]);
        let (twin, llama) = (ids(&deq["greedy_ids"]), ids(&quant["greedy_ids"]));
        let r = generate(
            stem,
            &prompt,
            twin.len(),
            &["--parallel", "--kernel-timing"],
        );
        let ours = ids(&r["generated_token_ids"]);
        assert_eq!(ours.len(), twin.len(), "{stem}");
        let (parted, needed) = (agreement(&ours, &twin), agreement(&llama, &twin).min(2));
        if parted < needed {
            let gap = top_gap(&logits_before(&deq, parted));
            let noise = llama_quantized_error(&quant, &deq);
            assert!(
                gap <= noise,
                "{stem}: parallel tokens {ours:?} part from the F32 twin's {twin:?} at token \
                 {parted}, before llama.cpp's quantized run does, where the twin's top-2 gap \
                 {gap} exceeds llama.cpp's own quantized error {noise}"
            );
        }
        let plans: Vec<&str> = r["features"]["kernel_plans"]
            .as_array()
            .expect("kernel plans listed")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for ty in types.iter() {
            for class in ["decode", "short", "batch"] {
                assert!(
                    plans.iter().any(|p| plan_covers(p, ty, class)),
                    "{stem}: no {class} plan on {ty} weights in {plans:?}"
                );
            }
        }
        let kernels = r["kernels"].as_array().expect("kernel profile");
        assert!(
            kernels
                .iter()
                .all(|k| !k["name"].as_str().unwrap_or("").starts_with("WeightMatMul")),
            "{stem}: a matmul fell back to the standard op: {kernels:?}"
        );
    }
}
