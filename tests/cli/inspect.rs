//! `qwen --inspect [--json]` run as a process on the fixture models and on bad inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::fixture_file::fixture_names;
use crate::common::{fixture, qwen3, TINY, V};
use serde_json::Value;

fn qwen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qwen"))
        .args(args)
        .output()
        .unwrap()
}

fn inspect_json(model: &Path) -> (Value, Output) {
    let out = qwen(&["--model", model.to_str().unwrap(), "--inspect", "--json"]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (json, out)
}

/// A file in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, bytes: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("qwen-cli-{}-{tag}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Exit code non-zero, stderr a single `error: ...` line, never a panic.
fn assert_one_line_error(out: &Output, mentions: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "exit code 0; stderr: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(mentions), "{mentions:?} not in {stderr}");
    stderr
}

#[test]
fn json_of_every_fixture_matches_the_file() {
    let mut checked = 0;
    for name in fixture_names("models") {
        let (json, out) = inspect_json(&fixture(&format!("models/{name}")));
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let py: Value = {
            let dump = fixture(&format!("gguf-py/{}.json", name.trim_end_matches(".gguf")));
            serde_json::from_str(&std::fs::read_to_string(dump).unwrap()).unwrap()
        };
        assert_eq!(json["file_size"], py["file_size"]);
        assert_eq!(json["gguf_version"], 3);
        let tensors = json["tensors"].as_array().unwrap();
        let py_tensors = py["tensors"].as_array().unwrap();
        assert_eq!(tensors.len(), py_tensors.len(), "{name}");
        for (t, p) in tensors.iter().zip(py_tensors) {
            for field in ["name", "type", "shape"] {
                assert_eq!(t[field], p[field], "{name}: {field} of {}", p["name"]);
            }
        }
        let n_params: u64 = py_tensors
            .iter()
            .map(|t| {
                t["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap())
                    .product::<u64>()
            })
            .sum();
        assert_eq!(json["n_params"], n_params, "{name}");
        let counted: u64 = json["type_counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["count"].as_u64().unwrap())
            .sum();
        assert_eq!(counted, tensors.len() as u64);
        let c = &json["config"];
        if name.contains("qwen35") || name.contains("qwen3next") {
            let arch = ["qwen35moe", "qwen3next", "qwen35"]
                .into_iter()
                .find(|a| name.contains(a))
                .unwrap();
            assert_eq!(json["architecture"], arch, "{name}");
            check_hybrid_config(&name, &json);
            checked += 1;
            continue;
        }
        if name.contains("-moe") {
            assert_eq!(json["architecture"], "qwen3moe", "{name}");
            check_moe_config(&name, &json);
        } else {
            assert_eq!(json["architecture"], "qwen3", "{name}");
            check_dense_config(&name, c);
            assert_eq!(
                json["n_active_params"], n_params,
                "{name}: dense, all active"
            );
        }
        assert_eq!(c["rope_theta"], 1e6);
        assert_eq!(c["rms_eps"], 1e-6);
        assert_eq!(c["context_length"], 40960);
        let embeds = name.contains("qwen3vocab");
        assert_eq!(json["tokenizer_embedded"], embeds, "{name}");
        assert_eq!(json["chat_template_embedded"], embeds, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 29);
}

/// The sizes tests/fixtures/README.md gives for the dense fixtures.
fn check_dense_config(name: &str, c: &Value) {
    let small = name.starts_with("small");
    assert_eq!(c["hidden"], if small { 256 } else { 32 }, "{name}");
    assert_eq!(c["heads"], if small { 8 } else { 4 });
    assert_eq!(c["kv_heads"], 2);
    assert_eq!(c["head_dim"], if small { 64 } else { 16 });
    assert_eq!(c["ffn"], if small { 768 } else { 96 });
    assert_eq!(c["layers"], 2);
    let vocab = if name.contains("qwen3vocab") {
        151936
    } else {
        512
    };
    assert_eq!(c["vocab"], vocab);
    assert_eq!(c["tied_embeddings"], !small);
    assert_eq!(c["experts"], Value::Null, "{name}: dense");
}

/// The Qwen3.5 fixtures (the kit's HYBRID.md, section 1): three gated DeltaNet layers, then one
/// gated attention layer, and the recurrent state one sequence carries, counted by hand.
fn check_hybrid_config(name: &str, json: &Value) {
    let c = &json["config"];
    let small = name.starts_with("small");
    // (hidden, key heads, value heads, head size, KV width)
    let (hidden, k_heads, v_heads, state, kv) = match small {
        true => (256, 4, 8, 32, 2 * 64),
        false => (64, 2, 4, 16, 2 * 32),
    };
    assert_eq!(c["hidden"], hidden, "{name}");
    assert_eq!(c["layers"], 4, "{name}");
    assert_eq!(
        c["recurrent_layers"],
        serde_json::json!([true, true, true, false])
    );
    assert_eq!(
        (c["k_heads"].clone(), c["v_heads"].clone()),
        (k_heads.into(), v_heads.into())
    );
    let h = &json["hybrid"];
    assert_eq!(h["layer_pattern"], "DDDA", "{name}");
    assert_eq!(
        (
            h["recurrent_layer_count"].clone(),
            h["attention_layer_count"].clone()
        ),
        (3.into(), 1.into()),
        "{name}"
    );
    // Per DeltaNet layer: the last 3 of the 4 convolution taps' inputs over the q/k/v channels,
    // and a state x state matrix per value head.
    let conv = 2 * k_heads * state + v_heads * state;
    let floats = 3 * conv + v_heads * state * state;
    assert_eq!(h["state_floats_per_layer"], floats, "{name}");
    assert_eq!(h["state_bytes_per_sequence"], 3 * 4 * floats, "{name}");
    // One attention layer: f16 keys and values.
    assert_eq!(h["kv_bytes_per_position"], 2 * 2 * kv, "{name}");
    if c["experts"].is_null() {
        assert_eq!(json["n_active_params"], json["n_params"], "{name}: dense");
    } else {
        // Active: all but the 6 idle experts' 3 x 32 x 64 of each layer (the shared one runs).
        assert_eq!(c["shared_ffn"], 64, "{name}");
        let total = json["n_params"].as_u64().unwrap();
        assert_eq!(
            json["n_active_params"],
            total - 4 * 6 * 3 * 32 * 64,
            "{name}"
        );
    }
}

/// The Qwen3-MoE fixtures: their expert counts, and parameters active per token counted from
/// the tensors (all but the unrouted experts' share of each 3-D expert tensor).
fn check_moe_config(name: &str, json: &Value) {
    let c = &json["config"];
    let small = name.starts_with("small");
    let (hidden, experts, used, width) = if small {
        (256, 16, 4, 256)
    } else {
        (64, 8, 2, 32)
    };
    assert_eq!(c["hidden"], hidden, "{name}");
    assert_eq!(c["experts"], experts, "{name}");
    assert_eq!(c["experts_used"], used, "{name}");
    assert_eq!(c["expert_ffn"], width, "{name}");
    assert_eq!(c["layers"], 2);
    let total = json["n_params"].as_u64().unwrap();
    let expert_tensors: u64 = json["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"].as_str().unwrap().ends_with("_exps.weight"))
        .map(|t| {
            let dims: Vec<u64> = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect();
            assert_eq!(dims[0], experts, "{name}: experts outermost");
            dims.iter().product::<u64>()
        })
        .sum();
    let idle = expert_tensors / experts * (experts - used);
    assert_eq!(json["n_active_params"], total - idle, "{name}");
}

#[test]
fn text_report_of_a_mixture_of_experts() {
    let model = fixture("models/tiny-moe-q8_0.gguf");
    let out = qwen(&["--model", model.to_str().unwrap(), "--inspect"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // 189824 in all; per token 2 of the 8 experts: 189824 - 2 layers * 6 idle * 3 * 32 * 64.
    for expected in [
        "architecture:   qwen3moe",
        "parameters:     189.8K (189824)",
        "active:         116.1K (116096) per token, the routed experts only",
        "  experts         8 (2 used per token)",
        "  expert_ffn      32",
        "  blk.0.ffn_gate_exps.weight   Q8_0   [8, 32, 64]",
        "  blk.0.ffn_gate_inp.weight    F32    [8, 64]",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn text_report_of_a_mixture_of_experts_with_a_shared_expert() {
    let model = fixture("models/tiny-qwen35moe-q8_0.gguf");
    let out = qwen(&["--model", model.to_str().unwrap(), "--inspect"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // 399304 in all; per token 2 of the 8 routed experts and the shared one, every layer:
    // 399304 - 4 layers * 6 idle * 3 * 32 * 64.
    for expected in [
        "architecture:   qwen35moe",
        "parameters:     399.3K (399304)",
        "active:         251.8K (251848) per token, the routed experts and the shared one",
        "  experts         8 (2 used per token)",
        "  expert_ffn      32",
        "  shared_ffn      64 (one shared expert, every token)",
        "  blk.0.ffn_gate_inp_shexp.weight F32    [64]",
        "  blk.0.ffn_down_shexp.weight  Q8_0   [64, 64]",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn text_report_for_a_person() {
    let model = fixture("models/small-q4_k_m.gguf");
    let out = qwen(&["--model", model.to_str().unwrap(), "--inspect"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "architecture:   qwen3",
        "name:           random-small-f32-seed2",
        "size:           1.22 MiB (1280864 bytes)",
        "GGUF version:   3",
        "parameters:     2.1M (2098688)",
        "  hidden          256",
        "  head_dim        64",
        "  tied_embeddings no",
        "  Q4_K        13 tensors",
        "  Q6_K         3 tensors",
        "  F32          9 tensors",
        "tokenizer:      not embedded",
        "chat template:  not embedded",
        "  blk.1.ffn_down.weight        Q6_K   [256, 768]",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    let vocab = fixture("models/tiny-qwen3vocab-q8_0.gguf");
    let out = qwen(&["--model", vocab.to_str().unwrap(), "--inspect"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("tokenizer:      embedded: gpt2, pre qwen2, 151936 tokens, 151387 merges"),
        "{text}"
    );
    assert!(text.contains("chat template:  embedded"), "{text}");
}

#[test]
fn another_architecture_is_reported_then_refused() {
    let g = qwen3(TINY).set("general.architecture", Some(V::s("llama")));
    let file = TempFile::new("llama.gguf", &g.build());
    let (json, out) = inspect_json(&file.0);
    assert_one_line_error(
        &out,
        "architecture 'llama' is not supported (this program runs qwen3, qwen3moe, qwen35",
    );
    assert_eq!(json["architecture"], "llama");
    assert_eq!(json["config"], Value::Null);
    assert!(json["config_error"].as_str().unwrap().contains("'llama'"));
    assert_eq!(
        json["tensors"].as_array().unwrap().len(),
        g.tensors.len(),
        "tensors still listed"
    );

    let out = qwen(&["--model", file.0.to_str().unwrap(), "--inspect"]);
    assert_one_line_error(&out, "llama");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("config:         invalid: architecture 'llama'"),
        "{text}"
    );
}

#[test]
fn a_broken_model_names_the_missing_tensor() {
    let g = qwen3(TINY).replace("blk.1.attn_v.weight", None);
    let file = TempFile::new("broken.gguf", &g.build());
    let (_, out) = inspect_json(&file.0);
    let stderr = assert_one_line_error(&out, "tensor 'blk.1.attn_v.weight' not found in");
    assert!(stderr.contains(file.0.to_str().unwrap()), "{stderr}");
}

#[test]
fn bad_inputs_give_one_line_errors() {
    let out = qwen(&["--model", "/nonexistent/dir/model.gguf", "--inspect"]);
    assert_one_line_error(&out, "/nonexistent/dir/model.gguf");

    let dir = fixture("models");
    let out = qwen(&["--model", dir.to_str().unwrap(), "--inspect", "--json"]);
    assert_one_line_error(&out, "not a regular file");

    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let out = qwen(&["--model", manifest.to_str().unwrap(), "--inspect"]);
    assert_one_line_error(&out, "not a GGUF file");
    assert!(out.stdout.is_empty());

    let bytes = std::fs::read(fixture("models/tiny-q8_0.gguf")).unwrap();
    let cut = TempFile::new("cut.gguf", &bytes[..bytes.len() / 2]);
    let out = qwen(&["--model", cut.0.to_str().unwrap(), "--inspect", "--json"]);
    assert_one_line_error(&out, "file is truncated");

    let empty = TempFile::new("empty.gguf", &[]);
    let out = qwen(&["--model", empty.0.to_str().unwrap(), "--inspect"]);
    assert_one_line_error(&out, "not a GGUF file");

    let v1 = TempFile::new("v1.gguf", b"GGUF\x01\x00\x00\x00");
    let out = qwen(&["--model", v1.0.to_str().unwrap(), "--inspect"]);
    assert_one_line_error(&out, "GGUF version 1 is not supported");
}

#[test]
fn default_model_path_is_setup_qwen3_4b() {
    let out = Command::new(env!("CARGO_BIN_EXE_qwen"))
        .arg("--inspect")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_one_line_error(&out, "setup/qwen3-4b.gguf");
}

/// A dense hybrid file whose last block is its MTP block: inspected, every weight of the file is
/// read per token (no "active" line), and the MTP layer is named; a run says it is skipped.
#[test]
fn a_dense_file_with_an_mtp_block_is_all_active() {
    let base = qwen::gguf::GgufFile::open(fixture("models/tiny-qwen35-f32.gguf")).unwrap();
    let g = crate::common::rewrite::read(&base).set("qwen35.nextn_predict_layers", Some(V::U32(1)));
    let file = TempFile::new("mtp.gguf", &g.build());
    let (json, out) = inspect_json(&file.0);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json["n_active_params"], json["n_params"]);
    assert_eq!(json["hybrid"]["mtp_layers"], 1);
    let text = qwen(&["-m", file.0.to_str().unwrap(), "--inspect"]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(!text.contains("active:"), "{text}");
    // The block's nextn tensors are absent: listed as incomplete, as llama.cpp loads such a
    // file (it skips the block's tensors unless it runs the block).
    assert!(
        text.contains("incomplete (no blk.3.nextn.eh_proj.weight): --mtp cannot run it"),
        "{text}"
    );
    assert_eq!(
        json["hybrid"]["mtp_missing_tensor"],
        "blk.3.nextn.eh_proj.weight"
    );
    let run = qwen(&[
        "-m",
        file.0.to_str().unwrap(),
        "--token-ids",
        "1,2",
        "-t",
        "1",
    ]);
    let err = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(run.status.success(), "{err}");
    assert!(
        err.contains("multi-token-prediction") && err.contains("nextn_predict_layers = 1"),
        "{err}"
    );
    assert!(
        err.contains("lacks its tensor 'blk.3.nextn.eh_proj.weight', so it is not run"),
        "{err}"
    );
}
