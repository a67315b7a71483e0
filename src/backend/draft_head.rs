//! What speculative decoding needs from a draft model that reads the trunk's hidden states
//! (a multi-token-prediction block): the [`DraftHead`] trait and one step's output.

use super::runner::EngineError;

/// A draft model run beside the trunk, over its own KV cache: each position reads a token and
/// a hidden state (the trunk's, or its own output row of the step before).
pub trait DraftHead {
    /// Runs `tokens`, each paired with a row of `hidden` (`[tokens, hidden]`), at the next
    /// positions; the last position's logits and output row.
    fn forward(&mut self, tokens: &[u32], hidden: &[f32]) -> Result<DraftStep, EngineError>;
    /// Positions in its KV cache.
    fn position(&self) -> usize;
    /// Keeps the first `len` positions (later entries are overwritten by later passes).
    fn truncate(&mut self, len: usize);
    /// Width of a hidden row.
    fn hidden_size(&self) -> usize;
    fn compile_time(&self) -> std::time::Duration;
}

/// One draft pass's result at its last position.
#[derive(Debug, Clone)]
pub struct DraftStep {
    /// Over the vocabulary: the prediction of the token after the next.
    pub logits: Vec<f32>,
    /// The block's normed output row, the hidden state of the next draft position.
    pub hidden: Vec<f32>,
}
