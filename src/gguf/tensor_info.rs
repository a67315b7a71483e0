//! One tensor's entry in a GGUF file: name, type, dims and where its data lies.

use crate::quant::GgmlType;

/// Where one tensor is and what it holds. Dims are in GGUF order (innermost first);
/// [`TensorInfo::shape`] gives them outermost first.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub(super) name: String,
    pub(super) ggml_type: GgmlType,
    pub(super) dims: Vec<u64>,
    pub(super) relative_offset: u64,
    pub(super) file_offset: u64,
    pub(super) n_elements: u64,
    pub(super) n_bytes: u64,
}

impl TensorInfo {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// Dimensions as stored in GGUF (and ggml's `ne`): innermost (row length) first.
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// Dimensions outermost first, as PyTorch writes them: a weight `[rows, cols]` = `[out, in]`.
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }

    pub fn n_elements(&self) -> u64 {
        self.n_elements
    }

    pub fn n_bytes(&self) -> u64 {
        self.n_bytes
    }

    /// Offset of the data from the start of the file.
    pub fn file_offset(&self) -> u64 {
        self.file_offset
    }

    /// Offset of the data from the start of the data section, as stored in the file.
    pub fn relative_offset(&self) -> u64 {
        self.relative_offset
    }
}
