//! Tokenizers, UTF-8-safe streaming and chat templates.

#[path = "../common/mod.rs"]
mod common;

mod chat_template;
mod chat_template_qwen35;
mod qwen35_tokenizer;
mod stream;
mod tokenizer;
