//! A file's multi-token-prediction ("nextn") block: where it is and which of its optional
//! tensors the file has (llama.cpp's `load_block_mtp`: the embedding table, the head and the
//! head's norm fall back to the trunk's when absent).

use serde::Serialize;

use super::super::tensors::MtpTensor;
use super::expected::layer_tensors;
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
    /// The first prediction block of `file` (llama.cpp runs one), if its config has one and the
    /// file holds every tensor it needs.
    pub fn of(file: &GgufFile, config: &Qwen3Config) -> Option<MtpBlock> {
        let blocks = config.hybrid.as_ref()?.mtp_layers;
        if blocks == 0 || Self::missing_tensor(file, config).is_some() {
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

    /// The first tensor the file's first prediction block needs and lacks. The config check
    /// leaves them optional (llama.cpp loads them only to run the block); `--mtp` needs them.
    pub fn missing_tensor(file: &GgufFile, config: &Qwen3Config) -> Option<String> {
        let layer = config.layers;
        let block = layer_tensors(config, layer)
            .into_iter()
            .map(|t| t.in_layer(layer));
        let nextn = MtpTensor::ALL
            .into_iter()
            .filter(|t| t.required())
            .map(|t| t.in_layer(layer));
        block.chain(nextn).find(|name| file.tensor(name).is_none())
    }
}
