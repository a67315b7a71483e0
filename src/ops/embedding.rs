//! Token embedding: rows of `token_embd.weight` picked by token id, decoded to f32.
//!
//! Our own op because stock luminal 0.2 gathers wrong rows after `CPUCompiler` (its CPU `Equal`
//! computes `a < b`), and because the table stays quantized in the memory map: only the rows of
//! the tokens in this step are decoded, and the pages a row's read maps are given back (a tied
//! LM head reads its repacked copy, not these pages: `cpu::repack::release_read`).

use luminal::op::{InputTensor, Operator};
use luminal::prelude::*;

use super::cost::{self, Cost, OpCost};
use super::input::f32_data;
use super::weight::as_weight;
use crate::cpu::repack::release_read;

/// Inputs: token ids `[seq]` (as f32, exact up to 2^24), the embedding table `[vocab, hidden]`.
/// Output: `[seq, hidden]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Embedding;

impl Operator for Embedding {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let ids = f32_data(&inp[0].0).expect("embedding: token ids must be f32 data");
        let table = as_weight(&inp[1].0).expect("embedding: the table must be a bound weight");
        let hidden = table.cols;
        let mut out = vec![0.0; ids.len() * hidden];
        for (row, &id) in out.chunks_exact_mut(hidden).zip(ids.iter()) {
            // Ids are validated against the vocabulary before a step runs.
            let id = id as usize;
            if id < table.rows {
                table.dequantize_row_into(id, row);
                if table.file_backed() {
                    release_read(table.row(id), table.bytes());
                }
            }
        }
        vec![Tensor::new(out)]
    }
    /// The cost model and kind, for the profiler (`cost::model_of`, `cost::kind_of`).
    fn custom(&mut self, key: &str, _: Box<dyn std::any::Any>) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key)
    }
}

impl OpCost for Embedding {
    /// The ids and one encoded table row per token.
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        let tokens = inp.first().map_or(0, |(_, t)| cost::read_len(t));
        let row = inp
            .get(1)
            .and_then(|(t, _)| as_weight(t))
            .map_or(0, |w| w.row_bytes() as u64);
        Cost {
            weight_bytes: tokens * row,
            ..Cost::activations(tokens)
        }
    }
}

/// Adds the embedding lookup of `ids` in `table` to the graph.
pub fn embed<S: Dimension, V: Dimension, H: Dimension>(
    ids: GraphTensor<(S,)>,
    table: GraphTensor<(V, H)>,
) -> GraphTensor<(S, H)> {
    let cx = ids.graph();
    let id = cx
        .add_op(Embedding)
        .input(ids.id, 0, ids.shape)
        .input(table.id, 0, table.shape)
        .finish();
    GraphTensor::from_id(
        id,
        ShapeTracker::new(&[S::const_size(), H::const_size()]),
        ids.graph_ref,
    )
}
