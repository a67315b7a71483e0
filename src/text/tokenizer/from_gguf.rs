//! Builds the byte-level BPE tokenizer from a GGUF file's own metadata (`tokenizer.ggml.*`, as
//! llama.cpp's convert script writes it) into a `tokenizers::Tokenizer` set up like Qwen's
//! tokenizer.json: NFC, the split regex of the file's pre-tokenizer (Qwen2/Qwen3 `qwen2`,
//! Qwen3.5/3.6 `qwen35`), byte-level BPE, byte-level decoding.

use std::collections::hash_map::Entry;

use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::TokenizerError;
use crate::gguf::{GgufError, GgufFile};

/// Qwen2/Qwen3 pre-tokenizer split, verbatim from Qwen's tokenizer.json. llama.cpp's
/// LLAMA_VOCAB_PRE_TYPE_QWEN2 spells the contractions `'[sS]|'[tT]|...` instead of `(?i:...)`;
/// we keep Qwen's spelling so that ids equal tokenizer.json's even for characters that case-fold
/// onto ASCII (U+017F, U+212A).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen3.5/3.6 pre-tokenizer split, verbatim from Qwen3.5's tokenizer.json (llama.cpp's
/// LLAMA_VOCAB_PRE_TYPE_QWEN35, `tokenizer.ggml.pre` "qwen35"): Qwen2's, with combining marks
/// (`\p{M}`) counted as part of a word, so that a letter and its accents stay one piece. Same
/// contraction spelling as [`QWEN2_SPLIT`], for the same reason.
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's token types (`llama_token_type`): which tokens are matched whole in the text.
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

/// Names llama.cpp treats as end of generation besides `tokenizer.ggml.eos_token_id`
/// (Qwen3's chat turns end with `<|im_end|>`, base-model text with `<|endoftext|>`).
pub(super) const END_OF_GENERATION: [&str; 2] = ["<|im_end|>", "<|endoftext|>"];

/// The tokenizer and the special-token facts the metadata states.
pub(super) struct Embedded {
    pub tokenizer: tokenizers::Tokenizer,
    pub n_tokens: usize,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
}

pub(super) fn build(gguf: &GgufFile) -> Result<Embedded, TokenizerError> {
    let name = gguf.source().to_string();
    let meta = |err: GgufError| TokenizerError::Metadata {
        gguf: name.clone(),
        err,
    };
    let regex = check_kind(gguf)?;
    let tokens = gguf.get_str_array("tokenizer.ggml.tokens").map_err(meta)?;
    let types = token_types(gguf, tokens.len())?;
    let merges = parse_merges(gguf)?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab(&name, tokens)?, merges)
        .build()
        .map_err(|e| TokenizerError::Build {
            gguf: name.clone(),
            message: e.to_string(),
        })?;

    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    let byte_level = ByteLevel::new(false, false, false);
    let split = Split::new(
        SplitPattern::Regex(regex.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| TokenizerError::Build {
        gguf: name.clone(),
        message: e.to_string(),
    })?;
    tokenizer
        .with_normalizer(Some(NFC))
        .with_pre_tokenizer(Some(Sequence::new(vec![split.into(), byte_level.into()])))
        .with_post_processor(Some(byte_level))
        .with_decoder(Some(byte_level));
    tokenizer.add_tokens(&added_tokens(tokens, &types));

    Ok(Embedded {
        tokenizer,
        n_tokens: tokens.len(),
        bos: special_id(gguf, "tokenizer.ggml.bos_token_id", tokens.len())?,
        eos: special_id(gguf, "tokenizer.ggml.eos_token_id", tokens.len())?,
        add_bos: optional(gguf, gguf.get_bool("tokenizer.ggml.add_bos_token"))?.unwrap_or(false),
    })
}

/// Only byte-level BPE with a pre-tokenizer whose split we know (another split regex would
/// give other ids); returns that split.
fn check_kind(gguf: &GgufFile) -> Result<&'static str, TokenizerError> {
    let gguf_name = gguf.source().to_string();
    let model = optional(gguf, gguf.get_str("tokenizer.ggml.model"))?;
    match model {
        None | Some("none") => {
            let model = model.map_or("missing".to_string(), |m| format!("\"{m}\""));
            return Err(TokenizerError::NotEmbedded {
                gguf: gguf_name,
                model,
            });
        }
        Some("gpt2") => {}
        Some(other) => {
            return Err(TokenizerError::UnsupportedModel {
                gguf: gguf_name,
                model: other.to_string(),
            })
        }
    }
    // llama.cpp reads a missing pre-tokenizer as "default" (GPT-2's regex).
    let pre = optional(gguf, gguf.get_str("tokenizer.ggml.pre"))?.unwrap_or("default");
    match pre {
        "qwen2" => Ok(QWEN2_SPLIT),
        "qwen35" => Ok(QWEN35_SPLIT),
        _ => Err(TokenizerError::UnsupportedPre {
            gguf: gguf_name,
            pre: pre.to_string(),
        }),
    }
}

/// A metadata value that may be absent; present with the wrong type is still an error.
fn optional<T>(gguf: &GgufFile, got: Result<T, GgufError>) -> Result<Option<T>, TokenizerError> {
    match got {
        Ok(v) => Ok(Some(v)),
        Err(GgufError::MissingKey { .. }) => Ok(None),
        Err(err) => Err(TokenizerError::Metadata {
            gguf: gguf.source().to_string(),
            err,
        }),
    }
}

/// Token types, one per token; llama.cpp reads a missing array as all normal.
fn token_types(gguf: &GgufFile, n_tokens: usize) -> Result<Vec<i32>, TokenizerError> {
    let Some(types) = optional(gguf, gguf.get_i32_array("tokenizer.ggml.token_type"))? else {
        return Ok(vec![1; n_tokens]);
    };
    if types.len() != n_tokens {
        return Err(TokenizerError::TypeCount {
            gguf: gguf.source().to_string(),
            tokens: n_tokens,
            types: types.len(),
        });
    }
    Ok(types.to_vec())
}

/// Every token, added ones included, keeps its GGUF id: `add_tokens` then reuses these ids
/// instead of numbering added tokens after the BPE vocabulary.
fn vocab(gguf: &str, tokens: &[String]) -> Result<Vocab, TokenizerError> {
    let mut vocab = Vocab::with_capacity(tokens.len());
    for (id, token) in (0u32..).zip(tokens) {
        match vocab.entry(token.clone()) {
            Entry::Vacant(slot) => {
                slot.insert(id);
            }
            Entry::Occupied(first) => {
                return Err(TokenizerError::DuplicateToken {
                    gguf: gguf.to_string(),
                    token: token.clone(),
                    first: *first.get(),
                    second: id,
                })
            }
        }
    }
    Ok(vocab)
}

/// Merges are stored as "left right"; byte-level tokens never hold a plain space, but like
/// llama.cpp we look for the separator after the first character.
fn parse_merges(gguf: &GgufFile) -> Result<Merges, TokenizerError> {
    let merges =
        gguf.get_str_array("tokenizer.ggml.merges")
            .map_err(|err| TokenizerError::Metadata {
                gguf: gguf.source().to_string(),
                err,
            })?;
    merges
        .iter()
        .enumerate()
        .map(|(index, merge)| {
            split_merge(merge).ok_or_else(|| TokenizerError::BadMerge {
                gguf: gguf.source().to_string(),
                index,
                merge: merge.clone(),
            })
        })
        .collect()
}

fn split_merge(merge: &str) -> Option<(String, String)> {
    let first_len = merge.chars().next()?.len_utf8();
    let space = first_len + merge[first_len..].find(' ')?;
    let (left, right) = (&merge[..space], &merge[space + 1..]);
    (!right.is_empty()).then(|| (left.to_string(), right.to_string()))
}

/// Control tokens become special added tokens (`<|im_start|>`: matched whole, skipped when
/// decoding without specials), user-defined ones plain added tokens (`<think>`: matched whole,
/// always shown). Neither is NFC-normalized before matching, as in tokenizer.json.
fn added_tokens(tokens: &[String], types: &[i32]) -> Vec<AddedToken> {
    tokens
        .iter()
        .zip(types)
        .filter(|(_, &ty)| ty == TYPE_CONTROL || ty == TYPE_USER_DEFINED)
        .map(|(token, &ty)| AddedToken::from(token.clone(), ty == TYPE_CONTROL).normalized(false))
        .collect()
}

fn special_id(
    gguf: &GgufFile,
    key: &'static str,
    n_tokens: usize,
) -> Result<Option<u32>, TokenizerError> {
    let Some(id) = optional(gguf, gguf.get_u32(key))? else {
        return Ok(None);
    };
    if id as usize >= n_tokens {
        return Err(TokenizerError::SpecialIdOutOfRange {
            gguf: gguf.source().to_string(),
            key,
            id,
            n_tokens,
        });
    }
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::split_merge;

    #[test]
    fn merges_split_at_the_first_space_after_the_first_character() {
        let pair = |l: &str, r: &str| Some((l.to_string(), r.to_string()));
        assert_eq!(split_merge("Ġ Ġ"), pair("Ġ", "Ġ"));
        assert_eq!(split_merge("i n"), pair("i", "n"));
        assert_eq!(split_merge("  x"), pair(" ", "x"));
        assert_eq!(split_merge("ab"), None);
        assert_eq!(split_merge("a "), None);
        assert_eq!(split_merge(""), None);
    }
}
