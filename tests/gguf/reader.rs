//! The GGUF reader on synthetic byte buffers (every value type, both versions, alignment,
//! malformed files) and on the fixture models, cross-checked with gguf-py.

use crate::common::fixture_file::fixture_names;
use crate::common::{fixture, Gguf, T, V};
use qwen::gguf::{GgufError, GgufFile, MetadataArray, MetadataValue, ValueType};
use qwen::quant::GgmlType;

fn read(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
    GgufFile::from_bytes(bytes)
}

fn every_value_type() -> Gguf {
    Gguf::default()
        .kv("u8", V::U8(200))
        .kv("i8", V::I8(-100))
        .kv("u16", V::U16(60000))
        .kv("i16", V::I16(-30000))
        .kv("u32", V::U32(4_000_000_000))
        .kv("i32", V::I32(-2_000_000_000))
        .kv("f32", V::F32(1.5e-6))
        .kv("bool", V::Bool(true))
        .kv("string", V::s("héllo ✓"))
        .kv("u64", V::U64(u64::MAX))
        .kv("i64", V::I64(i64::MIN))
        .kv("f64", V::F64(-2.25e300))
        .kv("empty_string", V::s(""))
        .kv(
            "strings",
            V::Arr(8, vec![V::s("a"), V::s(""), V::s("Ġthe")]),
        )
        .kv("i32s", V::Arr(5, vec![V::I32(1), V::I32(-2), V::I32(3)]))
        .kv("bools", V::Arr(7, vec![V::Bool(false), V::Bool(true)]))
        .kv("f64s", V::Arr(12, vec![V::F64(0.5)]))
        .kv("empty", V::Arr(4, vec![]))
        .kv(
            "nested",
            V::Arr(
                9,
                vec![
                    V::Arr(4, vec![V::U32(1), V::U32(2)]),
                    V::Arr(8, vec![V::s("x")]),
                    V::Arr(9, vec![V::Arr(0, vec![V::U8(7)])]),
                ],
            ),
        )
}

fn two_tensors(alignment: usize) -> Gguf {
    let mut g = Gguf {
        alignment,
        ..Gguf::default()
    };
    if alignment != 32 {
        g = g.kv("general.alignment", V::U32(alignment as u32));
    }
    g.tensor(T::new("a", GgmlType::F32, &[3, 5]))
        .tensor(T::new("b.q8", GgmlType::Q8_0, &[2, 64]))
        .tensor(T::new("c", GgmlType::F16, &[7]))
}

#[test]
fn every_value_type_reads_back_in_both_versions() {
    for version in [2, 3] {
        let g = Gguf {
            version,
            ..every_value_type()
        };
        let f = read(g.build()).unwrap();
        assert_eq!(f.version(), version);
        let keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k.as_str()).collect();
        let written: Vec<&str> = g.kv.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, written, "file order kept");
        assert_eq!(f.get("u8"), Some(&MetadataValue::U8(200)));
        assert_eq!(f.get("i8"), Some(&MetadataValue::I8(-100)));
        assert_eq!(f.get("u16"), Some(&MetadataValue::U16(60000)));
        assert_eq!(f.get("i16"), Some(&MetadataValue::I16(-30000)));
        assert_eq!(f.get("u32"), Some(&MetadataValue::U32(4_000_000_000)));
        assert_eq!(f.get("i32"), Some(&MetadataValue::I32(-2_000_000_000)));
        assert_eq!(f.get("f32"), Some(&MetadataValue::F32(1.5e-6)));
        assert_eq!(f.get("bool"), Some(&MetadataValue::Bool(true)));
        assert_eq!(f.get_str("string").unwrap(), "héllo ✓");
        assert_eq!(f.get("u64"), Some(&MetadataValue::U64(u64::MAX)));
        assert_eq!(f.get("i64"), Some(&MetadataValue::I64(i64::MIN)));
        assert_eq!(f.get("f64"), Some(&MetadataValue::F64(-2.25e300)));
        assert_eq!(f.get_str("empty_string").unwrap(), "");
        assert_eq!(f.get_str_array("strings").unwrap(), ["a", "", "Ġthe"]);
        assert_eq!(f.get_i32_array("i32s").unwrap(), [1, -2, 3]);
        let bools = f.get("bools").and_then(MetadataValue::as_array);
        assert_eq!(bools, Some(&MetadataArray::Bool(vec![false, true])));
        let f64s = f.get("f64s").and_then(MetadataValue::as_array);
        assert_eq!(f64s, Some(&MetadataArray::F64(vec![0.5])));
        let empty = f.get("empty").and_then(MetadataValue::as_array).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.element_type(), ValueType::U32);
        let nested = MetadataArray::Array(vec![
            MetadataArray::U32(vec![1, 2]),
            MetadataArray::String(vec!["x".into()]),
            MetadataArray::Array(vec![MetadataArray::U8(vec![7])]),
        ]);
        assert_eq!(
            f.get("nested").and_then(MetadataValue::as_array),
            Some(&nested)
        );
        assert!(f.tensors().is_empty());
    }
}

#[test]
fn typed_getters_accept_any_fitting_type() {
    let f = read(every_value_type().build()).unwrap();
    assert_eq!(f.get_u32("u8").unwrap(), 200);
    assert_eq!(f.get_u32("u16").unwrap(), 60000);
    assert_eq!(f.get_u64("u32").unwrap(), 4_000_000_000);
    assert_eq!(f.get_u64("u64").unwrap(), u64::MAX);
    assert!(
        matches!(f.get_u32("u64"), Err(GgufError::KeyType { .. })),
        "too large"
    );
    assert!(
        matches!(f.get_u32("i8"), Err(GgufError::KeyType { .. })),
        "negative"
    );
    assert!(
        matches!(f.get_u32("f32"), Err(GgufError::KeyType { .. })),
        "float"
    );
    assert_eq!(f.get_f32("f32").unwrap(), 1.5e-6);
    assert_eq!(f.get_f32("f64s").ok(), None);
    assert_eq!(
        f.get_f32("f64").unwrap(),
        f32::NEG_INFINITY,
        "f64 rounds to f32"
    );
    assert!(f.get_bool("bool").unwrap());
    assert!(matches!(f.get_str("u8"), Err(GgufError::KeyType { .. })));
    assert!(matches!(
        f.get_str_array("i32s"),
        Err(GgufError::KeyType { .. })
    ));
    let missing = f.get_u32("qwen3.block_count").unwrap_err();
    assert!(matches!(missing, GgufError::MissingKey { .. }));
    assert!(
        missing.to_string().contains("qwen3.block_count"),
        "{missing}"
    );
    let wrong = f.get_str("u8").unwrap_err().to_string();
    assert!(
        wrong.contains("'u8'") && wrong.contains("expected a string"),
        "{wrong}"
    );
}

#[test]
fn tensors_are_placed_at_aligned_offsets_with_default_and_custom_alignment() {
    for alignment in [32, 64, 1, 256] {
        let g = two_tensors(alignment);
        let (bytes, layout) = g.build_with_layout();
        let f = read(bytes.clone()).unwrap();
        assert_eq!(f.alignment(), alignment as u64);
        assert_eq!(f.data_offset(), layout.data_offset as u64);
        assert_eq!(f.data_offset() % alignment as u64, 0);
        assert_eq!(f.file_size(), bytes.len() as u64);
        assert_eq!(f.tensors().len(), 3);
        for ((t, written), at) in f.tensors().iter().zip(&g.tensors).zip(&layout.tensor_at) {
            assert_eq!(t.name(), written.name);
            assert_eq!(t.dims(), written.dims);
            assert_eq!(t.file_offset(), *at as u64);
            assert_eq!(t.relative_offset() % alignment as u64, 0);
            assert_eq!(t.file_offset(), f.data_offset() + t.relative_offset());
            assert_eq!(t.n_bytes(), written.data.len() as u64);
            assert_eq!(f.tensor_data(t.name()).unwrap(), &written.data[..]);
            let storage = f.storage();
            let start = t.file_offset() as usize;
            assert_eq!(
                &storage.bytes()[start..start + written.data.len()],
                &written.data[..]
            );
        }
        let a = f.tensor("a").unwrap();
        assert_eq!(a.shape(), [3, 5], "outermost first");
        assert_eq!(a.dims(), [5, 3], "GGUF order");
        assert_eq!(a.n_elements(), 15);
        let q = f.tensor("b.q8").unwrap();
        assert_eq!(
            (q.ggml_type(), q.n_elements(), q.n_bytes()),
            (GgmlType::Q8_0, 128, 4 * 34)
        );
        assert_eq!(f.n_elements(), 15 + 128 + 7);
        assert!(f.tensor("missing").is_none());
    }
}

#[test]
fn storage_outlives_the_file() {
    let f = read(two_tensors(32).build()).unwrap();
    let t = f.tensor("c").unwrap().clone();
    let expected = f.tensor_data("c").unwrap().to_vec();
    let storage = f.storage();
    drop(f);
    let start = t.file_offset() as usize;
    assert_eq!(
        &storage.bytes()[start..start + t.n_bytes() as usize],
        &expected[..]
    );
}

#[test]
fn opens_a_file_through_a_memory_map() {
    let path = std::env::temp_dir().join(format!("qwen-gguf-test-{}.gguf", std::process::id()));
    let bytes = two_tensors(64).build();
    std::fs::write(&path, &bytes).unwrap();
    let mapped = GgufFile::open(&path);
    std::fs::remove_file(&path).unwrap();
    let f = mapped.unwrap();
    assert!(matches!(*f.storage(), qwen::gguf::Storage::Mapped(_)));
    assert_eq!(f.source(), path.display().to_string());
    assert_eq!(
        f.tensor_data("b.q8"),
        read(bytes).unwrap().tensor_data("b.q8")
    );
}

// ---- malformed files ----

/// A header with the given counts, then `rest`.
fn header(version: u32, tensors: u64, kvs: u64, rest: &[u8]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(version.to_le_bytes());
    out.extend(tensors.to_le_bytes());
    out.extend(kvs.to_le_bytes());
    out.extend(rest);
    out
}

fn patch_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn patch_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn every_truncation_of_a_synthetic_file_is_an_error() {
    let g = every_value_type()
        .kv("general.alignment", V::U32(64))
        .tensor(T::new("a", GgmlType::F32, &[3, 5]))
        .tensor(T::new("b", GgmlType::Q4_K, &[1, 256]));
    let g = Gguf { alignment: 64, ..g };
    let bytes = g.build();
    assert!(read(bytes.clone()).is_ok());
    for len in 0..bytes.len() {
        let result = read(bytes[..len].to_vec());
        assert!(result.is_err(), "prefix of {len} bytes parsed");
    }
}

#[test]
fn every_truncation_of_a_real_header_is_an_error() {
    let bytes = std::fs::read(fixture("models/tiny-q8_0.gguf")).unwrap();
    let f = read(bytes.clone()).unwrap();
    let last = f
        .tensors()
        .iter()
        .map(|t| t.file_offset() + t.n_bytes())
        .max()
        .unwrap();
    assert_eq!(
        last,
        bytes.len() as u64,
        "no trailing padding, so every prefix is short"
    );
    for len in (0..4096).chain((4096..bytes.len()).step_by(997)) {
        assert!(
            read(bytes[..len].to_vec()).is_err(),
            "prefix of {len} bytes parsed"
        );
    }
}

#[test]
fn truncations_inside_the_tokenizer_arrays_are_errors() {
    let bytes = std::fs::read(fixture("models/tiny-qwen3vocab-q8_0.gguf")).unwrap();
    let data_offset = read(bytes.clone()).unwrap().data_offset() as usize;
    for i in 0..24 {
        let len = data_offset * i / 24 + 13 * i;
        let err = read(bytes[..len].to_vec()).unwrap_err();
        let short = matches!(
            err,
            GgufError::Truncated { .. } | GgufError::StringTooLong { .. }
        ) || matches!(
            err,
            GgufError::CountTooLarge { .. } | GgufError::BadMagic { .. }
        );
        assert!(short, "prefix {len}: {err}");
    }
}

#[test]
fn bad_magic_and_versions() {
    let mut bytes = two_tensors(32).build();
    bytes[..4].copy_from_slice(b"GGML");
    let err = read(bytes).unwrap_err();
    assert!(matches!(err, GgufError::BadMagic { .. }), "{err}");
    assert!(err.to_string().contains("not a GGUF file"));
    assert!(matches!(
        read(b"PK\x03\x04 a zip".to_vec()),
        Err(GgufError::BadMagic { .. })
    ));
    assert!(matches!(read(Vec::new()), Err(GgufError::BadMagic { .. })));

    let v1 = read(header(1, 0, 0, &[])).unwrap_err();
    assert!(matches!(v1, GgufError::Version1));
    assert!(v1
        .to_string()
        .contains("GGUF version 1 is not supported (only 2 and 3)"));
    let v99 = read(header(99, 0, 0, &[])).unwrap_err();
    assert!(
        matches!(v99, GgufError::UnsupportedVersion { version: 99 }),
        "{v99}"
    );
    let big_endian = read(header(3u32.swap_bytes(), 0, 0, &[])).unwrap_err();
    assert!(
        matches!(big_endian, GgufError::BigEndian { version: 3 }),
        "{big_endian}"
    );
    assert!(big_endian.to_string().contains("big-endian"));
    assert!(
        read(header(2, 0, 0, &[])).is_ok(),
        "an empty v2 file is valid"
    );
}

#[test]
fn absurd_counts_are_refused_before_allocating() {
    let err = read(header(3, 1 << 60, 0, &[])).unwrap_err();
    assert!(
        matches!(err, GgufError::CountTooLarge { count, .. } if count == 1 << 60),
        "{err}"
    );
    assert!(err.to_string().contains("tensor count"));
    let err = read(header(3, 0, 1 << 60, &[])).unwrap_err();
    assert!(
        matches!(err, GgufError::CountTooLarge { ref what, .. } if what.contains("metadata key count"))
    );
    let err = read(header(3, 0, u64::MAX, &[])).unwrap_err();
    assert!(
        matches!(err, GgufError::CountTooLarge { .. }),
        "count x size overflows"
    );

    // a key of 2^40 bytes (then enough bytes for the key count to pass)
    let mut rest = (1u64 << 40).to_le_bytes().to_vec();
    rest.extend([b'k'; 16]);
    let err = read(header(3, 0, 1, &rest)).unwrap_err();
    assert!(
        matches!(err, GgufError::StringTooLong { len, offset: 24, .. } if len == 1 << 40),
        "{err}"
    );

    // a string value of 2^40 bytes
    let (mut bytes, layout) = Gguf::default().kv("name", V::s("abc")).build_with_layout();
    patch_u64(&mut bytes, layout.kv_type_at[0] + 4, 1 << 40);
    let err = read(bytes).unwrap_err();
    assert!(
        matches!(err, GgufError::StringTooLong { ref what, .. } if what.contains("'name'")),
        "{err}"
    );

    // an array of 2^50 u32, and of 2^50 strings
    for (ty, v) in [(4, V::U32(1)), (8, V::s("t"))] {
        let g = Gguf::default().kv("tokenizer.ggml.tokens", V::Arr(ty, vec![v]));
        let (mut bytes, layout) = g.build_with_layout();
        patch_u64(&mut bytes, layout.kv_type_at[0] + 8, 1 << 50);
        let err = read(bytes).unwrap_err();
        assert!(
            matches!(err, GgufError::CountTooLarge { count, .. } if count == 1 << 50),
            "{err}"
        );
        assert!(err.to_string().contains("tokenizer.ggml.tokens"), "{err}");
    }
}

#[test]
fn bad_metadata_values() {
    let (mut bytes, layout) = Gguf::default().kv("k", V::U8(0)).build_with_layout();
    patch_u32(&mut bytes, layout.kv_type_at[0], 13);
    let err = read(bytes).unwrap_err();
    assert!(
        matches!(err, GgufError::UnknownValueType { id: 13, .. }),
        "{err}"
    );

    let (mut bytes, layout) = Gguf::default().kv("b", V::Bool(true)).build_with_layout();
    bytes[layout.kv_type_at[0] + 4] = 2;
    assert!(matches!(
        read(bytes),
        Err(GgufError::InvalidBool { value: 2, .. })
    ));

    let (mut bytes, layout) = Gguf::default().kv("s", V::s("ok")).build_with_layout();
    bytes[layout.kv_type_at[0] + 12] = 0xff;
    assert!(matches!(read(bytes), Err(GgufError::InvalidUtf8 { .. })));

    let dup = Gguf::default().kv("k", V::U8(1)).kv("k", V::U8(2));
    assert!(
        matches!(read(dup.build()), Err(GgufError::DuplicateKey { ref key, .. }) if key == "k")
    );

    let mut deep = V::Arr(0, vec![V::U8(1)]);
    for _ in 0..20 {
        deep = V::Arr(9, vec![deep]);
    }
    let err = read(Gguf::default().kv("deep", deep).build()).unwrap_err();
    assert!(matches!(err, GgufError::NestingTooDeep { .. }), "{err}");
}

#[test]
fn bad_alignment_values() {
    for v in [
        V::U32(0),
        V::U32(48),
        V::U64(1 << 40),
        V::s("32"),
        V::I32(-32),
        V::F32(32.0),
    ] {
        let err = read(Gguf::default().kv("general.alignment", v.clone()).build()).unwrap_err();
        assert!(
            matches!(err, GgufError::BadAlignment { .. }),
            "{v:?}: {err}"
        );
    }
    let ok = Gguf::default().kv("general.alignment", V::U16(16));
    assert_eq!(read(ok.build()).unwrap().alignment(), 16);
}

#[test]
fn bad_tensor_infos() {
    let (bytes, layout) = two_tensors(32).build_with_layout();

    let mut b = bytes.clone();
    patch_u32(&mut b, layout.info_at[0], 99);
    let err = read(b).unwrap_err();
    assert!(
        matches!(err, GgufError::TooManyDims { n_dims: 99, ref tensor, .. } if tensor == "a"),
        "{err}"
    );

    // dims [2^40, 2^40]: the element count overflows u64
    let mut b = bytes.clone();
    patch_u64(&mut b, layout.info_at[0] + 4, 1 << 40);
    patch_u64(&mut b, layout.info_at[0] + 12, 1 << 40);
    assert!(matches!(read(b), Err(GgufError::SizeOverflow { .. })));
    // one dim above i64::MAX
    let mut b = bytes.clone();
    patch_u64(&mut b, layout.info_at[0] + 4, u64::MAX);
    patch_u64(&mut b, layout.info_at[0] + 12, 1);
    assert!(matches!(read(b), Err(GgufError::SizeOverflow { .. })));

    // type id 4 (removed Q4_2) and 1000
    for id in [4, 1000] {
        let mut b = bytes.clone();
        patch_u32(&mut b, layout.offset_field_at[2] - 4, id);
        let err = read(b).unwrap_err();
        assert!(
            matches!(err, GgufError::UnknownTensorType { id: i, ref tensor, .. } if i == id && tensor == "c")
        );
    }

    // a Q8_0 row of 16 weights is half a block
    let half = Gguf::default().tensor(T {
        name: "half".into(),
        dims: vec![16, 4],
        type_id: 8,
        data: vec![0; 68],
    });
    let err = read(half.build()).unwrap_err();
    assert!(
        matches!(
            err,
            GgufError::NotWholeBlocks {
                row_len: 16,
                block: 32,
                ..
            }
        ),
        "{err}"
    );

    let dup = Gguf::default()
        .tensor(T::new("w", GgmlType::F32, &[2]))
        .tensor(T::new("w", GgmlType::F32, &[2]));
    let err = read(dup.build()).unwrap_err();
    assert!(
        matches!(err, GgufError::DuplicateTensor { ref tensor, .. } if tensor == "w"),
        "{err}"
    );
}

#[test]
fn tensor_data_must_be_aligned_and_inside_the_file() {
    let (bytes, layout) = two_tensors(32).build_with_layout();
    let c = 2;
    let rel =
        |b: &[u8]| u64::from_le_bytes(b[layout.offset_field_at[c]..][..8].try_into().unwrap());

    let mut b = bytes.clone();
    let r = rel(&b);
    patch_u64(&mut b, layout.offset_field_at[c], r + 4);
    let err = read(b).unwrap_err();
    assert!(
        matches!(err, GgufError::MisalignedTensor { alignment: 32, .. }),
        "{err}"
    );

    let mut b = bytes.clone();
    patch_u64(&mut b, layout.offset_field_at[c], r + 32);
    let err = read(b).unwrap_err();
    assert!(
        matches!(err, GgufError::DataOutOfBounds { ref tensor, .. } if tensor == "c"),
        "{err}"
    );
    assert!(err.to_string().contains("'c'"));

    let mut b = bytes.clone();
    patch_u64(&mut b, layout.offset_field_at[c], u64::MAX - 31);
    assert!(
        matches!(read(b), Err(GgufError::DataOutOfBounds { .. })),
        "offset overflow"
    );

    let mut b = bytes;
    b.pop();
    assert!(
        matches!(read(b), Err(GgufError::DataOutOfBounds { .. })),
        "last tensor cut short"
    );
}

#[test]
fn open_reports_missing_files_and_directories() {
    let err = GgufFile::open("/nonexistent/model.gguf").unwrap_err();
    assert!(matches!(err, GgufError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/model.gguf"), "{err}");
    let err = GgufFile::open(fixture("models")).unwrap_err();
    assert!(matches!(err, GgufError::NotAFile { .. }), "{err}");
}

// ---- fixture models against gguf-py ----

fn gguf_py_dump(model: &str) -> serde_json::Value {
    let path = fixture(&format!("gguf-py/{}.json", model.trim_end_matches(".gguf")));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn value_json(v: &MetadataValue) -> serde_json::Value {
    match v {
        MetadataValue::String(s) => s.as_str().into(),
        MetadataValue::Bool(b) => (*b).into(),
        MetadataValue::F32(f) => f64::from(*f).into(),
        MetadataValue::F64(f) => (*f).into(),
        other => (other.as_i128().unwrap() as i64).into(),
    }
}

fn array_ends(a: &MetadataArray) -> Option<(serde_json::Value, serde_json::Value)> {
    match a {
        MetadataArray::String(s) => Some((s.first()?.as_str().into(), s.last()?.as_str().into())),
        MetadataArray::I32(v) => Some(((*v.first()?).into(), (*v.last()?).into())),
        _ => None,
    }
}

#[test]
fn every_fixture_model_reads_as_gguf_py_reads_it() {
    let mut checked = 0;
    for name in fixture_names("models") {
        let f = GgufFile::open(fixture(&format!("models/{name}"))).unwrap();
        let py = gguf_py_dump(&name);
        assert_eq!(f.file_size(), py["file_size"], "{name}");
        assert_eq!(f.version(), py["version"], "{name}");
        assert_eq!(f.alignment(), py["alignment"], "{name}");
        let py_meta = py["metadata"].as_array().unwrap();
        assert_eq!(f.metadata().len(), py_meta.len(), "{name}");
        for ((key, value), p) in f.metadata().iter().zip(py_meta) {
            assert_eq!(key, &p["key"], "{name}");
            assert_eq!(value.type_description(), p["type"], "{name} {key}");
            match value.as_array() {
                Some(a) => {
                    assert_eq!(a.len(), p["len"], "{name} {key}");
                    if let Some((first, last)) = array_ends(a) {
                        assert_eq!((&first, &last), (&p["first"], &p["last"]), "{name} {key}");
                    }
                }
                None => assert_eq!(value_json(value), p["value"], "{name} {key}"),
            }
        }
        let py_tensors = py["tensors"].as_array().unwrap();
        assert_eq!(f.tensors().len(), py_tensors.len(), "{name}");
        for (t, p) in f.tensors().iter().zip(py_tensors) {
            assert_eq!(t.name(), p["name"], "{name}");
            assert_eq!(t.ggml_type().name(), p["type"], "{name} {}", t.name());
            assert_eq!(
                serde_json::json!(t.shape()),
                p["shape"],
                "{name} {}",
                t.name()
            );
            assert_eq!(t.file_offset(), p["offset"], "{name} {}", t.name());
            assert_eq!(t.n_bytes(), p["bytes"], "{name} {}", t.name());
        }
        checked += 1;
    }
    assert_eq!(checked, 29, "every fixture model has a gguf-py dump");
}

#[test]
fn the_tokenizer_arrays_of_the_qwen3_vocab_fixture() {
    let f = GgufFile::open(fixture("models/tiny-qwen3vocab-q8_0.gguf")).unwrap();
    let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 151936);
    assert_eq!(
        f.get_i32_array("tokenizer.ggml.token_type").unwrap().len(),
        151936
    );
    assert_eq!(
        f.get_str_array("tokenizer.ggml.merges").unwrap().len(),
        151387
    );
    assert_eq!(f.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(f.get_u32("tokenizer.ggml.eos_token_id").unwrap(), 151645);
    assert_eq!(tokens[151645], "<|im_end|>");
    assert!(!f.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert!(f
        .get_str("tokenizer.chat_template")
        .unwrap()
        .contains("<|im_start|>"));
}
