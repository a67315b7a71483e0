//! `qwen compare` through the binary: real runs of the tiny model compared in every output form,
//! synthetic reports with and without a known shift, llama-bench's output as a side, and every
//! refusal and bad input as a one-line error.

use std::path::Path;

use serde_json::{json, Value};

use crate::common::cli::*;

/// A real llama-bench `-o json` of the tiny model (`-p 16 -n 8 -r 3 -t 1`).
const LLAMA_BENCH: &str = "compare/llama-bench-tiny-q8_0.json";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Runs qwen with `--json` and `args` on the tiny model; writes the report to `dir/name`.
fn qwen_report(dir: &Path, name: &str, args: &[&str]) -> String {
    let model = path(TINY_MODEL);
    let mut all = vec!["-m", &model, "--json", "--ignore-eos"];
    all.extend(args);
    let out = run(&all);
    assert_ok(&out);
    write(dir, name, &stdout(&out))
}

fn compare(args: &[&str]) -> std::process::Output {
    let mut all = vec!["compare"];
    all.extend(args);
    run(&all)
}

/// A qwen-shaped report of `runs` runs of 20 decode steps around `step_ms` (and a 16-token
/// prompt pass of 10 steps' time), with noise of about 3% from a seeded generator.
fn synthetic(runs: usize, step_ms: f64, seed: u64) -> String {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut noisy = |ms: f64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        (ms * 1e6 * (1.0 + 0.06 * (u - 0.5))) as u64
    };
    let runs: Vec<Value> = (0..runs)
        .map(|_| {
            let decode: Vec<u64> = (0..20).map(|_| noisy(step_ms)).collect();
            json!({"prefill_ns": [noisy(10.0 * step_ms)], "decode_ns": decode, "interrupted": false})
        })
        .collect();
    let first = &runs[0];
    json!({
        "model_filename": "tiny-q8_0.gguf", "model_digest": "0f", "model_size": 1,
        "model_n_params": 1, "n_threads": 4,
        "machine": {"cpu": "CPU", "logical_cores": 4},
        "n_prompt": 16, "n_gen": 20, "interrupted": false,
        "prefill": {"n_tokens": 16, "n_tokens_per_sample": 16, "samples_ns": first["prefill_ns"]},
        "decode": {"n_tokens": 20, "n_tokens_per_sample": 1, "samples_ns": first["decode_ns"]},
        "kernels": null,
        "repeat": {"prefill": null, "decode": null, "runs": runs}
    })
    .to_string()
}

fn phase<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

#[test]
fn real_runs_compare_as_text_json_markdown_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--token-ids", "1,2,3", "-t", "12", "--kernel-timing"];
    let a = qwen_report(dir.path(), "a.json", &args);
    let b = qwen_report(dir.path(), "b.json", &args);

    let out = compare(&[&a, &b]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("== {b} against {a} ==")),
        "{text}"
    );
    for want in ["prefill  pp3", "decode   tg12", "== Kernels", "seed 1"] {
        assert!(text.contains(want), "{want:?} not in {text}");
    }

    let out = compare(&[&a, &b, "--json", "--seed", "7", "--resamples", "2000"]);
    let v = json(&out);
    assert_eq!(v["method"]["seed"], 7);
    assert_eq!(v["method"]["resamples"], 2000);
    for name in ["prefill", "decode"] {
        let p = phase(&v, name);
        for side in ["a", "b"] {
            for key in ["median_ts", "mean_ts"] {
                assert!(p[side][key].as_f64().unwrap() > 0.0, "{p}");
            }
        }
        let ci = p["ci95"].as_array().unwrap();
        assert_eq!(ci.len(), 2);
        assert!(ci[0].as_f64().unwrap() <= ci[1].as_f64().unwrap());
        let pv = p["p_value"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&pv));
        let verdict = p["verdict"].as_str().unwrap();
        assert!(["faster", "slower", "no difference"].contains(&verdict));
    }
    assert_eq!(phase(&v, "decode")["a"]["n"], 12);
    assert_eq!(phase(&v, "decode")["unit"], "step");
    // One prompt pass a side: no verdict, and a note that says why.
    let prefill = phase(&v, "prefill");
    assert_eq!(
        (prefill["a"]["n"].as_u64(), prefill["verdict"].as_str()),
        (Some(1), Some("no difference"))
    );
    assert!(prefill["note"].as_str().unwrap().contains("--repeat"));
    let kernels = v["kernels"].as_array().unwrap();
    assert!(!kernels.is_empty());
    for k in kernels {
        assert!(k["a"]["ms_per_step"].as_f64().unwrap() >= 0.0, "{k}");
        assert_eq!(k["a"]["n_steps"], 12);
        assert!(k["ci95"].is_array() || k["note"].is_string(), "{k}");
    }
    // Largest change in time per step first.
    let change = |k: &Value| {
        (k["b"]["ms_per_step"].as_f64().unwrap() - k["a"]["ms_per_step"].as_f64().unwrap()).abs()
    };
    assert!(kernels.windows(2).all(|w| change(&w[0]) >= change(&w[1])));
    assert_eq!(v["more"], json!([]));

    let out = compare(&[&a, &b, "--markdown"]);
    assert_ok(&out);
    let md = stdout(&out);
    assert!(md.starts_with(&format!("### {b} against {a}\n")), "{md}");
    let tables: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
    // Phases: head, rule, 2 rows; kernels: head, rule, one row each.
    assert_eq!(tables.len(), 4 + 2 + kernels.len(), "{md}");
    assert!(tables.iter().all(|l| l.ends_with('|')));
    assert!(md.contains("#### Kernels"));

    let svg = dir.path().join("cmp.svg");
    let out = compare(&[&a, &b, "--plot", svg.to_str().unwrap()]);
    assert_ok(&out);
    let doc = std::fs::read_to_string(&svg).unwrap();
    let parsed = roxmltree::Document::parse(&doc).unwrap();
    let points = parsed
        .descendants()
        .filter(|n| n.has_tag_name("circle"))
        .count();
    assert_eq!(points, 24, "12 steps a side");
}

#[test]
fn a_known_shift_is_found_and_none_is_not_reported() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.json", &synthetic(6, 10.0, 1));
    // 20% faster steps: found in both phases, over runs.
    let b = write(dir.path(), "b.json", &synthetic(6, 10.0 / 1.2, 2));
    let v = json(&compare(&[&a, &b, "--json"]));
    for name in ["prefill", "decode"] {
        let p = phase(&v, name);
        assert_eq!(
            (p["unit"].as_str(), p["a"]["n"].as_u64()),
            (Some("run"), Some(6))
        );
        assert_eq!(p["verdict"], "faster", "{p}");
        // Every value is within 3% of its center: the ratio of medians within 1.2 * 1.03 / 0.97.
        let ratio = p["ratio"].as_f64().unwrap();
        assert!((ratio - 1.2).abs() < 0.075, "{ratio}");
        assert!(p["ci95"][0].as_f64().unwrap() > 1.0);
    }
    // The other way round: slower.
    let v = json(&compare(&[&b, &a, "--json"]));
    assert_eq!(phase(&v, "decode")["verdict"], "slower");
    // The same speed, other noise: no difference.
    let c = write(dir.path(), "c.json", &synthetic(6, 10.0, 3));
    let v = json(&compare(&[&a, &c, "--json"]));
    for name in ["prefill", "decode"] {
        let p = phase(&v, name);
        assert_eq!(p["verdict"], "no difference", "{p}");
        let ci = &p["ci95"];
        assert!(
            ci[0].as_f64().unwrap() < 1.0 && ci[1].as_f64().unwrap() > 1.0,
            "{p}"
        );
    }
    // Several files: each against the first, the rest in `more`.
    let v = json(&compare(&[&a, &b, &c, "--json"]));
    assert_eq!(v["b"]["file"], b.as_str());
    assert_eq!(v["more"][0]["b"]["file"], c.as_str());
    // A file holding both reports pools their runs.
    let pooled = format!("[{},{}]", synthetic(6, 10.0, 1), synthetic(6, 10.0, 4));
    let p = write(dir.path(), "pooled.json", &pooled);
    let v = json(&compare(&[&p, &b, "--json"]));
    assert_eq!(phase(&v, "decode")["a"]["n"], 12);
}

#[test]
fn different_set_ups_are_refused_in_one_line_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let base = ["--token-ids", "1,2,3", "-t", "4"];
    let a = qwen_report(dir.path(), "a.json", &base);
    let longer = qwen_report(dir.path(), "b.json", &["--token-ids", "1,2,3", "-t", "5"]);
    let err = assert_one_line_error(
        &compare(&[&a, &longer]),
        &["decode counts differ", "--force"],
    );
    assert!(
        err.contains("a.json: 4") && err.contains("b.json: 5"),
        "{err}"
    );
    let prompt = qwen_report(dir.path(), "p.json", &["--token-ids", "1,2,3,4", "-t", "4"]);
    assert_one_line_error(&compare(&[&a, &prompt]), &["prompt lengths differ"]);
    let threads = qwen_report(
        dir.path(),
        "t.json",
        &[
            "--token-ids",
            "1,2,3",
            "-t",
            "4",
            "--parallel",
            "--threads",
            "2",
        ],
    );
    assert_one_line_error(&compare(&[&a, &threads]), &["thread counts differ"]);
    let q4 = path("models/tiny-q4_0.gguf");
    let out = run(&[
        "-m",
        &q4,
        "--json",
        "--ignore-eos",
        "--token-ids",
        "1,2,3",
        "-t",
        "4",
    ]);
    let other = write(dir.path(), "q4.json", &stdout(&out));
    assert_one_line_error(
        &compare(&[&a, &other]),
        &["models differ", "tiny-q4_0.gguf"],
    );

    let out = compare(&[&a, &longer, "--force", "--json"]);
    let v = json(&out);
    let warnings = v["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("--force although decode counts differ")),
        "{v}"
    );
    // The warnings reach the terminal too.
    assert!(stderr(&out).contains("warning: compared with --force"));
}

#[test]
fn llama_bench_output_is_a_side() {
    let dir = tempfile::tempdir().unwrap();
    let lb = path(LLAMA_BENCH);
    let entries: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&lb).unwrap()).unwrap();
    // The same model, prompt length, decode count and threads as the fixture's run.
    let prompt: Vec<String> = (1..=16).map(|i| i.to_string()).collect();
    let q = qwen_report(
        dir.path(),
        "q.json",
        &["--token-ids", &prompt.join(","), "-t", "8"],
    );
    let v = json(&compare(&[&lb, &q, "--json"]));
    assert_eq!(v["a"]["engine"], "llama-bench");
    let pp = phase(&v, "prefill");
    assert_eq!(
        (pp["test_a"].as_str(), pp["test_b"].as_str()),
        (Some("pp16"), Some("pp16"))
    );
    // llama-bench's repetitions are runs: qwen's one run is one unit against them.
    assert_eq!(
        (
            pp["unit"].as_str(),
            pp["a"]["n"].as_u64(),
            pp["b"]["n"].as_u64()
        ),
        (Some("run"), Some(3), Some(1))
    );
    let rate = |e: &Value| e["avg_ts"].as_f64().unwrap();
    let pp_entry = entries.iter().find(|e| e["n_gen"] == 0).unwrap();
    // llama-bench's avg_ts is the mean of its repetitions' rates.
    assert!((pp["a"]["mean_ts"].as_f64().unwrap() / rate(pp_entry) - 1.0).abs() < 1e-6);
    assert_eq!(phase(&v, "decode")["test_a"], "tg8");
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("decode contexts differ"), "{warnings}");

    // JSON lines (llama-bench -o jsonl) read the same.
    let lines: Vec<String> = entries.iter().map(Value::to_string).collect();
    let jsonl = write(dir.path(), "lb.jsonl", &lines.join("\n"));
    let w = json(&compare(&[&jsonl, &q, "--json"]));
    assert_eq!(phase(&w, "decode")["a"], phase(&v, "decode")["a"]);
}

#[test]
fn sweeps_compare_depth_by_depth() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--sweep", "48", "--ubatch", "16", "-t", "2"];
    let model = path(TINY_MODEL);
    let report = |name: &str| {
        let mut all = vec!["-m", model.as_str(), "--json"];
        all.extend(args);
        let out = run(&all);
        assert_ok(&out);
        write(dir.path(), name, &stdout(&out))
    };
    let (a, b) = (report("a.json"), report("b.json"));
    let v = json(&compare(&[&a, &b, "--json"]));
    let depths: Vec<u64> = v["sweep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["n_kv"].as_u64().unwrap())
        .collect();
    assert_eq!(depths, [0, 16, 32]);
    let summary = v["sweep_summary"].as_array().unwrap();
    assert_eq!(summary.len(), 2);
    // Three depths cannot show a difference (2 / 2^3 = 0.25).
    assert!(
        summary.iter().all(|s| s["verdict"] == "no difference"),
        "{summary:?}"
    );
    let single = qwen_report(dir.path(), "run.json", &["--token-ids", "1,2,3", "-t", "2"]);
    assert_one_line_error(
        &compare(&[&a, &single]),
        &["--sweep report", "compare sweeps with sweeps"],
    );
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.json", &synthetic(2, 10.0, 1));
    let cases = [
        ("text.json", "hello", "is not JSON"),
        ("empty.json", "", "holds no report"),
        ("shape.json", r#"{"decode": {"n_tokens": 3}}"#, "malformed"),
        (
            "other.json",
            r#"{"a": 1}"#,
            "neither a qwen report nor a llama-bench test",
        ),
        (
            "nosamples.json",
            r#"[{"model_filename":"m.gguf","n_threads":1,"n_prompt":4,"n_gen":0,"samples_ns":[]}]"#,
            "has no samples_ns",
        ),
    ];
    for (name, text, want) in cases {
        let bad = write(dir.path(), name, text);
        assert_one_line_error(&compare(&[&good, &bad]), &[want, name]);
    }
    let missing = dir.path().join("missing.json").display().to_string();
    assert_one_line_error(
        &compare(&[&good, &missing]),
        &["cannot read", "missing.json"],
    );
    assert_one_line_error(&compare(&[&good]), &["2 values required"]);
    assert_one_line_error(
        &compare(&[&good, &good, "--resamples", "10"]),
        &["--resamples"],
    );
    let nowhere = dir
        .path()
        .join("no/such/dir/plot.svg")
        .display()
        .to_string();
    assert_one_line_error(
        &compare(&[&good, &good, "--plot", &nowhere]),
        &["does not exist"],
    );
    // The run's flags do not mix with the subcommand.
    assert_one_line_error(&run(&["-t", "3", "compare", &good, &good]), &["compare"]);
}
