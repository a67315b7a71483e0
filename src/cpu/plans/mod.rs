//! Kernel search at compile time, in the spirit of luminal's search-based compiler: for every
//! distinct matmul job of the graph (the weights' types and shapes, decode or batch), time a few
//! plans on the real weights and keep the fastest ([`search`]), remembered per machine in a
//! cache file ([`cache`]) by the engine's [`PlanBook`] ([`book`]).

mod book;
mod cache;
mod search;

pub use book::{PlanBook, PlanOptions};
pub use cache::job_key;
pub(crate) use cache::machine_key;
pub use search::{Choice, BATCH_TOKENS, SHORT_BATCH_MAX, SHORT_BATCH_TOKENS};
