//! The plans of one engine: for every
//! distinct matmul job of the graph (the weights' types and shapes, decode or batch), time a few
//! plans (threads, work split, tile sizes, 8-bit activations or f32) on the real weights and keep
//! the fastest. A plan other than the default must beat it by 10%, twice: in the search, and
//! again in a confirmation that times both alternately (a busy machine can crown a slow plan).
//!
//! Choices are cached in a JSON file (`$XDG_CACHE_HOME/qwen-luminal/plans.json`, else
//! `~/.cache/...`) under a key naming the machine (CPU model, SIMD path, threads) and the job (types
//! and shapes, which identify the model's matrices), so a later run of the same model on the same
//! machine compiles without timing anything. [`PlanOptions`] can turn the cache off or skip the
//! search (every job on its default plan: what the numerics tests pin, so that their results do
//! not depend on timings); the command line sets them from `QWEN_PLAN_CACHE` and
//! `QWEN_PLAN_SEARCH`.
//!
//! The file is shared by every run on the machine, several at once: a save merges under a lock
//! (`plans.json.lock`) and replaces the file by renaming a temporary file with a name of its
//! own, so readers see a whole file and no run's entries are lost. A cached plan is used only
//! if the search could have chosen it for the job (anything else, a hand edit or another
//! version's, is searched again), and a file that does not parse is never overwritten.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::cache::{self, job_key, machine_key};
use super::search::{self, base_plan, default_choice, Choice};
use crate::cpu::features::cpu_features;
use crate::cpu::matmul::WeightMatrix;
use crate::cpu::pool::ThreadPool;
use crate::trace::{self, Category, Tracer};

/// How the kernel search runs, as the run asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// False: every job keeps its default plan, nothing is timed.
    pub search: bool,
    /// The folder of the per-machine caches (`plans.json`, and the read test's
    /// `bandwidth.json`); `None`: nothing is cached.
    pub cache_dir: Option<PathBuf>,
}

impl Default for PlanOptions {
    /// Search, cache nothing.
    fn default() -> Self {
        PlanOptions {
            search: true,
            cache_dir: None,
        }
    }
}

impl PlanOptions {
    /// The plan cache file, when caching.
    pub fn plans_file(&self) -> Option<PathBuf> {
        Some(self.cache_dir.as_ref()?.join("plans.json"))
    }
}

/// The plans of one engine, with the cache behind them.
pub struct PlanBook {
    machine: String,
    threads: usize,
    path: Option<PathBuf>,
    cached: BTreeMap<String, Choice>,
    used: Mutex<BTreeMap<String, Choice>>,
    /// False: every job keeps its default plan.
    search: bool,
    /// Where each search is recorded as a span, when the run is traced.
    trace: Option<Arc<Tracer>>,
}

impl PlanBook {
    /// Loads the cache for this machine and `threads` (missing or unreadable cache, or an
    /// entry this build cannot read: nothing cached for it).
    pub fn load(threads: usize, options: &PlanOptions) -> Self {
        let machine = machine_key(threads);
        let path = options.plans_file();
        let cached = path
            .as_deref()
            .map(|p| cache::load(p, &machine))
            .unwrap_or_default();
        PlanBook {
            machine,
            threads,
            path,
            cached,
            used: Mutex::new(BTreeMap::new()),
            search: options.search,
            trace: None,
        }
    }

    /// Records every search in `trace` (a span named after the job), when given.
    pub fn traced(self, trace: Option<Arc<Tracer>>) -> Self {
        PlanBook { trace, ..self }
    }

    /// The plan for `ws` with `n_tokens` tokens (1: decode, more: batch), searched now unless
    /// cached.
    pub fn choose(&self, pool: &ThreadPool, ws: &[WeightMatrix<'_>], n_tokens: usize) -> Choice {
        let key = job_key(ws, n_tokens);
        // Every layer has the same jobs: search each once per compile.
        if let Some(c) = self.used.lock().ok().and_then(|u| u.get(&key).cloned()) {
            return c;
        }
        let choice = match self.cached.get(&key) {
            _ if !self.search => default_choice(base_plan(ws, n_tokens)),
            Some(c) if self.could_have_chosen(c, ws, n_tokens) => Choice {
                from_cache: true,
                ..c.clone()
            },
            _ => self.traced_search(pool, ws, n_tokens, &key),
        };
        if let Ok(mut used) = self.used.lock() {
            used.insert(key, choice.clone());
        }
        choice
    }

    /// How many of the jobs `keys` a compile would search (the search is on and the cache has
    /// no entry for them; an unusable entry is searched too, beyond this count).
    pub fn to_search(&self, keys: &BTreeSet<String>) -> usize {
        match self.search {
            true => keys
                .iter()
                .filter(|k| !self.cached.contains_key(*k))
                .count(),
            false => 0,
        }
    }

    /// How many jobs this engine has decided itself so far: searched, or left on the default
    /// where a search was too large or cut short (cached ones not counted).
    pub fn searched_now(&self) -> usize {
        self.used
            .lock()
            .map_or(0, |u| u.values().filter(|c| !c.from_cache).count())
    }

    /// Whether a cached choice is one this job's search could have made on this CPU: the cache
    /// file is outside the program (hand edits, other versions, a torn write), and a plan that
    /// is only plausible can still ask the kernels for sizes they were never tried with.
    fn could_have_chosen(&self, c: &Choice, ws: &[WeightMatrix<'_>], n_tokens: usize) -> bool {
        cpu_features().supports(c.plan.isa)
            && c.micros.is_none_or(|us| us.is_finite() && us >= 0.0)
            && search::candidates(ws, n_tokens, self.threads).contains(&c.plan)
    }

    fn traced_search(
        &self,
        pool: &ThreadPool,
        ws: &[WeightMatrix<'_>],
        n_tokens: usize,
        key: &str,
    ) -> Choice {
        let start = Instant::now();
        let choice = search::search(pool, ws, n_tokens, self.threads);
        if let Some(tracer) = &self.trace {
            let args = trace::args([
                ("job", key.into()),
                ("candidates", choice.candidates.into()),
                ("chosen", choice.plan.describe().into()),
                ("us_per_call", choice.micros.into()),
            ]);
            let name = format!("kernel search {key}");
            tracer.span(name, Category::Search, start, start.elapsed(), args);
        }
        choice
    }

    /// Merges the searched choices into the cache file (best effort: a read-only home only
    /// costs the next run a search). Only what this run searched: a default plan (a search cut
    /// short by Ctrl-C, or a job too large to search) proves nothing, and cached entries are
    /// there already.
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        let Ok(used) = self.used.lock() else { return };
        let searched: Vec<(&String, &Choice)> = used
            .iter()
            .filter(|(_, c)| !c.from_cache && c.candidates > 0)
            .collect();
        if !searched.is_empty() {
            cache::merge(path, &self.machine, &searched);
        }
    }

    /// One line per job: what was chosen and whether it was searched now or cached.
    pub fn describe(&self) -> Vec<String> {
        let Ok(used) = self.used.lock() else {
            return vec![];
        };
        used.iter()
            .map(|(key, c)| {
                let how = match (c.candidates, c.from_cache) {
                    (0, _) => "default (not searched)".to_string(),
                    (n, true) => format!("cached search of {n}"),
                    (n, false) => format!("searched {n} now"),
                };
                let time = c.micros.map_or(String::new(), |us| format!(", {us:.0} us"));
                format!("{key}: {} ({how}{time})", c.plan.describe())
            })
            .collect()
    }

    /// Where the cache lives, if anywhere.
    pub fn cache_path(&self) -> Option<&PathBuf> {
        self.path.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::Value;

    use super::*;
    use crate::cpu::matmul::MatmulPlan;
    use crate::cpu::plans::search::{BATCH_TOKENS, SHORT_BATCH_MAX, SHORT_BATCH_TOKENS};
    use crate::cpu::synth::{random_weights, Rng};
    use crate::quant::GgmlType;

    #[test]
    fn search_keeps_a_candidate_and_keys_name_the_job() {
        let pool = ThreadPool::new(2).unwrap();
        let data = random_weights(&mut Rng::new(3), GgmlType::Q8_0, 64, 128);
        let w = WeightMatrix::new(GgmlType::Q8_0, 64, 128, &data).unwrap();
        let book = PlanBook {
            machine: "test".into(),
            threads: 2,
            path: None,
            cached: BTreeMap::new(),
            used: Mutex::new(BTreeMap::new()),
            search: true,
            trace: None,
        };
        let decode = book.choose(&pool, &[w], 1);
        assert!(decode.candidates > 1 && decode.micros.is_some());
        let lines = book.describe();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("Q8_0:64x128 decode:"), "{}", lines[0]);
    }

    /// One token, a short batch (a verification pass of a few drafts) and a prompt are three
    /// jobs, each searched for itself: a short batch's plan is not the prompt's.
    #[test]
    fn decode_short_batches_and_prompts_are_separate_jobs() {
        let data = random_weights(&mut Rng::new(4), GgmlType::Q8_0, 64, 128);
        let w = WeightMatrix::new(GgmlType::Q8_0, 64, 128, &data).unwrap();
        let class = |n: usize| job_key(&[w], n).rsplit(' ').next().unwrap().to_string();
        let classes: Vec<String> = [1, 2, SHORT_BATCH_TOKENS, SHORT_BATCH_MAX, 9, BATCH_TOKENS]
            .into_iter()
            .map(class)
            .collect();
        assert_eq!(
            classes,
            ["decode", "short", "short", "short", "batch", "batch"]
        );
        let pool = ThreadPool::new(2).unwrap();
        let book = book(None, BTreeMap::new());
        book.choose(&pool, &[w], SHORT_BATCH_TOKENS);
        book.choose(&pool, &[w], BATCH_TOKENS);
        let lines = book.describe();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines.iter().any(|l| l.starts_with("Q8_0:64x128 short:")),
            "{lines:?}"
        );
    }

    #[test]
    fn without_search_jobs_keep_the_default_plan() {
        let pool = ThreadPool::new(2).unwrap();
        let data = random_weights(&mut Rng::new(5), GgmlType::Q8_0, 64, 128);
        let w = WeightMatrix::new(GgmlType::Q8_0, 64, 128, &data).unwrap();
        let mut cached = BTreeMap::new();
        let other = MatmulPlan {
            row_tile: 1,
            ..MatmulPlan::new()
        };
        cached.insert(job_key(&[w], 1), default_choice(other));
        let book = PlanBook {
            machine: "test".into(),
            threads: 2,
            path: None,
            cached,
            used: Mutex::new(BTreeMap::new()),
            search: false,
            trace: None,
        };
        for n in [1, 7] {
            let c = book.choose(&pool, &[w], n);
            assert_eq!((c.candidates, c.plan), (0, base_plan(&[w], n)), "n={n}");
        }
        assert!(!base_plan(&[w], 1).panel);
    }

    /// The cache file's layout: `{"machines": {machine key: {job key: choice}}}`.
    #[derive(Deserialize)]
    struct CacheFile {
        machines: BTreeMap<String, BTreeMap<String, Choice>>,
    }

    fn book(path: Option<PathBuf>, cached: BTreeMap<String, Choice>) -> PlanBook {
        PlanBook {
            machine: "test".into(),
            threads: 2,
            path,
            cached,
            used: Mutex::new(BTreeMap::new()),
            search: true,
            trace: None,
        }
    }

    #[test]
    fn a_cached_plan_the_search_could_not_have_chosen_is_searched_again() {
        let pool = ThreadPool::new(2).unwrap();
        let data = random_weights(&mut Rng::new(6), GgmlType::Q8_0, 64, 128);
        let w = WeightMatrix::new(GgmlType::Q8_0, 64, 128, &data).unwrap();
        let base = base_plan(&[w], 1);
        let bad = [
            MatmulPlan {
                rows_per_chunk: usize::MAX,
                ..base
            },
            MatmulPlan {
                row_tile: 0,
                ..base
            },
            MatmulPlan {
                token_tile: 1 << 20,
                ..base
            },
            MatmulPlan { threads: 3, ..base },
            MatmulPlan {
                isa: crate::cpu::Isa::Neon,
                ..base
            },
        ];
        for plan in bad {
            let cached = BTreeMap::from([(job_key(&[w], 1), default_choice(plan))]);
            let c = book(None, cached).choose(&pool, &[w], 1);
            assert!(!c.from_cache && c.candidates > 0, "{plan:?} was used");
        }
        let nan = Choice {
            micros: Some(f64::NAN),
            ..default_choice(base)
        };
        let c = book(None, BTreeMap::from([(job_key(&[w], 1), nan)])).choose(&pool, &[w], 1);
        assert!(!c.from_cache);
        // What the search offers is used as cached.
        let good = search::candidates(&[w], 1, 2)[3];
        let cached = BTreeMap::from([(job_key(&[w], 1), default_choice(good))]);
        let c = book(None, cached).choose(&pool, &[w], 1);
        assert!(c.from_cache && c.plan == good);
    }

    #[test]
    fn saving_keeps_entries_this_build_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plans.json");
        let theirs = serde_json::json!({
            "machines": {
                "other": {"job": {"plan": {"isa": "amx", "tiles": 9}}},
                "test": {"old job": {"plan": "from a future version"}}
            }
        });
        std::fs::write(&path, serde_json::to_vec(&theirs).unwrap()).unwrap();
        let b = book(Some(path.clone()), BTreeMap::new());
        assert!(b.cached.is_empty(), "an unreadable entry is not a plan");
        b.used
            .lock()
            .unwrap()
            .insert("new job".into(), searched(MatmulPlan::new()));
        b.save();
        let saved: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(saved["machines"]["other"], theirs["machines"]["other"]);
        assert_eq!(
            saved["machines"]["test"]["old job"],
            theirs["machines"]["test"]["old job"]
        );
        assert_eq!(saved["machines"]["test"]["new job"]["candidates"], 2);
    }

    #[test]
    fn a_file_that_does_not_parse_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plans.json");
        for bytes in [
            &b"{\"machines\": {\"torn"[..],
            b"[1, 2]",
            b"{\"machines\": 3}",
        ] {
            std::fs::write(&path, bytes).unwrap();
            let b = book(Some(path.clone()), BTreeMap::new());
            b.used
                .lock()
                .unwrap()
                .insert("job".into(), searched(MatmulPlan::new()));
            b.save();
            assert_eq!(std::fs::read(&path).unwrap(), bytes);
        }
    }

    fn searched(plan: MatmulPlan) -> Choice {
        Choice {
            plan,
            micros: Some(1.0),
            candidates: 2,
            from_cache: false,
        }
    }

    #[test]
    fn concurrent_saves_lose_no_entry() {
        // Eight engines (four machines, two jobs each) saving into one file at the same moment,
        // in many trials: every entry must survive every merge.
        let dir = tempfile::tempdir().unwrap();
        for trial in 0..30 {
            let path = dir.path().join(format!("plans-{trial}.json"));
            let books: Vec<PlanBook> = (0..8)
                .map(|i| {
                    let used = BTreeMap::from([(format!("job {i}"), searched(MatmulPlan::new()))]);
                    PlanBook {
                        machine: format!("machine {}", i % 4),
                        threads: 2,
                        path: Some(path.clone()),
                        cached: BTreeMap::new(),
                        used: Mutex::new(used),
                        search: true,
                        trace: None,
                    }
                })
                .collect();
            let start = std::sync::Barrier::new(books.len());
            std::thread::scope(|s| {
                for book in &books {
                    s.spawn(|| {
                        start.wait();
                        book.save();
                    });
                }
            });
            let file: CacheFile = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            for i in 0..8 {
                let machine = file.machines.get(&format!("machine {}", i % 4));
                let kept = machine.is_some_and(|m| m.contains_key(&format!("job {i}")));
                assert!(kept, "trial {trial}: job {i} lost");
            }
        }
        let others: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| !n.ends_with(".json") && !n.ends_with(".json.lock"))
            .collect();
        assert!(others.is_empty(), "left behind: {others:?}");
    }

    #[test]
    fn cached_choices_are_used_without_search() {
        let pool = ThreadPool::new(1).unwrap();
        let data = random_weights(&mut Rng::new(4), GgmlType::Q4_K, 8, 256);
        let w = WeightMatrix::new(GgmlType::Q4_K, 8, 256, &data).unwrap();
        // A plan the search offers, other than the default.
        let base = base_plan(&[w], 5);
        let plan = *search::candidates(&[w], 5, 1)
            .iter()
            .find(|p| **p != base && p.row_tile == 1)
            .unwrap();
        let mut cached = BTreeMap::new();
        cached.insert(job_key(&[w], 5), default_choice(plan));
        let book = PlanBook {
            machine: "test".into(),
            threads: 1,
            path: None,
            cached,
            used: Mutex::new(BTreeMap::new()),
            search: true,
            trace: None,
        };
        let c = book.choose(&pool, &[w], 5);
        assert!(c.from_cache);
        assert_eq!(c.plan, plan);
    }
}
