//! Through the binary: what goes wrong around a run rather than in its flags (issue 17): memory
//! figures and KV caches larger than memory, the kernel-plan cache (shared, corrupt, a bad HOME),
//! the model file changing under its memory map, the missing default model. Each ends with one
//! `error: ...` line or a warning, never a panic, an abort or a crash.

mod common;

use std::path::Path;
use std::process::Output;

use common::cli::*;
use serde_json::Value;

/// Runs the tiny model on a two-token id prompt with `extra` flags, the plan cache in `cache`.
fn run_cached(cache: &Path, extra: &[&str]) -> Output {
    let model = path(TINY_MODEL);
    let mut args = vec!["-m", &model, "--token-ids", "1,2", "-t", "2"];
    args.extend_from_slice(extra);
    qwen()
        .env("XDG_CACHE_HOME", cache)
        .env_remove("QWEN_PLAN_CACHE")
        .env_remove("QWEN_PLAN_SEARCH")
        .args(&args)
        .output()
        .expect("the binary runs")
}

fn plans_file(cache: &Path) -> std::path::PathBuf {
    cache.join("qwen-luminal").join("plans.json")
}

// ---- the plan cache (faults 4, 5, 6) ----

/// Sets `field` of every cached plan to `value`.
fn poison_plans(file: &Path, field: &str, value: Value) {
    let mut saved: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    for jobs in saved["machines"].as_object_mut().unwrap().values_mut() {
        for choice in jobs.as_object_mut().unwrap().values_mut() {
            choice["plan"][field] = value.clone();
        }
    }
    std::fs::write(file, serde_json::to_vec_pretty(&saved).unwrap()).unwrap();
}

#[test]
fn an_invalid_cached_plan_is_ignored_and_searched_again() {
    let bad: [(&str, Value); 6] = [
        ("rows_per_chunk", Value::from(u64::MAX)),
        ("rows_per_chunk", Value::from(1u64 << 40)),
        ("token_tile", Value::from(0)),
        ("row_tile", Value::from(1_000_000)),
        ("threads", Value::from(4096)),
        ("isa", Value::from("neon")),
    ];
    for (field, value) in bad {
        let cache = tempfile::tempdir().unwrap();
        assert_ok(&run_cached(cache.path(), &["--parallel"]));
        let file = plans_file(cache.path());
        poison_plans(&file, field, value.clone());
        let out = run_cached(cache.path(), &["--parallel", "--json"]);
        let what = format!("{field} = {value}");
        assert!(out.status.success(), "{what}: {}", stderr(&out));
        let r = json(&out);
        for line in r["features"]["kernel_plans"].as_array().unwrap() {
            let line = line.as_str().unwrap();
            assert!(line.contains("searched"), "{what}: {line}");
            assert!(
                !line.contains("cached"),
                "{what}: a bad plan was used: {line}"
            );
        }
        // The searched plans replaced the bad ones in the file.
        let saved: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        for jobs in saved["machines"].as_object().unwrap().values() {
            for choice in jobs.as_object().unwrap().values() {
                assert_ne!(choice["plan"][field], value, "{what} still cached");
            }
        }
    }
}
