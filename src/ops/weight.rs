//! Weight tensors as luminal tensor data that points into the GGUF memory map.
//!
//! luminal 0.2 accepts any `Clone + Debug + Any` type as tensor data. A weight stays in its GGUF
//! encoding (F32, F16, Q8_0, Q4_K, ...) inside the shared map: binding a 4B model costs a few
//! hundred small structs, not 16 GB of f32. Our matmul and embedding ops read it in place.

use std::fmt;
use std::sync::Arc;

use luminal::op::InputTensor;
use luminal::prelude::*;

use super::cost::Cost;
use crate::cpu::matmul::WeightMatrix;
use crate::quant::{self, GgmlType};

/// Bytes that can back a weight: a memory map, or an owned buffer in tests.
pub type SharedBytes = Arc<dyn WeightBytes>;

/// What backs weights: their bytes, and whether those are a file's read-only map (whose pages
/// may be given back to the kernel and read again later, where an owned buffer's may not).
pub trait WeightBytes: AsRef<[u8]> + Send + Sync {
    fn file_backed(&self) -> bool;
}

impl WeightBytes for Vec<u8> {
    fn file_backed(&self) -> bool {
        false
    }
}

impl WeightBytes for crate::gguf::Storage {
    fn file_backed(&self) -> bool {
        self.is_mapped()
    }
}

/// A 2-D (or 1-D, `rows == 1`) weight in GGUF row-major layout: `rows` rows of `cols` weights.
#[derive(Clone)]
pub struct WeightData {
    bytes: SharedBytes,
    offset: usize,
    len: usize,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
}

impl WeightData {
    /// A view of `bytes[offset..offset + len]`; the caller (the loader) has validated the range
    /// against the tensor's type and shape.
    pub fn new(
        bytes: SharedBytes,
        offset: usize,
        ty: GgmlType,
        rows: usize,
        cols: usize,
    ) -> Option<Self> {
        let len = usize::try_from(ty.bytes_for((rows as u64).checked_mul(cols as u64)?)?).ok()?;
        let end = offset.checked_add(len)?;
        if end > (*bytes).as_ref().len() || !cols.is_multiple_of(ty.block_size()) {
            return None;
        }
        Some(Self {
            bytes,
            offset,
            len,
            ty,
            rows,
            cols,
        })
    }

    /// An owned f32 matrix, for tests and small host-made constants.
    pub fn from_f32(values: &[f32], rows: usize, cols: usize) -> Option<Self> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::new(Arc::new(bytes), 0, GgmlType::F32, rows, cols)
    }

    /// The encoded bytes of the whole tensor.
    pub fn bytes(&self) -> &[u8] {
        &(*self.bytes).as_ref()[self.offset..self.offset + self.len]
    }

    /// Whether the bytes are a file's read-only map ([`WeightBytes::file_backed`]).
    pub fn file_backed(&self) -> bool {
        self.bytes.file_backed()
    }

    /// The cost of `x [n_tokens, cols] · Wᵀ` over this whole matrix (activations not included).
    pub fn matmul_cost(&self, n_tokens: u64) -> Cost {
        Cost::matmul(
            self.bytes().len() as u64,
            self.rows as u64,
            self.cols as u64,
            n_tokens,
        )
    }

    /// The matrix as the CPU kernels read it, in place.
    pub fn matrix(&self) -> WeightMatrix<'_> {
        WeightMatrix {
            ty: self.ty,
            rows: self.rows,
            cols: self.cols,
            data: self.bytes(),
            repacked: None,
        }
    }

    /// Bytes taken by one row.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.ty.block_size() * self.ty.type_size()
    }

    /// The encoded bytes of row `r`.
    pub fn row(&self, r: usize) -> &[u8] {
        let n = self.row_bytes();
        &self.bytes()[r * n..(r + 1) * n]
    }

    /// Row `r` decoded to f32 into `out` (`cols` long).
    pub fn dequantize_row_into(&self, r: usize, out: &mut [f32]) {
        self.dequantize_into(self.row(r), out);
    }

    /// Whole blocks of this weight's type (`bytes`, a part of a row) decoded into `out`.
    pub fn dequantize_into(&self, bytes: &[u8], out: &mut [f32]) {
        // The loader checked type and sizes when it bound the weight, so a failure here is a bug.
        quant::dequantize_row(self.ty, bytes, out)
            .unwrap_or_else(|e| panic!("dequantizing a validated weight row failed: {e}"));
    }
}

impl fmt::Debug for WeightData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WeightData({} [{}, {}])", self.ty, self.rows, self.cols)
    }
}

impl Data for WeightData {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// The weight held by an op input, if it is one.
pub fn as_weight<'a>(input: &'a InputTensor<'a>) -> Option<&'a WeightData> {
    input.borrowed().data.as_any().downcast_ref::<WeightData>()
}
