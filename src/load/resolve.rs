//! Which model file, tokenizer and chat template a run uses: `-m FILE`, else the model
//! `setup/setup.sh` downloads; the `--tokenizer` given, else what the GGUF file embeds, else
//! `setup/tokenizer.json` when it exists; each checked against the model before any work is done.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::gguf::GgufFile;
use crate::model::config::Qwen3Config;
use crate::text::chat::{ChatError, ChatTemplate};
use crate::text::tokenizer::{Source, Tokenizer, TokenizerError};

/// The model `-m` defaults to: what `setup/setup.sh` downloads.
pub const DEFAULT_MODEL: &str = "setup/qwen3-4b.gguf";

/// Where `--tokenizer` looks when it is not given.
pub const DEFAULT_TOKENIZER: &str = "setup/tokenizer.json";

#[derive(Debug, Error)]
pub enum ResolveError {
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),

    #[error(
        "the tokenizer ({tokenizer}) has ids up to {max_id} but '{model}' has {vocab} token \
         embeddings: the tokenizer belongs to another model; pass the model's own with --tokenizer"
    )]
    VocabMismatch {
        tokenizer: String,
        max_id: u32,
        model: String,
        vocab: usize,
    },

    #[error(
        "no chat template: '{model}' has none (tokenizer.chat_template){beside}; pass \
         --tokenizer with the model's tokenizer_config.json next to it, or prompt without --chat, \
         --system, --no-think or --interactive"
    )]
    NoTemplate { model: String, beside: String },

    #[error(transparent)]
    Chat(#[from] ChatError),

    #[error(
        "no model: the default model {DEFAULT_MODEL} (Qwen3-4B Q8_0, about 4.3 GB) is not \
         there; download it with setup/setup.sh, or pass -m FILE with any Qwen3 GGUF file"
    )]
    NoDefaultModel,
}

/// A missing default model is the first thing a fresh clone meets: say what it is and how to
/// get it. Any other path is left to the GGUF reader's own messages.
pub fn model(path: &Path) -> Result<&Path, ResolveError> {
    let missing =
        matches!(std::fs::metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    if missing && path == Path::new(DEFAULT_MODEL) {
        return Err(ResolveError::NoDefaultModel);
    }
    Ok(path)
}

/// How the prompt is given, which decides whether a tokenizer is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Text prompts: a tokenizer must be found.
    Required,
    /// `--token-ids`: a tokenizer is used for the streamed text when the flag names one or the
    /// model embeds one; the `setup/` default is a guess, so it is not used.
    Optional,
}

/// The tokenizer for `gguf`: `explicit` (which must load), else the embedded one, else
/// [`DEFAULT_TOKENIZER`] when it exists. The file's own comes before the default because the
/// default is a guess: Qwen3's tokenizer.json fits a Qwen3.5 file's larger vocabulary, so the
/// vocabulary check would not catch it, and every id would be wrong. Checked against the model's
/// vocabulary.
pub fn tokenizer(
    explicit: Option<&Path>,
    gguf: &GgufFile,
    config: &Qwen3Config,
    need: Need,
) -> Result<Option<Tokenizer>, ResolveError> {
    let found = match (explicit, need) {
        (Some(path), _) => Some(Tokenizer::from_file(path)?),
        (None, Need::Required) => match Tokenizer::from_gguf(gguf) {
            Err(TokenizerError::NotEmbedded { .. }) if Path::new(DEFAULT_TOKENIZER).is_file() => {
                Some(Tokenizer::from_file(DEFAULT_TOKENIZER)?)
            }
            embedded => Some(embedded?),
        },
        (None, Need::Optional) => Tokenizer::from_gguf(gguf).ok(),
    };
    if let Some(t) = &found {
        check_vocab(t, gguf, config)?;
    }
    Ok(found)
}

/// A tokenizer whose ids reach past the embedding table would index out of it.
fn check_vocab(t: &Tokenizer, gguf: &GgufFile, config: &Qwen3Config) -> Result<(), ResolveError> {
    if (t.max_id() as usize) < config.vocab {
        return Ok(());
    }
    Err(ResolveError::VocabMismatch {
        tokenizer: t.source().to_string(),
        max_id: t.max_id(),
        model: gguf.source().to_string(),
        vocab: config.vocab,
    })
}

/// The chat template: the model's own, else the `tokenizer_config.json` beside the tokenizer file.
pub fn chat_template(gguf: &GgufFile, tokenizer: &Tokenizer) -> Result<ChatTemplate, ResolveError> {
    match ChatTemplate::from_gguf(gguf) {
        Err(ChatError::NotInGguf { .. }) => {}
        other => return Ok(other?),
    }
    let beside = match tokenizer.source() {
        Source::TokenizerJson(path) => Some(config_beside(path)),
        Source::Gguf(_) => None,
    };
    match beside {
        Some(config) if config.is_file() => Ok(ChatTemplate::from_tokenizer_config(&config)?),
        _ => Err(ResolveError::NoTemplate {
            model: gguf.source().to_string(),
            beside: beside.map_or(String::new(), |p| {
                format!(" and there is no {}", p.display())
            }),
        }),
    }
}

fn config_beside(tokenizer_json: &Path) -> PathBuf {
    tokenizer_json.with_file_name("tokenizer_config.json")
}
