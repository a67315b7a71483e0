//! Setting a speculative run up: the file's prediction block found (or a one-line error that
//! says the file has none), the trunk and the block built side by side.

use thiserror::Error;

use crate::backend::{self, EngineError, EngineOptions, Runner};
use crate::gguf::GgufFile;
use crate::model::config::{MtpBlock, Qwen3Config};
use crate::settings::BackendChoice;

use super::draft::Drafter;

#[derive(Debug, Error)]
pub enum SetupError {
    #[error(
        "--mtp needs a multi-token-prediction block, and {file} has none ({arch} with \
         nextn_predict_layers = 0 or absent; Qwen3.5/3.6 files converted with their MTP layers \
         have one): run without --mtp"
    )]
    NoBlock { file: String, arch: &'static str },
    #[error(
        "--mtp needs the multi-token-prediction block of {file} whole, and tensor '{tensor}' \
         is missing (nextn_predict_layers says there is a block; the file was converted \
         without it): run without --mtp"
    )]
    IncompleteBlock { file: String, tensor: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The prediction block `--mtp` runs, or why there is none.
pub fn block(file: &GgufFile, config: &Qwen3Config) -> Result<MtpBlock, SetupError> {
    let declared = config.hybrid.as_ref().is_some_and(|h| h.mtp_layers > 0);
    if let Some(tensor) = MtpBlock::missing_tensor(file, config).filter(|_| declared) {
        return Err(SetupError::IncompleteBlock {
            file: file.source().to_string(),
            tensor,
        });
    }
    MtpBlock::of(file, config).ok_or_else(|| SetupError::NoBlock {
        file: file.source().to_string(),
        arch: config.arch.name(),
    })
}

/// The trunk (keeping its hidden rows) and the drafter over the block.
pub fn open(
    choice: BackendChoice,
    file: &GgufFile,
    config: &Qwen3Config,
    options: EngineOptions,
) -> Result<(Box<dyn Runner>, Drafter), SetupError> {
    let mtp = block(file, config)?;
    let (trunk, head) = backend::open_drafting(choice, file, config, &mtp, options)?;
    Ok((trunk, Drafter::new(head)))
}
