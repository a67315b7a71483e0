//! Reading what `qwen compare` compares: reports written by `qwen --json` (a run, with or
//! without `--repeat` and `--kernel-timing`, or a `--sweep`) and llama-bench's output
//! (`-o json` or `-o jsonl`, llama.cpp's or ik_llama.cpp's), into one typed form: per file, its
//! model, machine and tests, each test a phase measured over runs of step samples.
//!
//! A file may hold several reports (a JSON array, or one JSON value after another): their runs
//! are pooled, test by test. That is how llama-bench lists its tests, and how a benchmark that
//! measures in rounds hands every round to one comparison.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

/// Why a file cannot be read as a side of a comparison.
#[derive(Debug, Error)]
pub enum InputError {
    #[error("cannot read {path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error(
        "{path} is not JSON ({detail}): give a file written by qwen --json or llama-bench -o json"
    )]
    NotJson { path: String, detail: String },
    #[error("{path} holds no report: give a file written by qwen --json or llama-bench -o json")]
    Empty { path: String },
    #[error(
        "{path}: item {item} is neither a qwen report nor a llama-bench test (it has no decode, \
         prefill, sweep or samples_ns field): give a file written by qwen --json or llama-bench -o json"
    )]
    Unknown { path: String, item: usize },
    #[error("{path} mixes {first} and {other} items: compare them as separate files")]
    Mixed {
        path: String,
        first: &'static str,
        other: &'static str,
    },
    #[error("{path}: item {item} ({what}) is malformed: {detail}")]
    Shape {
        path: String,
        item: usize,
        what: &'static str,
        detail: String,
    },
    #[error("{path}: item {item}: {what} has no samples_ns to compare")]
    NoSamples {
        path: String,
        item: usize,
        what: String,
    },
    #[error("{path} holds {n} sweeps: compare one sweep per file")]
    SeveralSweeps { path: String, n: usize },
    #[error("{path}: {detail}")]
    Differs { path: String, detail: String },
}

/// Which program wrote a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Qwen,
    LlamaBench,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Qwen => "qwen",
            Engine::LlamaBench => "llama-bench",
        }
    }
}

/// The two phases a run times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Prefill,
    Decode,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Prefill => "prefill",
            Phase::Decode => "decode",
        }
    }
}

/// What identifies the model a file measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelId {
    /// As the file gives it (a path).
    pub filename: String,
    /// qwen's `model_digest` (reports from before it have none; llama-bench has none).
    pub digest: Option<String>,
    pub n_params: Option<u64>,
    /// qwen: the file's size; llama-bench: the tensors' bytes. Compared only between files of
    /// one engine.
    pub size: Option<u64>,
    /// llama-bench's `model_type` ("qwen3 0.6B Q8_0").
    pub kind: Option<String>,
}

impl ModelId {
    /// The file name without its folder.
    pub fn base_name(&self) -> &str {
        self.filename
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or(&self.filename)
    }
}

/// The machine a file was measured on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub cpu: String,
    /// Logical cores (qwen only).
    pub cores: Option<usize>,
}

/// One input file.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path as given on the command line.
    pub path: String,
    pub engine: Engine,
    pub model: ModelId,
    pub machine: Option<Machine>,
    /// A run in it was stopped by Ctrl-C.
    pub interrupted: bool,
    /// Reports (qwen) or test entries (llama-bench) read from it.
    pub items: usize,
    pub content: Content,
    /// What was read but is not compared (llama-bench's combined pp+tg tests, older reports).
    pub notes: Vec<String>,
}

/// Tests, or a sweep.
#[derive(Debug, Clone)]
pub enum Content {
    Tests(Vec<Test>),
    Sweep(Sweep),
}

/// One phase at one set-up, measured over one or more runs.
#[derive(Debug, Clone)]
pub struct Test {
    pub phase: Phase,
    /// Prompt tokens (prefill) or decode steps (decode).
    pub n_tokens: usize,
    /// Positions in the KV cache before the phase.
    pub depth: usize,
    pub threads: usize,
    pub engine: Engine,
    pub runs: Vec<Run>,
    /// Per-kind decode kernel times (qwen with `--kernel-timing`; empty otherwise).
    pub kernels: Vec<Kernel>,
}

impl Test {
    /// llama-bench's label: `pp64`, `tg32`, with `@d4096` for a phase after a filled context
    /// (a qwen decode follows its own prompt: no suffix).
    pub fn label(&self) -> String {
        let base = match self.phase {
            Phase::Prefill => format!("pp{}", self.n_tokens),
            Phase::Decode => format!("tg{}", self.n_tokens),
        };
        match (self.engine, self.phase, self.depth) {
            (_, _, 0) | (Engine::Qwen, Phase::Decode, _) => base,
            _ => format!("{base}@d{}", self.depth),
        }
    }
}

/// One run of a phase: its samples, each covering `tokens_per_sample` tokens (a qwen decode
/// step: 1; a prompt pass: the prompt; a llama-bench repetition: the whole test).
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub tokens_per_sample: u64,
    pub samples_ns: Vec<u64>,
}

impl Run {
    /// Tokens over the run's total time (llama-bench's rate of a repetition).
    pub fn rate(&self) -> f64 {
        // Summed as f64: a file's values are not trusted to fit a u64 sum.
        let ns: f64 = self.samples_ns.iter().map(|&ns| ns as f64).sum();
        let tokens = self.tokens_per_sample as f64 * self.samples_ns.len() as f64;
        tokens * 1e9 / ns.max(1.0)
    }

    /// Each sample's tokens per second.
    pub fn sample_rates(&self) -> impl Iterator<Item = f64> + '_ {
        self.samples_ns
            .iter()
            .map(|&ns| self.tokens_per_sample as f64 * 1e9 / ns.max(1) as f64)
    }
}

/// One decode kernel kind of a qwen profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub total_ns: u64,
    /// Decode steps the total covers.
    pub steps: usize,
    pub bytes_read: Option<u64>,
    /// Time in each decode step (reports from before `samples_ns` have none).
    pub samples_ns: Option<Vec<u64>>,
}

/// A `--sweep` report.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub threads: usize,
    pub ubatch: usize,
    pub tg: usize,
    pub rows: Vec<SweepRow>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SweepRow {
    pub n_kv: usize,
    pub pp_tokens: usize,
    pub pp_ts: f64,
    pub tg_tokens: usize,
    pub tg_ts: f64,
}

/// Reads `path` as one side of a comparison.
pub fn read(path: &Path) -> Result<Source, InputError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|err| InputError::Io {
        path: shown.clone(),
        err,
    })?;
    parse(&shown, &text)
}

/// Reads the text of a file named `path`.
pub fn parse(path: &str, text: &str) -> Result<Source, InputError> {
    let items = json_items(path, text)?;
    let kinds: Vec<Kind> = items
        .iter()
        .enumerate()
        .map(|(i, v)| kind_of(v).ok_or_else(|| unknown(path, i + 1)))
        .collect::<Result<_, _>>()?;
    let first = kinds[0];
    if let Some(other) = kinds.iter().find(|k| **k != first) {
        return Err(InputError::Mixed {
            path: path.to_string(),
            first: first.name(),
            other: other.name(),
        });
    }
    match first {
        Kind::QwenRun => qwen_runs(path, &items),
        Kind::QwenSweep => qwen_sweep(path, &items),
        Kind::LlamaBench => llama_bench(path, &items),
    }
}

fn unknown(path: &str, item: usize) -> InputError {
    InputError::Unknown {
        path: path.to_string(),
        item,
    }
}

/// Every JSON value in `text`, arrays flattened: a report, an array of them, or JSON lines.
fn json_items(path: &str, text: &str) -> Result<Vec<Value>, InputError> {
    let mut items = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match value {
            Ok(Value::Array(list)) => items.extend(list),
            Ok(v) => items.push(v),
            Err(e) => {
                return Err(InputError::NotJson {
                    path: path.to_string(),
                    detail: e.to_string(),
                })
            }
        }
    }
    if items.is_empty() {
        return Err(InputError::Empty {
            path: path.to_string(),
        });
    }
    Ok(items)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    QwenRun,
    QwenSweep,
    LlamaBench,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::QwenRun => "qwen run",
            Kind::QwenSweep => "qwen sweep",
            Kind::LlamaBench => "llama-bench",
        }
    }
}

fn kind_of(v: &Value) -> Option<Kind> {
    let o = v.as_object()?;
    if o.contains_key("sweep") {
        Some(Kind::QwenSweep)
    } else if o.contains_key("decode") || o.contains_key("prefill") {
        Some(Kind::QwenRun)
    } else if o.contains_key("samples_ns") {
        Some(Kind::LlamaBench)
    } else {
        None
    }
}

/// Deserializes item `index` (0-based) of `path` as `T`.
fn typed<T: serde::de::DeserializeOwned>(
    path: &str,
    index: usize,
    what: &'static str,
    v: &Value,
) -> Result<T, InputError> {
    T::deserialize(v).map_err(|e| InputError::Shape {
        path: path.to_string(),
        item: index + 1,
        what,
        detail: e.to_string(),
    })
}

// What is read of a qwen run report (see `report::RunReport`); everything else is ignored.
#[derive(Deserialize)]
struct QwenRunIn {
    #[serde(flatten)]
    header: QwenHeaderIn,
    n_prompt: usize,
    #[serde(default)]
    interrupted: bool,
    prefill: Option<PhaseIn>,
    decode: Option<PhaseIn>,
    kernels: Option<Vec<KernelIn>>,
    repeat: Option<RepeatIn>,
}

#[derive(Deserialize)]
struct QwenHeaderIn {
    model_filename: String,
    model_digest: Option<String>,
    model_size: Option<u64>,
    model_n_params: Option<u64>,
    n_threads: usize,
    machine: Option<MachineIn>,
}

#[derive(Deserialize)]
struct MachineIn {
    cpu: String,
    logical_cores: Option<usize>,
}

#[derive(Deserialize)]
struct PhaseIn {
    n_tokens: usize,
    n_tokens_per_sample: u64,
    samples_ns: Vec<u64>,
}

#[derive(Deserialize)]
struct KernelIn {
    name: String,
    total_ns: u64,
    bytes_read: Option<u64>,
    samples_ns: Option<Vec<u64>>,
}

#[derive(Deserialize)]
struct RepeatIn {
    runs: Option<Vec<RunIn>>,
    decode: Option<SpreadIn>,
    prefill: Option<SpreadIn>,
}

#[derive(Deserialize)]
struct SpreadIn {
    n_runs: usize,
}

#[derive(Deserialize)]
struct RunIn {
    prefill_ns: Vec<u64>,
    decode_ns: Vec<u64>,
    #[serde(default)]
    interrupted: bool,
}

#[derive(Deserialize)]
struct QwenSweepIn {
    #[serde(flatten)]
    header: QwenHeaderIn,
    n_ubatch: usize,
    n_gen: usize,
    #[serde(default)]
    interrupted: bool,
    sweep: Vec<SweepRow>,
}

fn model_of(h: &QwenHeaderIn) -> ModelId {
    ModelId {
        filename: h.model_filename.clone(),
        digest: h.model_digest.clone(),
        n_params: h.model_n_params,
        size: h.model_size,
        kind: None,
    }
}

fn machine_of(h: &QwenHeaderIn) -> Option<Machine> {
    h.machine.as_ref().map(|m| Machine {
        cpu: m.cpu.clone(),
        cores: m.logical_cores,
    })
}

/// Tests pooled across items: same phase, size, depth and threads share their runs.
#[derive(Default)]
struct Pool {
    tests: Vec<Test>,
}

impl Pool {
    fn add(&mut self, test: Test) {
        let same = |t: &&mut Test| {
            (t.phase, t.n_tokens, t.depth, t.threads)
                == (test.phase, test.n_tokens, test.depth, test.threads)
        };
        match self.tests.iter_mut().find(|t| same(t)) {
            Some(t) => {
                t.runs.extend(test.runs);
                merge_kernels(&mut t.kernels, test.kernels);
            }
            None => self.tests.push(test),
        }
    }
}

fn merge_kernels(into: &mut Vec<Kernel>, more: Vec<Kernel>) {
    for k in more {
        match into.iter_mut().find(|t| t.name == k.name) {
            Some(t) => {
                t.total_ns = t.total_ns.saturating_add(k.total_ns);
                t.steps += k.steps;
                t.bytes_read = t
                    .bytes_read
                    .zip(k.bytes_read)
                    .map(|(a, b)| a.saturating_add(b));
                t.samples_ns = match (t.samples_ns.take(), k.samples_ns) {
                    (Some(mut a), Some(b)) => {
                        a.extend(b);
                        Some(a)
                    }
                    _ => None,
                };
            }
            None => into.push(k),
        }
    }
}

fn qwen_runs(path: &str, items: &[Value]) -> Result<Source, InputError> {
    let mut pool = Pool::default();
    let mut first: Option<(ModelId, Option<Machine>)> = None;
    let mut interrupted = false;
    let mut notes = Vec::new();
    for (i, v) in items.iter().enumerate() {
        let r: QwenRunIn = typed(path, i, "qwen report", v)?;
        let (model, machine) = (model_of(&r.header), machine_of(&r.header));
        same_model(path, &mut first, model, machine)?;
        interrupted |= r.interrupted;
        let runs = run_samples(path, i, &r, &mut notes)?;
        interrupted |= runs.iter().any(|r| r.interrupted);
        let threads = r.header.n_threads;
        if let Some(p) = &r.prefill {
            pool.add(Test {
                phase: Phase::Prefill,
                n_tokens: p.n_tokens,
                depth: 0,
                threads,
                engine: Engine::Qwen,
                runs: phase_runs(&runs, p.n_tokens_per_sample, |r| &r.prefill_ns),
                kernels: vec![],
            });
        }
        if let Some(d) = &r.decode {
            pool.add(Test {
                phase: Phase::Decode,
                n_tokens: d.n_tokens,
                depth: r.n_prompt,
                threads,
                engine: Engine::Qwen,
                runs: phase_runs(&runs, d.n_tokens_per_sample, |r| &r.decode_ns),
                kernels: kernels(r.kernels.as_deref(), d.samples_ns.len()),
            });
        }
    }
    let (model, machine) = first.expect("at least one item");
    Ok(Source {
        path: path.to_string(),
        engine: Engine::Qwen,
        model,
        machine,
        interrupted,
        items: items.len(),
        content: Content::Tests(pool.tests),
        notes,
    })
}

/// One report's runs: `repeat.runs` when present, else the report's own phases.
fn run_samples(
    path: &str,
    index: usize,
    r: &QwenRunIn,
    notes: &mut Vec<String>,
) -> Result<Vec<RunIn>, InputError> {
    let own = |p: &Option<PhaseIn>| p.as_ref().map_or_else(Vec::new, |p| p.samples_ns.clone());
    let runs = match r.repeat.as_ref().and_then(|rep| rep.runs.as_ref()) {
        Some(runs) => runs
            .iter()
            .map(|run| RunIn {
                prefill_ns: run.prefill_ns.clone(),
                decode_ns: run.decode_ns.clone(),
                interrupted: run.interrupted,
            })
            .collect(),
        None => {
            let n_runs = r.repeat.as_ref().map_or(1, |rep| {
                let n = |s: &Option<SpreadIn>| s.as_ref().map_or(1, |s| s.n_runs);
                n(&rep.decode).max(n(&rep.prefill))
            });
            if n_runs > 1 {
                notes.push(format!(
                    "{path}: item {} is a report from before repeat.runs: only the first of its \
                     {n_runs} runs has samples",
                    index + 1
                ));
            }
            vec![RunIn {
                prefill_ns: own(&r.prefill),
                decode_ns: own(&r.decode),
                interrupted: r.interrupted,
            }]
        }
    };
    for (phase, p, get) in [
        (
            "prefill",
            &r.prefill,
            (|r: &RunIn| &r.prefill_ns) as fn(&RunIn) -> &Vec<u64>,
        ),
        ("decode", &r.decode, |r: &RunIn| &r.decode_ns),
    ] {
        if p.is_some() && runs.iter().all(|run| get(run).is_empty()) {
            return Err(InputError::NoSamples {
                path: path.to_string(),
                item: index + 1,
                what: phase.to_string(),
            });
        }
    }
    Ok(runs)
}

/// The runs of one phase, those without samples of it left out (a run stopped before it).
fn phase_runs(runs: &[RunIn], tokens_per_sample: u64, get: fn(&RunIn) -> &Vec<u64>) -> Vec<Run> {
    runs.iter()
        .filter(|r| !get(r).is_empty())
        .map(|r| Run {
            tokens_per_sample: tokens_per_sample.max(1),
            samples_ns: get(r).clone(),
        })
        .collect()
}

fn kernels(list: Option<&[KernelIn]>, steps: usize) -> Vec<Kernel> {
    list.unwrap_or_default()
        .iter()
        .map(|k| Kernel {
            name: k.name.clone(),
            total_ns: k.total_ns,
            steps: k.samples_ns.as_ref().map_or(steps, Vec::len),
            bytes_read: k.bytes_read,
            samples_ns: k.samples_ns.clone(),
        })
        .collect()
}

/// Reports pooled in one file must measure one model on one machine.
fn same_model(
    path: &str,
    first: &mut Option<(ModelId, Option<Machine>)>,
    model: ModelId,
    machine: Option<Machine>,
) -> Result<(), InputError> {
    match first {
        None => {
            *first = Some((model, machine));
            Ok(())
        }
        Some((m, _)) if m.base_name() != model.base_name() || m.digest != model.digest => {
            Err(InputError::Differs {
                path: path.to_string(),
                detail: format!(
                    "its items measure different models ({} and {}): one model per file",
                    m.base_name(),
                    model.base_name()
                ),
            })
        }
        Some(_) => Ok(()),
    }
}

fn qwen_sweep(path: &str, items: &[Value]) -> Result<Source, InputError> {
    if items.len() > 1 {
        return Err(InputError::SeveralSweeps {
            path: path.to_string(),
            n: items.len(),
        });
    }
    let s: QwenSweepIn = typed(path, 0, "qwen sweep", &items[0])?;
    let bad = |v: f64| !(v.is_finite() && v > 0.0);
    if let Some(row) = s.sweep.iter().find(|r| bad(r.pp_ts) || bad(r.tg_ts)) {
        return Err(InputError::Shape {
            path: path.to_string(),
            item: 1,
            what: "qwen sweep",
            detail: format!("the rates at depth {} are not positive numbers", row.n_kv),
        });
    }
    if s.sweep.is_empty() {
        return Err(InputError::NoSamples {
            path: path.to_string(),
            item: 1,
            what: "the sweep".to_string(),
        });
    }
    Ok(Source {
        path: path.to_string(),
        engine: Engine::Qwen,
        model: model_of(&s.header),
        machine: machine_of(&s.header),
        interrupted: s.interrupted,
        items: 1,
        content: Content::Sweep(Sweep {
            threads: s.header.n_threads,
            ubatch: s.n_ubatch,
            tg: s.n_gen,
            rows: s.sweep,
        }),
        notes: vec![],
    })
}

// One llama-bench test entry (llama.cpp's and ik_llama.cpp's `-o json` / `-o jsonl`).
#[derive(Deserialize)]
struct LlamaTestIn {
    model_filename: String,
    model_type: Option<String>,
    model_size: Option<u64>,
    model_n_params: Option<u64>,
    n_threads: usize,
    cpu_info: Option<String>,
    n_prompt: usize,
    n_gen: usize,
    /// llama.cpp's `-d`; ik_llama.cpp has none (its `-gp` puts the depth in `n_prompt`).
    #[serde(default)]
    n_depth: usize,
    /// ik_llama.cpp's label (`tg32@pp4096` for `-gp`); llama.cpp writes none.
    test: Option<String>,
    samples_ns: Vec<u64>,
}

fn llama_bench(path: &str, items: &[Value]) -> Result<Source, InputError> {
    let mut pool = Pool::default();
    let mut first: Option<(ModelId, Option<Machine>)> = None;
    let mut notes = Vec::new();
    for (i, v) in items.iter().enumerate() {
        let t: LlamaTestIn = typed(path, i, "llama-bench test", v)?;
        let model = ModelId {
            filename: t.model_filename.clone(),
            digest: None,
            n_params: t.model_n_params,
            size: t.model_size,
            kind: t.model_type.clone(),
        };
        let machine = t.cpu_info.as_ref().map(|cpu| Machine {
            cpu: cpu.clone(),
            cores: None,
        });
        same_model(path, &mut first, model, machine)?;
        let gp = t.test.as_deref().is_some_and(|l| l.contains("@pp"));
        let (phase, n_tokens, depth) = match (t.n_prompt, t.n_gen) {
            (p, 0) if p > 0 => (Phase::Prefill, p, t.n_depth),
            (0, g) if g > 0 => (Phase::Decode, g, t.n_depth),
            // ik_llama.cpp's -gp: decode timed after an untimed prompt of n_prompt.
            (p, g) if gp => (Phase::Decode, g, p + t.n_depth),
            (p, g) => {
                notes.push(format!(
                    "{path}: pp{p}+tg{g} (prompt and decode timed together) is not compared"
                ));
                continue;
            }
        };
        if t.samples_ns.is_empty() {
            return Err(InputError::NoSamples {
                path: path.to_string(),
                item: i + 1,
                what: format!("{} {n_tokens}", phase.name()),
            });
        }
        pool.add(Test {
            phase,
            n_tokens,
            depth,
            threads: t.n_threads,
            engine: Engine::LlamaBench,
            // Each repetition is a run of one sample covering the whole test.
            runs: t
                .samples_ns
                .iter()
                .map(|&ns| Run {
                    tokens_per_sample: n_tokens as u64,
                    samples_ns: vec![ns],
                })
                .collect(),
            kernels: vec![],
        });
    }
    let (model, machine) = first.expect("at least one item");
    Ok(Source {
        path: path.to_string(),
        engine: Engine::LlamaBench,
        model,
        machine,
        interrupted: false,
        items: items.len(),
        content: Content::Tests(pool.tests),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qwen_report(decode: &[u64], repeat: Option<&[&[u64]]>) -> String {
        let repeat = repeat.map_or("null".to_string(), |runs| {
            let runs: Vec<String> = runs
                .iter()
                .map(|d| {
                    format!(r#"{{"prefill_ns":[2000000],"decode_ns":{d:?},"interrupted":false}}"#)
                })
                .collect();
            format!(
                r#"{{"prefill":null,"decode":null,"runs":[{}]}}"#,
                runs.join(",")
            )
        });
        format!(
            r#"{{"model_filename":"m/tiny.gguf","model_digest":"ab","model_size":10,
            "model_n_params":5,"n_threads":1,"machine":{{"cpu":"X","logical_cores":2}},
            "n_prompt":3,"n_gen":{n},"interrupted":false,
            "prefill":{{"n_tokens":3,"n_tokens_per_sample":3,"samples_ns":[2000000]}},
            "decode":{{"n_tokens":{n},"n_tokens_per_sample":1,"samples_ns":{decode:?}}},
            "kernels":null,"repeat":{repeat}}}"#,
            n = decode.len()
        )
    }

    fn tests(s: &Source) -> &[Test] {
        match &s.content {
            Content::Tests(t) => t,
            Content::Sweep(_) => panic!("a sweep"),
        }
    }

    #[test]
    fn a_qwen_run_has_one_run_per_phase_and_repeats_have_theirs() {
        let s = parse("a.json", &qwen_report(&[1_000_000, 2_000_000], None)).unwrap();
        let t = tests(&s);
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].phase, t[0].n_tokens, t[0].label()),
            (Phase::Prefill, 3, "pp3".into())
        );
        assert_eq!(
            (t[1].phase, t[1].depth, t[1].label()),
            (Phase::Decode, 3, "tg2".into())
        );
        assert_eq!(t[1].runs.len(), 1);
        assert!((t[1].runs[0].rate() - 2.0 / 3e-3).abs() < 1e-9);
        assert!((t[0].runs[0].rate() - 1500.0).abs() < 1e-9);

        let runs: &[&[u64]] = &[&[1_000_000, 1_000_000], &[2_000_000, 2_000_000]];
        let s = parse("a.json", &qwen_report(&[1_000_000, 1_000_000], Some(runs))).unwrap();
        let t = tests(&s);
        assert_eq!(t[1].runs.len(), 2);
        assert_eq!(t[1].runs[1].rate(), 500.0);
        assert_eq!(s.model.digest.as_deref(), Some("ab"));
    }

    #[test]
    fn reports_in_an_array_or_one_after_another_are_pooled() {
        let one = qwen_report(&[1_000_000, 2_000_000], None);
        for text in [format!("[{one},{one}]"), format!("{one}\n{one}\n")] {
            let s = parse("a.json", &text).unwrap();
            assert_eq!(s.items, 2);
            assert_eq!(tests(&s)[1].runs.len(), 2);
        }
    }

    #[test]
    fn llama_bench_tests_become_runs_of_one_sample() {
        let entry = |p: usize, g: usize, d: usize, ns: &str| {
            format!(
                r#"{{"model_filename":"m/tiny.gguf","model_type":"qwen3 ?B Q8_0","model_size":9,
                "model_n_params":5,"n_threads":4,"cpu_info":"X","n_prompt":{p},"n_gen":{g},
                "n_depth":{d},"samples_ns":[{ns}]}}"#
            )
        };
        let text = format!(
            "[{},{},{},{}]",
            entry(16, 0, 0, "1000000, 2000000"),
            entry(0, 8, 0, "8000000, 8000000, 16000000"),
            entry(0, 8, 64, "16000000"),
            entry(16, 8, 0, "9")
        );
        let s = parse("lb.json", &text).unwrap();
        let t = tests(&s);
        assert_eq!(s.engine, Engine::LlamaBench);
        let labels: Vec<String> = t.iter().map(Test::label).collect();
        assert_eq!(labels, ["pp16", "tg8", "tg8@d64"]);
        assert_eq!(t[1].runs.len(), 3);
        assert_eq!(t[1].runs[2].rate(), 500.0);
        assert_eq!(t[0].runs[0].rate(), 16_000.0);
        assert!(s.notes[0].contains("pp16+tg8"), "{:?}", s.notes);
    }

    #[test]
    fn ik_llama_gp_tests_are_decode_after_their_prompt() {
        let text = r#"[{"model_filename":"m.gguf","n_threads":4,"n_prompt":4096,"n_gen":32,
            "test":"tg32@pp4096","samples_ns":[32000000]}]"#;
        let s = parse("ik.json", text).unwrap();
        let t = &tests(&s)[0];
        assert_eq!((t.phase, t.n_tokens, t.depth), (Phase::Decode, 32, 4096));
        assert_eq!(t.label(), "tg32@d4096");
        assert_eq!(t.runs[0].rate(), 1000.0);
    }

    #[test]
    fn bad_files_get_one_line_errors_that_name_the_file() {
        let cases: [(&str, &str); 6] = [
            ("not json", "is not JSON"),
            ("", "holds no report"),
            ("[]", "holds no report"),
            (
                r#"{"hello": 1}"#,
                "neither a qwen report nor a llama-bench test",
            ),
            (r#"{"decode": {"n_tokens": 1}}"#, "malformed"),
            (r#"[{"samples_ns":[1]}, {"decode":null}]"#, "mixes"),
        ];
        for (text, want) in cases {
            let err = parse("x.json", text).unwrap_err().to_string();
            assert!(
                err.contains(want) && err.contains("x.json"),
                "{text:?}: {err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
        let empty = qwen_report(&[], None);
        let err = parse("x.json", &empty).unwrap_err().to_string();
        assert!(err.contains("decode has no samples_ns"), "{err}");
    }

    #[test]
    fn a_sweep_is_read_whole() {
        let text = r#"{"model_filename":"m.gguf","n_threads":2,"n_kv_max":32,"n_ubatch":16,
            "n_gen":4,"interrupted":false,"sweep":[
            {"n_kv":0,"pp_tokens":16,"pp_ms":1.0,"pp_ts":16000.0,"tg_tokens":4,"tg_ms":4.0,"tg_ts":1000.0},
            {"n_kv":16,"pp_tokens":16,"pp_ms":2.0,"pp_ts":8000.0,"tg_tokens":4,"tg_ms":8.0,"tg_ts":500.0}]}"#;
        let s = parse("s.json", text).unwrap();
        let Content::Sweep(sweep) = &s.content else {
            panic!("not a sweep")
        };
        assert_eq!((sweep.ubatch, sweep.tg, sweep.rows.len()), (16, 4, 2));
        assert_eq!(sweep.rows[1].tg_ts, 500.0);
    }
}
