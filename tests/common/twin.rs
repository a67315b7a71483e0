//! F32 twins written at test time: a quantized fixture with every tensor dequantized by this
//! crate (`quant::dequantize_rows`) and its metadata copied (file type "all F32"), so that a test
//! can run a small model's F32 path without an 8 MB F32 file in the checkout. Each tensor is
//! checked against the SHA-256 that `deq_digests.json` records of llama.cpp's own twin before the
//! file is written: the twin is llama.cpp's, bit for bit, and the `MODEL.deq.json` references
//! made on it apply to it exactly.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use qwen::gguf::{GgufFile, TensorInfo};
use qwen::quant::{dequantize_rows, GgmlType};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::fixture_file::{fixture, fixtures_dir, write_atomically};
use super::rewrite;
use super::synthetic::synthetic_dir;
use super::{Gguf, T, V};

/// `general.file_type` of a file whose tensors are all F32 (llama.cpp's `LLAMA_FTYPE_ALL_F32`).
const ALL_F32: u32 = 0;

/// The path of the F32 twin of fixture model `model` (`small-q4_k_m.gguf`), written on first
/// use in this test process.
pub fn f32_twin(model: &str) -> PathBuf {
    static TWINS: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    // A test that panicked while another waited leaves nothing half-done: files are renamed
    // into place whole.
    let mut twins = TWINS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(path) = twins.get(model) {
        return path.clone();
    }
    let path = synthetic_dir().join(model.replace(".gguf", ".deq.gguf"));
    write_atomically(&path, &twin_bytes(model));
    twins.insert(model.to_string(), path.clone());
    path
}

/// The twin's file: `model`'s metadata and tensor order, each tensor dequantized and checked
/// against its recorded digest.
fn twin_bytes(model: &str) -> Vec<u8> {
    let path = fixture(&format!("models/{model}"));
    let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let digests = recorded_digests(model);
    let mut twin = Gguf {
        tensors: Vec::new(),
        ..rewrite::read(&file)
    };
    if file.contains_key("general.file_type") {
        twin = twin.set("general.file_type", Some(V::U32(ALL_F32)));
    }
    for info in file.tensors() {
        let bytes = dequantized_bytes(&file, info);
        let want = digests[info.name()]["sha256"].as_str();
        assert_eq!(
            Some(sha256_hex(&bytes).as_str()),
            want,
            "{model} '{}' ({}): dequantized bytes differ from llama.cpp's twin",
            info.name(),
            info.ggml_type()
        );
        twin.tensors.push(T {
            name: info.name().to_string(),
            dims: info.dims().to_vec(),
            type_id: GgmlType::F32.id(),
            data: bytes,
        });
    }
    twin.build()
}

/// The digests `deq_digests.json` holds for `model`'s tensors.
fn recorded_digests(model: &str) -> Value {
    let path = fixtures_dir().join("deq_digests.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let all: Value = serde_json::from_str(&text).expect("deq_digests.json is JSON");
    let digests = all[model].clone();
    assert!(
        digests.is_object(),
        "deq_digests.json has no entry for {model}"
    );
    digests
}

/// A tensor dequantized as rows of its innermost dimension, as f32 little-endian bytes.
fn dequantized_bytes(file: &GgufFile, info: &TensorInfo) -> Vec<u8> {
    let data = file.data_of(info).expect("tensor data lies in the file");
    let row_len = info.dims()[0] as usize;
    let n_rows = info.n_elements() as usize / row_len;
    let values = dequantize_rows(info.ggml_type(), data, n_rows, row_len)
        .unwrap_or_else(|e| panic!("'{}': {e}", info.name()));
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
