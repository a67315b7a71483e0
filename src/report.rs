//! What a run reports: one record that feeds the short summary, the detailed timing report and
//! the JSON object (field names follow llama-bench's JSON where they fit).

use serde::Serialize;

use crate::generate::Generation;
use crate::timing::{PhaseTiming, WarmupPolicy};

/// Everything one run reports.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub model_filename: String,
    /// File size in bytes.
    pub model_size: u64,
    pub model_n_params: u64,
    pub backend: &'static str,
    pub parallel: bool,
    pub n_threads: usize,
    /// When the run started, RFC 3339.
    pub test_time: String,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub prompt_token_ids: Vec<u32>,
    pub generated_token_ids: Vec<u32>,
    pub text: String,
    pub stop_reason: &'static str,
    pub interrupted: bool,
    pub load_ms: f64,
    pub compile_ms: f64,
    pub prefill: Option<PhaseReport>,
    pub decode: Option<PhaseReport>,
}

/// One phase's timing: statistics over `samples_ns`, plus the token count.
#[derive(Debug, Serialize)]
pub struct PhaseReport {
    pub n_tokens: usize,
    #[serde(flatten)]
    pub timing: PhaseTiming,
}

/// Identity and timing of a run, apart from the generation itself.
pub struct RunInfo {
    pub model_filename: String,
    pub model_size: u64,
    pub model_n_params: u64,
    pub parallel: bool,
    pub n_threads: usize,
    pub test_time: String,
    pub load_ms: f64,
    pub compile_ms: f64,
}

impl RunReport {
    pub fn new(info: RunInfo, generation: &Generation) -> Self {
        let prompt_tokens = generation.prompt_ids.len();
        let prefill =
            PhaseTiming::prefill(&generation.prefill, prompt_tokens as u64).map(|t| PhaseReport {
                n_tokens: prompt_tokens,
                timing: t,
            });
        let decode = PhaseTiming::decode(&generation.decode, WarmupPolicy::IncludeAll).map(|t| {
            PhaseReport {
                n_tokens: generation.decode.len(),
                timing: t,
            }
        });
        Self {
            model_filename: info.model_filename,
            model_size: info.model_size,
            model_n_params: info.model_n_params,
            backend: "cpu",
            parallel: info.parallel,
            n_threads: info.n_threads,
            test_time: info.test_time,
            n_prompt: prompt_tokens,
            n_gen: generation.generated_ids.len(),
            prompt_token_ids: generation.prompt_ids.clone(),
            generated_token_ids: generation.generated_ids.clone(),
            text: generation.text.clone(),
            stop_reason: generation.stop.name(),
            interrupted: generation.stop == crate::generate::StopReason::Interrupted,
            load_ms: info.load_ms,
            compile_ms: info.compile_ms,
            prefill,
            decode,
        }
    }

    /// The short summary printed after generation.
    pub fn summary(&self) -> String {
        let mut lines = vec![format!(
            "load {:.0} ms, compile {:.0} ms ({} mode, {} thread{})",
            self.load_ms,
            self.compile_ms,
            if self.parallel {
                "parallel"
            } else {
                "standard"
            },
            self.n_threads,
            if self.n_threads == 1 { "" } else { "s" }
        )];
        if let Some(p) = &self.prefill {
            lines.push(format!(
                "prompt   {:>5} tokens in {:>9.2} ms: {:>8.2} tok/s",
                p.n_tokens,
                p.timing.avg_ns / 1e6,
                p.timing.avg_ts
            ));
        }
        match &self.decode {
            Some(d) => lines.push(format!(
                "generate {:>5} tokens in {:>9.2} ms: {:>8.2} ± {:.2} tok/s ({:.2} ms/token)",
                d.n_tokens,
                d.timing.total_ns as f64 / 1e6,
                d.timing.avg_ts,
                d.timing.stddev_ts,
                d.timing.avg_ns / 1e6
            )),
            None => lines.push(format!("generate {:>5} tokens", self.n_gen)),
        }
        lines.join("\n")
    }
}
