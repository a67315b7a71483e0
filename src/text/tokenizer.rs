//! Text ↔ token ids for Qwen3 models, from a Hugging Face `tokenizer.json` or from the tokenizer
//! a GGUF file embeds (`tokenizer.ggml.*`), both through the `tokenizers` crate so that the two
//! give the same ids.

mod error;
mod from_gguf;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use error::TokenizerError;

use crate::gguf::GgufFile;
use crate::text::stream::Decode;

/// Where a tokenizer came from, for the run report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A Hugging Face tokenizer.json file.
    TokenizerJson(PathBuf),
    /// The metadata of a GGUF file (its path, as the reader names it).
    Gguf(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::TokenizerJson(path) => write!(f, "{}", path.display()),
            Source::Gguf(path) => write!(f, "embedded in {path}"),
        }
    }
}

/// Whether special (control) tokens such as `<|im_end|>` appear in decoded text. Added tokens
/// that are not special, such as Qwen3's `<think>` and `</think>`, always appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Specials {
    Show,
    Skip,
}

/// A byte-level BPE tokenizer and its end-of-generation ids.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// A copy that reads special-token text literally, made on first use (`encode(.., false)`).
    literal: OnceLock<tokenizers::Tokenizer>,
    source: Source,
    n_tokens: usize,
    max_id: u32,
    eos_ids: Vec<u32>,
    bos: Option<u32>,
    /// Prepend `bos` when encoding (GGUF `tokenizer.ggml.add_bos_token`; tokenizer.json does this
    /// through its own post-processor instead).
    add_bos: bool,
}

impl Tokenizer {
    /// Loads a Hugging Face tokenizer.json.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Tokenizer, TokenizerError> {
        let path = path.as_ref();
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| TokenizerError::Load {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let eos_ids = named_ids(&inner, &from_gguf::END_OF_GENERATION);
        // tokenizer.json may leave gaps in its ids: count them and find the largest.
        let vocab = inner.get_vocab(true);
        let ids = IdRange {
            n_tokens: vocab.len(),
            max_id: vocab.values().copied().max().unwrap_or(0),
        };
        Ok(Self::assemble(
            inner,
            Source::TokenizerJson(path.to_path_buf()),
            ids,
            eos_ids,
            Bos::default(),
        ))
    }

    /// Builds the tokenizer a GGUF file embeds. Fails with [`TokenizerError::NotEmbedded`] when
    /// it has none (`tokenizer.ggml.model` "none", as in the vocabulary-512 fixtures).
    pub fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        let built = from_gguf::build(gguf)?;
        let mut eos_ids: Vec<u32> = built.eos.into_iter().collect();
        eos_ids.extend(named_ids(&built.tokenizer, &from_gguf::END_OF_GENERATION));
        // GGUF ids are the token positions, 0..n, unused padding rows included.
        let ids = IdRange {
            n_tokens: built.n_tokens,
            max_id: u32::try_from(built.n_tokens.saturating_sub(1)).unwrap_or(u32::MAX),
        };
        let bos = Bos {
            id: built.bos,
            add: built.add_bos,
        };
        Ok(Self::assemble(
            built.tokenizer,
            Source::Gguf(gguf.source().to_string()),
            ids,
            eos_ids,
            bos,
        ))
    }

    fn assemble(
        inner: tokenizers::Tokenizer,
        source: Source,
        ids: IdRange,
        mut eos_ids: Vec<u32>,
        bos: Bos,
    ) -> Tokenizer {
        eos_ids.sort_unstable();
        eos_ids.dedup();
        Tokenizer {
            literal: OnceLock::new(),
            source,
            n_tokens: ids.n_tokens,
            max_id: ids.max_id,
            eos_ids,
            bos: bos.id,
            add_bos: bos.add,
            inner,
        }
    }

    /// Token ids of `text`. With `allow_special`, special-token text such as `<|im_start|>` is
    /// read as that token (needed for chat prompts); without it, as plain text. Non-special added
    /// tokens (`<think>`) are matched either way, as llama.cpp does.
    pub fn encode(&self, text: &str, allow_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let tokenizer = if allow_special {
            &self.inner
        } else {
            self.literal.get_or_init(|| {
                let mut literal = self.inner.clone();
                literal.set_encode_special_tokens(true);
                literal
            })
        };
        let encoding = tokenizer
            .encode_fast(text, true)
            .map_err(|e| TokenizerError::Encode {
                message: e.to_string(),
            })?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        if let (true, Some(bos)) = (self.add_bos, self.bos) {
            ids.push(bos);
        }
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// The text of `ids`. Ids the tokenizer does not know are left out.
    pub fn decode(&self, ids: &[u32], specials: Specials) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, specials == Specials::Skip)
            .map_err(|e| TokenizerError::Decode {
                message: e.to_string(),
            })
    }

    /// The vocabulary entry of `id` in its byte-level form (a leading space shows as `Ġ`).
    pub fn token_str(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a vocabulary entry (byte-level form) or added token.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// How many ids the tokenizer defines.
    pub fn vocab_size(&self) -> usize {
        self.n_tokens
    }

    /// The largest id the tokenizer can produce or decode: it must be below the model's number of
    /// embedding rows, or the tokenizer does not belong to the model.
    pub fn max_id(&self) -> u32 {
        self.max_id
    }

    /// Ids that end generation, sorted: the metadata's eos id plus `<|im_end|>` and
    /// `<|endoftext|>` where the vocabulary has them (as llama.cpp does for Qwen3).
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.binary_search(&id).is_ok()
    }

    /// The beginning-of-sequence id, where the GGUF metadata names one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.n_tokens)
            .field("eos_ids", &self.eos_ids)
            .finish_non_exhaustive()
    }
}

/// Token ids to streamed text: the tokenizer's (special tokens left out), or the ids themselves
/// when there is no tokenizer (`--token-ids`).
pub fn text_decoder(
    tokenizer: Option<&Tokenizer>,
) -> impl Fn(&[u32]) -> Result<String, String> + '_ {
    move |ids: &[u32]| match tokenizer {
        Some(t) => t.decode(ids, Specials::Skip).map_err(|e| e.to_string()),
        None => Ok(ids.iter().map(|i| format!("{i} ")).collect()),
    }
}

/// Streaming shows the model's text: special tokens are skipped, `<think>` markers kept.
impl Decode for &Tokenizer {
    type Error = TokenizerError;
    fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        Tokenizer::decode(self, ids, Specials::Skip)
    }
}

/// How many ids a tokenizer defines and the largest.
struct IdRange {
    n_tokens: usize,
    max_id: u32,
}

/// The beginning-of-sequence token and whether encoding prepends it.
#[derive(Default)]
struct Bos {
    id: Option<u32>,
    add: bool,
}

fn named_ids(tokenizer: &tokenizers::Tokenizer, names: &[&str]) -> Vec<u32> {
    names
        .iter()
        .filter_map(|name| tokenizer.token_to_id(name))
        .collect()
}
