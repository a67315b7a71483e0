//! What loading a model decides besides the file itself: the tokenizer and chat template to
//! use, and how many positions the KV cache holds.

pub mod context;
pub mod resolve;
