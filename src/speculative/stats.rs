//! Counts and times of one speculative generation, as the report shows them.

use std::time::Duration;

use serde::Serialize;

use crate::timing::Samples;

/// What `--mtp` did over one generation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SpeculativeStats {
    /// Tokens drafted per round at most (`--mtp N`).
    pub draft_max: usize,
    /// Verification passes of the trunk (one per round).
    pub rounds: usize,
    /// Drafted tokens, accepted and rejected (`drafted = accepted + rejected`).
    pub drafted: usize,
    pub accepted: usize,
    pub rejected: usize,
    /// Rounds whose drafts were all accepted.
    pub full_accepts: usize,
    /// Verification passes by their length (`[t, drafts...]`): `verify_ns[k]` holds the
    /// passes of `k + 1` tokens, so `verify_ns[0]` are plain decode steps.
    pub verify_ns: Vec<Vec<u64>>,
    /// The draft chain of each round (the block's passes), in ns.
    pub draft_ns: Vec<u64>,
}

impl SpeculativeStats {
    pub fn new(draft_max: usize) -> Self {
        SpeculativeStats {
            draft_max,
            verify_ns: vec![vec![]; draft_max + 1],
            ..Default::default()
        }
    }

    /// A round drafted `drafted` tokens, of which the trunk accepted `accepted`; its passes
    /// took `draft` and `verify`.
    pub fn round(&mut self, drafted: usize, accepted: usize, draft: Duration, verify: Duration) {
        self.rounds += 1;
        self.drafted += drafted;
        self.accepted += accepted;
        self.rejected += drafted - accepted;
        self.full_accepts += usize::from(drafted > 0 && accepted == drafted);
        if let Some(by_len) = self.verify_ns.get_mut(drafted) {
            by_len.push(verify.as_nanos() as u64);
        }
        if drafted > 0 {
            self.draft_ns.push(draft.as_nanos() as u64);
        }
    }

    /// Accepted over drafted (0 when nothing was drafted).
    pub fn acceptance_rate(&self) -> f64 {
        match self.drafted {
            0 => 0.0,
            d => self.accepted as f64 / d as f64,
        }
    }

    /// Mean time of the verification passes of `len` tokens, in ns.
    pub fn mean_verify_ns(&self, len: usize) -> Option<f64> {
        let s = self.verify_ns.get(len.checked_sub(1)?)?;
        (!s.is_empty()).then(|| s.iter().sum::<u64>() as f64 / s.len() as f64)
    }

    /// All verification passes, for their mean and spread.
    pub fn verify_samples(&self) -> Samples {
        let mut samples = Samples::new();
        for ns in self.verify_ns.iter().flatten() {
            samples.record(Duration::from_nanos(*ns));
        }
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_add_up() {
        let mut s = SpeculativeStats::new(3);
        let ms = Duration::from_millis;
        s.round(3, 3, ms(1), ms(10));
        s.round(3, 1, ms(1), ms(12));
        s.round(0, 0, ms(0), ms(8));
        assert_eq!((s.rounds, s.drafted, s.accepted, s.rejected), (3, 6, 4, 2));
        assert_eq!(s.full_accepts, 1);
        assert!((s.acceptance_rate() - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(s.mean_verify_ns(4), Some(11e6));
        assert_eq!(s.mean_verify_ns(1), Some(8e6));
        assert_eq!(s.mean_verify_ns(2), None);
        assert_eq!(s.draft_ns.len(), 2);
        assert_eq!(s.verify_samples().len(), 3);
    }
}
