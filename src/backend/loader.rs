//! GGUF tensors to the graph's weight nodes: the one place that knows both a file's tensors and
//! the graph (whose weights are named by the model's table, `model::tensors`).
//!
//! The CPU engine binds matrices as [`WeightData`] views into the memory map, in their GGUF
//! encoding; only the small float-only tensors (the 1-D norm weights and the DeltaNet's
//! parameters and convolution taps, a few KB each) are decoded to f32, because stock luminal
//! ops and our per-layer ops read them so. The GPU engines take each tensor decoded to f32 ([`decode`]) or raw ([`raw`]), one
//! at a time.

use luminal::prelude::*;
use thiserror::Error;

use crate::gguf::{GgufFile, Storage, TensorInfo};
use crate::model::qwen3::Qwen3Graph;
use crate::model::tensors;
use crate::ops::weight::{SharedBytes, WeightData};
use crate::quant::{self, QuantError};

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("tensor '{name}' not found in {file}")]
    Missing { name: String, file: String },
    #[error("tensor '{name}' in {file} has an unusable layout ({detail})")]
    Layout {
        name: String,
        file: String,
        detail: String,
    },
    #[error("tensor '{name}' in {file}: {source}")]
    Decode {
        name: String,
        file: String,
        source: QuantError,
    },
}

/// Sets every weight node's data from `file` and marks it kept across executions.
pub fn bind(cx: &mut Graph, model: &Qwen3Graph, file: &GgufFile) -> Result<(), LoadError> {
    bind_named(cx, model.weights(), file)
}

/// Sets each of `weights` (a node and the GGUF tensor it takes) from `file` and marks it kept.
pub fn bind_named(
    cx: &mut Graph,
    weights: Vec<(String, NodeIndex)>,
    file: &GgufFile,
) -> Result<(), LoadError> {
    let storage: std::sync::Arc<Storage> = file.storage();
    let bytes: SharedBytes = storage;
    for (name, node) in weights {
        let info = tensor(file, &name)?;
        let data = if info.dims().len() == 1 || tensors::decoded_to_f32(&name) {
            Tensor::new(decode(file, info)?)
        } else {
            Tensor::new(matrix(&bytes, file, info)?)
        };
        cx.set_tensor(node, 0, data);
        cx.keep_tensors(node);
    }
    Ok(())
}

/// The tensor `name` of `file`.
pub fn tensor<'a>(file: &'a GgufFile, name: &str) -> Result<&'a TensorInfo, LoadError> {
    file.tensor(name).ok_or_else(|| LoadError::Missing {
        name: name.to_string(),
        file: file.source().to_string(),
    })
}

/// A `[rows, cols]` weight as a view into the map; a 3-D `[experts, rows, cols]` tensor (the
/// experts of a mixture-of-experts layer) as the 2-D `[experts * rows, cols]` it is in memory.
pub fn matrix(
    bytes: &SharedBytes,
    file: &GgufFile,
    info: &TensorInfo,
) -> Result<WeightData, LoadError> {
    let shape = info.shape();
    let layout_error = |detail: String| LoadError::Layout {
        name: info.name().to_string(),
        file: file.source().to_string(),
        detail,
    };
    let (rows, cols) = match shape[..] {
        [rows, cols] => (Some(rows), cols),
        [experts, rows, cols] => (experts.checked_mul(rows), cols),
        _ => {
            return Err(layout_error(format!(
                "expected 2 or 3 dims, found {}",
                shape.len()
            )))
        }
    };
    let rows = rows.ok_or_else(|| layout_error("too many rows".into()))?;
    let (rows, cols, offset) = (
        usize::try_from(rows).map_err(|_| layout_error("too many rows".into()))?,
        usize::try_from(cols).map_err(|_| layout_error("rows too long".into()))?,
        usize::try_from(info.file_offset()).map_err(|_| layout_error("offset too large".into()))?,
    );
    WeightData::new(bytes.clone(), offset, info.ggml_type(), rows, cols)
        .ok_or_else(|| layout_error("data does not fit the file or its block size".into()))
}

/// The raw encoded bytes of a tensor (GGUF block layout).
pub fn raw<'a>(file: &'a GgufFile, info: &TensorInfo) -> Result<&'a [u8], LoadError> {
    file.data_of(info).ok_or_else(|| LoadError::Layout {
        name: info.name().to_string(),
        file: file.source().to_string(),
        detail: "data past the end of the file".into(),
    })
}

/// A tensor decoded to f32, row-major in GGUF order (`[rows, cols]` outermost first).
pub fn decode(file: &GgufFile, info: &TensorInfo) -> Result<Vec<f32>, LoadError> {
    let data = raw(file, info)?;
    let n = usize::try_from(info.n_elements()).map_err(|_| LoadError::Layout {
        name: info.name().to_string(),
        file: file.source().to_string(),
        detail: "too many elements".into(),
    })?;
    let mut out = vec![0.0; n];
    quant::dequantize_row(info.ggml_type(), data, &mut out).map_err(|source| {
        LoadError::Decode {
            name: info.name().to_string(),
            file: file.source().to_string(),
            source,
        }
    })?;
    Ok(out)
}
