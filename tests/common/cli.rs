//! Running the built `qwen` binary: captured output, one-line error checks, fixture copies with
//! patched bytes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::fixture;

/// The tiny model with the full Qwen3 vocabulary, tokenizer and chat template embedded.
pub const VOCAB_MODEL: &str = "models/tiny-qwen3vocab-q8_0.gguf";
/// A tiny model with a 512-token vocabulary and no tokenizer.
pub const TINY_MODEL: &str = "models/tiny-q8_0.gguf";
pub const TOKENIZER: &str = "tokenizer/tokenizer.json";

pub fn path(fixture_name: &str) -> String {
    fixture(fixture_name).display().to_string()
}

/// The binary with colour settings cleared, so output does not depend on the caller's shell.
pub fn qwen() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qwen"));
    cmd.env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("QWEN_MEM_AVAILABLE")
        .stdin(Stdio::null());
    cmd
}

pub fn run(args: &[&str]) -> Output {
    qwen().args(args).output().expect("the binary runs")
}

/// Runs with `input` on standard input.
pub fn run_with_stdin(args: &[&str], input: &str) -> Output {
    let mut child = qwen()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("the binary ends")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

/// Success, or a failure message with stderr.
pub fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(out));
}

/// Exit code non-zero, stderr a single `error: ...` line mentioning each of `mentions`, never a
/// panic or backtrace.
pub fn assert_one_line_error(out: &Output, mentions: &[&str]) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "exit code 0; stderr: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    for m in mentions {
        assert!(err.contains(m), "{m:?} not in {err}");
    }
    err
}

/// The JSON report on stdout.
pub fn json(out: &Output) -> Value {
    assert_ok(out);
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

/// Replaces the only occurrence of `from` in `bytes` with `to` (same length).
pub fn patch(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let at: Vec<usize> = bytes
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        at.len(),
        1,
        "{:?} occurs {} times",
        String::from_utf8_lossy(from),
        at.len()
    );
    bytes[at[0]..at[0] + to.len()].copy_from_slice(to);
}

/// Offset of the value of metadata key `key` (after its type id), for u32 keys.
pub fn u32_value_at(bytes: &[u8], key: &str) -> usize {
    let mut needle = (key.len() as u64).to_le_bytes().to_vec();
    needle.extend(key.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap_or_else(|| panic!("key {key} not in the file"));
    let type_at = at + needle.len();
    assert_eq!(
        bytes[type_at..type_at + 4],
        4u32.to_le_bytes(),
        "{key} is a u32"
    );
    type_at + 4
}

/// Writes `bytes` as `name` in `dir` and returns its path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write a temp file");
    p
}

/// `(new, cached)` token counts of each `turn N: prompt X new tokens (+Y cached)` line of an
/// interactive session's stderr.
pub fn turn_counts(stderr: &str) -> Vec<(usize, usize)> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("turn "))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let new = words[2].parse().unwrap();
            let cached = words[5].trim_start_matches("(+").parse().unwrap();
            (new, cached)
        })
        .collect()
}
