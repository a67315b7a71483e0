//! Binds GGUF tensors to the graph's weight nodes: the one place that knows both the file's tensor
//! names and the graph.
//!
//! Matrices are bound as [`WeightData`] views into the memory map, in their GGUF encoding; only the
//! 1-D norm weights (a few KB) are decoded to f32, because stock luminal ops read them.

use luminal::prelude::*;
use thiserror::Error;

use crate::gguf::{GgufFile, Storage, TensorInfo};
use crate::model::qwen3::{LayerWeights, Qwen3Graph};
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

/// Every weight node of `model` with the GGUF name of the tensor it takes.
pub fn weight_names(model: &Qwen3Graph) -> Vec<(String, NodeIndex)> {
    let mut names = vec![
        ("token_embd.weight".to_string(), model.token_embd.id),
        ("output_norm.weight".to_string(), model.output_norm.id),
    ];
    // Tied embeddings have no output.weight: the head node is token_embd itself.
    if let Some(output) = model.output {
        names.push(("output.weight".to_string(), output.id));
    }
    for (i, layer) in model.layers.iter().enumerate() {
        names.extend(layer_names(i, layer));
    }
    names
}

/// The GGUF names of block `i`'s weight nodes.
pub fn layer_names(i: usize, w: &LayerWeights) -> Vec<(String, NodeIndex)> {
    [
        ("attn_norm", w.attn_norm.id),
        ("attn_q", w.attn_q.id),
        ("attn_k", w.attn_k.id),
        ("attn_v", w.attn_v.id),
        ("attn_q_norm", w.attn_q_norm.id),
        ("attn_k_norm", w.attn_k_norm.id),
        ("attn_output", w.attn_output.id),
        ("ffn_norm", w.ffn_norm.id),
        ("ffn_gate", w.ffn_gate.id),
        ("ffn_up", w.ffn_up.id),
        ("ffn_down", w.ffn_down.id),
    ]
    .into_iter()
    .map(|(name, id)| (format!("blk.{i}.{name}.weight"), id))
    .collect()
}

/// Sets every weight node's data from `file` and marks it kept across executions.
pub fn bind(cx: &mut Graph, model: &Qwen3Graph, file: &GgufFile) -> Result<(), LoadError> {
    let storage: std::sync::Arc<Storage> = file.storage();
    let bytes: SharedBytes = storage;
    for (name, node) in weight_names(model) {
        let info = file.tensor(&name).ok_or_else(|| LoadError::Missing {
            name: name.clone(),
            file: file.source().to_string(),
        })?;
        let tensor = if info.dims().len() == 1 {
            Tensor::new(decode_vector(file, info)?)
        } else {
            Tensor::new(matrix(&bytes, file, info)?)
        };
        cx.set_tensor(node, 0, tensor);
        cx.keep_tensors(node);
    }
    Ok(())
}

/// A `[rows, cols]` weight as a view into the map.
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
    let [rows, cols] = shape[..] else {
        return Err(layout_error(format!(
            "expected 2 dims, found {}",
            shape.len()
        )));
    };
    let (rows, cols, offset) = (
        usize::try_from(rows).map_err(|_| layout_error("too many rows".into()))?,
        usize::try_from(cols).map_err(|_| layout_error("rows too long".into()))?,
        usize::try_from(info.file_offset()).map_err(|_| layout_error("offset too large".into()))?,
    );
    WeightData::new(bytes.clone(), offset, info.ggml_type(), rows, cols)
        .ok_or_else(|| layout_error("data does not fit the file or its block size".into()))
}

/// A 1-D tensor (a norm weight) decoded to f32.
fn decode_vector(file: &GgufFile, info: &TensorInfo) -> Result<Vec<f32>, LoadError> {
    let decode_error = |source| LoadError::Decode {
        name: info.name().to_string(),
        file: file.source().to_string(),
        source,
    };
    let data = file.data_of(info).ok_or_else(|| LoadError::Layout {
        name: info.name().to_string(),
        file: file.source().to_string(),
        detail: "data past the end of the file".into(),
    })?;
    let mut out = vec![0.0; info.n_elements() as usize];
    quant::dequantize_row(info.ggml_type(), data, &mut out).map_err(decode_error)?;
    Ok(out)
}
