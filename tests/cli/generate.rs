//! End to end through the binary: the tiny model with the full Qwen3 vocabulary, the Qwen3
//! tokenizer, a text prompt; ids, greedy tokens and streamed text compared with llama.cpp.

use std::process::{Command, Output};

use serde_json::Value;

fn fixture(path: &str) -> String {
    crate::common::fixture(path).display().to_string()
}

fn qwen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qwen"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

const PROMPT: &str = "The quick brown fox jumps over the lazy dog.";

fn base_args<'a>(model: &'a str, tokenizer: &'a str, tokens: &'a str) -> Vec<&'a str> {
    vec![
        "-m",
        model,
        "--tokenizer",
        tokenizer,
        "-p",
        PROMPT,
        "-t",
        tokens,
        "--ignore-eos",
    ]
}

#[test]
fn greedy_tokens_and_text_equal_llama_cpp() {
    let (model, tokenizer) = (
        fixture("models/tiny-qwen3vocab-q8_0.gguf"),
        fixture("tokenizer/tokenizer.json"),
    );
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("refs/tiny-qwen3vocab-q8_0.deq.json")).unwrap(),
    )
    .unwrap();

    let mut args = base_args(&model, &tokenizer, "32");
    args.push("--json");
    let out = qwen(&args);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    assert_eq!(
        ids(&report["prompt_token_ids"]),
        ids(&reference["prompt_ids"])
    );
    assert_eq!(
        ids(&report["generated_token_ids"]),
        ids(&reference["greedy_ids"])
    );

    // The text streamed to stdout (without --json) is the tokenizer's decoding of those ids.
    let out = qwen(&base_args(&model, &tokenizer, "32"));
    assert!(out.status.success());
    let streamed = String::from_utf8(out.stdout).expect("streamed text is UTF-8");
    let tok = tokenizers::Tokenizer::from_file(&tokenizer).unwrap();
    let greedy: Vec<u32> = ids(&reference["greedy_ids"])
        .iter()
        .map(|&i| i as u32)
        .collect();
    let expected = tok.decode(&greedy, false).unwrap();
    assert_eq!(streamed.strip_suffix('\n').unwrap_or(&streamed), expected);
    assert!(
        expected.chars().any(|c| c.len_utf8() > 1),
        "the check covers multi-byte characters"
    );
    assert_eq!(report["text"].as_str().unwrap(), expected);
}

#[test]
fn json_statistics_match_its_samples() {
    let (model, tokenizer) = (
        fixture("models/tiny-qwen3vocab-q8_0.gguf"),
        fixture("tokenizer/tokenizer.json"),
    );
    let mut args = base_args(&model, &tokenizer, "12");
    args.push("--json");
    let out = qwen(&args);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let decode = &r["decode"];
    let samples: Vec<f64> = decode["samples_ns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(samples.len(), 12, "one sample per decode step");
    assert_eq!(decode["n_tokens"].as_u64(), Some(12));
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let sd = (samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
    assert!(close(decode["avg_ns"].as_f64().unwrap(), mean));
    assert!(close(decode["stddev_ns"].as_f64().unwrap(), sd));
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(close(decode["min_ns"].as_f64().unwrap(), min));
    assert!(close(decode["max_ns"].as_f64().unwrap(), max));
    let ts: Vec<f64> = samples.iter().map(|s| 1e9 / s).collect();
    let avg_ts = ts.iter().sum::<f64>() / n;
    let sd_ts = (ts.iter().map(|t| (t - avg_ts).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    assert!(close(decode["avg_ts"].as_f64().unwrap(), avg_ts));
    assert!(close(decode["stddev_ts"].as_f64().unwrap(), sd_ts));
    let prefill = &r["prefill"];
    assert_eq!(prefill["n_tokens"].as_u64(), Some(10));
    let p_ns = prefill["samples_ns"][0].as_f64().unwrap();
    assert!(close(
        prefill["avg_ts"].as_f64().unwrap(),
        10.0 * 1e9 / p_ns
    ));
    for key in [
        "model_filename",
        "backend",
        "parallel",
        "n_threads",
        "load_ms",
        "compile_ms",
        "test_time",
    ] {
        assert!(!r[key].is_null(), "JSON lacks {key}");
    }
}

/// `--repeat`, `--plot` and `--kernel-timing` together, in both modes: the spread across runs
/// is computed from the per-run figures, the SVG is well-formed XML with a drawn series, and the
/// kernel profile names our ops with shares that add up to at most the whole step.
#[test]
fn repeat_plot_and_kernel_profile_through_the_binary() {
    let (model, tokenizer) = (
        fixture("models/tiny-qwen3vocab-q8_0.gguf"),
        fixture("tokenizer/tokenizer.json"),
    );
    let dir = tempfile::tempdir().unwrap();
    for (mode, kernel) in [(None, "WeightMatMul"), (Some("--parallel"), "FusedMatMul")] {
        let svg = dir.path().join(format!("decode-{}.svg", mode.is_some()));
        let svg_arg = svg.display().to_string();
        let mut args = base_args(&model, &tokenizer, "8");
        args.extend([
            "--json",
            "--repeat",
            "3",
            "--kernel-timing",
            "--plot",
            &svg_arg,
        ]);
        args.extend(mode);
        let out = qwen(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();

        let spread = &r["repeat"]["decode"];
        let runs: Vec<f64> = spread["samples_ts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(runs.len(), 3);
        assert_eq!(spread["n_runs"].as_u64(), Some(3));
        let mean = runs.iter().sum::<f64>() / 3.0;
        assert!((spread["avg_ts"].as_f64().unwrap() - mean).abs() <= 1e-6 * mean);
        let first_run = r["decode"]["avg_ts"].as_f64().unwrap();
        assert!((runs[0] - first_run).abs() <= 1e-6 * first_run);

        let text = std::fs::read_to_string(&svg).unwrap();
        let doc = roxmltree::Document::parse(&text).expect("well-formed SVG");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert!(doc
            .descendants()
            .any(|n| n.has_tag_name("polyline") || n.has_tag_name("path")));

        let kernels = r["kernels"].as_array().unwrap();
        assert!(kernels
            .iter()
            .any(|k| k["name"].as_str().unwrap().starts_with(kernel)));
        let share: f64 = kernels.iter().map(|k| k["share"].as_f64().unwrap()).sum();
        assert!(
            share > 0.5 && share <= 1.0 + 1e-9,
            "shares add up to {share}"
        );
        assert_eq!(r["parallel"].as_bool(), Some(mode.is_some()));
    }
}
