//! Loading a model for a run: the GGUF file and its Qwen3 configuration, the tokenizer and chat
//! template to use, and how many positions the KV cache holds.

pub mod context;
pub mod resolve;

use std::time::Instant;

use anyhow::Result;

use crate::gguf::GgufFile;
use crate::model::config::Qwen3Config;
use crate::settings::{Command, PromptSource, Settings};
use crate::text::chat::Chat;
use crate::text::tokenizer::Tokenizer;

use resolve::Need;

/// The model with its tokenizer, chat template and context size, ready to compile.
pub struct Loaded {
    pub file: GgufFile,
    pub config: Qwen3Config,
    pub tokenizer: Option<Tokenizer>,
    /// Set when the prompt goes through the chat template.
    pub chat: Option<Chat>,
    pub max_context: usize,
    pub load_ms: f64,
    /// What tells this model file apart from another ([`GgufFile::digest`]).
    pub model_digest: String,
}

impl Loaded {
    /// End-of-sequence ids: the tokenizer's; without one (`--token-ids`), the metadata's.
    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.tokenizer {
            Some(t) => t.eos_ids().to_vec(),
            None => self
                .file
                .get_u32("tokenizer.ggml.eos_token_id")
                .map_or_else(|_| vec![], |id| vec![id]),
        }
    }
}

/// Reads the model, finds its tokenizer (and chat template) and chooses the context size.
pub fn load(settings: &Settings) -> Result<Loaded> {
    let started = Instant::now();
    let model = &settings.model;
    let file = GgufFile::open(resolve::model(&model.path)?)?;
    let config = Qwen3Config::from_gguf(&file)?;
    let mtp = config.hybrid.as_ref().filter(|h| h.mtp_layers > 0);
    if let Some(h) = mtp.filter(|_| settings.generation.mtp.is_none()) {
        let how = match crate::model::config::MtpBlock::missing_tensor(&file, &config) {
            Some(tensor) => format!("the file lacks its tensor '{tensor}', so it is not run"),
            None => "it runs only with --mtp (speculative decoding)".to_string(),
        };
        crate::errln!(
            "notice: {} holds a multi-token-prediction block after its {} layers \
             (nextn_predict_layers = {}); {how}",
            model.path.display(),
            config.layers,
            h.mtp_layers
        );
    }
    if settings.generation.mtp.is_some() {
        crate::speculative::setup::block(&file, &config)?;
    }
    if config.arch.is_vision_language() {
        crate::errln!("{}", vision_notice(&model.path, &file, &config));
    }
    // A sweep runs random ids: it needs no tokenizer either.
    let need = match (&settings.prompt, settings.command) {
        (PromptSource::TokenIds(_), _) | (_, Command::Sweep(_)) => Need::Optional,
        _ => Need::Required,
    };
    let tokenizer = resolve::tokenizer(model.tokenizer.as_deref(), &file, &config, need)?;
    let chat = match (&tokenizer, &settings.chat) {
        (Some(t), Some(chat)) => Some(Chat::new(
            resolve::chat_template(&file, t)?,
            chat.system.clone(),
            chat.enable_thinking,
        )),
        _ => None,
    };
    let choice = context::choose(
        model.ctx_size,
        &config,
        file.file_size(),
        context::memory()?,
    )?;
    if let Some(notice) = &choice.notice {
        crate::errln!("{notice}");
    }
    let model_digest = file.digest();
    Ok(Loaded {
        file,
        config,
        tokenizer,
        chat,
        max_context: choice.size,
        load_ms: started.elapsed().as_secs_f64() * 1e3,
        model_digest,
    })
}

/// What a Qwen3-VL language model's user learns: text only, and what of the image path the
/// file holds goes unread (its deepstack layers add image features, none for text; an image
/// encoder's tensors, `v.*` and `mm.*`, when a file carries them).
fn vision_notice(path: &std::path::Path, file: &GgufFile, config: &Qwen3Config) -> String {
    let encoder = file
        .tensors()
        .iter()
        .filter(|t| t.name().starts_with("v.") || t.name().starts_with("mm."))
        .count();
    let mut unread = vec![];
    if config.deepstack_layers > 0 {
        unread.push(format!("{} deepstack layers", config.deepstack_layers));
    }
    if encoder > 0 {
        unread.push(format!("{encoder} image-encoder tensors"));
    }
    let unread = match unread.is_empty() {
        true => String::new(),
        false => format!(" ({} unused)", unread.join(", ")),
    };
    format!(
        "notice: {} is the language model of a vision-language model ({}): text prompts only; \
         images need its vision encoder, which this program does not run{unread}",
        path.display(),
        config.arch
    )
}
