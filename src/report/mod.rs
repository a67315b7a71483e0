//! What a run reports: one record that feeds the short summary, the detailed timing report and
//! the JSON object. Field names follow llama-bench's JSON where they fit (`model_filename`,
//! `n_threads`, `avg_ns`, `stddev_ts`, `samples_ns`, ...).

pub mod kernels;
pub mod mtp;
pub mod output;
pub mod plot;
mod render;
pub mod sparkline;
pub mod sweep;
pub mod sweep_plot;
pub mod trace_file;

use serde::Serialize;

use crate::backend::Features;
use crate::cpu::bandwidth::Bandwidth;
use crate::generate::{Generation, StopKind, StopReason};
use crate::timing::{PhaseTiming, RunSpread, WarmupPolicy};
use kernels::KernelTime;

pub use trace_file::TraceReport;

/// Everything one run reports.
#[derive(Debug, Serialize)]
pub struct RunReport {
    #[serde(flatten)]
    pub header: RunHeader,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub prompt_token_ids: Vec<u32>,
    pub generated_token_ids: Vec<u32>,
    pub text: String,
    pub stop_reason: StopKind,
    pub interrupted: bool,
    /// Rendering the chat template and tokenizing the prompt (0 for `--token-ids`).
    pub prompt_encode_ms: f64,
    /// Time to first token: the prompt's encoding, the prompt pass and the sampling of the first
    /// token (`None` when no token was sampled).
    pub ttft_ms: Option<f64>,
    /// The prompt pass (`pp<n_prompt>` in llama-bench's terms).
    pub prefill: Option<PhaseReport>,
    /// The decode steps, one sample per generated token (`tg<n_gen>`).
    pub decode: Option<PhaseReport>,
    /// Per-kernel profile of the decode steps (with `--kernel-timing`).
    pub kernels: Option<Vec<KernelTime>>,
    /// The slowest individual graph nodes over the decode steps (with `--kernel-timing`).
    pub kernel_nodes: Option<Vec<KernelTime>>,
    /// Per-kernel profile of the prompt pass (with `--kernel-timing`).
    pub prefill_kernels: Option<Vec<KernelTime>>,
    /// The profiler's measured cost (with `--kernel-timing`).
    pub profiler_overhead: Option<ProfilerOverhead>,
    /// The machine's read bandwidth and how much of it decode used (with `--kernel-timing`,
    /// CPU).
    pub memory_bandwidth: Option<MemoryBandwidth>,
    /// The timeline written (with `--trace`).
    pub trace: Option<TraceReport>,
    /// Run-to-run spread (with `--repeat N`, N > 1).
    pub repeat: Option<RepeatReport>,
    /// What speculative decoding did (with `--mtp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtp: Option<mtp::MtpReport>,
}

/// What every report (a run's, a sweep's) opens with: the model, the engine, the machine, and
/// the set-up times.
#[derive(Debug, Serialize)]
pub struct RunHeader {
    pub model_filename: String,
    /// SHA-256 of the file's header, tensor table and both ends of every tensor's data
    /// ([`crate::gguf::GgufFile::digest`]): `qwen compare` refuses runs of different models.
    pub model_digest: String,
    /// File size in bytes.
    pub model_size: u64,
    pub model_n_params: u64,
    pub backend: &'static str,
    pub parallel: bool,
    pub n_threads: usize,
    /// When the run started, RFC 3339.
    pub test_time: String,
    pub machine: Machine,
    pub features: Features,
    pub load_ms: f64,
    pub compile_ms: f64,
}

impl From<RunInfo> for RunHeader {
    fn from(info: RunInfo) -> Self {
        RunHeader {
            model_filename: info.model_filename,
            model_digest: info.model_digest,
            model_size: info.model_size,
            model_n_params: info.model_n_params,
            backend: info.features.backend,
            parallel: info.features.mode.is_parallel(),
            n_threads: info.features.threads,
            test_time: info.test_time,
            machine: info.machine,
            features: info.features,
            load_ms: info.load_ms,
            compile_ms: info.compile_ms,
        }
    }
}

/// One phase's timing: statistics over `samples_ns`, plus the token count.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// llama-bench's label: `pp16`, `tg256`.
    pub test: String,
    pub n_tokens: usize,
    #[serde(flatten)]
    pub timing: PhaseTiming,
}

/// The machine the run was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub logical_cores: usize,
    pub os: &'static str,
    pub arch: &'static str,
}

/// What profiling itself costs.
#[derive(Debug, Clone, Serialize)]
pub struct ProfilerOverhead {
    /// Measured cost of timing one op call.
    pub ns_per_call: f64,
    /// That cost times the op calls per decode step, as a share of the mean step time.
    pub share_of_step: f64,
}

/// The machine's memory read bandwidth beside what decode read per second.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryBandwidth {
    /// The read test's figure with the run's threads (GB/s, 10^9 bytes).
    pub measured_gb_per_s: f64,
    pub threads: usize,
    /// Taken from the per-machine cache rather than measured in this run.
    pub cached: bool,
    /// Bytes the decode kernels read per step (cost models), over the mean step time.
    pub decode_gb_per_s: f64,
    pub decode_bytes_per_step: f64,
    /// `decode_gb_per_s / measured_gb_per_s`.
    pub decode_share: f64,
}

/// `--repeat N`: each run's throughput and the spread across runs.
#[derive(Debug, Clone, Serialize)]
pub struct RepeatReport {
    pub prefill: Option<RunSpread>,
    pub decode: Option<RunSpread>,
    /// Every run's own step samples, the first run's included (its statistics are the report's
    /// `prefill` and `decode`): with them `qwen compare` treats the runs as its independent
    /// units.
    pub runs: Vec<RunSamples>,
}

/// One run of `--repeat`: its prompt pass and decode steps, in nanoseconds.
#[derive(Debug, Clone, Serialize)]
pub struct RunSamples {
    pub prefill_ns: Vec<u64>,
    pub decode_ns: Vec<u64>,
    pub interrupted: bool,
}

impl RepeatReport {
    /// The spread of each phase's mean throughput over `runs`.
    pub fn from_runs(runs: &[RunReport]) -> Self {
        let spread = |f: &dyn Fn(&RunReport) -> Option<f64>| {
            let values: Vec<f64> = runs.iter().filter_map(f).collect();
            RunSpread::from_runs(&values)
        };
        RepeatReport {
            prefill: spread(&|r| r.prefill.as_ref().map(|p| p.timing.avg_ts)),
            decode: spread(&|r| r.decode.as_ref().map(|p| p.timing.avg_ts)),
            runs: runs
                .iter()
                .map(|r| {
                    let ns = |p: &Option<PhaseReport>| {
                        p.as_ref()
                            .map_or_else(Vec::new, |p| p.timing.samples_ns.clone())
                    };
                    RunSamples {
                        prefill_ns: ns(&r.prefill),
                        decode_ns: ns(&r.decode),
                        interrupted: r.interrupted,
                    }
                })
                .collect(),
        }
    }
}

/// Identity and set-up timing of a run, apart from the generation itself.
pub struct RunInfo {
    pub model_filename: String,
    pub model_digest: String,
    pub model_size: u64,
    pub model_n_params: u64,
    pub test_time: String,
    pub load_ms: f64,
    pub compile_ms: f64,
    pub prompt_encode_ms: f64,
    pub features: Features,
    /// The machine, as the run found it.
    pub machine: Machine,
    /// What timing one op call costs, measured by the run when it profiled.
    pub profiler_ns_per_call: Option<f64>,
}

impl RunReport {
    pub fn new(info: RunInfo, generation: &Generation) -> Self {
        let (prefill, decode) = phases(generation);
        let prompt_encode_ms = info.prompt_encode_ms;
        let profiler_ns_per_call = info.profiler_ns_per_call;
        let mut report = Self {
            header: RunHeader::from(info),
            n_prompt: generation.prompt_ids.len(),
            n_gen: generation.generated_ids.len(),
            prompt_token_ids: generation.prompt_ids.clone(),
            generated_token_ids: generation.generated_ids.clone(),
            text: generation.text.clone(),
            stop_reason: generation.stop.kind(),
            interrupted: generation.stop == StopReason::Interrupted,
            prompt_encode_ms,
            ttft_ms: generation
                .first_token
                .map(|t| prompt_encode_ms + t.as_secs_f64() * 1e3),
            prefill,
            decode,
            kernels: None,
            kernel_nodes: None,
            prefill_kernels: None,
            profiler_overhead: None,
            memory_bandwidth: None,
            trace: None,
            repeat: None,
            mtp: generation.speculative.as_ref().map(mtp::MtpReport::new),
        };
        report.add_profile(generation, profiler_ns_per_call);
        report
    }

    fn add_profile(&mut self, generation: &Generation, ns_per_call: Option<f64>) {
        let phase_ns = |p: &Option<PhaseReport>| {
            p.as_ref().map_or(0, |p| {
                (p.timing.total_ns + u128::from(p.timing.warmup_ns.unwrap_or(0))) as u64
            })
        };
        if let Some(records) = &generation.prefill_profile {
            self.prefill_kernels = Some(kernels::by_kind(records, phase_ns(&self.prefill)));
        }
        let Some(steps) = &generation.decode_profile else {
            return;
        };
        let records = steps.records();
        let decode_ns = phase_ns(&self.decode);
        let mut kinds = kernels::by_kind(records, decode_ns);
        for k in &mut kinds {
            k.samples_ns = steps.kind_samples(&k.name);
        }
        self.kernels = Some(kinds);
        self.kernel_nodes = Some(kernels::top_nodes(records, 10, decode_ns));
        let steps = generation.decode.len().max(1) as f64;
        let calls_per_step = records.iter().map(|r| r.calls).sum::<u64>() as f64 / steps;
        let Some(ns_per_call) = ns_per_call else {
            return;
        };
        let step_ns = decode_ns as f64 / steps;
        self.profiler_overhead = Some(ProfilerOverhead {
            ns_per_call,
            share_of_step: if step_ns > 0.0 {
                ns_per_call * calls_per_step / step_ns
            } else {
                0.0
            },
        });
    }

    /// Puts the decode kernels' bytes read per second beside the machine's read bandwidth.
    pub fn add_bandwidth(&mut self, measured: Bandwidth) {
        let (Some(kernels), Some(decode)) = (&self.kernels, &self.decode) else {
            return;
        };
        let bytes: u64 = kernels.iter().filter_map(|k| k.bytes_read).sum();
        let steps = decode.timing.n.max(1) as f64;
        let step_s = decode.timing.avg_ns / 1e9;
        let bytes_per_step = bytes as f64 / steps;
        let decode_gb_per_s = if step_s > 0.0 {
            bytes_per_step / step_s / 1e9
        } else {
            0.0
        };
        self.memory_bandwidth = Some(MemoryBandwidth {
            measured_gb_per_s: measured.gb_per_s,
            threads: measured.threads,
            cached: measured.cached,
            decode_gb_per_s,
            decode_bytes_per_step: bytes_per_step,
            decode_share: if measured.gb_per_s > 0.0 {
                decode_gb_per_s / measured.gb_per_s
            } else {
                0.0
            },
        });
    }
}

fn phases(generation: &Generation) -> (Option<PhaseReport>, Option<PhaseReport>) {
    let n_prompt = generation.prompt_ids.len();
    let prefill =
        PhaseTiming::prefill(&generation.prefill, n_prompt as u64).map(|timing| PhaseReport {
            test: crate::timing::phase_label("pp", n_prompt),
            n_tokens: n_prompt,
            timing,
        });
    let n_steps = generation.decode.len();
    let decode = PhaseTiming::decode(&generation.decode, WarmupPolicy::default()).map(|timing| {
        PhaseReport {
            test: crate::timing::phase_label("tg", n_steps),
            n_tokens: n_steps,
            timing,
        }
    });
    (prefill, decode)
}
