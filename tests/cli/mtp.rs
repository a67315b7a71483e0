//! `--mtp`: speculative decoding with a qwen35 file's multi-token-prediction block, through the
//! binary. Greedy tokens must equal those of a run without `--mtp` whatever the block drafts:
//! a random block (drafts rejected), a block that agrees with its trunk by construction (every
//! draft accepted) and one that agrees most of the time (accepted, rejected and partly
//! accepted rounds), in both modes, and a qwen35moe file's block (experts in its feed-forward);
//! the report's counts add up; bad uses are one-line errors.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::cli::{assert_ok, assert_one_line_error, ids, json, path, run, stderr};
use crate::common::mtp_model::{with_mtp, MtpKind};
use qwen::gguf::GgufFile;

const PROMPT: &str = "1,17,42,300,5,99,256,7,8,128,64,3,77,410,12,500";

/// `tiny-qwen35-f32` with a block of `kind`, written into `dir`.
fn model(dir: &Path, kind: MtpKind) -> PathBuf {
    let src = GgufFile::open(path("models/tiny-qwen35-f32.gguf")).unwrap();
    let p = dir.join("tiny-qwen35-mtp.gguf");
    std::fs::write(&p, with_mtp(&src, kind)).unwrap();
    p
}

/// The JSON report of a greedy run of `n` tokens (`extra` flags added).
fn report(model: &Path, n: usize, extra: &[&str]) -> Value {
    let n = n.to_string();
    let m = model.to_str().unwrap();
    let mut args = vec![
        "-m",
        m,
        "--token-ids",
        PROMPT,
        "-t",
        &n,
        "--ignore-eos",
        "--json",
    ];
    args.extend_from_slice(extra);
    json(&run(&args))
}

/// Runs with and without `--mtp N` in both modes; asserts equal tokens and consistent counts;
/// returns the `mtp` objects (standard, parallel).
fn same_tokens(model: &Path, n: usize, draft: &str) -> [Value; 2] {
    [&[][..], &["--parallel", "--threads", "2"][..]].map(|mode| {
        let plain = report(model, n, mode);
        let mut args = mode.to_vec();
        args.extend(["--mtp", draft]);
        let spec = report(model, n, &args);
        assert_eq!(
            ids(&spec["generated_token_ids"]),
            ids(&plain["generated_token_ids"]),
            "--mtp {draft} {mode:?} changed the greedy tokens"
        );
        assert!(plain.get("mtp").is_none(), "no mtp report without --mtp");
        let m = spec["mtp"].clone();
        let count = |k: &str| m[k].as_u64().unwrap();
        assert_eq!(count("drafted"), count("accepted") + count("rejected"));
        assert!(count("rounds") > 0);
        assert!(count("drafted") <= count("rounds") * draft.parse::<u64>().unwrap());
        // Each round keeps its accepted drafts and one token of the trunk's; the first token
        // comes from the prompt pass.
        assert_eq!(
            count("accepted") + count("rounds"),
            n as u64 - 1,
            "tokens per round: {m}"
        );
        let passes: u64 = m["verify"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["count"].as_u64().unwrap())
            .sum();
        assert_eq!(passes, count("rounds"));
        m
    })
}

#[test]
fn a_random_block_changes_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path(), MtpKind::Random { seed: 41 });
    for m in same_tokens(&m, 24, "3") {
        assert!(m["drafted"].as_u64().unwrap() > 0, "{m}");
    }
}

/// A qwen35moe file's block has a mixture-of-experts feed-forward, as its trunk: it loads,
/// drafts, and leaves the greedy tokens as they are in both modes.
#[test]
fn a_moe_files_block_drafts_and_changes_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let src = GgufFile::open(path("models/tiny-qwen35moe-q8_0.gguf")).unwrap();
    let m = dir.path().join("tiny-qwen35moe-mtp.gguf");
    std::fs::write(&m, with_mtp(&src, MtpKind::Random { seed: 43 })).unwrap();
    for r in same_tokens(&m, 24, "2") {
        assert!(r["drafted"].as_u64().unwrap() > 0, "{r}");
    }
}

#[test]
fn an_agreeing_block_has_every_draft_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path(), MtpKind::Agreeing { trunk_scale: 0.0 });
    for m in same_tokens(&m, 25, "3") {
        let count = |k: &str| m[k].as_u64().unwrap();
        assert_eq!(count("rejected"), 0, "{m}");
        assert_eq!(
            count("rounds"),
            6,
            "24 tokens after the first in rounds of 4: {m}"
        );
        assert_eq!(count("full_accepts"), 6, "{m}");
        assert_eq!(m["acceptance_rate"].as_f64(), Some(1.0));
    }
}

/// The trunk's context matters (its outputs scaled down, not off): drafts are accepted, cut
/// short and rejected, and the recurrent states rolled back each time must leave the tokens as
/// a plain run has them.
#[test]
fn a_mostly_agreeing_block_exercises_partial_acceptance() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path(), MtpKind::Agreeing { trunk_scale: 0.1 });
    for m in same_tokens(&m, 40, "4") {
        let count = |k: &str| m[k].as_u64().unwrap();
        assert!(count("accepted") > 0, "{m}");
        assert!(count("rejected") > 0, "{m}");
        assert!(count("full_accepts") > 0, "{m}");
        assert!(
            count("full_accepts") < count("rounds"),
            "some rounds cut short: {m}"
        );
    }
}

#[test]
fn sampling_with_mtp_runs_and_reproduces_with_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path(), MtpKind::Agreeing { trunk_scale: 0.1 });
    let args = ["--mtp", "3", "--temperature", "0.8", "--seed", "5"];
    let a = report(&m, 30, &args);
    let b = report(&m, 30, &args);
    assert_eq!(a["generated_token_ids"], b["generated_token_ids"]);
    assert_eq!(ids(&a["generated_token_ids"]).len(), 30);
    assert!(a["mtp"]["accepted"].as_u64().unwrap() > 0, "{}", a["mtp"]);
}

#[test]
fn the_summary_and_inspect_show_the_block() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path(), MtpKind::Random { seed: 1 });
    let ms = m.to_str().unwrap();
    let out = run(&["-m", ms, "--token-ids", PROMPT, "-t", "8", "--mtp", "2"]);
    assert_ok(&out);
    let err = stderr(&out);
    assert!(err.contains("mtp ") && err.contains("drafted"), "{err}");
    assert!(err.contains("verify passes: "), "{err}");
    assert!(!err.contains("it runs only with --mtp"), "{err}");
    let plain = run(&["-m", ms, "--token-ids", PROMPT, "-t", "2"]);
    assert!(stderr(&plain).contains("it runs only with --mtp"));
    let inspect = run(&["-m", ms, "--inspect"]);
    assert_ok(&inspect);
    let text = String::from_utf8_lossy(&inspect.stdout).to_string();
    assert!(
        text.contains("blk.4 (nextn.eh_proj, enorm, hnorm;") && text.contains("--mtp N"),
        "{text}"
    );
    let inspect = json(&run(&["-m", ms, "--inspect", "--json"]));
    assert_eq!(inspect["hybrid"]["mtp"]["layer"], 4);
    assert_eq!(inspect["hybrid"]["mtp"]["own_head_norm"], true);
    assert_eq!(inspect["hybrid"]["mtp"]["own_head"], false);
}

#[test]
fn bad_uses_of_mtp_are_one_line_errors() {
    let plain = path("models/tiny-qwen35-f32.gguf");
    let out = run(&["-m", &plain, "--token-ids", PROMPT, "--mtp"]);
    assert_one_line_error(
        &out,
        &["--mtp", "tiny-qwen35-f32.gguf", "nextn_predict_layers"],
    );
    // A file that declares a block it does not hold (converted without it) runs without --mtp
    // (tests/cli/inspect.rs) and names the missing tensor with it.
    let dir = tempfile::tempdir().unwrap();
    let base =
        qwen::gguf::GgufFile::open(crate::common::fixture("models/tiny-qwen35-f32.gguf")).unwrap();
    let declared = crate::common::rewrite::read(&base).set(
        "qwen35.nextn_predict_layers",
        Some(crate::common::V::U32(1)),
    );
    let declared = crate::common::cli::write(dir.path(), "declared.gguf", &declared.build());
    let out = run(&[
        "-m",
        declared.to_str().unwrap(),
        "--token-ids",
        PROMPT,
        "--mtp",
    ]);
    assert_one_line_error(
        &out,
        &["--mtp", "blk.3.nextn.eh_proj.weight", "run without --mtp"],
    );
    let qwen3 = path("models/tiny-q8_0.gguf");
    let out = run(&["-m", &qwen3, "--token-ids", PROMPT, "--mtp", "2"]);
    assert_one_line_error(&out, &["--mtp", "multi-token-prediction block"]);
    for bad in ["0", "-1", "x"] {
        let out = run(&["-m", &plain, "--token-ids", PROMPT, "--mtp", bad]);
        assert_one_line_error(&out, &["--mtp"]);
    }
    let out = run(&["-m", &plain, "--sweep", "8", "--mtp"]);
    assert_one_line_error(&out, &["--mtp"]);
}
