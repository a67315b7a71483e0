//! Self-speculative decoding with a file's multi-token-prediction block (`--mtp N`): the block
//! drafts up to `N` tokens from the trunk's last hidden state, the trunk verifies them in one
//! batched pass, and the accepted prefix (plus the trunk's own next token) is kept. Rejected
//! drafts leave nothing behind: the KV cache is cut back and the recurrent states restored from
//! the copies the verification pass kept after each of its tokens.
//!
//! - `draft`: the block's side: its KV cache fed the trunk's hidden rows (each token paired
//!   with the hidden state of the position before, as llama.cpp's draft-mtp does) and the
//!   greedy draft chain.
//! - `accept`: which drafts the trunk's distributions accept (the standard speculative
//!   sampling rule; exact equality when greedy).
//! - `decode`: the generation loop that drives both.
//! - `setup`: the block found (or an error that says the file has none), trunk and block built.
//! - `stats`: what the report shows: drafted, accepted, rejected, the verification passes'
//!   and the drafts' times.

pub mod accept;
pub mod decode;
pub mod draft;
pub mod setup;
pub mod stats;

pub use decode::{generate, SpeculativeOptions};
pub use draft::Drafter;
pub use stats::SpeculativeStats;
