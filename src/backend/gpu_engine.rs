//! A compiled GPU graph ready to run: weights on the device, the KV cache carried between steps.
//!
//! The same contract as the CPU engine ([`Runner`]): one forward pass runs tokens at the next
//! positions and returns their logits; nothing is recompiled between calls. Long prompts run
//! in chunks so that attention's broadcast intermediates (`heads x seq x total x head_dim`
//! elements; luminal has no fused attention) stay within [`GpuOptions::attention_budget`].

use std::time::{Duration, Instant};

use luminal::prelude::*;

use crate::gguf::GgufFile;
use crate::model::config::Qwen3Config;
use crate::model::dims;
use crate::model::rotary::rope_tables;

use super::device::{Device, GpuError, Precision};
use super::gpu_graph::{self, GpuGraph, LayerCache};
use super::gpu_weights::{self, HostEmbedding};
use super::runner::{check_step, CompiledMode, EngineError, Features, Logits, Runner};

/// How to build a GPU engine.
#[derive(Debug, Clone)]
pub struct GpuOptions {
    /// Positions the KV cache may hold (prompt plus generated tokens).
    pub max_context: usize,
    /// Largest attention intermediate, in elements, that a chunk of a long prompt may need.
    pub attention_budget: usize,
}

impl GpuOptions {
    /// 2^27 elements: 512 MiB in f32 per intermediate.
    pub const DEFAULT_ATTENTION_BUDGET: usize = 1 << 27;

    pub fn new(max_context: usize) -> Self {
        Self {
            max_context,
            attention_budget: Self::DEFAULT_ATTENTION_BUDGET,
        }
    }
}

pub struct GpuEngine<D: Device> {
    /// Boxed: luminal's ops keep a raw pointer to the graph's `dyn_map` (constants evaluated from
    /// dims, every CUDA kernel's dim arguments), so the graph must not move after building.
    cx: Box<Graph>,
    graph: GpuGraph,
    device: D,
    embedding: HostEmbedding,
    config: Qwen3Config,
    options: GpuOptions,
    position: usize,
    compile_time: Duration,
}

impl<D: Device> GpuEngine<D> {
    /// Builds the graph for `config`, compiles it for `device` and uploads the weights of `file`.
    pub fn new(
        file: &GgufFile,
        config: &Qwen3Config,
        options: GpuOptions,
        mut device: D,
    ) -> Result<Self, GpuError> {
        let mut cx = Box::new(Graph::new());
        let mut graph = gpu_graph::build(&mut cx, config, device.norm());
        let slots = gpu_weights::slots(&graph.model, file)?;
        let embedding = HostEmbedding::new(file, config)?;
        let start = Instant::now();
        device.compile_and_bind(&mut cx, graph.ids_mut(), &slots, file)?;
        let compile_time = start.elapsed();
        let mut engine = Self {
            cx,
            graph,
            device,
            embedding,
            config: config.clone(),
            options,
            position: 0,
            compile_time,
        };
        engine.reset();
        Ok(engine)
    }

    /// Tokens of the next chunk: as many as keep attention within the budget, at least one.
    fn chunk_len(&self, remaining: usize) -> usize {
        let c = &self.config;
        let total = self.position + 1 + remaining;
        let per_token = c.heads * c.head_dim * total;
        (self.options.attention_budget / per_token.max(1)).clamp(1, remaining)
    }

    /// One execution over `tokens`; returns the logits of the last `rows` of them.
    fn step(&mut self, tokens: &[u32], rows: usize) -> Vec<f32> {
        let n = tokens.len();
        let past = self.position + 1; // the sink
        let positions: Vec<usize> = (self.position..self.position + n).collect();
        let (cos, sin) = rope_tables(
            &positions,
            self.config.rope_dims,
            self.config.rope_theta,
            self.config.rope_sections,
        );
        let (inputs, rotary) = (self.graph.inputs, self.graph.model.rotary);
        let cx = &mut self.cx;
        let per_step = [
            (dims::SEQ, n),
            (dims::LOGIT_ROWS, rows),
            (dims::PAST, past),
            (dims::TOTAL, past + n),
        ];
        for (dim, size) in per_step {
            cx.set_dyn_dim(dim, size);
        }
        cx.set_tensor(
            inputs.embeddings.id,
            0,
            Tensor::new(self.embedding.rows(tokens)),
        );
        cx.set_tensor(rotary.cos.id, 0, Tensor::new(cos));
        cx.set_tensor(rotary.sin.id, 0, Tensor::new(sin));
        cx.set_tensor(
            inputs.mask.id,
            0,
            Tensor::new(gpu_graph::causal_mask(past, n)),
        );
        cx.execute();
        // The logits are the graph's only host output: on CUDA their copy back is a blocking
        // `cuMemcpyDtoH` on the default stream after every kernel of the step (all of them feed
        // the logits), so when this returns the device has finished the step and a timer around
        // `forward` measures device time, not launch time. Metal's copy waits on its command
        // buffer likewise.
        let logits = cx
            .get_tensor(self.graph.model.logits.id, 0)
            .and_then(|t| t.data.as_any().downcast_ref::<Vec<f32>>().cloned())
            .expect("the compiled graph produces host f32 logits");
        for cache in &self.graph.caches {
            // The concatenated caches stay on the device and become the next step's inputs.
            transfer_data_same_graph(cache.k_out.id, cache.k_in.id, cx);
            transfer_data_same_graph(cache.v_out.id, cache.v_in.id, cx);
        }
        self.position += n;
        logits
    }

    pub fn config(&self) -> &Qwen3Config {
        &self.config
    }

    pub fn options(&self) -> &GpuOptions {
        &self.options
    }

    /// What this engine runs with, for the timing report.
    fn describe(&self) -> Features {
        let precision = self.device.precision();
        let mut kernels = vec![
            "Embedding: rows decoded on the host from the GGUF encoding, uploaded per step",
            "Weights: decoded to f32 on the host once, converted and uploaded at load",
            "Attention: stock broadcast matmuls and softmax; prompts chunked to bound memory",
        ];
        if precision == Precision::F16 {
            kernels.push("RmsNorm: rows scaled by their largest magnitude to stay in f16 range");
        }
        Features {
            backend: self.device.name(),
            mode: match precision {
                Precision::F32 => CompiledMode::Standard,
                Precision::F16 => CompiledMode::Parallel,
            },
            threads: 1,
            simd: format!("none: {} GPU kernels ({})", self.device.name(), precision.name()),
            compiler_passes: self.device.passes(),
            kernels,
            kv_cache: format!(
                "graph tensors on the device, grown by concatenation each step (up to {} positions x {} layers, {})",
                self.options.max_context,
                self.config.layers,
                precision.name()
            ),
            experts: None,
            graph_nodes: self.cx.graph.node_count(),
            kernel_plans: vec![],
            plan_cache: None,
            repacked: None,
        }
    }
}

impl<D: Device> Runner for GpuEngine<D> {
    /// Long prompts run in chunks within the attention budget.
    fn forward(&mut self, tokens: &[u32], want: Logits) -> Result<Vec<f32>, EngineError> {
        check_step(
            tokens,
            self.config.vocab,
            self.position,
            self.options.max_context,
        )?;
        let mut out = Vec::new();
        let mut rest = tokens;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(self.chunk_len(rest.len()));
            // A chunk before the last still produces one row of logits (no tensor may be empty).
            let rows = if want == Logits::All { chunk.len() } else { 1 };
            let logits = self.step(chunk, rows);
            if want == Logits::All || tail.is_empty() {
                out.extend(logits);
            }
            rest = tail;
        }
        Ok(out)
    }

    fn position(&self) -> usize {
        self.position
    }

    fn max_context(&self) -> usize {
        self.options.max_context
    }

    /// Forgets the KV cache: every layer's cache is back to the zeroed sink.
    fn reset(&mut self) {
        let sink = gpu_graph::sink_len(&self.config);
        let caches: Vec<LayerCache> = self.graph.caches.clone();
        for cache in caches {
            self.cx.drop_tensors(vec![cache.k_out.id, cache.v_out.id]);
            for input in [cache.k_in.id, cache.v_in.id] {
                self.cx
                    .set_tensor(input, 0, Tensor::new(vec![0.0f32; sink]));
            }
        }
        self.position = 0;
    }

    fn truncate(&mut self, len: usize) -> usize {
        // The device cache grows by concatenation and cannot be cut: keep it only when whole.
        if len < self.position {
            self.reset();
        }
        self.position
    }

    fn can_cut_cache(&self) -> bool {
        false
    }

    fn compile_time(&self) -> Duration {
        self.compile_time
    }

    fn features(&self) -> Features {
        self.describe()
    }
}
