//! Tokenizers, UTF-8-safe streaming and chat templates.

#[path = "../common/mod.rs"]
mod common;

mod chat_template;
mod stream;
mod tokenizer;
