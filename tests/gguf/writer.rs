//! `tools/write_qwen3_gguf.py`, the numpy-only writer the GPU run carries to make its timing files:
//! what it writes must be a Qwen3 file this program loads and runs. Checked on its tiny shape
//! against the fixture written by llama.cpp's own writer (gguf-py) for the same shape. Where
//! python3 with numpy is missing, the test says so and passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use qwen::gguf::GgufFile;
use qwen::model::config::Qwen3Config;
use serde_json::Value;

fn manifest(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn have_numpy() -> bool {
    Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Writes the tiny shape in `wtype` and returns its path (in a temp dir kept by the caller).
fn write(dir: &Path, wtype: &str) -> PathBuf {
    let out = dir.join(format!("tiny-{wtype}.gguf"));
    let run = Command::new("python3")
        .arg(manifest("tools/write_qwen3_gguf.py"))
        .arg(&out)
        .args(["--shape", "tiny", "--type", wtype])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "the writer failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

#[test]
fn written_files_load_and_run() {
    if !have_numpy() {
        eprintln!("skipped: no python3 with numpy to run tools/write_qwen3_gguf.py");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fixture = GgufFile::open(manifest("tests/fixtures/models/tiny-f16.gguf")).unwrap();
    let expected = Qwen3Config::from_gguf(&fixture).unwrap();
    for (wtype, ggml) in [("f16", "F16"), ("q8_0", "Q8_0")] {
        let path = write(dir.path(), wtype);
        let file = GgufFile::open(&path).unwrap();
        assert_eq!(Qwen3Config::from_gguf(&file).unwrap(), expected, "{wtype}");
        let names = |f: &GgufFile| {
            f.tensors()
                .iter()
                .map(|t| t.name().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&file),
            names(&fixture),
            "{wtype}: tensor names and order"
        );
        let q = file.tensor("blk.0.attn_q.weight").unwrap();
        assert_eq!(format!("{:?}", q.ggml_type()), ggml);
        assert_eq!(
            q.dims(),
            fixture.tensor("blk.0.attn_q.weight").unwrap().dims()
        );

        let run = Command::new(env!("CARGO_BIN_EXE_qwen"))
            .args([
                "-m",
                path.to_str().unwrap(),
                "--token-ids",
                "1,2,3",
                "-t",
                "3",
            ])
            .args(["--ignore-eos", "--json"])
            .env("XDG_CACHE_HOME", dir.path())
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let report: Value = serde_json::from_slice(&run.stdout).unwrap();
        let ids = report["generated_token_ids"].as_array().unwrap();
        assert_eq!(ids.len(), 3, "{wtype}");
        assert!(
            ids.iter().all(|id| id.as_u64().unwrap() < 512),
            "{wtype}: {ids:?}"
        );
    }
}
