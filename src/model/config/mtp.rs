//! A file's multi-token-prediction ("nextn") block: where it is and which of its optional
//! tensors the file has (llama.cpp's `load_block_mtp`: the embedding table, the head and the
//! head's norm fall back to the trunk's when absent).

use serde::Serialize;

use super::super::tensors::MtpTensor;
use super::types::Qwen3Config;
use crate::gguf::GgufFile;

/// The multi-token-prediction block a file holds after its trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MtpBlock {
    /// Its block index: the trunk's depth (`blk.{layer}.`).
    pub layer: usize,
    /// `nextn.embed_tokens` present (otherwise `token_embd` is read).
    pub own_embedding: bool,
    /// `nextn.shared_head_head` present (otherwise the trunk's head).
    pub own_head: bool,
    /// `nextn.shared_head_norm` present (otherwise `output_norm`).
    pub own_head_norm: bool,
}

impl MtpBlock {
    /// The first prediction block of `file` (llama.cpp runs one), if its config has any; the
    /// config check has made sure its required tensors are there.
    pub fn of(file: &GgufFile, config: &Qwen3Config) -> Option<MtpBlock> {
        let blocks = config.hybrid.as_ref()?.mtp_layers;
        if blocks == 0 {
            return None;
        }
        let layer = config.layers;
        let has = |t: MtpTensor| file.tensor(&t.in_layer(layer)).is_some();
        Some(MtpBlock {
            layer,
            own_embedding: has(MtpTensor::EmbedTokens),
            own_head: has(MtpTensor::SharedHeadHead),
            own_head_norm: has(MtpTensor::SharedHeadNorm),
        })
    }
}
