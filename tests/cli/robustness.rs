//! Through the binary: what goes wrong around a run rather than in its flags (issue 17): memory
//! figures and KV caches larger than memory, the kernel-plan cache (shared, corrupt, a bad HOME),
//! the model file changing under its memory map, the missing default model, closed pipes, a
//! plot that cannot be drawn, input that is not text, Ctrl-C in every phase. Each ends with one
//! `error: ...` line, a warning or a quiet stop, never a panic, an abort or a crash.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::common::cli::*;
use crate::common::watched::{self, Stream};
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

// ---- memory (fault 2) ----

#[test]
fn an_unparsable_memory_figure_is_an_error_that_names_it() {
    let model = path(TINY_MODEL);
    for bad in ["eight", "8X", "-1", "1.5G", "99999999999999999999999"] {
        let out = qwen()
            .env("QWEN_MEM_AVAILABLE", bad)
            .args(["-m", &model, "--token-ids", "1,2", "-t", "1"])
            .output()
            .unwrap();
        assert_one_line_error(&out, &["QWEN_MEM_AVAILABLE", bad]);
    }
    // Bytes, or a binary suffix.
    for good in ["300000000", "8G", "8 GiB", "512m"] {
        let out = qwen()
            .env("QWEN_MEM_AVAILABLE", good)
            .args(["-m", &model, "--token-ids", "1,2", "-t", "1"])
            .output()
            .unwrap();
        assert_ok(&out);
    }
}

#[test]
fn a_kv_cache_larger_than_memory_is_refused_not_aborted() {
    let model = path(TINY_MODEL);
    // 4e9 positions of 256 bytes: about 1 TB, far more than 8 GiB.
    let args = ["-m", &model, "--token-ids", "1,2", "-t", "1"];
    let huge = ["--ctx-size", "4000000000"];
    let out = qwen()
        .env("QWEN_MEM_AVAILABLE", "8G")
        .args(args)
        .args(huge)
        .output()
        .unwrap();
    assert_one_line_error(&out, &["--ctx-size 4000000000", "at most"]);

    // A figure that claims more than the machine has: the cache's allocation itself fails
    // (unless the system overcommits memory, and then the run works).
    let out = qwen()
        .env("QWEN_MEM_AVAILABLE", "1E")
        .args(args)
        .args(huge)
        .output()
        .unwrap();
    if !out.status.success() {
        assert_one_line_error(&out, &["KV cache", "--ctx-size"]);
    }

    // Under an address-space limit (ulimit -v) the limit is the memory there is.
    let out = std::process::Command::new("sh")
        .args(["-c", "ulimit -v 4194304 && exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_qwen"))
        .args(args)
        .args(huge)
        .env("QWEN_MEM_AVAILABLE", "1T")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_one_line_error(&out, &["--ctx-size 4000000000", "address-space limit"]);
}

// ---- the plan cache (faults 4, 5, 6) ----

#[test]
fn a_plan_cache_that_does_not_parse_is_left_alone() {
    let cache = tempfile::tempdir().unwrap();
    let file = plans_file(cache.path());
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    // A torn write of another run, or a file edited by hand: other machines' plans are in it.
    let torn = b"{\"machines\": {\"another machine | avx2 | 8 threads | kernels v3\": {\"Q8_0";
    std::fs::write(&file, torn).unwrap();
    let out = run_cached(cache.path(), &["--parallel"]);
    assert_ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains("warning:") && err.contains("plans.json"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        torn,
        "the file was rewritten"
    );
}

#[test]
fn concurrent_runs_keep_every_plan_and_leave_no_temporary_files() {
    let cache = tempfile::tempdir().unwrap();
    let models = [
        "models/tiny-q8_0.gguf",
        "models/tiny-q4_0.gguf",
        "models/tiny-f16.gguf",
        "models/tiny-bf16.gguf",
    ];
    let children: Vec<_> = models
        .iter()
        .map(|m| {
            qwen()
                .env("XDG_CACHE_HOME", cache.path())
                .env_remove("QWEN_PLAN_CACHE")
                .env_remove("QWEN_PLAN_SEARCH")
                .args([
                    "-m",
                    &path(m),
                    "--token-ids",
                    "1,2",
                    "-t",
                    "1",
                    "--parallel",
                ])
                .args(["--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut wanted = Vec::new();
    for child in children {
        let r = json(&child.wait_with_output().unwrap());
        for line in r["features"]["kernel_plans"].as_array().unwrap() {
            // "Q8_0:32x64+Q8_0:32x64 decode: avx512vnni t2 ..."
            let line = line.as_str().unwrap();
            let end = [" decode: ", " short: ", " batch: "]
                .iter()
                .find_map(|c| line.find(c).map(|i| i + c.len() - 2))
                .unwrap_or_else(|| panic!("no job key in {line}"));
            wanted.push(line[..end].to_string());
        }
    }
    let file = plans_file(cache.path());
    let saved: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let machines = saved["machines"].as_object().unwrap();
    assert_eq!(machines.len(), 1, "one machine");
    let jobs = machines.values().next().unwrap().as_object().unwrap();
    for key in &wanted {
        assert!(
            jobs.contains_key(key),
            "{key} lost; kept: {:?}",
            jobs.keys()
        );
    }
    let names: Vec<String> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n != "plans.json" && n != "plans.json.lock")
        .collect();
    assert!(names.is_empty(), "left behind: {names:?}");
}

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

#[test]
fn an_empty_or_relative_home_keeps_the_plan_cache_out_of_the_current_folder() {
    let model = path(TINY_MODEL);
    for home in ["", "relative/home"] {
        let cwd = tempfile::tempdir().unwrap();
        let out = qwen()
            .current_dir(cwd.path())
            .env_remove("XDG_CACHE_HOME")
            .env_remove("QWEN_PLAN_CACHE")
            .env("HOME", home)
            .args(["-m", &model, "--token-ids", "1,2", "-t", "1", "--parallel"])
            .args(["--json"])
            .output()
            .unwrap();
        let r = json(&out);
        assert!(
            r["features"]["plan_cache"].is_null(),
            "HOME={home:?}: {}",
            r["features"]["plan_cache"]
        );
        let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
        assert!(left.is_empty(), "HOME={home:?} wrote {left:?}");
    }
}

// ---- the model file (faults 8, 12) ----

/// Starts a long generation on a copy of the tiny model, truncates the copy once text has
/// streamed, and returns the output.
fn truncated_during_the_run(extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.gguf");
    std::fs::copy(path(TINY_MODEL), &model).unwrap();
    let run = watched::spawn(
        qwen()
            .env("XDG_CACHE_HOME", dir.path())
            .arg("-m")
            .arg(&model)
            .args(["--token-ids", "1,2", "-t", "1000000", "--ignore-eos"])
            .args(extra),
    );
    run.wait_for_output(&[Stream::Stdout], Duration::from_secs(120));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&model)
        .unwrap()
        .set_len(0)
        .unwrap();
    run.finish_within(Duration::from_secs(60), "the model file was truncated")
}

#[test]
fn a_model_file_truncated_during_the_run_ends_with_one_line() {
    for extra in [&[][..], &["--parallel"][..]] {
        let out = truncated_during_the_run(extra);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{extra:?}: {:?} {err}",
            out.status
        );
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: ") && last.contains("model.gguf"),
            "{extra:?}: {err}"
        );
        assert!(last.contains("changed while in use"), "{extra:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!stdout(&out).trim().is_empty(), "the text so far stays");
    }
}

#[test]
fn a_missing_default_model_says_what_it_is_and_how_to_get_it() {
    let cwd = tempfile::tempdir().unwrap();
    for args in [&["-p", "Hello"][..], &["--inspect"][..]] {
        let out = qwen().current_dir(cwd.path()).args(args).output().unwrap();
        assert_one_line_error(
            &out,
            &[
                "setup/qwen3-4b.gguf",
                "setup/setup.sh",
                "Qwen3-4B Q8_0",
                "-m FILE",
            ],
        );
    }
    // A path the user gave keeps the plain message.
    let out = qwen()
        .current_dir(cwd.path())
        .args(["-m", "mine.gguf", "-p", "Hello"])
        .output()
        .unwrap();
    let err = assert_one_line_error(&out, &["mine.gguf"]);
    assert!(!err.contains("setup.sh"), "{err}");
}

// ---- closed pipes (fault 1) ----

/// Spawns `args` with stdout and stderr piped, closes the ones named, and waits.
fn with_closed(args: &[&str], close_stdout: bool, close_stderr: bool, input: &[u8]) -> Output {
    let mut child = qwen()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if close_stdout {
        drop(child.stdout.take());
    }
    if close_stderr {
        drop(child.stderr.take());
    }
    let mut stdin = child.stdin.take().unwrap();
    let _ = std::io::Write::write_all(&mut stdin, input);
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// Tokens in the summary's `generate   N tokens` line.
fn generated_in_summary(err: &str) -> usize {
    let line = err
        .lines()
        .find(|l| l.starts_with("generate "))
        .unwrap_or_else(|| panic!("no summary in {err}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_closed_stdout_ends_the_run_quietly_with_the_report_on_stderr() {
    let model = path(TINY_MODEL);
    // qwen ... --json | head -c0
    let args = ["-m", &model, "--token-ids", "1,2", "-t", "64", "--json"];
    let out = with_closed(&args, true, false, b"");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked") && !err.contains("error"), "{err}");
    assert!(err.contains("generate "), "the summary still comes: {err}");

    // Text to a reader that went away: the run stops at its next step, not 40000 tokens later.
    let args = [
        "-m",
        &model,
        "--token-ids",
        "1,2",
        "-t",
        "1000000",
        "--ignore-eos",
    ];
    let out = with_closed(&args, true, false, b"");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(generated_in_summary(&err) < 1000, "{err}");
}

#[test]
fn a_closed_stderr_is_no_panic() {
    let (model, vocab, tok) = (path(TINY_MODEL), path(VOCAB_MODEL), path(TOKENIZER));
    for args in [
        &["-m", &model, "--token-ids", "1,2", "-t", "8"][..],
        &["-m", &model, "--token-ids", "1,2", "-t", "8", "--json"][..],
        &[
            "-m",
            &model,
            "--token-ids",
            "1,2",
            "-t",
            "8",
            "--kernel-timing",
        ][..],
        &["-m", &vocab, "--tokenizer", &tok, "-i", "-t", "3"][..],
        &["-m", "/nonexistent/model.gguf", "--token-ids", "1"][..],
        &["--no-such-flag"][..],
    ] {
        let out = with_closed(args, false, true, b"Hello\nWhat next?\n");
        let code = out.status.code();
        assert!(
            code == Some(0) || code == Some(1) || code == Some(2),
            "{args:?}: {code:?}"
        );
        assert!(!stdout(&out).contains("panicked"), "{args:?}");
    }
    // qwen ... 2>&1 | head -1: both streams closed after the first line.
    let script = "set -o pipefail; \"$0\" \"$@\" 2>&1 | head -1 >/dev/null; echo \"status ${PIPESTATUS[0]}\"";
    let out = std::process::Command::new("bash")
        .args(["-c", script])
        .arg(env!("CARGO_BIN_EXE_qwen"))
        .args(["-m", &model, "--token-ids", "1,2", "-t", "64", "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.trim(), "status 0", "{said} {}", stderr(&out));
}

// ---- the plot (fault 3) ----

#[test]
fn the_report_comes_before_a_plot_that_cannot_be_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("p.svg");
    let plot = plot.to_str().unwrap();
    // Two positions, both taken by the prompt: no decode step to plot.
    let args = [
        "-m",
        &path(TINY_MODEL),
        "--token-ids",
        "1,2",
        "--ctx-size",
        "2",
    ];
    let out = qwen()
        .args(args)
        .args(["--json", "--plot", plot])
        .output()
        .unwrap();
    let r = json(&out);
    assert_eq!(r["stop_reason"], "context_full");
    let err = stderr(&out);
    assert!(
        err.contains("warning: no plot") && err.contains("decode"),
        "{err}"
    );
    assert!(!Path::new(plot).exists());
}

#[test]
fn a_plot_folder_that_cannot_be_written_is_refused_before_the_run() {
    let model = path(TINY_MODEL);
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().to_str().unwrap();
    // /proc exists and is a folder, but no file can be made there (not even by root).
    let mut refused = vec![(folder.to_string(), "is a folder")];
    if Path::new("/proc/self").exists() {
        refused.push((
            "/proc/qwen-plot.svg".to_string(),
            "cannot create a file in /proc",
        ));
    }
    for (plot, why) in refused {
        let out = run(&[
            "-m",
            &model,
            "--token-ids",
            "1,2",
            "-t",
            "2",
            "--plot",
            &plot,
        ]);
        assert_one_line_error(&out, &[&plot, why]);
        assert!(out.stdout.is_empty(), "nothing generated: {}", stdout(&out));
    }
}

#[test]
fn the_plot_replaces_the_file_whole_and_leaves_nothing_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("p.svg");
    std::fs::write(&plot, "an older chart").unwrap();
    let plot_arg = plot.to_str().unwrap();
    let args = ["-m", &path(TINY_MODEL), "--token-ids", "1,2", "-t", "4"];
    let out = qwen()
        .args(args)
        .args(["--plot", plot_arg])
        .output()
        .unwrap();
    assert_ok(&out);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.contains("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["p.svg"]);
}

// ---- interactive input (fault 7) ----

#[test]
fn a_line_that_is_not_utf8_is_reported_and_the_session_goes_on() {
    let (model, tok) = (path(VOCAB_MODEL), path(TOKENIZER));
    let args = ["-m", &model, "--tokenizer", &tok, "-i", "-t", "3"];
    let out = with_closed(
        &args,
        false,
        false,
        b"Hello\n\xff\xfe latin-1 \xe9\nWhat next?\n",
    );
    assert_ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains("line 2 of standard input is not UTF-8"),
        "{err}"
    );
    let turns = err.lines().filter(|l| l.starts_with("turn ")).count();
    assert_eq!(turns, 2, "both text lines answered: {err}");
}

// ---- Ctrl-C (fault 11) ----

/// Spawns `cmd`, sends SIGINT after `delay`, and waits (at most a minute) for the exit.
fn sigint_after(cmd: &mut std::process::Command, delay: Duration) -> Output {
    let run = watched::spawn(cmd);
    std::thread::sleep(delay);
    run.interrupt();
    run.finish_within(Duration::from_secs(60), "SIGINT")
}

#[test]
fn ctrl_c_during_a_long_prompt_stops_inside_the_prompt_pass() {
    // 16000 positions of the tiny model in standard mode: tens of seconds of prompt pass, whose
    // attention grows with the square of the length; the Ctrl-C comes 2 s in.
    let ids = vec!["1"; 16000].join(",");
    let model = path(TINY_MODEL);
    let mut cmd = qwen();
    cmd.args(["-m", &model, "--token-ids", &ids, "-t", "4", "--json"]);
    let out = sigint_after(&mut cmd, Duration::from_secs(2));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("the JSON report");
    assert_eq!(r["interrupted"], true);
    assert!(
        r["prefill"].is_null(),
        "the prompt pass ran to its end: {}",
        r["prefill"]
    );
    assert_eq!(ids_of(&r["generated_token_ids"]).len(), 0);
    assert!(err.contains("interrupted"), "{err}");
}

fn ids_of(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn ctrl_c_during_the_kernel_search_stops_it_and_caches_no_cut_search() {
    // The search of the small K-quant model takes seconds; the Ctrl-C comes 1 s in.
    let cache = tempfile::tempdir().unwrap();
    let model = path("models/small-q4_k_m.gguf");
    let mut cmd = qwen();
    cmd.env("XDG_CACHE_HOME", cache.path())
        .env_remove("QWEN_PLAN_SEARCH")
        .env_remove("QWEN_PLAN_CACHE")
        .args([
            "-m",
            &model,
            "--token-ids",
            "1,2",
            "-t",
            "4",
            "--parallel",
            "--json",
        ]);
    let out = sigint_after(&mut cmd, Duration::from_secs(1));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("the JSON report");
    assert!(
        r["prefill"].is_null(),
        "the model ran after the search: {err}"
    );
    let plans: Vec<&str> = r["features"]["kernel_plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        plans.iter().any(|p| p.contains("default (not searched)")),
        "{plans:?}"
    );
    // What was not searched is not in the cache.
    let file = plans_file(cache.path());
    let saved: Value = std::fs::read(&file)
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or(Value::Null);
    let cached = saved["machines"].as_object().map_or(0, |m| {
        m.values().map(|j| j.as_object().unwrap().len()).sum()
    });
    let searched = plans
        .iter()
        .filter(|p| p.contains("searched") && !p.contains("not"))
        .count();
    assert_eq!(cached, searched, "{plans:?}");
}

#[test]
fn ctrl_c_while_reading_the_prompt_from_stdin_ends_the_wait() {
    let (model, tok) = (path(VOCAB_MODEL), path(TOKENIZER));
    let mut cmd = qwen();
    cmd.args(["-m", &model, "--tokenizer", &tok, "-p", "-", "-t", "2"]);
    // Time to load the tokenizer first, even on a busy machine; standard input stays open.
    let out = sigint_after(&mut cmd, Duration::from_secs(5));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted while reading the prompt"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
