//! Everything that can go wrong loading or using a tokenizer, each error saying what to do.

use thiserror::Error;

use crate::gguf::GgufError;

/// A tokenizer that cannot be loaded, or text that cannot be encoded or decoded.
#[derive(Debug, Error)]
pub enum TokenizerError {
    #[error(
        "cannot load tokenizer '{path}': {message}; pass a Hugging Face tokenizer.json \
         (the one published with the model)"
    )]
    Load { path: String, message: String },

    #[error(
        "'{gguf}' embeds no tokenizer (tokenizer.ggml.model is {model}); give --tokenizer \
         tokenizer.json, or pass the prompt as --token-ids"
    )]
    NotEmbedded { gguf: String, model: String },

    #[error(
        "'{gguf}' embeds a '{model}' tokenizer; only byte-level BPE ('gpt2', as in Qwen models) \
         is supported: give --tokenizer tokenizer.json instead"
    )]
    UnsupportedModel { gguf: String, model: String },

    #[error(
        "'{gguf}' embeds a BPE tokenizer with pre-tokenizer '{pre}'; only 'qwen2' (Qwen2/Qwen3) \
         and 'qwen35' (Qwen3.5/3.6) are supported: give --tokenizer tokenizer.json instead"
    )]
    UnsupportedPre { gguf: String, pre: String },

    #[error("reading the tokenizer embedded in '{gguf}': {err}")]
    Metadata { gguf: String, err: GgufError },

    #[error(
        "'{gguf}' has {tokens} tokens but {types} token types (tokenizer.ggml.token_type); the \
         file is corrupt: give --tokenizer tokenizer.json instead"
    )]
    TypeCount {
        gguf: String,
        tokens: usize,
        types: usize,
    },

    #[error(
        "'{gguf}': merge {index} (tokenizer.ggml.merges) is {merge:?}, not two tokens separated \
         by a space; the file is corrupt: give --tokenizer tokenizer.json instead"
    )]
    BadMerge {
        gguf: String,
        index: usize,
        merge: String,
    },

    #[error(
        "'{gguf}': token {token:?} appears twice in tokenizer.ggml.tokens (ids {first} and \
         {second}); give --tokenizer tokenizer.json instead"
    )]
    DuplicateToken {
        gguf: String,
        token: String,
        first: u32,
        second: u32,
    },

    #[error(
        "'{gguf}': {key} is {id} but the vocabulary has {n_tokens} tokens; the file is corrupt"
    )]
    SpecialIdOutOfRange {
        gguf: String,
        key: &'static str,
        id: u32,
        n_tokens: usize,
    },

    #[error("building the tokenizer embedded in '{gguf}' failed: {message}; give --tokenizer tokenizer.json instead")]
    Build { gguf: String, message: String },

    #[error("cannot encode the text: {message}")]
    Encode { message: String },

    #[error("cannot decode token ids: {message}")]
    Decode { message: String },
}
