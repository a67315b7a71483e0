//! Kernel search at compile time, in the spirit of luminal's search-based compiler: for every
//! distinct matmul job of the graph (the weights' types and shapes, decode or batch), time a few
//! plans (threads, work split, tile sizes, 8-bit activations or f32) on the real weights and keep
//! the fastest. A plan other than the default must beat it by 10%, twice: in the search, and
//! again in a confirmation that times both alternately (a busy machine can crown a slow plan).
//!
//! Choices are cached in a JSON file (`$XDG_CACHE_HOME/qwen-luminal/plans.json`, else
//! `~/.cache/...`) under a key naming the machine (CPU model, SIMD path, threads) and the job (types
//! and shapes, which identify the model's matrices), so a later run of the same model on the same
//! machine compiles without timing anything. `QWEN_PLAN_CACHE=off` disables the file;
//! `QWEN_PLAN_SEARCH=off` skips the search and runs every job on its default plan (what the
//! numerics tests pin, so their results do not depend on timings).
//!
//! The file is shared by every run on the machine, several at once: a save merges under a lock
//! (`plans.json.lock`) and replaces the file by renaming a temporary file with a name of its
//! own, so readers see a whole file and no run's entries are lost. A cached plan is used only
//! if the search could have chosen it for the job (anything else, a hand edit or another
//! version's, is searched again), and a file that does not parse is never overwritten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cpu::dot::panel;
use crate::cpu::features::cpu_features;
use crate::cpu::matmul::{matmul_multi, MatmulPlan, Scratch, WeightMatrix};
use crate::cpu::pool::ThreadPool;
use crate::cpu::synth::{random_input, Rng};
use crate::cpu::tune;
use crate::trace::{self, Category, Tracer};

/// Tokens a batch (prompt) plan is timed with.
pub const BATCH_TOKENS: usize = 64;

/// Time spent on each candidate (at least three calls, one when a call is slow).
const PER_PLAN: Duration = Duration::from_millis(6);

/// Search time per job: candidates are tried in order (the default plan first) until it is
/// spent, so a large model's first compile stays within seconds.
const PER_JOB: Duration = Duration::from_millis(1500);

/// How much faster than the default plan another must be to replace it.
const DEFAULT_MARGIN: f64 = 0.9;

/// A call this slow is timed once: its duration is far above timer and scheduling noise.
const SLOW_CALL: Duration = Duration::from_millis(20);

/// Weights read per timed call above which a batch job is not searched (the LM head of a large
/// vocabulary: one call costs more than the search could save) and keeps the default plan.
const MAX_SEARCH_BYTES: usize = 64 << 20;

/// The plan used for one job and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Choice {
    pub plan: MatmulPlan,
    /// Median time of one call with this plan, when it was searched.
    pub micros: Option<f64>,
    /// Candidates timed (0: the default plan, not searched).
    pub candidates: usize,
    #[serde(skip)]
    pub from_cache: bool,
}

/// The plans of one engine, with the cache behind them.
pub struct PlanBook {
    machine: String,
    threads: usize,
    path: Option<PathBuf>,
    cached: BTreeMap<String, Choice>,
    used: Mutex<BTreeMap<String, Choice>>,
    /// False: every job keeps its default plan (`QWEN_PLAN_SEARCH=off`).
    search: bool,
    /// Where each search is recorded as a span, when the run is traced.
    trace: Option<Arc<Tracer>>,
}

impl PlanBook {
    /// Loads the cache for this machine and `threads` (missing or unreadable cache, or an
    /// entry this build cannot read: nothing cached for it).
    pub fn load(threads: usize) -> Self {
        let machine = machine_key(threads);
        let path = cache_path();
        let cached = path
            .as_deref()
            .and_then(|p| read_cache(p).ok())
            .and_then(|mut file| machines(&mut file)?.remove(&machine))
            .and_then(|jobs| match jobs {
                Value::Object(jobs) => Some(jobs),
                _ => None,
            })
            .map(|jobs| {
                jobs.into_iter()
                    .filter_map(|(k, v)| Some((k, serde_json::from_value::<Choice>(v).ok()?)))
                    .collect()
            })
            .unwrap_or_default();
        PlanBook {
            machine,
            threads,
            path,
            cached,
            used: Mutex::new(BTreeMap::new()),
            search: std::env::var("QWEN_PLAN_SEARCH").map_or(true, |v| v != "off"),
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

    /// The plans a search of this job times, the default first.
    fn candidates(&self, ws: &[WeightMatrix<'_>], n_tokens: usize) -> Vec<MatmulPlan> {
        let base = base_plan(ws, n_tokens);
        let mut candidates = vec![base];
        if let Some(largest) = ws.iter().max_by_key(|w| w.data.len()) {
            candidates.extend(
                tune::candidates(&base, largest, n_tokens, self.threads)
                    .into_iter()
                    .filter(|p| *p != base),
            );
        }
        candidates
    }

    /// Whether a cached choice is one this job's search could have made on this CPU: the cache
    /// file is outside the program (hand edits, other versions, a torn write), and a plan that
    /// is only plausible can still ask the kernels for sizes they were never tried with.
    fn could_have_chosen(&self, c: &Choice, ws: &[WeightMatrix<'_>], n_tokens: usize) -> bool {
        cpu_features().supports(c.plan.isa)
            && c.micros.is_none_or(|us| us.is_finite() && us >= 0.0)
            && self.candidates(ws, n_tokens).contains(&c.plan)
    }

    fn traced_search(
        &self,
        pool: &ThreadPool,
        ws: &[WeightMatrix<'_>],
        n_tokens: usize,
        key: &str,
    ) -> Choice {
        let start = Instant::now();
        let choice = self.search(pool, ws, n_tokens);
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

    fn search(&self, pool: &ThreadPool, ws: &[WeightMatrix<'_>], n_tokens: usize) -> Choice {
        let base = base_plan(ws, n_tokens);
        let bytes: usize = ws.iter().map(|w| w.data.len()).sum();
        if n_tokens > 1 && bytes > MAX_SEARCH_BYTES {
            return default_choice(base);
        }
        let candidates = self.candidates(ws, n_tokens);
        let mut best: Option<(f64, MatmulPlan)> = None;
        let start = Instant::now();
        let mut tried = 0;
        for plan in &candidates {
            if start.elapsed() > PER_JOB {
                break;
            }
            // Ctrl-C: the default plan, not cached (a search cut short proves nothing).
            if crate::interrupt::requested() {
                return default_choice(base);
            }
            tried += 1;
            if let Some(t) = time_plan(pool, ws, n_tokens, plan) {
                // The default plan (all threads) must be beaten clearly: on a busy machine a
                // one-thread plan can look faster by chance, and the choice is cached.
                let better = |b: f64, p: &MatmulPlan| {
                    if *p == base {
                        beats_default(t, b)
                    } else {
                        t < b
                    }
                };
                if best.is_none_or(|(b, p)| better(b, &p)) {
                    best = Some((t, *plan));
                }
            }
        }
        if let Some((_, plan)) = best.filter(|(_, p)| *p != base) {
            best = confirm(pool, ws, n_tokens, &base, &plan);
        }
        match best {
            Some((seconds, plan)) => Choice {
                plan,
                micros: Some(seconds * 1e6),
                candidates: tried,
                from_cache: false,
            },
            None => default_choice(base),
        }
    }

    /// Merges the searched choices into the cache file (best effort: a read-only home only
    /// costs the next run a search). Other runs may be saving at the same moment: the merge
    /// holds the lock, and the file is replaced whole.
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        let Ok(used) = self.used.lock() else { return };
        if used.values().all(|c| c.from_cache || c.candidates == 0) {
            return;
        }
        let Some(dir) = path.parent() else { return };
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        let _lock = lock(path);
        let mut file = match read_cache(path) {
            Ok(file) => file,
            Err(e) => {
                // Overwriting it would drop every other machine's plans.
                crate::errln!(
                    "warning: the kernel-plan cache {} cannot be read ({e}); it was left as it \
                     is and this run's plans were not saved (delete it to start a new one)",
                    path.display()
                );
                return;
            }
        };
        let Some(machines) = machines(&mut file) else {
            return;
        };
        let jobs = machines
            .entry(self.machine.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !jobs.is_object() {
            *jobs = Value::Object(Map::new());
        }
        if let Some(jobs) = jobs.as_object_mut() {
            // Only what this run searched: a default plan (a search cut short by Ctrl-C, or a
            // job too large to search) proves nothing, and cached entries are there already.
            let searched = used
                .iter()
                .filter(|(_, c)| !c.from_cache && c.candidates > 0);
            for (key, choice) in searched {
                if let Ok(v) = serde_json::to_value(choice) {
                    jobs.insert(key.clone(), v);
                }
            }
        }
        if let Ok(json) = serde_json::to_vec_pretty(&file) {
            let _ = replace_file(path, &json);
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

/// The default plan for a job: panels for batches of types that have panel kernels.
fn base_plan(ws: &[WeightMatrix<'_>], n_tokens: usize) -> MatmulPlan {
    let plan = MatmulPlan::new();
    let panels = ws.iter().all(|w| panel::supports(w.ty, plan.isa));
    MatmulPlan {
        panel: plan.panel && n_tokens > 1 && panels,
        ..plan
    }
}

fn default_choice(plan: MatmulPlan) -> Choice {
    Choice {
        plan,
        micros: None,
        candidates: 0,
        from_cache: false,
    }
}

/// Median seconds per call of `plan` (None if the plan cannot run these weights).
fn time_plan(
    pool: &ThreadPool,
    ws: &[WeightMatrix<'_>],
    n_tokens: usize,
    plan: &MatmulPlan,
) -> Option<f64> {
    let cols = ws.first()?.cols;
    let x = random_input(&mut Rng::new(0x5eed ^ cols as u64), n_tokens * cols);
    let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| vec![0.0; n_tokens * w.rows]).collect();
    let mut scratch = Scratch::default();
    let mut call = |outs: &mut Vec<Vec<f32>>| {
        let mut ys: Vec<&mut [f32]> = outs.iter_mut().map(|y| y.as_mut_slice()).collect();
        matmul_multi(pool, ws, &x, n_tokens, &mut ys, plan, &mut scratch).ok()
    };
    call(&mut outs)?; // warm-up: caches, page faults
    let start = Instant::now();
    let mut samples = Vec::new();
    loop {
        let t = Instant::now();
        call(&mut outs)?;
        samples.push(t.elapsed().as_secs_f64());
        let slow = t.elapsed() > SLOW_CALL;
        let enough = samples.len() >= 3 && (start.elapsed() >= PER_PLAN || samples.len() >= 200);
        if slow || enough {
            break;
        }
    }
    samples.sort_by(f64::total_cmp);
    Some(samples[samples.len() / 2])
}

/// Rounds of the confirmation that a challenger beats the default plan.
const CONFIRM_ROUNDS: usize = 3;

/// Times the default plan and the search's winner again, alternately, and keeps the winner
/// only if the medians still show it `DEFAULT_MARGIN` faster: a single timing on a busy
/// machine can crown a slower plan, and the choice is cached for every later run.
fn confirm(
    pool: &ThreadPool,
    ws: &[WeightMatrix<'_>],
    n_tokens: usize,
    base: &MatmulPlan,
    challenger: &MatmulPlan,
) -> Option<(f64, MatmulPlan)> {
    let (mut b, mut c) = (Vec::new(), Vec::new());
    for _ in 0..CONFIRM_ROUNDS {
        b.push(time_plan(pool, ws, n_tokens, base)?);
        c.push(time_plan(pool, ws, n_tokens, challenger)?);
    }
    let (b, c) = (median(&mut b), median(&mut c));
    Some(if beats_default(c, b) {
        (c, *challenger)
    } else {
        (b, *base)
    })
}

/// Whether a challenger's time beats the default plan's by the required margin.
fn beats_default(challenger: f64, default: f64) -> bool {
    challenger < default * DEFAULT_MARGIN
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The job: every matrix's type and shape, and decode or batch.
fn job_key(ws: &[WeightMatrix<'_>], n_tokens: usize) -> String {
    let mats: Vec<String> = ws
        .iter()
        .map(|w| format!("{}:{}x{}", w.ty, w.rows, w.cols))
        .collect();
    let class = if n_tokens == 1 { "decode" } else { "batch" };
    format!("{} {class}", mats.join("+"))
}

/// Bumped when the kernels or the search change enough that plans chosen before no longer hold.
const KERNELS_VERSION: u32 = 4;

/// CPU model, SIMD path and threads: a plan timed elsewhere says nothing about this machine.
/// (The read-bandwidth cache keys its figures the same way.)
pub(crate) fn machine_key(threads: usize) -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!(
        "{model} | {} | {threads} threads | kernels v{KERNELS_VERSION}",
        cpu_features().best()
    )
}

/// The folder of the per-machine caches (plans, read bandwidth), if caching is on.
pub(crate) fn cache_dir() -> Option<PathBuf> {
    cache_path()?.parent().map(PathBuf::from)
}

/// `$XDG_CACHE_HOME/qwen-luminal/plans.json`, else `$HOME/.cache/...`; a relative or empty
/// variable counts as unset (both must be absolute paths), so the cache never lands in
/// whatever folder the program was started from.
fn cache_path() -> Option<PathBuf> {
    if std::env::var("QWEN_PLAN_CACHE").is_ok_and(|v| v == "off") {
        return None;
    }
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let base = absolute("XDG_CACHE_HOME").or_else(|| Some(absolute("HOME")?.join(".cache")))?;
    Some(base.join("qwen-luminal").join("plans.json"))
}

/// The cache file as JSON (a missing file: an empty cache). Entries stay JSON values, so that
/// writing the file back keeps what this build cannot read (another version's plans) as it was.
fn read_cache(path: &Path) -> Result<Value, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => b"{}".to_vec(),
        Err(e) => return Err(e.to_string()),
    };
    let mut file: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if machines(&mut file).is_none() {
        return Err("not a plan cache: no \"machines\" object".to_string());
    }
    Ok(file)
}

/// The file's `machines` object, created in an empty object.
fn machines(file: &mut Value) -> Option<&mut Map<String, Value>> {
    let top = file.as_object_mut()?;
    top.entry("machines")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
}

/// Holds an exclusive lock on `<path>.lock` until dropped (`None` where the file system cannot
/// lock: the save goes ahead, and a concurrent save may then cost an entry a new search).
fn lock(path: &Path) -> Option<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("json.lock"))
        .ok()?;
    file.lock().ok()?;
    Some(file)
}

/// Writes `bytes` to a temporary file of this process and call, then renames it over `path`.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("json.{}-{n}.tmp", std::process::id()));
    let written = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::synth::random_weights;
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

    #[test]
    fn a_challenger_must_beat_the_default_by_the_margin() {
        assert!(beats_default(0.85, 1.0));
        assert!(!beats_default(0.95, 1.0));
        assert!(!beats_default(1.2, 1.0));
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
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
        let good = tune::candidates(&base, &w, 1, 2)[3];
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
        let plan = *tune::candidates(&base, &w, 5, 1)
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
