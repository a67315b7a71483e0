//! Fuzz target: arbitrary bytes through the GGUF reader, the Qwen3 config check and the
//! `--inspect` report builder. Any panic, overflow (debug assertions are on) or oversized
//! allocation (libFuzzer's `-malloc_limit_mb`) is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qwen::gguf::{GgufFile, MetadataValue};
use qwen::inspect::Report;
use qwen::model::config::Qwen3Config;
use qwen::quant::dequantize_row;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    touch_metadata(&file);
    touch_tensors(&file);
    let config = Qwen3Config::from_gguf(&file);
    if let Ok(c) = &config {
        // Every tensor the config names exists with its exact shape; others may be extra.
        assert!(c.n_params() <= file.n_elements());
    }
    let report = Report::new(&file, config.as_ref().ok(), config.as_ref().err());
    let text = report.to_text();
    assert!(!text.is_empty());
    // The serializer can only fail on non-string map keys; the report has none.
    assert!(serde_json::to_string(&report).is_ok());
});

/// Every value formatted, and every typed getter asked for every key.
fn touch_metadata(file: &GgufFile) {
    for (key, value) in file.metadata() {
        // The same entry, not an equal one: NaN values are not equal to themselves.
        assert!(file.get(key).is_some_and(|v| std::ptr::eq(v, value)));
        let _ = (value.to_string(), value.type_description());
        let _ = (file.get_u32(key), file.get_u64(key), file.get_f32(key));
        let _ = (file.get_bool(key), file.get_str(key));
        let _ = (file.get_str_array(key), file.get_i32_array(key));
        if let MetadataValue::Array(a) = value {
            let _ = (a.len(), a.element_type());
        }
    }
}

/// Every tensor's bytes lie in the file with the size its dims imply; the first row of each
/// computable tensor dequantizes.
fn touch_tensors(file: &GgufFile) {
    for t in file.tensors() {
        let data = file
            .data_of(t)
            .expect("the reader placed this tensor inside the file");
        assert_eq!(data.len() as u64, t.n_bytes());
        assert_eq!(
            file.tensor_data(t.name()).map(<[u8]>::len),
            Some(data.len())
        );
        let _ = t.shape();
        let row_len = t.dims().first().copied().unwrap_or(1);
        if t.ggml_type().is_supported() && t.n_elements() > 0 && row_len <= 1 << 16 {
            let row_bytes = t
                .ggml_type()
                .bytes_for(row_len)
                .expect("whole blocks were checked");
            let mut row = vec![0f32; row_len as usize];
            let src = &data[..row_bytes as usize];
            dequantize_row(t.ggml_type(), src, &mut row).expect("a whole row dequantizes");
        }
    }
}
