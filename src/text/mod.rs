//! Text in and out: tokenizers, chat templates, streamed decoding and the reasoning display.

pub mod chat;
pub mod console;
pub mod display;
pub mod stream;
pub mod think;
pub mod tokenizer;
