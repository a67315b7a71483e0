//! Weights for the GPU graph, read from the GGUF file one tensor at a time.
//!
//! luminal's CUDA compiler has no quantized matmul, so every weight is decoded to f32 on the host
//! and handed to the backend, which converts it to its float type on upload. One tensor is
//! decoded at a time: host memory peaks at the largest tensor, not the model.

use luminal::prelude::*;

use crate::backend::weights::{self, LoadError};
use crate::gguf::{GgufFile, TensorInfo};
use crate::model::config::Qwen3Config;
use crate::ops::weight::{SharedBytes, WeightData};
use crate::quant::{self, GgmlType};

use super::gpu_graph::GpuGraph;

/// A weight node and the GGUF tensor it takes.
#[derive(Debug, Clone)]
pub struct WeightSlot {
    pub name: String,
    pub node: NodeIndex,
    pub ty: GgmlType,
    /// 2-D (a matmul weight) rather than a 1-D norm weight.
    pub matrix: bool,
}

/// Every weight node of `graph` with its tensor's name and type, checked against `file`.
pub fn slots(
    graph: &GpuGraph,
    file: &GgufFile,
    config: &Qwen3Config,
) -> Result<Vec<WeightSlot>, LoadError> {
    // Tied embeddings: the file has no output.weight, the head is the embedding table.
    let head = match config.tied_embeddings {
        true => "token_embd.weight",
        false => "output.weight",
    };
    let mut names = vec![
        (head.to_string(), graph.head.id),
        ("output_norm.weight".to_string(), graph.output_norm.id),
    ];
    for (i, layer) in graph.layers.iter().enumerate() {
        names.extend(weights::layer_names(i, layer));
    }
    names
        .into_iter()
        .map(|(name, node)| {
            let info = info(file, &name)?;
            Ok(WeightSlot {
                ty: info.ggml_type(),
                matrix: info.dims().len() == 2,
                name,
                node,
            })
        })
        .collect()
}

/// The tensor `name` of `file`, or the loader's error.
pub fn info<'a>(file: &'a GgufFile, name: &str) -> Result<&'a TensorInfo, LoadError> {
    file.tensor(name).ok_or_else(|| LoadError::Missing {
        name: name.to_string(),
        file: file.source().to_string(),
    })
}

/// The raw encoded bytes of tensor `name` (GGUF block layout).
pub fn raw<'a>(file: &'a GgufFile, name: &str) -> Result<&'a [u8], LoadError> {
    let info = info(file, name)?;
    file.data_of(info).ok_or_else(|| LoadError::Layout {
        name: name.to_string(),
        file: file.source().to_string(),
        detail: "data past the end of the file".into(),
    })
}

/// Tensor `name` decoded to f32, row-major in GGUF order (`[rows, cols]` outermost first).
pub fn decode(file: &GgufFile, name: &str) -> Result<Vec<f32>, LoadError> {
    let info = info(file, name)?;
    let data = raw(file, name)?;
    let n = usize::try_from(info.n_elements()).map_err(|_| LoadError::Layout {
        name: name.to_string(),
        file: file.source().to_string(),
        detail: "too many elements".into(),
    })?;
    let mut out = vec![0.0; n];
    quant::dequantize_row(info.ggml_type(), data, &mut out).map_err(|source| {
        LoadError::Decode {
            name: name.to_string(),
            file: file.source().to_string(),
            source,
        }
    })?;
    Ok(out)
}

/// The embedding table, left in its GGUF encoding in the memory map; rows are decoded on the host
/// for the tokens of each step.
#[derive(Debug, Clone)]
pub struct HostEmbedding {
    table: WeightData,
}

impl HostEmbedding {
    pub fn new(file: &GgufFile, config: &Qwen3Config) -> Result<Self, LoadError> {
        let bytes: SharedBytes = file.storage();
        let table = weights::matrix(&bytes, file, info(file, "token_embd.weight")?)?;
        if table.rows != config.vocab || table.cols != config.hidden {
            return Err(LoadError::Layout {
                name: "token_embd.weight".into(),
                file: file.source().to_string(),
                detail: format!(
                    "[{}, {}] where the config says [{}, {}]",
                    table.rows, table.cols, config.vocab, config.hidden
                ),
            });
        }
        Ok(Self { table })
    }

    /// Rows of `tokens`, `[tokens.len(), hidden]`. Ids were checked against the vocabulary.
    pub fn rows(&self, tokens: &[u32]) -> Vec<f32> {
        let hidden = self.table.cols;
        let mut out = vec![0.0; tokens.len() * hidden];
        for (row, &id) in out.chunks_exact_mut(hidden).zip(tokens) {
            self.table.dequantize_row_into(id as usize, row);
        }
        out
    }
}
