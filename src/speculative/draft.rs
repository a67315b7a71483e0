//! The multi-token-prediction block's side of speculative decoding: its KV cache kept in step
//! with the trunk, and the draft chain.
//!
//! Position `p` of the block reads the token `x[p]` and the trunk's hidden state `h[p-1]` (zeros
//! at position 0), as llama.cpp's draft-mtp pairs them. Pairs whose tokens the trunk has kept
//! wait here until the next draft, which runs them in one pass together with its first
//! position: the round's first token `t` (sampled, not yet run by the trunk) with the trunk's
//! last hidden state. Its logits give the first draft; each further draft reads the previous
//! draft and the block's own output row. The drafts' positions are then cut from the block's
//! cache: the trunk's hidden states replace them once it has verified them.

use crate::backend::{DraftHead, EngineError};
use crate::sampler::argmax;

/// The block and the pairs it has not run yet.
pub struct Drafter {
    head: Box<dyn DraftHead>,
    /// Tokens kept by the trunk that the block has not run, each with the trunk's hidden state
    /// of the position before (`[pending][hidden]`).
    pending: Vec<u32>,
    pending_h: Vec<f32>,
    /// The trunk's hidden state at its last position.
    last_h: Vec<f32>,
    /// Whether the block has run the current round's first token.
    ran_first: bool,
}

impl Drafter {
    pub fn new(head: Box<dyn DraftHead>) -> Self {
        let h = head.hidden_size();
        Drafter {
            head,
            pending: vec![],
            pending_h: vec![],
            last_h: vec![0.0; h],
            ran_first: false,
        }
    }

    /// A new sequence: the trunk ran `prompt` from position 0 and gave `hidden` (a row per
    /// token). The block's cache starts over.
    pub fn start(&mut self, prompt: &[u32], hidden: &[f32]) {
        self.head.truncate(0);
        self.pending.clear();
        self.pending_h.clear();
        self.last_h.iter_mut().for_each(|x| *x = 0.0);
        self.ran_first = false;
        self.kept(prompt, hidden);
    }

    /// The trunk kept `tokens` (after those it had) and gave a hidden row for each.
    fn kept(&mut self, tokens: &[u32], hidden: &[f32]) {
        let h = self.last_h.len();
        for (&t, row) in tokens.iter().zip(hidden.chunks_exact(h)) {
            self.pending.push(t);
            self.pending_h.extend_from_slice(&self.last_h);
            self.last_h.copy_from_slice(row);
        }
    }

    /// Up to `n` draft tokens to follow `first` (the round's first token, which the trunk has
    /// not run); greedy, as llama.cpp's drafts are.
    pub fn draft(&mut self, first: u32, n: usize) -> Result<Vec<u32>, EngineError> {
        if n == 0 {
            return Ok(vec![]);
        }
        let mut tokens = std::mem::take(&mut self.pending);
        let mut hidden = std::mem::take(&mut self.pending_h);
        tokens.push(first);
        hidden.extend_from_slice(&self.last_h);
        let mut step = self.head.forward(&tokens, &hidden)?;
        self.ran_first = true;
        let kept = self.head.position();
        let mut drafts = vec![argmax(&step.logits)];
        while drafts.len() < n {
            let last = drafts[drafts.len() - 1];
            step = self.head.forward(&[last], &step.hidden)?;
            drafts.push(argmax(&step.logits));
        }
        self.head.truncate(kept);
        Ok(drafts)
    }

    /// The trunk verified `[first, drafts...]` and kept `run` (`first` and the accepted
    /// drafts), with `hidden` a row for each token of the verified pass.
    pub fn verified(&mut self, run: &[u32], hidden: &[f32]) {
        let h = self.last_h.len();
        if std::mem::take(&mut self.ran_first) {
            // The block has run `first` with the hidden state before it: only move past it.
            self.last_h.copy_from_slice(&hidden[..h]);
            self.kept(&run[1..], &hidden[h..run.len() * h]);
        } else {
            self.kept(run, &hidden[..run.len() * h]);
        }
    }
}
