//! A compiled Qwen3 graph ready to run: weights bound, passes applied, KV cache in place.
//!
//! One [`Engine::forward`] call is one execution of the graph over a run of tokens at the next
//! positions (the whole prompt, or one generated token); the KV cache carries over between calls,
//! so nothing is recompiled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use luminal::prelude::*;
use serde::Serialize;
use thiserror::Error;

use crate::backend::weights::{self, LoadError};
use crate::gguf::GgufFile;
use crate::model::config::Qwen3Config;
use crate::model::qwen3::{self, LogitRows, StepInputs, Vocab};
use crate::ops::parallel::Runtime;
use crate::ops::{self, profile::NodeRecord, profile::ProfileBook};

/// Which compilation path to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// GenericCompiler plus the minimum of our ops: one thread, f32 math on dequantized weights.
    Standard,
    /// The standard passes plus fused, multi-threaded SIMD kernels on the quantized weights.
    Parallel { threads: usize },
}

impl Mode {
    pub fn threads(&self) -> usize {
        match self {
            Mode::Standard => 1,
            Mode::Parallel { threads } => *threads,
        }
    }
}

/// How to build an engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub mode: Mode,
    /// Positions the KV cache holds (prompt plus generated tokens).
    pub max_context: usize,
    /// Wrap every op in a timing decorator (for `--kernel-timing`).
    pub profile: bool,
}

/// Which positions of a forward pass need logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position (generation).
    Last,
    /// Every position of the pass (teacher-forced evaluation).
    All,
}

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("nothing to run: no tokens given")]
    NoTokens,
    #[error("token id {id} is outside the model's vocabulary of {vocab} tokens")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error(
        "the context is full: {needed} positions needed, the KV cache holds {max_context} \
         (raise --ctx-size or shorten the prompt)"
    )]
    ContextFull { needed: usize, max_context: usize },
    #[error("cannot start the kernel threads: {0}")]
    Threads(#[from] crate::cpu::KernelError),
}

/// Which enhanced features a compiled engine uses, for the timing report.
#[derive(Debug, Clone, Serialize)]
pub struct Features {
    pub backend: &'static str,
    pub mode: &'static str,
    pub threads: usize,
    /// Instruction set the kernels use.
    pub simd: String,
    /// Compiler passes, in the order they ran.
    pub compiler_passes: Vec<&'static str>,
    /// Our kernels in the graph and what they do.
    pub kernels: Vec<&'static str>,
    pub kv_cache: String,
    /// Nodes in the compiled graph.
    pub graph_nodes: usize,
    /// The matmul plans the kernel search chose (parallel mode), one line per job.
    pub kernel_plans: Vec<String>,
    /// Where chosen plans are cached, if anywhere.
    pub plan_cache: Option<String>,
}

pub struct Engine {
    /// Boxed: luminal ops may keep pointers into the graph (its dynamic-dimension map), so it
    /// must not move after building.
    cx: Box<Graph>,
    inputs: StepInputs,
    logits: GraphTensor<(LogitRows, Vocab)>,
    config: Qwen3Config,
    options: EngineOptions,
    position: usize,
    compile_time: Duration,
    profile: Option<ProfileBook>,
    runtime: Option<Arc<Runtime>>,
}

impl Engine {
    /// Builds the graph for `config`, binds the weights of `file` and compiles.
    pub fn new(
        file: &GgufFile,
        config: &Qwen3Config,
        options: EngineOptions,
    ) -> Result<Self, EngineError> {
        let mut cx = Box::new(Graph::new());
        let graph = qwen3::build(&mut cx, config, options.max_context);
        weights::bind(&mut cx, &graph, file)?;
        let (mut inputs, mut logits) = (graph.inputs, graph.logits);
        let start = Instant::now();
        let rope_tables = [inputs.rope_cos.id, inputs.rope_sin.id];
        let ids = (
            &mut inputs.token_ids,
            &mut inputs.positions,
            &mut inputs.rope_cos,
            &mut inputs.rope_sin,
            &mut logits,
        );
        let runtime = match options.mode {
            Mode::Standard => {
                cx.compile(ops::standard(rope_tables), ids);
                None
            }
            Mode::Parallel { threads } => {
                let runtime = Runtime::new(threads)?;
                cx.compile(ops::parallel::compiler(&runtime, rope_tables), ids);
                Some(runtime)
            }
        };
        let compile_time = start.elapsed();
        let names: HashMap<NodeIndex, String> = weights::weight_names(&graph)
            .into_iter()
            .map(|(name, node)| (node, name.trim_end_matches(".weight").to_string()))
            .collect();
        let profile = options.profile.then(|| {
            ops::profile::install(&mut cx, |g, node, kind| node_label(g, node, kind, &names))
        });
        Ok(Self {
            cx,
            inputs,
            logits,
            config: config.clone(),
            options,
            position: 0,
            compile_time,
            profile,
            runtime,
        })
    }

    /// Runs `tokens` at the next positions and returns the logits asked for, `[rows, vocab]`.
    pub fn forward(&mut self, tokens: &[u32], want: Logits) -> Result<Vec<f32>, EngineError> {
        self.check(tokens)?;
        let n = tokens.len();
        let positions: Vec<usize> = (self.position..self.position + n).collect();
        let (cos, sin) =
            qwen3::rope_tables(&positions, self.config.head_dim, self.config.rope_theta);
        let cx = &mut self.cx;
        cx.set_dyn_dim('s', n);
        cx.set_dyn_dim('l', if want == Logits::All { n } else { 1 });
        let as_f32 = |v: &[usize]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let ids: Vec<f32> = tokens.iter().map(|&t| t as f32).collect();
        cx.set_tensor(self.inputs.token_ids.id, 0, Tensor::new(ids));
        cx.set_tensor(self.inputs.positions.id, 0, Tensor::new(as_f32(&positions)));
        cx.set_tensor(self.inputs.rope_cos.id, 0, Tensor::new(cos));
        cx.set_tensor(self.inputs.rope_sin.id, 0, Tensor::new(sin));
        cx.execute();
        self.position += n;
        let out = cx
            .get_tensor(self.logits.id, 0)
            .and_then(|t| t.data.as_any().downcast_ref::<Vec<f32>>().cloned())
            .expect("the compiled graph produces f32 logits");
        Ok(out)
    }

    fn check(&self, tokens: &[u32]) -> Result<(), EngineError> {
        check_step(
            tokens,
            self.config.vocab,
            self.position,
            self.options.max_context,
        )
    }

    /// Positions already in the KV cache.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Forgets the KV cache: the next forward pass starts at position 0.
    pub fn reset(&mut self) {
        self.position = 0;
    }

    /// Keeps the first `len` positions of the KV cache (no-op when it holds fewer): the next
    /// forward pass continues at `len`. Valid because the attention ops write and read their
    /// caches at the absolute positions of each pass, so later entries are simply overwritten.
    pub fn truncate(&mut self, len: usize) {
        self.position = self.position.min(len);
    }

    pub fn config(&self) -> &Qwen3Config {
        &self.config
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// Per-node timings since the last call, when built with `profile`.
    pub fn take_profile(&mut self) -> Option<Vec<NodeRecord>> {
        self.profile.as_ref().map(ops::profile::take)
    }

    /// What this engine runs with.
    pub fn features(&self) -> Features {
        let standard_passes = vec![
            "GenericCompiler",
            "WeightMatMulCompiler",
            "RmsNormCompiler",
            "RopeCompiler",
            "SwiGluCompiler",
            "StridedCompiler",
        ];
        let (mode, passes, kernels, simd) = match self.options.mode {
            Mode::Standard => (
                "standard",
                standard_passes,
                vec![
                    "Embedding: table rows decoded from the GGUF encoding",
                    "WeightMatMul: GGUF blocks decoded to f32 in L1-sized chunks, f32 dot products in ggml's order",
                    "RmsNorm, Rope, SwiGlu: ggml's numerics (f64 sums, FMA, v_expf)",
                    "CachedAttention: causal GQA over a KV cache owned by the op",
                    "Strided elementwise/reduce: shape trackers resolved once per call",
                ],
                "fma where present (ggml's summation orders), otherwise portable".to_string(),
            ),
            Mode::Parallel { .. } => (
                "parallel",
                [
                    standard_passes,
                    vec!["FusedAttentionCompiler", "FusedMatMulCompiler (+ kernel search)"],
                ]
                .concat(),
                vec![
                    "FusedMatMul: RMSNorm + q/k/v or gate/up in one pass, SwiGLU and residual adds fused; SIMD integer dots on 8-bit activations, multi-threaded, weights read in place",
                    "FusedAttention: q/k RMSNorm + RoPE + KV-cache append + causal GQA, heads in parallel",
                    "Embedding: table rows decoded from the GGUF encoding",
                ],
                crate::cpu::cpu_features().describe(),
            ),
        };
        let plans = self.runtime.as_ref().map(|r| &r.plans);
        Features {
            backend: "cpu",
            mode,
            threads: self.options.mode.threads(),
            simd,
            compiler_passes: passes,
            kernels,
            kv_cache: format!(
                "{} positions x {} layers, f16 keys and values",
                self.options.max_context, self.config.layers
            ),
            graph_nodes: self.cx.graph.node_count(),
            kernel_plans: plans.map(|p| p.describe()).unwrap_or_default(),
            plan_cache: plans
                .and_then(|p| p.cache_path())
                .map(|p| p.display().to_string()),
        }
    }
}

/// What every engine checks before a forward pass: tokens given, inside the vocabulary, and
/// room for them in the KV cache after `position`.
pub fn check_step(
    tokens: &[u32],
    vocab: usize,
    position: usize,
    max_context: usize,
) -> Result<(), EngineError> {
    if tokens.is_empty() {
        return Err(EngineError::NoTokens);
    }
    if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(EngineError::TokenOutOfRange { id, vocab });
    }
    let needed = position + tokens.len();
    if needed > max_context {
        return Err(EngineError::ContextFull {
            needed,
            max_context,
        });
    }
    Ok(())
}

/// Names a node for the kernel profile by the weights it reads: `WeightMatMul blk.3.ffn_down`,
/// `FusedAttention blk.3`; nodes that read no weight get their index.
fn node_label(
    graph: &Graph,
    node: NodeIndex,
    kind: &str,
    names: &HashMap<NodeIndex, String>,
) -> String {
    let weights: Vec<&String> = graph
        .get_sources(node)
        .iter()
        .filter_map(|(src, _, _)| names.get(src))
        .collect();
    let layer = |name: &str| name.splitn(3, '.').take(2).collect::<Vec<_>>().join(".");
    match &weights[..] {
        [] => format!("{kind} #{}", node.index()),
        [one] => format!("{kind} {one}"),
        [first, ..] => format!("{kind} {}", layer(first)),
    }
}
