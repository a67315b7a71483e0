//! Which drafted tokens the trunk accepts: the standard speculative sampling rule (Leviathan et
//! al. 2023; Chen et al. 2023) with the draft's distribution `q` one-hot at its greedy pick.
//!
//! At draft position `i` the trunk's distribution `p_i` (the sampler's, penalties and filters
//! applied, with the accepted drafts in the history) accepts draft `d` with probability
//! `min(1, p_i(d) / q(d)) = p_i(d)`; on rejection the token is drawn from the residual
//! `max(0, p_i - q)`, renormalised, which is `p_i` without `d`. When every draft is accepted the
//! token after them is drawn from the last row's `p`. Each kept token is then distributed
//! exactly as plain sampling from `p` would give it. Greedy sampling is the special case in
//! which `p_i` is one-hot: a draft is accepted exactly when it is the trunk's argmax.

use crate::sampler::{draw_from, Sampler};

/// The verdict on one round's drafts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// How many drafts, from the first, are kept.
    pub accepted: usize,
    /// The trunk's own token after them: the correction of the first rejected draft, or the
    /// bonus token after a fully accepted round.
    pub next: u32,
}

/// Judges `drafts` against the trunk's logits `rows` (`[drafts.len() + 1][vocab]`: row `i`
/// predicts the token after the `i`-th token of the verified run) with `history` the tokens
/// before the first draft (prompt, generated, and the round's first token).
pub fn judge(drafts: &[u32], rows: &[f32], sampler: &mut Sampler, history: &[u32]) -> Verdict {
    let vocab = rows.len() / (drafts.len() + 1);
    let mut seen = history.to_vec();
    for (i, &d) in drafts.iter().enumerate() {
        let p = sampler.distribution(&rows[i * vocab..(i + 1) * vocab], &seen);
        let p_d = p.iter().find(|t| t.0 == d).map_or(0.0, |t| t.1);
        // Accept with probability p(d); a certain token needs no draw (greedy consumes none).
        let accept = p_d >= 1.0 || (p_d > 0.0 && sampler.uniform() < p_d);
        if !accept {
            let residual: Vec<(u32, f64)> = p.into_iter().filter(|t| t.0 != d).collect();
            let next = match residual.len() {
                1 => residual[0].0,
                _ => draw_from(&residual, sampler.uniform()).unwrap_or(0),
            };
            return Verdict { accepted: i, next };
        }
        seen.push(d);
    }
    let last = &rows[drafts.len() * vocab..];
    Verdict {
        accepted: drafts.len(),
        next: sampler.sample(last, &seen),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::SamplerConfig;

    fn sampler(temperature: f32, seed: u64) -> Sampler {
        Sampler::new(SamplerConfig {
            temperature,
            seed: Some(seed),
            ..Default::default()
        })
        .unwrap()
    }

    /// Rows of a 4-token vocabulary whose argmax is `best[i]`.
    fn rows(best: &[u32]) -> Vec<f32> {
        best.iter()
            .flat_map(|&b| (0..4).map(move |t| if t == b { 2.0 } else { 0.0 }))
            .collect()
    }

    #[test]
    fn greedy_accepts_the_argmax_prefix() {
        let mut s = sampler(0.0, 1);
        let all = judge(&[1, 2, 3], &rows(&[1, 2, 3, 0]), &mut s, &[]);
        assert_eq!(
            all,
            Verdict {
                accepted: 3,
                next: 0
            }
        );
        let partial = judge(&[1, 2, 3], &rows(&[1, 0, 3, 0]), &mut s, &[]);
        assert_eq!(
            partial,
            Verdict {
                accepted: 1,
                next: 0
            }
        );
        let none = judge(&[1, 2], &rows(&[3, 2, 0]), &mut s, &[]);
        assert_eq!(
            none,
            Verdict {
                accepted: 0,
                next: 3
            }
        );
        let nothing_drafted = judge(&[], &rows(&[2]), &mut s, &[]);
        assert_eq!(
            nothing_drafted,
            Verdict {
                accepted: 0,
                next: 2
            }
        );
    }

    /// Sampling: the first kept token is distributed as `p` whatever the draft, and the rule
    /// accepts a draft about `p(d)` of the time (chi-square at 99.9% and a 4-sigma band).
    #[test]
    fn sampling_keeps_the_trunk_distribution() {
        let logits = [1.0f32, 0.0, 2.0, -1.0];
        let s0 = sampler(1.0, 7);
        let p = s0.distribution(&logits, &[]);
        let prob = |t: u32| p.iter().find(|x| x.0 == t).map_or(0.0, |x| x.1);
        let rows: Vec<f32> = logits.iter().chain(logits.iter()).copied().collect();
        let n = 40_000;
        for draft in [0u32, 1, 2, 3] {
            let mut s = sampler(1.0, 100 + u64::from(draft));
            let mut counts = [0usize; 4];
            let mut accepted = 0;
            for _ in 0..n {
                let v = judge(&[draft], &rows, &mut s, &[]);
                let first = if v.accepted == 1 { draft } else { v.next };
                accepted += v.accepted;
                counts[first as usize] += 1;
            }
            let chi2: f64 = (0..4u32)
                .map(|t| {
                    let e = n as f64 * prob(t);
                    (counts[t as usize] as f64 - e).powi(2) / e
                })
                .sum();
            // 3 degrees of freedom: P(chi2 > 16.27) = 0.001.
            assert!(
                chi2 < 16.27,
                "draft {draft}: {counts:?} vs {p:?} (chi2 {chi2})"
            );
            let (pa, sd) = (
                prob(draft),
                (prob(draft) * (1.0 - prob(draft)) / n as f64).sqrt(),
            );
            let rate = accepted as f64 / n as f64;
            assert!(
                (rate - pa).abs() < 4.0 * sd,
                "draft {draft}: rate {rate} vs {pa}"
            );
        }
    }
}
