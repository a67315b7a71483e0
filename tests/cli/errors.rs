//! Through the binary: every bad input gives one `error: ...` line and a non-zero exit, never a
//! panic, hang or huge allocation; the context limits; Ctrl-C.

use std::process::Output;
use std::time::Duration;

use crate::common::cli::*;
use crate::common::watched::{self, Stream};
use crate::common::{qwen3, qwen3moe, T, TINY, TINY_MOE, V};
use qwen::quant::GgmlType;

/// Runs `model` (a path) with a two-token id prompt and `extra` flags.
fn run_ids(model: &str, extra: &[&str]) -> Output {
    let mut args = vec!["-m", model, "--token-ids", "1,2", "-t", "2"];
    args.extend_from_slice(extra);
    run(&args)
}

fn synthetic(dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
    write(dir, name, bytes).display().to_string()
}

#[test]
fn a_valid_synthetic_model_runs() {
    // The baseline the broken variants below start from.
    let dir = tempfile::tempdir().unwrap();
    let model = synthetic(dir.path(), "ok.gguf", &qwen3(TINY).build());
    let out = run_ids(&model, &["--json"]);
    assert_eq!(ids(&json(&out)["generated_token_ids"]).len(), 2);
}

#[test]
fn unreadable_models_are_named() {
    let out = run_ids("/nonexistent/dir/model.gguf", &[]);
    assert_one_line_error(&out, &["/nonexistent/dir/model.gguf"]);
    let out = run_ids(&path("models"), &[]);
    assert_one_line_error(&out, &["not a regular file"]);
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    assert_one_line_error(&run_ids(manifest, &[]), &["not a GGUF file"]);

    let dir = tempfile::tempdir().unwrap();
    let empty = synthetic(dir.path(), "empty.gguf", &[]);
    assert_one_line_error(&run_ids(&empty, &[]), &["not a GGUF file"]);
    let v1 = synthetic(dir.path(), "v1.gguf", b"GGUF\x01\x00\x00\x00");
    assert_one_line_error(&run_ids(&v1, &[]), &["GGUF version 1 is not supported"]);
    // A named pipe must not block the open.
    let fifo = dir.path().join("pipe.gguf");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let fifo = fifo.display().to_string();
        let out = within_a_minute(qwen().args(["-m", &fifo, "--token-ids", "1"]));
        assert_one_line_error(&out, &["not a regular file"]);
    }
    let bytes = std::fs::read(path(TINY_MODEL)).unwrap();
    let cut = synthetic(dir.path(), "cut.gguf", &bytes[..bytes.len() / 2]);
    assert_one_line_error(&run_ids(&cut, &[]), &["truncated"]);
}

#[test]
fn corrupt_counts_and_offsets_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, layout) = qwen3(TINY).build_with_layout();

    // The tensor count (bytes 8..16) claims 2^60 tensors.
    let mut absurd = bytes.clone();
    absurd[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let model = synthetic(dir.path(), "count.gguf", &absurd);
    assert_one_line_error(&run_ids(&model, &[]), &["corrupt"]);

    // The last tensor's data starts far past the end of the file.
    let mut past = bytes.clone();
    let at = *layout.offset_field_at.last().unwrap();
    past[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let model = synthetic(dir.path(), "past.gguf", &past);
    assert_one_line_error(&run_ids(&model, &[]), &["blk.1.ffn_down.weight"]);

    // A fuzzer-found file whose block count once asked for a huge allocation.
    let out = run_ids(&path("fuzz/oom-block-count.gguf"), &[]);
    assert_one_line_error(&out, &[]);
}

#[test]
fn models_that_are_not_usable_qwen3_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let llama = qwen3(TINY).set("general.architecture", Some(V::s("llama")));
    let model = synthetic(dir.path(), "llama.gguf", &llama.build());
    assert_one_line_error(
        &run_ids(&model, &[]),
        &["architecture 'llama' is not supported"],
    );

    let missing = qwen3(TINY).replace("blk.1.attn_v.weight", None);
    let model = synthetic(dir.path(), "missing.gguf", &missing.build());
    assert_one_line_error(
        &run_ids(&model, &[]),
        &["tensor 'blk.1.attn_v.weight' not found", "missing.gguf"],
    );

    // Q8_1: a 32-block type ggml uses for activations, never in a published Qwen3 file.
    let q8_1 = T::new("blk.0.ffn_up.weight", GgmlType::Q8_1, &[96, 32]);
    let odd_type = qwen3(TINY).replace("blk.0.ffn_up.weight", Some(q8_1));
    let model = synthetic(dir.path(), "q8_1.gguf", &odd_type.build());
    assert_one_line_error(
        &run_ids(&model, &[]),
        &[
            "Q8_1",
            "blk.0.ffn_up.weight",
            "supported: ",
            "Q8_0",
            "IQ2_XXS",
            "MXFP4",
        ],
    );

    let wide = qwen3(TINY).set("qwen3.embedding_length", Some(V::U32(64)));
    let model = synthetic(dir.path(), "wide.gguf", &wide.build());
    assert_one_line_error(&run_ids(&model, &[]), &["64", "token_embd.weight"]);
}

#[test]
fn a_hybrid_model_runs_on_the_cpu_and_is_refused_by_gpu_backends() {
    let model = path("models/tiny-qwen35-f32.gguf");
    for mode in [&[][..], &["--parallel", "--threads", "2"][..]] {
        let out = run_ids(&model, &[&["--json"][..], mode].concat());
        assert_eq!(ids(&json(&out)["generated_token_ids"]).len(), 2, "{mode:?}");
    }
    assert_one_line_error(
        &run_ids(&model, &["--backend", "reference"]),
        &[
            "reference GPU graph runs dense Qwen3 only",
            "qwen35",
            "on the CPU",
        ],
    );
}

/// The tiny qwen35 fixture with `edit` applied to its bytes, written in `dir`.
fn broken_qwen35(dir: &std::path::Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut bytes = std::fs::read(path("models/tiny-qwen35-f32.gguf")).unwrap();
    edit(&mut bytes);
    synthetic(dir, name, &bytes)
}

#[test]
fn hybrid_files_that_contradict_themselves_are_refused_naming_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let set_u32 = |bytes: &mut Vec<u8>, key: &str, v: u32| {
        let at = u32_value_at(bytes, key);
        bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    };
    // Interval 0: llama.cpp would divide by it.
    let zero = broken_qwen35(dir.path(), "interval0.gguf", |b| {
        set_u32(b, "qwen35.full_attention_interval", 0)
    });
    assert_one_line_error(
        &run_ids(&zero, &[]),
        &["qwen35.full_attention_interval", "is 0"],
    );
    // The value width must be value heads x head size (4 x 16 = 64 here).
    let inner = broken_qwen35(dir.path(), "inner.gguf", |b| {
        set_u32(b, "qwen35.ssm.inner_size", 96)
    });
    assert_one_line_error(
        &run_ids(&inner, &[]),
        &["qwen35.ssm.inner_size (96)", "4 x 16 = 64"],
    );
    // Value heads that key heads do not divide.
    let uneven = broken_qwen35(dir.path(), "uneven.gguf", |b| {
        set_u32(b, "qwen35.ssm.group_count", 3)
    });
    assert_one_line_error(
        &run_ids(&uneven, &[]),
        &[
            "qwen35.ssm.time_step_rank (4)",
            "qwen35.ssm.group_count (3)",
        ],
    );
    // A DeltaNet tensor renamed away: missing, by name.
    let missing = broken_qwen35(dir.path(), "no-a.gguf", |b| {
        // The length prefix tells the tensor from `blk.1.ssm_alpha.weight`.
        let name = |n: &[u8]| [&(n.len() as u64).to_le_bytes()[..], n].concat();
        patch(b, &name(b"blk.1.ssm_a"), &name(b"blk.1.ssm_x"))
    });
    assert_one_line_error(&run_ids(&missing, &[]), &["blk.1.ssm_a", "not found"]);
    // A rotary count beyond the head.
    let rope = broken_qwen35(dir.path(), "rope.gguf", |b| {
        set_u32(b, "qwen35.rope.dimension_count", 48)
    });
    assert_one_line_error(
        &run_ids(&rope, &[]),
        &["qwen35.rope.dimension_count (48)", "head size (32)"],
    );
}

#[test]
fn a_mixture_of_experts_runs_on_the_cpu_and_is_refused_by_gpu_backends() {
    let model = path("models/tiny-moe-f32.gguf");
    for mode in [&[][..], &["--parallel", "--threads", "2"][..]] {
        let out = run_ids(&model, &[&["--json"][..], mode].concat());
        assert_eq!(ids(&json(&out)["generated_token_ids"]).len(), 2, "{mode:?}");
    }
    // The reference backend is always built: it stands for every GPU engine here.
    assert_one_line_error(
        &run_ids(&model, &["--backend", "reference"]),
        &[
            "reference GPU graph runs dense Qwen3 only",
            "qwen3moe",
            "on the CPU",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let missing = qwen3moe(TINY, TINY_MOE).replace("blk.0.ffn_gate_inp.weight", None);
    let broken = synthetic(dir.path(), "no-router.gguf", &missing.build());
    assert_one_line_error(
        &run_ids(&broken, &[]),
        &[
            "tensor 'blk.0.ffn_gate_inp.weight' not found",
            "no-router.gguf",
        ],
    );
}

#[test]
fn bad_prompts_are_refused() {
    let (model, tok) = (path(VOCAB_MODEL), path(TOKENIZER));
    let base = ["-m", model.as_str(), "--tokenizer", tok.as_str()];
    let with = |extra: &[&str]| run(&[&base[..], extra].concat());
    assert_one_line_error(&with(&["-p", ""]), &["prompt", "empty"]);
    assert_one_line_error(&with(&[]), &["no prompt", "-p"]);
    let out = run_with_stdin(&[&base[..], &["-p", "-"]].concat(), "");
    assert_one_line_error(&out, &["standard input", "empty"]);

    let dir = tempfile::tempdir().unwrap();
    let empty = synthetic(dir.path(), "empty.txt", b"");
    assert_one_line_error(&with(&["--prompt-file", &empty]), &["empty.txt", "empty"]);
    let missing = "/nonexistent/prompt.txt";
    assert_one_line_error(&with(&["--prompt-file", missing]), &[missing]);
    let dir_path = dir.path().display().to_string();
    assert_one_line_error(&with(&["--prompt-file", &dir_path]), &[&dir_path]);
    let not_utf8 = synthetic(dir.path(), "latin1.txt", b"caf\xe9");
    assert_one_line_error(&with(&["--prompt-file", &not_utf8]), &["latin1.txt"]);

    let out = run(&["-m", &path(TINY_MODEL), "--token-ids", "1,999"]);
    assert_one_line_error(&out, &["--token-ids", "id 999", "512"]);
    let out = run(&["-m", &path(TINY_MODEL), "--token-ids", "1,x"]);
    assert_one_line_error(&out, &["--token-ids"]);
}

#[test]
fn bad_tokenizers_are_named() {
    let model = path(VOCAB_MODEL);
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().display().to_string();
    let out = run(&["-m", &model, "--tokenizer", &dir_path, "-p", "hi"]);
    assert_one_line_error(&out, &[&dir_path]);
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let out = run(&["-m", &model, "--tokenizer", manifest, "-p", "hi"]);
    assert_one_line_error(&out, &["Cargo.toml", "tokenizer.json"]);
}

#[test]
fn flag_values_out_of_range_are_refused() {
    let model = path(TINY_MODEL);
    for (flag, value, says) in [
        ("--top-p", "0", "--top-p must be in (0, 1]"),
        ("--top-p", "1.5", "--top-p must be in (0, 1]"),
        ("--top-p", "NaN", "--top-p"),
        ("--temperature", "-1", "--temperature must be"),
        ("--temperature", "inf", "--temperature must be"),
        ("--min-p", "2", "--min-p must be in [0, 1]"),
        ("--repeat-penalty", "0", "--repeat-penalty must be"),
        ("--repeat-penalty", "-1", "--repeat-penalty must be"),
        ("--ctx-size", "0", "--ctx-size"),
        ("--ctx-size", "-3", "must be at least 1"),
        ("--ctx-size", "many", "--ctx-size"),
        ("--gen-tokens", "0", "must be at least 1"),
        ("--repeat", "0", "must be at least 1"),
        ("--top-k", "-1", "--top-k"),
        ("--repeat-last-n", "-1", "--repeat-last-n"),
        ("--seed", "-1", "--seed"),
        ("--no-such-flag", "1", "--no-such-flag"),
    ] {
        let out = run(&["-m", &model, "--token-ids", "1,2", flag, value]);
        let err = assert_one_line_error(&out, &[says]);
        assert!(
            err.contains(value) || err.contains(flag),
            "{flag} {value}: {err}"
        );
    }
    let out = run(&["-m", &model, "--token-ids", "1", "--threads", "2"]);
    assert_one_line_error(&out, &["--parallel"]);
    // Contradictory flags.
    let out = run(&["-m", &model, "--token-ids", "1", "--chat"]);
    assert_one_line_error(&out, &["--chat", "--token-ids"]);
}

#[test]
fn a_plot_that_cannot_be_written_is_refused_before_the_run() {
    let out = run_ids(&path(TINY_MODEL), &["--plot", "/nonexistent/dir/plot.svg"]);
    assert_one_line_error(&out, &["/nonexistent/dir"]);
    assert!(out.stdout.is_empty(), "nothing generated");
}

#[test]
fn the_context_is_the_models_lowered_to_fit_memory() {
    // tiny: 2 layers x 2 KV heads x 16 x f16 x (K, V) = 256 bytes per position, 40960 positions.
    let model = path(TINY_MODEL);
    let out = run_ids(&model, &["--json"]);
    assert!(!stderr(&out).contains("notice"), "{}", stderr(&out));
    let file_size = std::fs::metadata(&model).unwrap().len();
    // 3/4 of (available - model) = 1.5 MiB: 6144 positions.
    let available = (2 << 20) + file_size;
    let out = qwen()
        .env("QWEN_MEM_AVAILABLE", available.to_string())
        .args(["-m", &model, "--token-ids", "1,2", "-t", "2"])
        .output()
        .unwrap();
    assert_ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains("notice: context lowered from the model's 40960 to 6144 positions"),
        "{err}"
    );
    // An explicit size that cannot fit is an error; one that fits runs.
    let out = qwen()
        .env("QWEN_MEM_AVAILABLE", available.to_string())
        .args(["-m", &model, "--token-ids", "1,2", "--ctx-size", "40960"])
        .output()
        .unwrap();
    assert_one_line_error(&out, &["--ctx-size 40960", "at most 6144"]);
    let out = qwen()
        .env("QWEN_MEM_AVAILABLE", available.to_string())
        .args([
            "-m",
            &model,
            "--token-ids",
            "1,2",
            "-t",
            "1",
            "--ctx-size",
            "6144",
        ])
        .output()
        .unwrap();
    assert_ok(&out);
}

#[test]
fn a_prompt_longer_than_the_context_is_refused_before_any_work() {
    let out = run(&[
        "-m",
        &path(TINY_MODEL),
        "--token-ids",
        "1,2,3,4,5",
        "--ctx-size",
        "4",
    ]);
    assert_one_line_error(&out, &["5 tokens", "holds 4", "--ctx-size"]);
}

#[test]
fn a_full_context_stops_generation_with_a_notice_and_keeps_the_text() {
    // 2 prompt tokens in 8 positions: 6 tokens run, the 7th is sampled but has no room.
    let model = path(TINY_MODEL);
    let args = [
        "-m",
        &model,
        "--token-ids",
        "1,2",
        "--ctx-size",
        "8",
        "--ignore-eos",
        "--json",
    ];
    // A huge token budget must not allocate for it.
    let out = run(&[&args[..], &["-t", "4000000000"]].concat());
    let r = json(&out);
    assert_eq!(r["stop_reason"], "context_full");
    assert_eq!(ids(&r["generated_token_ids"]).len(), 7);
    assert!(!r["text"].as_str().unwrap().is_empty());
    assert!(stderr(&out).contains("notice: the context is full (8 positions)"));
}

/// Runs `cmd`, failing the test instead of hanging when it takes more than a minute.
fn within_a_minute(cmd: &mut std::process::Command) -> Output {
    watched::spawn(cmd).finish_within(Duration::from_secs(60), "a minute")
}

/// Spawns a long generation, waits for streamed text, sends SIGINT and returns the output.
fn interrupted(json: bool) -> Output {
    let (model, tok) = (path(VOCAB_MODEL), path(TOKENIZER));
    let mut args = vec!["-m", &model, "--tokenizer", &tok, "-p", "Once upon a time"];
    args.extend(["-t", "30000", "--ignore-eos"]);
    if json {
        args.push("--json");
    }
    let run = watched::spawn(qwen().args(&args));
    // Text streams to stdout, or to stderr with --json.
    run.wait_for_output(&[Stream::Stdout, Stream::Stderr], Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(200));
    run.interrupt();
    run.finish_within(Duration::from_secs(60), "SIGINT")
}

#[test]
fn ctrl_c_stops_keeps_the_text_reports_and_exits_130() {
    let out = interrupted(false);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(!stdout(&out).trim().is_empty(), "the text so far stays");
    let err = stderr(&out);
    assert!(err.contains("interrupted"), "{err}");
    assert!(err.contains("generate "), "timing report printed: {err}");
    assert!(!err.contains("panicked"), "{err}");

    let out = interrupted(true);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON still written");
    assert_eq!(r["interrupted"], true);
    assert_eq!(r["stop_reason"], "interrupted");
    let n_gen = ids(&r["generated_token_ids"]).len();
    assert!(n_gen > 0 && n_gen < 30000, "{n_gen}");
    assert!(!r["text"].as_str().unwrap().is_empty());
}

/// The tiny hybrid mixtures of experts run in both modes; a file without one of its shared
/// expert's tensors, or using more experts than it has, is refused in one line naming it.
#[test]
fn hybrid_mixtures_of_experts_run_and_their_faults_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["tiny-qwen35moe-q8_0", "tiny-qwen3next-q8_0"] {
        let model = path(&format!("models/{name}.gguf"));
        for mode in [&[][..], &["--parallel", "--threads", "2"][..]] {
            let out = run_ids(&model, &[&["--json"][..], mode].concat());
            assert_eq!(ids(&json(&out)["generated_token_ids"]).len(), 2, "{mode:?}");
        }
        let arch = name.trim_start_matches("tiny-").trim_end_matches("-q8_0");
        let file = qwen::gguf::GgufFile::open(&model).unwrap();
        let original = crate::common::rewrite::read(&file);

        let shared = "blk.2.ffn_up_shexp.weight";
        let missing = original.clone().replace(shared, None);
        let missing = synthetic(
            dir.path(),
            &format!("{arch}-no-shexp.gguf"),
            &missing.build(),
        );
        assert_one_line_error(&run_ids(&missing, &[]), &[shared, "not found"]);

        let used_key = format!("{arch}.expert_used_count");
        let too_many = original.set(&used_key, Some(V::U32(9)));
        let too_many = synthetic(dir.path(), &format!("{arch}-used9.gguf"), &too_many.build());
        assert_one_line_error(&run_ids(&too_many, &[]), &[&used_key, "9", "8"]);
    }
}
