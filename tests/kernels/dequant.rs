//! Dequantization against llama.cpp, bit for bit: every tensor of every quantized fixture model,
//! test vectors for the types the fixtures lack, and malformed input.
//!
//! References (see tests/fixtures/README.md): the committed F32 twins of the tiny models; SHA-256
//! digests of the larger twins (`deq_digests.json`), plus an element-wise comparison with those
//! twins when the reference kit (`../shared`) is present; `quant_vectors.json` from the gguf
//! package's port of ggml's reference code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use qwen::gguf::{GgufFile, TensorInfo};
use qwen::quant::{
    dequantize_iq4_nl, dequantize_iq4_xs, dequantize_q2_k, dequantize_q3_k, dequantize_q4_k,
    dequantize_q6_k, dequantize_q8_0, dequantize_row, dequantize_rows, GgmlType, QuantError,
    SUPPORTED_TYPES,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::fixture_file::{fixture, fixtures_dir as fixtures};

fn model_path(name: &str) -> PathBuf {
    fixture(&format!("models/{name}"))
}

/// The reference kit's models folder, when this checkout sits beside it.
fn kit_models() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/models");
    dir.is_dir().then_some(dir)
}

fn open(path: &Path) -> GgufFile {
    GgufFile::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn twin_name(model: &str) -> String {
    model.replace(".gguf", ".deq.gguf")
}

/// A tensor dequantized as rows of its innermost dimension.
fn dequantize_tensor(file: &GgufFile, info: &TensorInfo) -> Result<Vec<f32>, QuantError> {
    let data = file.data_of(info).expect("tensor data lies in the file");
    let row_len = info.dims()[0] as usize;
    let n_rows = info.n_elements() as usize / row_len;
    dequantize_rows(info.ggml_type(), data, n_rows, row_len)
}

/// A twin's tensor, which must be F32.
fn f32_tensor(file: &GgufFile, name: &str) -> Vec<f32> {
    let info = file.tensor(name).expect("twin holds the tensor");
    assert_eq!(info.ggml_type(), GgmlType::F32, "{name} in the twin");
    let data = file.data_of(info).expect("tensor data lies in the file");
    data.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// `None` when `got` and `want` are bit-identical, else a description of how they differ.
fn bit_difference(got: &[f32], want: &[f32]) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("{} values, want {}", got.len(), want.len()));
    }
    let differ: Vec<usize> = (0..got.len())
        .filter(|&i| got[i].to_bits() != want[i].to_bits())
        .collect();
    let &first = differ.first()?;
    let max_abs = differ
        .iter()
        .map(|&i| (got[i] - want[i]).abs())
        .fold(0.0f32, f32::max);
    Some(format!(
        "{} of {} values differ, max abs diff {max_abs:e}; first at {first}: got {:e} ({:#010x}), want {:e} ({:#010x})",
        differ.len(),
        got.len(),
        got[first],
        got[first].to_bits(),
        want[first],
        want[first].to_bits(),
    ))
}

fn sha256_hex(values: &[f32]) -> String {
    let mut hasher = Sha256::new();
    for v in values {
        hasher.update(v.to_le_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares every tensor of `model` with the same tensor of its F32 twin; returns the failures.
fn compare_with_twin(model: &GgufFile, twin: &GgufFile, label: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let names = |f: &GgufFile| -> BTreeSet<String> {
        f.tensors().iter().map(|t| t.name().to_string()).collect()
    };
    if names(model) != names(twin) {
        failures.push(format!("{label}: the twin holds other tensors"));
    }
    for info in model.tensors() {
        let what = format!("{label} '{}' ({})", info.name(), info.ggml_type());
        match dequantize_tensor(model, info) {
            Err(e) => failures.push(format!("{what}: {e}")),
            Ok(got) => {
                if let Some(diff) = bit_difference(&got, &f32_tensor(twin, info.name())) {
                    failures.push(format!("{what}: {diff}"));
                }
            }
        }
    }
    failures
}

fn assert_no_failures(failures: &[String]) {
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

const COMMITTED_TWINS: [&str; 4] = [
    "tiny-f16.gguf",
    "tiny-bf16.gguf",
    "tiny-q8_0.gguf",
    "tiny-q4_0.gguf",
];

#[test]
fn tiny_models_equal_their_committed_twins() {
    let mut failures = Vec::new();
    for model in COMMITTED_TWINS {
        let file = open(&model_path(model));
        let twin = open(&model_path(&twin_name(model)));
        failures.extend(compare_with_twin(&file, &twin, model));
    }
    assert_no_failures(&failures);
}

fn digests() -> serde_json::Map<String, Value> {
    let path = fixtures().join("deq_digests.json");
    let text = std::fs::read_to_string(&path).expect("deq_digests.json is committed");
    match serde_json::from_str(&text).expect("deq_digests.json is JSON") {
        Value::Object(map) => map,
        other => panic!("deq_digests.json: expected an object, got {other}"),
    }
}

/// Compares every tensor's dequantized bytes with its recorded digest; returns the failures.
fn compare_with_digests(file: &GgufFile, model: &str, want: &Value) -> Vec<String> {
    let mut failures = Vec::new();
    let recorded = want.as_object().map_or(0, |m| m.len());
    if recorded != file.tensors().len() {
        failures.push(format!(
            "{model}: {recorded} digests for {} tensors",
            file.tensors().len()
        ));
    }
    for info in file.tensors() {
        let what = format!("{model} '{}' ({})", info.name(), info.ggml_type());
        let entry = &want[info.name()];
        if entry["type"].as_str() != Some(info.ggml_type().name()) {
            failures.push(format!("{what}: recorded as {}", entry["type"]));
        }
        match dequantize_tensor(file, info) {
            Err(e) => failures.push(format!("{what}: {e}")),
            Ok(got) if entry["sha256"].as_str() != Some(sha256_hex(&got).as_str()) => {
                failures.push(format!("{what}: SHA-256 differs from the twin's"));
            }
            Ok(_) => {}
        }
    }
    failures
}

#[test]
fn larger_models_match_their_twins_digests() {
    let mut failures = Vec::new();
    let digests = digests();
    assert_eq!(
        digests.len(),
        14,
        "the small quantized models, the Qwen3-vocab model and the hybrid mixtures of experts"
    );
    for (model, want) in &digests {
        let file = open(&model_path(model));
        // With the reference kit's twin beside us (it ships some), say exactly which values
        // differ, not just "a hash".
        let twin = kit_models().map(|kit| kit.join(twin_name(model)));
        if let Some(twin) = twin.filter(|t| t.is_file()) {
            failures.extend(compare_with_twin(&file, &open(&twin), model));
        }
        failures.extend(compare_with_digests(&file, model, want));
    }
    assert_no_failures(&failures);
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
        .collect()
}

fn type_named(name: &str) -> GgmlType {
    (0..64)
        .filter_map(GgmlType::from_id)
        .find(|t| t.name() == name)
        .unwrap_or_else(|| panic!("unknown type {name}"))
}

fn vector_cases() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("quant_vectors.json"))
        .expect("quant_vectors.json is committed");
    let json: Value = serde_json::from_str(&text).expect("quant_vectors.json is JSON");
    json["cases"].as_array().expect("a list of cases").clone()
}

#[test]
fn test_vectors_match_ggml_reference() {
    let cases = vector_cases();
    assert!(cases.len() >= 15);
    let mut failures = Vec::new();
    for case in &cases {
        let ty = type_named(case["type"].as_str().expect("type"));
        let what = format!("{ty} ({})", case["source"]);
        let src = hex_bytes(case["bytes"].as_str().expect("bytes"));
        let want: Vec<f32> = hex_bytes(case["expected_f32_le"].as_str().expect("expected"))
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mut got = vec![0.0; want.len()];
        match dequantize_row(ty, &src, &mut got) {
            Err(e) => failures.push(format!("{what}: {e}")),
            Ok(()) => failures.extend(bit_difference(&got, &want).map(|d| format!("{what}: {d}"))),
        }
    }
    assert_no_failures(&failures);
}

#[test]
fn every_supported_type_is_checked_against_a_reference() {
    let mut covered = BTreeSet::new();
    for model in COMMITTED_TWINS
        .iter()
        .map(|m| m.to_string())
        .chain(digests().keys().cloned())
    {
        let file = open(&model_path(&model));
        covered.extend(file.tensors().iter().map(|t| t.ggml_type().name()));
    }
    let cases = vector_cases();
    covered.extend(cases.iter().filter_map(|c| c["type"].as_str()));
    for ty in SUPPORTED_TYPES {
        assert!(covered.contains(ty.name()), "{ty} has no reference test");
    }
}

#[test]
fn bad_lengths_are_errors_for_every_type() {
    for ty in SUPPORTED_TYPES {
        let (bs, ts) = (ty.block_size(), ty.type_size());
        let mut dst = vec![0.0; 2 * bs];
        for len in [0, 2 * ts - 1, 2 * ts + 1, 3 * ts] {
            let got = dequantize_row(ty, &vec![0; len], &mut dst);
            assert!(
                matches!(got, Err(QuantError::SourceLength { expected, actual, .. }) if expected == 2 * ts && actual == len),
                "{ty}, {len} bytes: {got:?}"
            );
        }
        if bs > 1 {
            let got = dequantize_row(ty, &vec![0; 2 * ts], &mut vec![0.0; 2 * bs - 1]);
            assert!(
                matches!(got, Err(QuantError::PartialBlock { .. })),
                "{ty}: {got:?}"
            );
            let got = dequantize_rows(ty, &vec![0; 2 * ts], 2, bs + 1);
            assert!(
                matches!(got, Err(QuantError::PartialBlock { .. })),
                "{ty}: {got:?}"
            );
        }
        let got = dequantize_rows(ty, &vec![0; 2 * ts], 3, bs);
        assert!(
            matches!(got, Err(QuantError::SourceLength { .. })),
            "{ty}: {got:?}"
        );
        assert_eq!(
            dequantize_rows(ty, &vec![0; 2 * ts], 2, bs).map(|v| v.len()),
            Ok(2 * bs)
        );
    }
}

#[test]
fn unsupported_types_are_named_in_the_error() {
    let err = dequantize_row(GgmlType::TQ1_0, &[0; 54], &mut [0.0; 256]);
    assert_eq!(err, Err(QuantError::Unsupported(GgmlType::TQ1_0)));
    let message = err.map_err(|e| e.to_string()).unwrap_err();
    assert!(
        message.contains("TQ1_0") && message.contains("IQ2_XS") && message.contains("MXFP4"),
        "{message}"
    );
}

const F16_INF: [u8; 2] = [0x00, 0x7C];
const F16_NAN: [u8; 2] = [0x00, 0x7E];

/// Non-finite scales follow IEEE arithmetic, as in llama.cpp's C: `inf * q` is `±inf`,
/// `inf * 0` and anything with NaN are NaN. Nothing panics.
#[test]
fn non_finite_scales_pass_through() {
    // Q8_0 with d = inf and quants 1, -1, 0.
    let mut block = [0u8; 34];
    block[..2].copy_from_slice(&F16_INF);
    block[2] = 1;
    block[3] = (-1i8) as u8;
    let mut y = [0.0f32; 32];
    dequantize_q8_0(&block, &mut y).expect("one block");
    assert_eq!((y[0], y[1]), (f32::INFINITY, f32::NEG_INFINITY));
    assert!(y[2].is_nan());

    // Q4_K with dmin = NaN: every weight subtracts NaN * min.
    let mut block = [0u8; 144];
    block[..2].copy_from_slice(&[0x00, 0x3C]); // d = 1
    block[2..4].copy_from_slice(&F16_NAN);
    let mut y = [0.0f32; 256];
    dequantize_q4_k(&block, &mut y).expect("one block");
    assert!(y.iter().all(|v| v.is_nan()));

    // Q6_K with d = inf and scales 0: inf * 0 = NaN.
    let mut block = [0u8; 210];
    block[208..].copy_from_slice(&F16_INF);
    let mut y = [0.0f32; 256];
    dequantize_q6_k(&block, &mut y).expect("one block");
    assert!(y.iter().all(|v| v.is_nan()));

    // F16 and BF16 infinities and NaNs widen to the same.
    let mut y = [0.0f32; 2];
    dequantize_row(GgmlType::F16, &[F16_INF, F16_NAN].concat(), &mut y).expect("two values");
    assert!(y[0] == f32::INFINITY && y[1].is_nan());
    dequantize_row(GgmlType::BF16, &[0x80, 0xFF, 0xC0, 0x7F], &mut y).expect("two values");
    assert!(y[0] == f32::NEG_INFINITY && y[1].is_nan());
}

fn put_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes());
}

/// The block layouts of the types added for Qwen3's other published files, built by hand from
/// ggml-common.h, so a misplaced field shows which one (the digests only say "differs").
#[test]
fn hand_built_blocks_of_the_other_published_types() {
    // Q2_K: scales[16], qs[64], d, dmin. Sub-block 0 has scale 3, min 2; sub-block 5
    // (weights 80..96: the third 2-bit plane of qs[16..32]) scale 1, min 0.
    let mut b = [0u8; 84];
    b[0] = 0x23;
    b[5] = 0x01;
    b[16] = 0b10_00_00_11; // weight 0 = 3, weight 96 = 2
    b[16 + 16] = 0b00_01_00_00; // weight 16 + 64 = 80 -> plane 2 of byte 16
    put_f16(&mut b, 80, 0.5);
    put_f16(&mut b, 82, 0.25);
    let mut y = [0.0f32; 256];
    dequantize_q2_k(&b, &mut y).expect("one block");
    assert_eq!(y[0], 0.5 * 3.0 * 3.0 - 0.25 * 2.0);
    assert_eq!(y[1], -0.5, "quant 0 of sub-block 0 is minus the min");
    assert_eq!(y[80], 0.5 * 1.0 * 1.0);
    assert_eq!(y[96], 0.0, "sub-block 6 has scale and min 0");

    // Q3_K: hmask[32], qs[64], scales[12], d. Sub-block 0's scale: low 4 bits 1 (scales[0]),
    // high 2 bits 2 (scales[8] bits 0-1) -> 33 - 32 = 1. A clear hmask bit subtracts 4.
    let mut b = [0u8; 110];
    b[96] = 0x01;
    b[96 + 8] = 0x02;
    b[32] = 0b11; // weight 0: low bits 3
    b[0] = 0x01; // weight 0's high bit set: 3; weight 1's clear: 0 - 4
    put_f16(&mut b, 108, 2.0);
    dequantize_q3_k(&b, &mut y).expect("one block");
    assert_eq!((y[0], y[1]), (2.0 * 1.0 * 3.0, 2.0 * 1.0 * -4.0));
    assert_eq!(
        y[16],
        2.0 * -32.0 * -4.0,
        "sub-block 1's scale bits are 0: -32"
    );

    // IQ4_NL: d, then nibbles indexing the non-linear levels.
    let mut b = [0u8; 18];
    put_f16(&mut b, 0, 0.5);
    b[2] = 0xF0; // weight 0 -> level 0 (-127), weight 16 -> level 15 (113)
    let mut y = [0.0f32; 32];
    dequantize_iq4_nl(&b, &mut y).expect("one block");
    assert_eq!((y[0], y[16], y[1]), (-63.5, 56.5, -63.5));

    // IQ4_XS: d, scales_h, scales_l[4], qs[128]. Sub-block 1 (weights 32..64): ls = 0x3 | 2<<4.
    let mut b = [0u8; 136];
    put_f16(&mut b, 0, 0.25);
    b[2] = 0b10_00; // scales_h bits 2-3: sub-block 1's high bits
    b[4] = 0x30; // scales_l[0] high nibble: sub-block 1's low bits
    b[8 + 16] = 0x08; // sub-block 1, weight 0 -> level 8 (1); weight 16 -> level 0
    let mut y = [0.0f32; 256];
    dequantize_iq4_xs(&b, &mut y).expect("one block");
    let dl = 0.25 * (35.0 - 32.0);
    assert_eq!((y[32], y[48]), (dl * 1.0, dl * -127.0));
    assert_eq!(
        y[0],
        0.25 * -32.0 * -127.0,
        "sub-block 0: ls 0 -> scale -32"
    );
}
