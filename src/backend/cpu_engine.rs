//! The CPU engine: the Qwen3 graph with our CPU ops, weights bound, passes applied, KV cache in
//! place.
//!
//! One [`Runner::forward`] call is one execution of the graph over a run of tokens at the next
//! positions (the whole prompt, or one generated token); the KV cache carries over between calls,
//! so nothing is recompiled.
//!
//! A hybrid model's DeltaNet layers carry a recurrent state instead, which cannot be cut back to
//! a prefix: the engine keeps the sequence so far, has the layers save their state at the end of
//! each prompt pass (the last [`SAVED_STATES`]), and rewinds to a position by restoring the
//! nearest saved state before it and running the tokens from there again. Interactive turns
//! and sweep depths start where a prompt pass ended, so they rewind without recomputing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use luminal::prelude::*;

use crate::cpu::repack_store::RepackTotals;
use crate::gguf::GgufFile;
use crate::model::config::Qwen3Config;
use crate::model::dims::{self, Hidden, LogitRows, Seq, Vocab};
use crate::model::qwen3::BlockRows;
use crate::model::rotary::{rope_tables, Rotary};
use crate::model::tensors::{self, stem};
use crate::node_record::NodeRecord;
use crate::ops::delta_net::{StateCommand, STATE};
use crate::ops::instrument::{self, Instruments, NodeName};
use crate::ops::parallel::Runtime;
use crate::ops::{self, profile::ProfileBook};

use super::cpu_graph::{self, StepInputs};
use super::loader;
use super::runner::{check_step, CompiledMode, EngineError, Features, Logits, Runner};
use super::EngineOptions;
use crate::settings::Mode;

pub struct Engine {
    /// Boxed: luminal ops may keep pointers into the graph (its dynamic-dimension map), so it
    /// must not move after building.
    cx: Box<Graph>,
    inputs: StepInputs,
    rotary: Rotary,
    logits: GraphTensor<(LogitRows, Vocab)>,
    /// The final-normed hidden state of every position, when built for multi-token prediction
    /// (none or one), and its rows from the last pass.
    hidden: Vec<GraphTensor<(Seq, Hidden)>>,
    hidden_rows: Option<Vec<f32>>,
    /// Weight nodes by the GGUF tensor they take, without `.weight`: names for kernel labels.
    weight_names: HashMap<NodeIndex, String>,
    config: Qwen3Config,
    options: EngineOptions,
    position: usize,
    /// The recurrent states of a hybrid model, and the sequence they have folded in.
    recurrent: Option<Recurrent>,
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
        Self::build(file, config, options, false)
    }

    /// [`Engine::new`], keeping also every position's final-normed hidden state
    /// ([`Runner::hidden_rows`]), which a multi-token-prediction block reads.
    pub fn with_hidden_rows(
        file: &GgufFile,
        config: &Qwen3Config,
        options: EngineOptions,
    ) -> Result<Self, EngineError> {
        Self::build(file, config, options, true)
    }

    fn build(
        file: &GgufFile,
        config: &Qwen3Config,
        options: EngineOptions,
        keep_hidden: bool,
    ) -> Result<Self, EngineError> {
        let mut cx = Box::new(Graph::new());
        let rows = match keep_hidden {
            true => BlockRows::Every,
            false => BlockRows::LogitRows,
        };
        let graph = cpu_graph::build(&mut cx, config, options.max_context, rows)?;
        loader::bind(&mut cx, &graph.model, file)?;
        let mut hidden: Vec<_> = graph.model.normed_hidden().into_iter().collect();
        let (mut inputs, mut rotary, mut logits) =
            (graph.inputs, graph.model.rotary, graph.model.logits);
        let start = Instant::now();
        let rope_tables = [rotary.cos.id, rotary.sin.id];
        let ids = (
            &mut inputs.token_ids,
            &mut inputs.positions,
            &mut rotary.cos,
            &mut rotary.sin,
            &mut logits,
            &mut hidden,
        );
        let runtime = match options.mode {
            Mode::Standard => {
                cx.compile(ops::standard(rope_tables), ids);
                None
            }
            Mode::Parallel { threads } => {
                let runtime = Runtime::new(threads, &options.plans, options.trace.as_ref())?;
                cx.compile(ops::parallel::compiler(&runtime, rope_tables), ids);
                Some(runtime)
            }
        };
        let compile_time = start.elapsed();
        let weight_names: HashMap<NodeIndex, String> = graph
            .model
            .weights()
            .into_iter()
            .map(|(name, node)| (node, stem(&name).to_string()))
            .collect();
        let instruments = Instruments {
            profile: options.profile,
            trace: options.trace.clone(),
        };
        let profile = if instruments.any() {
            instrument::install(&mut cx, &instruments, |g, node, kind| {
                node_name(g, node, kind, &weight_names)
            })
        } else {
            None
        };
        // Outside the timing decorators: they look up each op's cost model on the op itself,
        // and the Ctrl-C check (one load) stays out of the kernels' times.
        ops::interruptible::install(&mut cx);
        let recurrent = config.hybrid.is_some().then(|| Recurrent::new(&mut cx));
        Ok(Self {
            cx,
            inputs,
            rotary,
            logits,
            hidden,
            hidden_rows: None,
            weight_names,
            config: config.clone(),
            options,
            position: 0,
            recurrent,
            compile_time,
            profile,
            runtime,
        })
    }

    pub fn config(&self) -> &Qwen3Config {
        &self.config
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The thread pool and scratch of `--parallel` (none in standard mode), for an engine that
    /// runs beside this one (the multi-token-prediction block).
    pub fn runtime(&self) -> Option<Arc<Runtime>> {
        self.runtime.clone()
    }

    /// Every operator of the compiled graph (inputs and weights left out), in node order: its
    /// kind and its label as the kernel profile names them (`FusedMatMul(RmsNorm+MatMulx3)`,
    /// `FusedMatMul(RmsNorm+MatMulx3) blk.3`).
    pub fn graph_ops(&mut self) -> Vec<(String, String)> {
        let nodes: Vec<NodeIndex> = self.cx.graph.node_indices().collect();
        nodes
            .into_iter()
            .filter_map(|node| {
                let op = self.cx.graph.node_weight_mut(node)?;
                if op.as_any().is::<luminal::op::Function>() {
                    return None;
                }
                let kind = ops::cost::kind_of(op.as_mut());
                let label = node_name(&self.cx, node, &kind, &self.weight_names).label;
                Some((kind, label))
            })
            .collect()
    }

    /// What this engine runs with.
    fn describe(&self) -> Features {
        let standard_passes = vec![
            "GenericCompiler",
            "WeightMatMulCompiler",
            "RmsNormCompiler",
            "RopeCompiler",
            "SwiGluCompiler",
            "StridedCompiler",
        ];
        let moe = self.config.moe.is_some();
        let hybrid = self.config.hybrid.is_some();
        let (mode, passes, mut kernels, simd) = match self.options.mode {
            Mode::Standard => (
                CompiledMode::Standard,
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
                CompiledMode::Parallel,
                [
                    standard_passes,
                    vec!["FusedAttentionCompiler"],
                    if hybrid { vec!["FusedDeltaNetCompiler"] } else { vec![] },
                    if moe { vec!["FusedMoeCompiler"] } else { vec![] },
                    vec!["FusedMatMulCompiler (+ kernel search)"],
                ]
                .concat(),
                vec![
                    "FusedMatMul: RMSNorm + q/k/v or gate/up in one pass, SwiGLU and residual adds fused; SIMD integer dots on 8-bit activations, multi-threaded, weights read in place or from panels repacked once",
                    "FusedAttention: q/k RMSNorm + RoPE + KV-cache append + causal GQA, heads in parallel",
                    "Embedding: table rows decoded from the GGUF encoding",
                ],
                cpu_description(),
            ),
        };
        if let Some(m) = &self.config.moe {
            kernels.extend(moe_kernels(self.options.mode));
            if m.shared_ffn.is_some() {
                kernels.push(shared_expert_kernel(self.options.mode));
            }
        }
        if hybrid {
            // A hybrid's attention layers run the gated op, which has its own line.
            kernels.retain(|k| !k.starts_with("CachedAttention"));
            kernels.extend(hybrid_kernels(self.options.mode));
        }
        let plans = self.runtime.as_ref().map(|r| &r.plans);
        Features {
            backend: "cpu",
            mode,
            threads: self.options.mode.threads(),
            simd,
            compiler_passes: passes,
            kernels,
            kv_cache: self.cache_description(),
            experts: self.config.moe.map(|m| {
                let shared = m
                    .shared_ffn
                    .map(|w| format!(", and one shared expert (ffn {w}) every token"))
                    .unwrap_or_default();
                format!(
                    "{} per layer, {} used per token (expert ffn {}){shared}: {:.1}% of the routed expert weights read per token",
                    m.experts,
                    m.experts_used,
                    m.expert_ffn,
                    100.0 * m.experts_used as f64 / m.experts as f64
                )
            }),
            graph_nodes: self.cx.graph.node_count(),
            kernel_plans: plans.map(|p| p.describe()).unwrap_or_default(),
            plan_cache: plans
                .and_then(|p| p.cache_path())
                .map(|p| p.display().to_string()),
            repacked: self
                .runtime
                .as_ref()
                .map(|r| r.repacked.totals())
                .filter(|t| t.matrices > 0)
                .map(|t| describe_repack(&t)),
        }
    }
}

impl Engine {
    /// The KV cache (the attention layers' only, for a hybrid model) and the recurrent states.
    fn cache_description(&self) -> String {
        let c = &self.config;
        let kv = format!(
            "{} positions x {} attention layers, f16 keys and values",
            self.options.max_context,
            c.attention_layers()
        );
        let Some(h) = &c.hybrid else {
            return kv;
        };
        format!(
            "{kv}; recurrent state {:.2} MiB per sequence ({} DeltaNet layers, f32), kept at the \
             end of the last {SAVED_STATES} prompt passes to rewind to",
            h.state_bytes() as f64 / (1u64 << 20) as f64,
            h.recurrent_count()
        )
    }
}

/// The SIMD path and the CPU's flags; whether the i-quants decode with byte-permute lookups;
/// on a CPU with AMX, what became of its tiles (granted by the OS, checked against AVX-512,
/// offered to the kernel search).
fn cpu_description() -> String {
    let features = crate::cpu::cpu_features();
    #[allow(unused_mut)]
    let mut simd = features.describe();
    #[cfg(target_arch = "x86_64")]
    {
        if features.byte_permutes() {
            simd.push_str("; i-quant decode tiles look their grids up by byte permutes");
        }
        if crate::cpu::amx::in_cpu() {
            simd = format!("{simd}; {}", crate::cpu::dot::panel::amx::describe());
        }
    }
    simd
}

/// What the hybrid models' mixer ops do in `mode`.
fn hybrid_kernels(mode: Mode) -> [&'static str; 2] {
    match mode {
        Mode::Standard => [
            "GatedAttention: q/k RMSNorm, partial sectioned RoPE, KV cache, causal GQA, sigmoid gate",
            "DeltaNet: causal conv1d + SiLU, L2 norms, decay and beta gates, the delta rule on an f32 state per value head, gated RMSNorm, in llama.cpp's order",
        ],
        Mode::Parallel { .. } => [
            "FusedAttention (gated): the query and gate split per head, partial rotation, tiled attention, sigmoid gate",
            "FusedDeltaNet: conv, norms, gates, delta rule and gated norm fused per key-head group, the state read and written once per step, groups across the pool, SIMD",
        ],
    }
}

/// What the experts op does with a shared expert in `mode`.
fn shared_expert_kernel(mode: Mode) -> &'static str {
    match mode {
        Mode::Standard => "MoeExperts (+Shared): the shared expert's SwiGLU in exact f32, scaled by sigmoid(ffn_gate_inp_shexp . x) and added after the routed experts, as llama.cpp adds ffn_shexp",
        Mode::Parallel { .. } => "MoeExperts (+Shared): the shared expert in the same pass as the routed ones (one quantization of the token's activations, its rows split over the pool beside theirs), sigmoid-gated",
    }
}

/// What the mixture-of-experts ops do in `mode`.
fn moe_kernels(mode: Mode) -> [&'static str; 2] {
    match mode {
        Mode::Standard => [
            "MoeRouter: f32 router logits, softmax, top-k in llama.cpp's order, weights renormalised",
            "MoeExperts: the routed experts' SwiGLU in exact f32, each expert's rows decoded once per call, outputs summed in slot order",
        ],
        Mode::Parallel { .. } => [
            "MoeRouter: f32 router on the float kernels, softmax, top-k, weights renormalised",
            "MoeExperts: only the routed experts' slices of the 3-D tensors read in place, tokens grouped by expert, gate+up+SwiGLU fused, residual add folded in, 8-bit activations, multi-threaded",
        ],
    }
}

impl Runner for Engine {
    fn forward(&mut self, tokens: &[u32], want: Logits) -> Result<Vec<f32>, EngineError> {
        check_step(
            tokens,
            self.config.vocab,
            self.position,
            self.options.max_context,
        )?;
        let n = tokens.len();
        let positions: Vec<usize> = (self.position..self.position + n).collect();
        let (cos, sin) = rope_tables(
            &positions,
            self.config.rope_dims,
            self.config.rope_theta,
            self.config.rope_sections,
        );
        let cx = &mut self.cx;
        self.hidden_rows = None;
        cx.set_dyn_dim(dims::SEQ, n);
        cx.set_dyn_dim(dims::LOGIT_ROWS, if want == Logits::All { n } else { 1 });
        let as_f32 = |v: &[usize]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let ids: Vec<f32> = tokens.iter().map(|&t| t as f32).collect();
        cx.set_tensor(self.inputs.token_ids.id, 0, Tensor::new(ids));
        cx.set_tensor(self.inputs.positions.id, 0, Tensor::new(as_f32(&positions)));
        cx.set_tensor(self.rotary.cos.id, 0, Tensor::new(cos));
        cx.set_tensor(self.rotary.sin.id, 0, Tensor::new(sin));
        if ops::interruptible::execute(cx).is_err() {
            // Some DeltaNet layers may have run: their states are past the position now.
            if let Some(r) = self.recurrent.as_mut() {
                r.dirty = true;
            }
            return Err(EngineError::Interrupted);
        }
        self.position += n;
        let out = cx
            .get_tensor(self.logits.id, 0)
            .and_then(|t| t.data.as_any().downcast_ref::<Vec<f32>>().cloned())
            .expect("the compiled graph produces f32 logits");
        // Taken every pass: a retrieved tensor left in the graph would stop the next pass
        // from computing it again.
        self.hidden_rows = self.hidden.first().map(|h| {
            cx.get_tensor(h.id, 0)
                .and_then(|t| t.data.as_any().downcast_ref::<Vec<f32>>().cloned())
                .expect("the compiled graph produces f32 hidden rows")
        });
        if let Some(r) = self.recurrent.as_mut() {
            r.advanced(&mut self.cx, tokens, self.position);
        }
        Ok(out)
    }

    fn hidden_rows(&mut self) -> Option<Vec<f32>> {
        self.hidden_rows.take()
    }

    fn keep_steps(&mut self) {
        if let Some(r) = self.recurrent.as_mut() {
            r.keep_steps(&mut self.cx, self.position);
        }
    }

    fn position(&self) -> usize {
        self.position
    }

    fn max_context(&self) -> usize {
        self.options.max_context
    }

    fn reset(&mut self) {
        self.position = 0;
        if let Some(r) = self.recurrent.as_mut() {
            r.rewind(&mut self.cx, 0);
        }
    }

    /// Keeps the first `len` positions (no-op when it holds fewer): the next forward pass
    /// continues at `len`. The attention ops write and read their caches at the absolute
    /// positions of each pass, so later entries are simply overwritten; a hybrid model's
    /// recurrent states go back to the nearest saved state and run the tokens from there to
    /// `len` again (none to run when `len` is where a prompt pass ended).
    fn truncate(&mut self, len: usize) -> usize {
        let len = self.position.min(len);
        let Some(r) = self.recurrent.as_mut() else {
            self.position = len;
            return len;
        };
        if len == self.position && !r.dirty {
            return len;
        }
        let (from, tail) = r.rewind(&mut self.cx, len);
        self.position = from;
        if !tail.is_empty() && self.forward(&tail, Logits::Last).is_err() {
            // Interrupted (or out of room): the states stand where the pass stopped them.
            return self.position;
        }
        self.position
    }

    fn compile_time(&self) -> Duration {
        self.compile_time
    }

    fn features(&self) -> Features {
        self.describe()
    }

    /// Per-node timings since the last call, when built with `profile`.
    fn take_profile(&mut self) -> Option<Vec<NodeRecord>> {
        self.profile.as_ref().map(ops::profile::take)
    }
}

/// Names a node for the kernel profile and the trace by the weights it reads:
/// `WeightMatMul blk.3.ffn_down`, `FusedAttention blk.3`; nodes that read no weight get their
/// index. The LM head (the op that multiplies by `output`, or by `token_embd` when the
/// embeddings are tied) is named for what it is, whatever else it reads (the final norm when
/// fused): kind `LM head: <op>`, label `LM head (output_norm, output)`.
fn node_name(
    graph: &Graph,
    node: NodeIndex,
    kind: &str,
    names: &HashMap<NodeIndex, String>,
) -> NodeName {
    let weights: Vec<String> = graph
        .get_sources(node)
        .iter()
        .filter_map(|(src, _, _)| names.get(src).cloned())
        .collect();
    let layer = |name: &str| name.splitn(3, '.').take(2).collect::<Vec<_>>().join(".");
    let head = weights.iter().any(|w| {
        w == stem(tensors::OUTPUT) || (w == stem(tensors::TOKEN_EMBD) && kind != "Embedding")
    });
    let (kind, label) = match &weights[..] {
        _ if head => (
            format!("LM head: {kind}"),
            format!("LM head ({})", weights.join(", ")),
        ),
        [] => (kind.to_string(), format!("{kind} #{}", node.index())),
        [one] => (kind.to_string(), format!("{kind} {one}")),
        [first, ..] => (kind.to_string(), format!("{kind} {}", layer(first))),
    };
    NodeName {
        kind,
        label,
        weights,
    }
}

/// How many recurrent states a hybrid model's engine keeps saved to rewind to (the newest
/// ones), besides the live one: enough for an interactive turn or a sweep depth, which rewind
/// to where the last prompt pass ended.
pub const SAVED_STATES: usize = 2;

/// A hybrid model's recurrent layers, as the engine drives them.
struct Recurrent {
    /// The DeltaNet ops (the nodes that answer state commands).
    nodes: Vec<NodeIndex>,
    /// The tokens the states have folded in, from position 0.
    history: Vec<u32>,
    /// Positions with a saved state, ascending.
    saved: Vec<usize>,
    /// A pass stopped between ops: some layers' states moved past `history`.
    dirty: bool,
    /// The next pass keeps its steps ([`StateCommand::KeepSteps`]); after it, the positions
    /// it covers, `(start, end)`, any of which a rewind restores without recompute.
    keep_next: bool,
    steps: Option<(usize, usize)>,
}

impl Recurrent {
    /// Finds the ops that keep a recurrent state (and starts them at position 0).
    fn new(cx: &mut Graph) -> Self {
        let mut r = Recurrent {
            nodes: cx.graph.node_indices().collect(),
            history: vec![],
            saved: vec![],
            dirty: false,
            keep_next: false,
            steps: None,
        };
        r.nodes = r
            .nodes
            .iter()
            .copied()
            .filter(|&n| command(cx, n, StateCommand::Restore { at: 0 }))
            .collect();
        r
    }

    fn send(&self, cx: &mut Graph, command_: StateCommand) {
        for &node in &self.nodes {
            command(cx, node, command_);
        }
    }

    /// A pass of `tokens` ended at `position`: remember them, and after a prompt pass save the
    /// states there (forgetting the oldest beyond [`SAVED_STATES`]).
    fn advanced(&mut self, cx: &mut Graph, tokens: &[u32], position: usize) {
        self.history.truncate(position - tokens.len());
        self.history.extend_from_slice(tokens);
        // A pass that kept its steps (a speculative verification) is rewound through them.
        self.steps =
            std::mem::take(&mut self.keep_next).then_some((position - tokens.len(), position));
        if self.steps.is_some() {
            return;
        }
        if tokens.len() > 1 && self.saved.last() != Some(&position) {
            self.send(cx, StateCommand::Save { at: position });
            self.saved.push(position);
            while self.saved.len() > SAVED_STATES {
                let oldest = self.saved.remove(0);
                self.send(cx, StateCommand::Forget { at: oldest });
            }
        }
    }

    /// Has the next pass, which starts at `position`, keep the state after each token.
    fn keep_steps(&mut self, cx: &mut Graph, position: usize) {
        self.send(cx, StateCommand::KeepSteps { at: position });
        self.keep_next = true;
    }

    /// Restores the newest saved state at or before `len` (the start of the sequence when none
    /// is), or the state the last pass kept at `len`; returns its position and the tokens from
    /// there to `len`, which the caller runs again.
    fn rewind(&mut self, cx: &mut Graph, len: usize) -> (usize, Vec<u32>) {
        if let Some((start, end)) = self.steps.take() {
            if start < len && len < end {
                self.send(cx, StateCommand::Restore { at: len });
                self.history.truncate(len);
                return (len, vec![]);
            }
        }
        let from = self
            .saved
            .iter()
            .rev()
            .copied()
            .find(|&p| p <= len)
            .unwrap_or(0);
        self.send(cx, StateCommand::Restore { at: from });
        for later in self.saved.iter().copied().filter(|&p| p > from) {
            self.send(cx, StateCommand::Forget { at: later });
        }
        self.saved.retain(|&p| p <= from);
        self.dirty = false;
        let tail = self.history[from..len.min(self.history.len())].to_vec();
        self.history.truncate(from);
        (from, tail)
    }
}

/// Sends `command` to the op at `node`; whether it keeps a recurrent state (and did it).
fn command(cx: &mut Graph, node: NodeIndex, command: StateCommand) -> bool {
    let Some(op) = cx.graph.node_weight_mut(node) else {
        return false;
    };
    op.custom(STATE, Box::new(command))
        .and_then(|done| done.downcast::<bool>().ok())
        .is_some_and(|done| *done)
}

/// `--kernel-timing`'s line on the repacked weights, e.g. "196 matrices, 4.62 GB of GGUF rows
/// into 4.89 GB of 16-row panels in 0.84 s of the compile; 4.62 GB of mapped pages released".
fn describe_repack(t: &RepackTotals) -> String {
    const GB: f64 = 1e9;
    format!(
        "{} matrices, {:.2} GB of GGUF rows into {:.2} GB of 16-row panels in {:.2} s of the \
         compile; {:.2} GB of mapped pages released",
        t.matrices,
        t.source_bytes as f64 / GB,
        t.bytes as f64 / GB,
        t.seconds,
        t.released_bytes as f64 / GB
    )
}
