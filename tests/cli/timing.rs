//! Through the binary, the timing analysis beyond the summary: the `--trace` timeline (parses,
//! op spans inside their steps, thread shares inside their op), the roofline's byte counts
//! against hand-computed ones, time to first token, `--sweep` and its bad inputs (`qwen compare`:
//! `compare.rs`).

use serde_json::Value;

use crate::common::cli::*;

/// The tiny fixture's shapes (`tests/fixtures/models/tiny-q8_0.gguf`): 2 layers, width 32,
/// 4 query heads and 2 KV heads of 16, feed-forward 96, vocabulary 512, embeddings tied.
const LAYERS: u64 = 2;
const WIDTH: u64 = 32;
const KV_DIM: u64 = 2 * 16;
const FFN: u64 = 96;
const VOCAB: u64 = 512;

/// Bytes of a Q8_0 matrix of `rows x cols`: 34-byte blocks of 32 weights.
fn q8_0(rows: u64, cols: u64) -> u64 {
    rows * cols / 32 * 34
}

/// The weight bytes one decode step must read: every layer's seven matrices, the LM head (the
/// tied token embedding, whole) and one embedding row.
fn weight_bytes_per_step() -> u64 {
    let q_dim = 4 * 16;
    let layer = q8_0(q_dim, WIDTH)
        + 2 * q8_0(KV_DIM, WIDTH)
        + q8_0(WIDTH, q_dim)
        + 2 * q8_0(FFN, WIDTH)
        + q8_0(WIDTH, FFN);
    LAYERS * layer + q8_0(VOCAB, WIDTH) + q8_0(1, WIDTH)
}

/// KV-cache bytes of decode steps at positions `first..first + steps`: each attends every
/// position up to its own, keys and values of `KV_DIM` f16 each, in every layer.
fn kv_bytes(first: u64, steps: u64) -> u64 {
    (first..first + steps)
        .map(|p| (p + 1) * KV_DIM * 2 * 2 * LAYERS)
        .sum()
}

fn sum(kernels: &Value, key: &str) -> u64 {
    kernels
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k[key].as_u64().unwrap_or_else(|| panic!("{key} of {k}")))
        .sum()
}

#[test]
fn kernel_bytes_equal_the_hand_computed_ones_in_both_modes() {
    let model = path(TINY_MODEL);
    for mode in [None, Some("--parallel")] {
        let mut args = vec!["-m", &model, "--token-ids", "1,2,3", "-t", "5"];
        args.extend(["--ignore-eos", "--kernel-timing", "--json"]);
        args.extend(mode);
        let r = json(&run(&args));
        let kernels = &r["kernels"];
        assert_eq!(
            sum(kernels, "weight_bytes"),
            5 * weight_bytes_per_step(),
            "{mode:?}"
        );
        // The first decode step runs the first sampled token at position 3.
        assert_eq!(sum(kernels, "kv_bytes"), kv_bytes(3, 5), "{mode:?}");
        for k in kernels.as_array().unwrap() {
            let (bytes, ns) = (
                k["bytes_read"].as_u64().unwrap(),
                k["total_ns"].as_u64().unwrap(),
            );
            assert!(bytes >= k["weight_bytes"].as_u64().unwrap() + k["kv_bytes"].as_u64().unwrap());
            let gbs = k["gb_per_s"].as_f64().unwrap();
            assert!(
                (gbs - bytes as f64 / ns as f64).abs() <= 1e-9 * gbs.max(1.0),
                "{k}"
            );
            // Only the table lookup and the copy of the last block's logit rows compute nothing.
            let moves_data =
                ["Embedding", "StridedContiguous"].contains(&k["name"].as_str().unwrap());
            assert!(k["flops"].as_u64().unwrap() > 0 || moves_data, "{k}");
        }
        let head = kernels
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"].as_str().unwrap().starts_with("LM head"));
        assert!(head.is_some(), "no LM head in {kernels}");
        assert!(!kernels.to_string().contains("output_norm\""), "{kernels}");
        let bw = &r["memory_bandwidth"];
        assert!(bw["measured_gb_per_s"].as_f64().unwrap() > 0.0, "{bw}");
        let share = bw["decode_share"].as_f64().unwrap();
        let ratio =
            bw["decode_gb_per_s"].as_f64().unwrap() / bw["measured_gb_per_s"].as_f64().unwrap();
        assert!((share - ratio).abs() <= 1e-9 + 1e-9 * ratio, "{bw}");
    }
}

/// The weight bytes one decode step of the tiny mixture of experts
/// (`tests/fixtures/models/tiny-moe-q8_0.gguf`: 2 layers, width 64, 4 query heads and 2 KV heads
/// of 16, 8 experts of width 32 with 2 used, F32 router, vocabulary 512, untied head) must read:
/// per layer the four attention matrices, the router and the two routed experts' slices of
/// gate, up and down (never the six idle ones), then the head and one embedding row.
fn moe_weight_bytes_per_step() -> u64 {
    let (width, kv_dim, expert_ffn, experts, used) = (64, 32, 32, 8, 2);
    let attention = 2 * q8_0(width, width) + 2 * q8_0(kv_dim, width);
    let router = experts * width * 4;
    let routed = used * 3 * q8_0(expert_ffn, width);
    LAYERS * (attention + router + routed) + q8_0(VOCAB, width) + q8_0(1, width)
}

#[test]
fn moe_kernel_bytes_count_only_the_routed_experts_in_both_modes() {
    let model = path("models/tiny-moe-q8_0.gguf");
    for mode in [None, Some("--parallel")] {
        let mut args = vec!["-m", &model, "--token-ids", "1,2,3", "-t", "4"];
        args.extend(["--ignore-eos", "--kernel-timing", "--json"]);
        args.extend(mode);
        let r = json(&run(&args));
        let kernels = &r["kernels"];
        assert_eq!(
            sum(kernels, "weight_bytes"),
            4 * moe_weight_bytes_per_step(),
            "{mode:?}: {kernels}"
        );
        let names = kernels.to_string();
        assert!(
            names.contains("MoeRouter") && names.contains("MoeExperts"),
            "{names}"
        );
        for k in kernels.as_array().unwrap() {
            let name = k["name"].as_str().unwrap();
            if name.starts_with("Moe") {
                assert!(k["flops"].as_u64().unwrap() > 0, "{k}");
            }
        }
    }
}

/// A hybrid mixture of experts with a shared expert (`tiny-qwen35moe-q8_0`: 4 layers, width 64,
/// 8 experts of width 32 with 2 used, a shared expert of width 64 with an F32 gate vector): the
/// experts op of one decode step reads, per layer, the two routed experts' slices and the whole
/// shared expert, never the six idle experts; the features, the profile's kinds and the trace
/// name the shared expert, in both modes.
#[test]
fn shared_expert_is_named_and_counted_in_profile_json_and_trace() {
    let model = path("models/tiny-qwen35moe-q8_0.gguf");
    let (layers, width, expert_ffn, shared_ffn) = (4, 64, 32, 64);
    let per_layer = 2 * 3 * q8_0(expert_ffn, width) + 3 * q8_0(shared_ffn, width) + width * 4;
    let dir = tempfile::tempdir().unwrap();
    let modes = [
        (vec![], "MoeExperts(+Shared)"),
        (
            vec!["--parallel", "--threads", "2"],
            "MoeExperts(GateUp+SwiGlu+Down+Shared+Residual)",
        ),
    ];
    for (mode, kind) in modes {
        let trace = dir.path().join("trace.json");
        let trace_arg = trace.display().to_string();
        let mut args = vec![
            "-m",
            &model,
            "--token-ids",
            "1,2,3",
            "-t",
            "4",
            "--ignore-eos",
        ];
        args.extend(["--kernel-timing", "--json", "--trace", &trace_arg]);
        args.extend(mode.iter().copied());
        let r = json(&run(&args));
        let experts: Vec<&Value> = r["kernels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["name"] == kind)
            .collect();
        assert_eq!(experts.len(), 1, "{kind} in {}", r["kernels"]);
        assert_eq!(
            experts[0]["weight_bytes"].as_u64().unwrap(),
            4 * layers * per_layer,
            "{kind}"
        );
        let features = &r["features"];
        assert!(
            features["experts"]
                .as_str()
                .unwrap()
                .contains("and one shared expert (ffn 64) every token"),
            "{features}"
        );
        assert!(
            features["kernels"]
                .to_string()
                .contains("MoeExperts (+Shared)"),
            "{features}"
        );
        let text = std::fs::read_to_string(&trace).unwrap();
        assert!(
            text.contains(&format!("{kind} blk.3")),
            "{kind} not in the trace"
        );
    }
}

#[test]
fn time_to_first_token_covers_the_prompt_pass() {
    let model = path(TINY_MODEL);
    let r = json(&run(&[
        "-m",
        &model,
        "--token-ids",
        "1,2,3",
        "-t",
        "3",
        "--json",
    ]));
    let ttft = r["ttft_ms"].as_f64().unwrap();
    let prompt_ms = r["prefill"]["avg_ns"].as_f64().unwrap() / 1e6;
    let first_step_ms = r["decode"]["samples_ns"][0].as_f64().unwrap() / 1e6;
    assert!(ttft >= prompt_ms, "ttft {ttft} < prompt {prompt_ms}");
    // The first token is sampled before the first decode step runs.
    assert!(ttft < prompt_ms + first_step_ms + 1000.0, "{ttft}");
    // Every decode step is counted, the first included, as the report says.
    assert_eq!(r["decode"]["warmup_excluded"], false);
    assert_eq!(r["decode"]["n"], 3);
}

fn events(trace: &Value) -> Vec<&Value> {
    trace["traceEvents"].as_array().unwrap().iter().collect()
}

fn span(e: &Value) -> (f64, f64) {
    let ts = e["ts"].as_f64().unwrap();
    (ts, ts + e["dur"].as_f64().unwrap())
}

/// Slack for the microsecond floats of the trace (ns / 1000 rounded in print).
const EPS_US: f64 = 1e-3;

#[test]
fn the_trace_nests_ops_in_steps_and_thread_shares_in_ops() {
    let model = path(TINY_MODEL);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.json");
    let file_arg = file.display().to_string();
    let args = [
        "-m",
        &model,
        "--token-ids",
        "1,2,3",
        "-t",
        "4",
        "--ignore-eos",
        "--parallel",
        "--threads",
        "2",
        "--trace",
        &file_arg,
        "--json",
    ];
    let r = json(&run(&args));
    let trace: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).expect("JSON");
    let all = events(&trace);
    assert_eq!(r["trace"]["events"].as_u64(), Some(all.len() as u64));
    let overhead = &r["trace"]["overhead"];
    assert!(
        overhead["ns_per_op_call"].as_f64().unwrap() >= 0.0,
        "{overhead}"
    );
    assert!(
        overhead["op_calls_per_step"].as_f64().unwrap() > 0.0,
        "{overhead}"
    );

    let by_cat = |cat: &str| -> Vec<&Value> {
        all.iter()
            .copied()
            .filter(|e| e["ph"] == "X" && e["cat"] == cat)
            .collect()
    };
    let phases: Vec<&str> = by_cat("phase")
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for p in ["load", "compile"] {
        assert!(phases.contains(&p), "{phases:?}");
    }
    let steps = by_cat("step");
    assert_eq!(steps.len(), 1 + 4, "the prompt and 4 decode steps");
    assert_eq!(steps[0]["name"], "prompt");
    let ops = by_cat("op");
    assert!(!ops.is_empty());
    for op in &ops {
        let (a, b) = span(op);
        let holder = steps.iter().find(|s| {
            let (sa, sb) = span(s);
            sa - EPS_US <= a && b <= sb + EPS_US
        });
        assert!(holder.is_some(), "op {op} outside every step");
        assert!(op["args"]["weights"].is_array(), "{op}");
    }
    for s in &steps {
        let (sa, sb) = span(s);
        let inside: f64 = ops
            .iter()
            .filter(|o| span(o).0 >= sa - EPS_US && span(o).1 <= sb + EPS_US)
            .map(|o| o["dur"].as_f64().unwrap())
            .sum();
        assert!(
            inside > 0.0 && inside <= sb - sa + EPS_US,
            "{s}: ops {inside} us"
        );
    }
    let matmul = ops.iter().find(|o| {
        o["args"]["weights"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w == "blk.1.ffn_down")
    });
    assert!(matmul.is_some_and(|o| o["args"]["bytes_read"].as_u64().unwrap() > 0));

    let searches = by_cat("search");
    let phases = by_cat("phase");
    let shares = by_cat("thread");
    assert!(!shares.is_empty(), "no pool thread shares");
    for sh in &shares {
        assert_ne!(sh["tid"], 1, "a share on the main track");
        let (a, b) = span(sh);
        let named = sh["name"].as_str().unwrap();
        let holder = ops.iter().chain(searches.iter()).find(|o| {
            let (oa, ob) = span(o);
            oa - EPS_US <= a && b <= ob + EPS_US
        });
        let phase = phases.iter().find(|p| {
            let (pa, pb) = span(p);
            pa <= a && b <= pb
        });
        match holder {
            Some(o) => assert_eq!(o["name"], named, "{sh}"),
            // The read bandwidth test and the searches run jobs outside any op.
            None => assert!(phase.is_some(), "share {sh} outside every op and phase"),
        }
    }
    let names: Vec<&str> = all
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    assert!(names.len() >= 3, "{names:?}");
}

#[test]
fn a_trace_that_cannot_be_written_is_refused_before_the_run() {
    let model = path(TINY_MODEL);
    let out = run(&[
        "-m",
        &model,
        "--token-ids",
        "1,2",
        "--trace",
        "/nonexistent/dir/t.json",
    ]);
    assert_one_line_error(&out, &["/nonexistent/dir", "--trace"]);
    assert!(out.stdout.is_empty(), "nothing generated");
}

#[test]
fn sweep_rows_are_ordered_and_positive() {
    let model = path(TINY_MODEL);
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("sweep.svg");
    let svg_arg = svg.display().to_string();
    let args = [
        "-m",
        &model,
        "--sweep",
        "96",
        "--ubatch",
        "32",
        "-t",
        "4",
        "--ctx-size",
        "128",
        "--json",
        "--plot",
        &svg_arg,
    ];
    let out = run(&args);
    let r = json(&out);
    let rows = r["sweep"].as_array().unwrap();
    let depths: Vec<u64> = rows
        .iter()
        .map(|row| row["n_kv"].as_u64().unwrap())
        .collect();
    assert_eq!(depths, [0, 32, 64]);
    for row in rows {
        assert_eq!(
            (row["pp_tokens"].as_u64(), row["tg_tokens"].as_u64()),
            (Some(32), Some(4))
        );
        for key in ["pp_ts", "tg_ts"] {
            assert!(row[key].as_f64().unwrap() > 0.0, "{row}");
        }
    }
    assert_eq!(
        (r["n_kv_max"].as_u64(), r["n_ubatch"].as_u64()),
        (Some(96), Some(32))
    );
    // The table goes to stderr with --json: one line per row besides the head.
    let table = stderr(&out);
    assert_eq!(
        table.lines().filter(|l| l.starts_with("|    32 |")).count(),
        3,
        "{table}"
    );
    let doc = std::fs::read_to_string(&svg).unwrap();
    roxmltree::Document::parse(&doc).expect("well-formed SVG");
}

/// A hybrid model sweeps too: one layer in four keeps a KV cache that grows with depth, the
/// DeltaNet layers a state of fixed size that each row's truncation rewinds.
#[test]
fn a_hybrid_model_sweeps_in_both_modes() {
    let model = path("models/tiny-qwen35-f32.gguf");
    for mode in [&[][..], &["--parallel", "--threads", "2"][..]] {
        let args = [
            "-m", &model, "--sweep", "64", "--ubatch", "16", "-t", "3", "--json",
        ];
        let out = run(&[&args[..], mode].concat());
        assert_ok(&out);
        let r = json(&out);
        let rows = r["sweep"].as_array().unwrap();
        let depths: Vec<u64> = rows
            .iter()
            .map(|row| row["n_kv"].as_u64().unwrap())
            .collect();
        assert_eq!(depths, [0, 16, 32, 48], "{mode:?}");
        for row in rows {
            for key in ["pp_ts", "tg_ts"] {
                assert!(row[key].as_f64().unwrap() > 0.0, "{mode:?}: {row}");
            }
        }
    }
}

#[test]
fn bad_sweeps_are_one_line_errors() {
    let model = path(TINY_MODEL);
    for (extra, says) in [
        (&["--sweep", "0"][..], "--sweep"),
        (&["--sweep", "64", "--ubatch", "0"], "--ubatch"),
        (
            &["--sweep", "16", "--ubatch", "32"],
            "smaller than one chunk",
        ),
        (
            &["--sweep", "256", "--ubatch", "64", "--ctx-size", "128"],
            "context holds 128",
        ),
        (
            &[
                "--sweep",
                "128",
                "--ubatch",
                "64",
                "-t",
                "100",
                "--ctx-size",
                "128",
            ],
            "lower -t",
        ),
        (&["--ubatch", "32"], "--sweep"),
        (&["--sweep", "64", "-p", "hello"], "--prompt"),
    ] {
        let mut args = vec!["-m", model.as_str()];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert_one_line_error(&out, &[says]);
    }
}

/// Flops of the feed-forward ops (those reading an `ffn_*` weight) of each block in the trace's
/// prompt step, by block.
fn prompt_ffn_flops(trace: &Value, layers: usize) -> Vec<u64> {
    let all = events(trace);
    let prompt = all
        .iter()
        .find(|e| e["cat"] == "step" && e["name"] == "prompt")
        .expect("a prompt step");
    let (start, end) = span(prompt);
    let mut flops = vec![0; layers];
    for e in all.iter().filter(|e| e["cat"] == "op" && e["tid"] == 1) {
        let (s, _) = span(e);
        if s < start || s >= end {
            continue;
        }
        let weights = e["args"]["weights"].as_array().unwrap();
        for (layer, sum) in flops.iter_mut().enumerate() {
            let ffn = format!("blk.{layer}.ffn_");
            if weights
                .iter()
                .any(|w| w.as_str().unwrap().starts_with(&ffn))
            {
                *sum += e["args"]["flops"].as_u64().unwrap();
            }
        }
    }
    flops
}

#[test]
fn the_prompt_runs_the_last_blocks_feed_forward_on_its_last_position_only() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.json");
    let trace_arg = trace.display().to_string();
    let prompt: Vec<String> = (1..=16).map(|t| t.to_string()).collect();
    let prompt = prompt.join(",");
    // Dense Qwen3 and Qwen3-MoE (2 blocks), a hybrid MoE (4 blocks, gated attention last).
    for (model, layers) in [
        (TINY_MODEL, 2),
        ("models/tiny-moe-q8_0.gguf", 2),
        ("models/tiny-qwen35moe-q8_0.gguf", 4),
    ] {
        for mode in [None, Some("--parallel")] {
            let model_path = path(model);
            let mut args = vec!["-m", &model_path, "--token-ids", &prompt, "-t", "1"];
            args.extend(["--trace", &trace_arg]);
            args.extend(mode);
            run(&args);
            let text = std::fs::read_to_string(&trace).unwrap();
            let flops = prompt_ffn_flops(&serde_json::from_str(&text).unwrap(), layers);
            let what = format!("{model} {mode:?}: {flops:?}");
            assert!(flops.iter().all(|&f| f > 0), "{what}");
            // Every block before the last runs its 16 positions; the last one position.
            assert!(flops[..layers - 1].iter().all(|&f| f == flops[0]), "{what}");
            assert_eq!(flops[0], 16 * flops[layers - 1], "{what}");
        }
    }
}
