//! Through the built binary: generation, chat, errors and robustness, every weight type, --inspect, progress on a terminal and the timing report.

#[path = "../common/mod.rs"]
mod common;

mod chat;
mod compare;
mod errors;
mod generate;
mod hybrid_chat;
mod inspect;
mod mtp;
#[cfg(unix)]
mod progress;
mod robustness;
mod timing;
mod vision_language;
mod weight_types;
