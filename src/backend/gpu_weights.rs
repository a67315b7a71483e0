//! Weights for the GPU graph, read from the GGUF file one tensor at a time.
//!
//! luminal's CUDA compiler has no quantized matmul, so every weight is decoded to f32 on the host
//! and handed to the device, which converts it to its float type on upload. One tensor is
//! decoded at a time: host memory peaks at the largest tensor, not the model.

use luminal::prelude::*;

use crate::gguf::GgufFile;
use crate::model::config::Qwen3Config;
use crate::model::qwen3::Qwen3Graph;
use crate::model::tensors::TOKEN_EMBD;
use crate::ops::weight::{SharedBytes, WeightData};
use crate::quant::GgmlType;

use super::loader::{self, LoadError};

/// A weight node and the GGUF tensor it takes.
#[derive(Debug, Clone)]
pub struct WeightSlot {
    pub name: String,
    pub node: NodeIndex,
    pub ty: GgmlType,
    /// 2-D (a matmul weight) rather than a 1-D norm weight.
    pub matrix: bool,
}

impl WeightSlot {
    /// The tensor decoded to f32, row-major in GGUF order.
    pub fn decode(&self, file: &GgufFile) -> Result<Vec<f32>, LoadError> {
        loader::decode(file, loader::tensor(file, &self.name)?)
    }

    /// The tensor's raw encoded bytes (GGUF block layout).
    pub fn raw<'a>(&self, file: &'a GgufFile) -> Result<&'a [u8], LoadError> {
        loader::raw(file, loader::tensor(file, &self.name)?)
    }
}

/// Every weight node of `model` with its tensor's name and type, checked against `file`.
pub fn slots(model: &Qwen3Graph, file: &GgufFile) -> Result<Vec<WeightSlot>, LoadError> {
    model
        .weights()
        .into_iter()
        .map(|(name, node)| {
            let info = loader::tensor(file, &name)?;
            Ok(WeightSlot {
                ty: info.ggml_type(),
                matrix: info.dims().len() == 2,
                name,
                node,
            })
        })
        .collect()
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
        let table = loader::matrix(&bytes, file, loader::tensor(file, TOKEN_EMBD)?)?;
        if table.rows != config.vocab || table.cols != config.hidden {
            return Err(LoadError::Layout {
                name: TOKEN_EMBD.into(),
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
