//! What may be compared with what: the same model, the same thread count, the same prompt
//! length and decode count, test by test. What differs is refused in one line (or, with
//! `--force`, turned into a warning); what only may matter (another machine, an interrupted
//! run, llama-bench's decode from an empty context) is a warning.

use thiserror::Error;

use super::input::{Content, Engine, Phase, Source, Test};

/// Why two files cannot be compared.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("cannot compare {a} with {b}: {}; --force compares anyway", reasons.join("; "))]
    Differ {
        a: String,
        b: String,
        reasons: Vec<String>,
    },
    #[error("cannot compare {a} with {b}: {what}")]
    Shapes { a: String, b: String, what: String },
}

/// Tests paired for comparison, and what the reader should know about them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pairing {
    /// Indices into A's and B's tests.
    pub pairs: Vec<(usize, usize)>,
    pub warnings: Vec<String>,
    /// Tests of either side that have no counterpart.
    pub not_compared: Vec<String>,
}

/// Checks that `b` may be compared with `a` and pairs their tests (none for sweeps).
pub fn pair(a: &Source, b: &Source, force: bool) -> Result<Pairing, Refusal> {
    let mut out = Pairing::default();
    let mut reasons = model_differences(a, b);
    machine_warnings(a, b, &mut out.warnings);
    for s in [a, b] {
        if s.interrupted {
            out.warnings.push(format!(
                "{} holds an interrupted run: its figures cover only the steps completed",
                s.path
            ));
        }
        out.warnings.extend(s.notes.iter().cloned());
    }
    match (&a.content, &b.content) {
        (Content::Tests(ta), Content::Tests(tb)) => {
            for phase in [Phase::Prefill, Phase::Decode] {
                pair_phase(phase, (a, ta), (b, tb), force, &mut out, &mut reasons);
            }
        }
        (Content::Sweep(sa), Content::Sweep(sb)) => {
            let mut differ = |what: &str, x: usize, y: usize| {
                if x != y {
                    reasons.push(format!("{what} differ ({x} and {y})"));
                }
            };
            differ("thread counts", sa.threads, sb.threads);
            differ("prompt chunks (--ubatch)", sa.ubatch, sb.ubatch);
            differ("decode counts (-t)", sa.tg, sb.tg);
        }
        _ => {
            let sweep = |s: &Source| matches!(s.content, Content::Sweep(_));
            let (sweeps, other) = if sweep(a) { (a, b) } else { (b, a) };
            return Err(Refusal::Shapes {
                a: a.path.clone(),
                b: b.path.clone(),
                what: format!(
                    "{} is a --sweep report and {} is not: compare sweeps with sweeps",
                    sweeps.path, other.path
                ),
            });
        }
    }
    if reasons.is_empty() {
        Ok(out)
    } else if force {
        let forced = reasons
            .into_iter()
            .map(|r| format!("compared with --force although {r}"));
        out.warnings.extend(forced);
        Ok(out)
    } else {
        Err(Refusal::Differ {
            a: a.path.clone(),
            b: b.path.clone(),
            reasons,
        })
    }
}

/// The model must be the same: the digests when both files have one, else the file names and
/// parameter counts (and sizes, between files of one engine).
fn model_differences(a: &Source, b: &Source) -> Vec<String> {
    let (ma, mb) = (&a.model, &b.model);
    if let (Some(da), Some(db)) = (&ma.digest, &mb.digest) {
        return if da == db {
            vec![]
        } else {
            vec![format!(
                "the models differ ({} digest {}..., {} digest {}...)",
                ma.base_name(),
                &da[..da.len().min(12)],
                mb.base_name(),
                &db[..db.len().min(12)]
            )]
        };
    }
    let mut out = Vec::new();
    if ma.base_name() != mb.base_name() {
        out.push(format!(
            "the model files differ ({} and {})",
            ma.base_name(),
            mb.base_name()
        ));
    }
    if let (Some(x), Some(y)) = (ma.n_params, mb.n_params) {
        if x != y {
            out.push(format!("the models differ ({x} and {y} parameters)"));
        }
    }
    if let (Some(x), Some(y), true) = (ma.size, mb.size, a.engine == b.engine) {
        if x != y {
            out.push(format!(
                "the model files differ in size ({x} and {y} bytes)"
            ));
        }
    }
    out
}

fn machine_warnings(a: &Source, b: &Source, warnings: &mut Vec<String>) {
    let (Some(x), Some(y)) = (&a.machine, &b.machine) else {
        return;
    };
    let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    if squeeze(&x.cpu) != squeeze(&y.cpu) {
        warnings.push(format!(
            "the machines differ: {} ran on {}, {} on {}",
            a.path, x.cpu, b.path, y.cpu
        ));
    } else if let (Some(cx), Some(cy)) = (x.cores, y.cores) {
        if cx != cy {
            warnings.push(format!(
                "the machines differ: {} had {cx} logical cores, {} had {cy}",
                a.path, b.path
            ));
        }
    }
}

/// Pairs the tests of one phase. Every test of the side with fewer must find its counterpart
/// (same size, threads and depth); the other side's extra tests (a llama-bench file lists many)
/// are left out with a note.
fn pair_phase(
    phase: Phase,
    (a, ta): (&Source, &[Test]),
    (b, tb): (&Source, &[Test]),
    force: bool,
    out: &mut Pairing,
    reasons: &mut Vec<String>,
) {
    let of = |tests: &[Test]| -> Vec<usize> {
        (0..tests.len())
            .filter(|&i| tests[i].phase == phase)
            .collect()
    };
    let (ia, ib) = (of(ta), of(tb));
    if ia.is_empty() || ib.is_empty() {
        let (has, lacks) = if ia.is_empty() { (b, a) } else { (a, b) };
        if !(ia.is_empty() && ib.is_empty()) {
            out.not_compared.push(format!(
                "{} of {} ({} has no {} test)",
                phase.name(),
                has.path,
                lacks.path,
                phase.name()
            ));
        }
        return;
    }
    // Look from the side with fewer tests; `flip` when that is B.
    let flip = ib.len() < ia.len();
    let (small, large, ts, tl) = match flip {
        false => (&ia, &ib, ta, tb),
        true => (&ib, &ia, tb, ta),
    };
    let (ss, sl) = if flip { (b, a) } else { (a, b) };
    let mut used = vec![false; large.len()];
    for &i in small {
        let t = &ts[i];
        let found = counterpart(t, large, tl);
        match found {
            Match::Exact(j) => used[j] = true,
            Match::EmptyContext(j) => {
                used[j] = true;
                let (q, l) = if tl[large[j]].engine == Engine::LlamaBench {
                    (t, &tl[large[j]])
                } else {
                    (&tl[large[j]], t)
                };
                out.warnings.push(format!(
                    "decode contexts differ: qwen's {} follows its {}-token prompt, \
                     llama-bench's {} starts from an empty context",
                    q.label(),
                    q.depth,
                    l.label()
                ));
            }
            Match::None { reason, closest } => {
                reasons.push(reason.describe(t, ss, closest.map(|j| (&tl[large[j]], sl))));
                match closest {
                    Some(j) if force => used[j] = true,
                    _ => continue,
                }
            }
        }
        let j = match found {
            Match::Exact(j) | Match::EmptyContext(j) => j,
            Match::None { closest, .. } => closest.expect("paired only with a closest test"),
        };
        out.pairs.push(match flip {
            false => (i, large[j]),
            true => (large[j], i),
        });
    }
    for (j, _) in used.iter().enumerate().filter(|(_, u)| !**u) {
        let t = &tl[large[j]];
        out.not_compared.push(format!(
            "{} of {} (no counterpart in {})",
            t.label(),
            sl.path,
            ss.path
        ));
    }
    out.pairs.sort_unstable();
}

enum Match {
    Exact(usize),
    /// A qwen decode and a llama-bench decode from an empty context (llama-bench's tg test).
    EmptyContext(usize),
    None {
        reason: Mismatch,
        closest: Option<usize>,
    },
}

#[derive(Clone, Copy)]
enum Mismatch {
    Threads,
    Size,
    Depth,
}

impl Mismatch {
    fn describe(self, t: &Test, ts: &Source, other: Option<(&Test, &Source)>) -> String {
        let Some((o, os)) = other else {
            return format!("{} of {} has no counterpart", t.label(), ts.path);
        };
        let (x, y) = (&ts.path, &os.path);
        match (self, t.phase) {
            (Mismatch::Threads, _) => format!(
                "thread counts differ ({x} {}: {}, {y} {}: {})",
                t.label(),
                t.threads,
                o.label(),
                o.threads
            ),
            (Mismatch::Size, Phase::Prefill) => format!(
                "prompt lengths differ ({x}: {}, {y}: {})",
                t.n_tokens, o.n_tokens
            ),
            (Mismatch::Size, Phase::Decode) => format!(
                "decode counts differ ({x}: {}, {y}: {})",
                t.n_tokens, o.n_tokens
            ),
            (Mismatch::Depth, _) => format!(
                "contexts before {} differ ({x}: {} positions, {y}: {}): the prompt lengths differ",
                t.label(),
                t.depth,
                o.depth
            ),
        }
    }
}

/// The test of `large` (indices into `tests`) that `t` compares with.
fn counterpart(t: &Test, large: &[usize], tests: &[Test]) -> Match {
    let cands: Vec<(usize, &Test)> = large.iter().map(|&i| &tests[i]).enumerate().collect();
    let fits = |o: &Test| o.n_tokens == t.n_tokens && o.threads == t.threads;
    if let Some((j, _)) = cands.iter().find(|(_, o)| fits(o) && o.depth == t.depth) {
        return Match::Exact(*j);
    }
    // llama-bench's plain tg test stands for decode with a short context.
    let empty = |o: &Test| {
        t.phase == Phase::Decode
            && o.engine != t.engine
            && [o, t]
                .iter()
                .any(|x| x.engine == Engine::LlamaBench && x.depth == 0)
    };
    if let Some((j, _)) = cands.iter().find(|(_, o)| fits(o) && empty(o)) {
        return Match::EmptyContext(*j);
    }
    let distance = |o: &Test| {
        (
            o.n_tokens.abs_diff(t.n_tokens),
            o.threads != t.threads,
            o.depth.abs_diff(t.depth),
        )
    };
    let closest = cands
        .iter()
        .min_by_key(|(_, o)| distance(o))
        .map(|(j, _)| *j);
    let reason = match closest.map(|j| cands[j].1) {
        Some(o) if o.n_tokens == t.n_tokens && o.threads != t.threads => Mismatch::Threads,
        Some(o) if o.n_tokens == t.n_tokens => Mismatch::Depth,
        _ => Mismatch::Size,
    };
    // Without --force the closest is only named in the refusal; with it, compared.
    Match::None { reason, closest }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::input::{Machine, ModelId, Run};

    fn test(engine: Engine, phase: Phase, n: usize, depth: usize, threads: usize) -> Test {
        Test {
            phase,
            n_tokens: n,
            depth,
            threads,
            engine,
            runs: vec![Run {
                tokens_per_sample: 1,
                samples_ns: vec![1_000_000],
            }],
            kernels: vec![],
        }
    }

    fn qwen(path: &str, prompt: usize, gen: usize, threads: usize) -> Source {
        Source {
            path: path.into(),
            engine: Engine::Qwen,
            model: ModelId {
                filename: "models/tiny.gguf".into(),
                digest: Some("d1".into()),
                n_params: Some(5),
                size: Some(10),
                kind: None,
            },
            machine: Some(Machine {
                cpu: "CPU X".into(),
                cores: Some(16),
            }),
            interrupted: false,
            items: 1,
            content: Content::Tests(vec![
                test(Engine::Qwen, Phase::Prefill, prompt, 0, threads),
                test(Engine::Qwen, Phase::Decode, gen, prompt, threads),
            ]),
            notes: vec![],
        }
    }

    fn llama(path: &str, tests: Vec<Test>) -> Source {
        Source {
            path: path.into(),
            engine: Engine::LlamaBench,
            model: ModelId {
                filename: "/nonexistent/elsewhere/tiny.gguf".into(),
                digest: None,
                n_params: Some(5),
                size: Some(8),
                kind: Some("qwen3 Q8_0".into()),
            },
            machine: Some(Machine {
                cpu: "CPU  X".into(),
                cores: None,
            }),
            interrupted: false,
            items: tests.len(),
            content: Content::Tests(tests),
            notes: vec![],
        }
    }

    fn refused(a: &Source, b: &Source) -> String {
        pair(a, b, false).unwrap_err().to_string()
    }

    #[test]
    fn the_same_set_up_pairs_both_phases() {
        let p = pair(&qwen("a", 64, 32, 4), &qwen("b", 64, 32, 4), false).unwrap();
        assert_eq!(p.pairs, [(0, 0), (1, 1)]);
        assert!(p.warnings.is_empty() && p.not_compared.is_empty(), "{p:?}");
    }

    #[test]
    fn different_set_ups_are_refused_in_one_line_unless_forced() {
        let a = qwen("a.json", 64, 32, 4);
        let err = refused(&a, &qwen("b.json", 128, 32, 4));
        assert!(
            err.contains("prompt lengths differ (a.json: 64, b.json: 128)"),
            "{err}"
        );
        assert!(err.contains("--force"), "{err}");
        let err = refused(&a, &qwen("b.json", 64, 16, 4));
        assert!(
            err.contains("decode counts differ (a.json: 32, b.json: 16)"),
            "{err}"
        );
        let err = refused(&a, &qwen("b.json", 64, 32, 8));
        assert!(err.contains("thread counts differ"), "{err}");
        let mut other = qwen("b.json", 64, 32, 4);
        other.model.digest = Some("d2".into());
        let err = refused(&a, &other);
        assert!(err.contains("the models differ"), "{err}");
        other.model.digest = None;
        other.model.filename = "models/other.gguf".into();
        let err = refused(&a, &other);
        assert!(
            err.contains("model files differ (tiny.gguf and other.gguf)"),
            "{err}"
        );
        assert!(!err.contains('\n'));

        let forced = pair(&a, &qwen("b.json", 64, 32, 8), true).unwrap();
        assert_eq!(forced.pairs, [(0, 0), (1, 1)]);
        assert!(forced
            .warnings
            .iter()
            .any(|w| w.contains("--force although")));
    }

    #[test]
    fn a_llama_bench_menu_pairs_what_matches_and_notes_the_rest() {
        let lb = llama(
            "lb.json",
            vec![
                test(Engine::LlamaBench, Phase::Prefill, 64, 0, 4),
                test(Engine::LlamaBench, Phase::Prefill, 512, 0, 4),
                test(Engine::LlamaBench, Phase::Decode, 32, 0, 4),
                test(Engine::LlamaBench, Phase::Decode, 32, 4096, 4),
            ],
        );
        let q = qwen("q.json", 64, 32, 4);
        let p = pair(&lb, &q, false).unwrap();
        assert_eq!(p.pairs, [(0, 0), (2, 1)]);
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("decode contexts differ")),
            "{p:?}"
        );
        assert_eq!(p.not_compared.len(), 2, "{p:?}");
        // No machine warning: the CPU names differ only in spacing.
        assert!(!p.warnings.iter().any(|w| w.contains("machines")));

        // Decode at depth pairs with llama-bench's -d test of that depth, exactly.
        let deep = qwen("deep.json", 4096, 32, 4);
        let lb_deep = llama(
            "lbd.json",
            vec![test(Engine::LlamaBench, Phase::Decode, 32, 4096, 4)],
        );
        let p = pair(&deep, &lb_deep, false).unwrap();
        assert_eq!(p.pairs, [(1, 0)]);
        assert!(p.warnings.is_empty(), "{p:?}");

        // A qwen test with no counterpart in the menu is refused.
        let err = refused(&qwen("q.json", 128, 32, 4), &lb);
        assert!(
            err.contains("prompt lengths differ (q.json: 128, lb.json: 64)"),
            "{err}"
        );
    }

    #[test]
    fn machines_and_interruptions_are_warnings() {
        let a = qwen("a.json", 8, 8, 4);
        let mut b = qwen("b.json", 8, 8, 4);
        b.machine = Some(Machine {
            cpu: "CPU Y".into(),
            cores: Some(16),
        });
        b.interrupted = true;
        let p = pair(&a, &b, false).unwrap();
        assert!(
            p.warnings.iter().any(|w| w.contains("machines differ")),
            "{p:?}"
        );
        assert!(
            p.warnings.iter().any(|w| w.contains("interrupted")),
            "{p:?}"
        );
    }
}
