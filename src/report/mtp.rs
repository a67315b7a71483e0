//! What speculative decoding did (`--mtp`), as the report shows it: counts, the acceptance
//! rate, and the verification passes' time by their length beside a plain decode step's.

use serde::Serialize;

use crate::speculative::SpeculativeStats;

/// The `mtp` object of the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct MtpReport {
    /// Tokens drafted per round at most (`--mtp N`).
    pub draft_max: usize,
    /// Rounds: one verification pass of the model each.
    pub rounds: usize,
    pub drafted: usize,
    pub accepted: usize,
    pub rejected: usize,
    /// `accepted / drafted`.
    pub acceptance_rate: f64,
    /// Rounds whose drafts were all accepted.
    pub full_accepts: usize,
    /// Tokens kept per verification pass (accepted drafts + the model's own token).
    pub tokens_per_pass: f64,
    /// Mean time of the block's draft chain per round, ns.
    pub draft_avg_ns: Option<f64>,
    /// The verification passes by length: `n_tokens = 1` is a plain decode step.
    pub verify: Vec<VerifyTime>,
}

/// The verification passes of one length.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyTime {
    pub n_tokens: usize,
    pub count: usize,
    pub avg_ns: f64,
    pub samples_ns: Vec<u64>,
}

impl MtpReport {
    pub fn new(s: &SpeculativeStats) -> Self {
        let verify = s
            .verify_ns
            .iter()
            .enumerate()
            .filter(|(_, ns)| !ns.is_empty())
            .map(|(i, ns)| VerifyTime {
                n_tokens: i + 1,
                count: ns.len(),
                avg_ns: ns.iter().sum::<u64>() as f64 / ns.len() as f64,
                samples_ns: ns.clone(),
            })
            .collect();
        let draft_avg_ns = (!s.draft_ns.is_empty())
            .then(|| s.draft_ns.iter().sum::<u64>() as f64 / s.draft_ns.len() as f64);
        MtpReport {
            draft_max: s.draft_max,
            rounds: s.rounds,
            drafted: s.drafted,
            accepted: s.accepted,
            rejected: s.rejected,
            acceptance_rate: s.acceptance_rate(),
            full_accepts: s.full_accepts,
            tokens_per_pass: match s.rounds {
                0 => 0.0,
                r => (s.accepted + r) as f64 / r as f64,
            },
            draft_avg_ns,
            verify,
        }
    }

    /// The summary's lines: counts and rate, then the pass times (each length against the
    /// one-token pass, a plain decode step, when the run had one).
    pub fn lines(&self) -> String {
        let mut out = format!(
            "mtp      {} rounds of up to {} drafts: {} drafted, {} accepted ({:.1}%), {} rejected; \
             {:.2} tokens per pass",
            self.rounds,
            self.draft_max,
            self.drafted,
            self.accepted,
            100.0 * self.acceptance_rate,
            self.rejected,
            self.tokens_per_pass
        );
        let plain = self
            .verify
            .iter()
            .find(|v| v.n_tokens == 1)
            .map(|v| v.avg_ns);
        let passes: Vec<String> = self
            .verify
            .iter()
            .map(|v| {
                let ratio = plain.filter(|_| v.n_tokens > 1).map_or(String::new(), |p| {
                    format!(" = {:.2}x a 1-token pass", v.avg_ns / p)
                });
                format!(
                    "{} tok {:.2} ms x{}{ratio}",
                    v.n_tokens,
                    v.avg_ns / 1e6,
                    v.count
                )
            })
            .collect();
        out.push_str(&format!("\nmtp      verify passes: {}", passes.join(", ")));
        if let Some(d) = self.draft_avg_ns {
            out.push_str(&format!("; drafts {:.2} ms per round", d / 1e6));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_rates_and_pass_times() {
        let mut s = SpeculativeStats::new(2);
        let ms = Duration::from_millis;
        s.round(2, 2, ms(1), ms(12));
        s.round(2, 0, ms(1), ms(14));
        s.round(0, 0, ms(0), ms(10));
        let r = MtpReport::new(&s);
        assert_eq!((r.rounds, r.drafted, r.accepted, r.rejected), (3, 4, 2, 2));
        assert!((r.acceptance_rate - 0.5).abs() < 1e-12);
        assert!((r.tokens_per_pass - 5.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.verify.len(), 2);
        assert_eq!((r.verify[1].n_tokens, r.verify[1].avg_ns), (3, 13e6));
        let text = r.lines();
        assert!(
            text.contains("4 drafted, 2 accepted (50.0%), 2 rejected"),
            "{text}"
        );
        assert!(
            text.contains("3 tok 13.00 ms x2 = 1.30x a 1-token pass"),
            "{text}"
        );
    }
}
