//! The CPU engine of a multi-token-prediction block ([`crate::model::mtp`]): its own graph and
//! KV cache, the trunk's compilation path and (`--parallel`) the trunk's thread pool, so that
//! the two never run at once on two pools.

use std::sync::Arc;
use std::time::{Duration, Instant};

use luminal::prelude::*;

use crate::gguf::GgufFile;
use crate::model::config::{HybridConfig, MtpBlock, Qwen3Config};
use crate::model::dims::{self, Hidden, LogitRows, Seq, Vocab};
use crate::model::rotary::{rope_tables, Rotary};
use crate::ops;
use crate::ops::parallel::Runtime;
use crate::settings::Mode;

use super::cpu_graph::{self, StepInputs};
use super::draft_head::{DraftHead, DraftStep};
use super::loader;
use super::runner::{check_step, EngineError};

pub struct MtpEngine {
    /// Boxed: luminal ops may keep pointers into the graph (see the trunk's engine).
    cx: Box<Graph>,
    inputs: StepInputs,
    rotary: Rotary,
    hidden_in: GraphTensor<(Seq, Hidden)>,
    logits: GraphTensor<(LogitRows, Vocab)>,
    hidden_out: GraphTensor<(Seq, Hidden)>,
    config: Qwen3Config,
    max_context: usize,
    position: usize,
    compile_time: Duration,
}

impl MtpEngine {
    /// Builds block `mtp` of `config` with a KV cache of `max_context` positions, binds its
    /// weights from `file` and compiles it for `mode` on `runtime` (the trunk's, in parallel
    /// mode).
    pub fn new(
        file: &GgufFile,
        config: &Qwen3Config,
        hybrid: &HybridConfig,
        mtp: &MtpBlock,
        mode: Mode,
        max_context: usize,
        runtime: Option<&Arc<Runtime>>,
    ) -> Result<Self, EngineError> {
        let mut cx = Box::new(Graph::new());
        let graph = cpu_graph::build_mtp(&mut cx, config, hybrid, mtp, max_context)?;
        loader::bind_named(&mut cx, graph.model.weights.clone(), file)?;
        let mut inputs = graph.inputs;
        let m = graph.model;
        let (mut rotary, mut hidden_in, mut logits, mut hidden_out) =
            (m.rotary, m.hidden_in, m.logits, m.hidden_out);
        let start = Instant::now();
        let rope = [rotary.cos.id, rotary.sin.id];
        let ids = (
            &mut inputs.token_ids,
            &mut inputs.positions,
            &mut rotary.cos,
            &mut rotary.sin,
            &mut hidden_in,
            &mut logits,
            &mut hidden_out,
        );
        match (mode, runtime) {
            (Mode::Parallel { .. }, Some(runtime)) => {
                cx.compile(ops::parallel::compiler(runtime, rope), ids)
            }
            _ => cx.compile(ops::standard(rope), ids),
        }
        ops::interruptible::install(&mut cx);
        Ok(MtpEngine {
            cx,
            inputs,
            rotary,
            hidden_in,
            logits,
            hidden_out,
            config: config.clone(),
            max_context,
            position: 0,
            compile_time: start.elapsed(),
        })
    }

    /// Takes a retrieved f32 output out of the graph (so that the next pass computes it again).
    fn take(&mut self, id: NodeIndex) -> Vec<f32> {
        self.cx
            .get_tensor(id, 0)
            .and_then(|t| t.data.as_any().downcast_ref::<Vec<f32>>().cloned())
            .expect("the compiled prediction block produces f32 outputs")
    }
}

impl DraftHead for MtpEngine {
    fn forward(&mut self, tokens: &[u32], hidden: &[f32]) -> Result<DraftStep, EngineError> {
        check_step(tokens, self.config.vocab, self.position, self.max_context)?;
        let (n, h) = (tokens.len(), self.config.hidden);
        assert_eq!(hidden.len(), n * h, "one hidden row per token");
        let positions: Vec<usize> = (self.position..self.position + n).collect();
        let c = &self.config;
        let (cos, sin) = rope_tables(&positions, c.rope_dims, c.rope_theta, c.rope_sections);
        let cx = &mut self.cx;
        cx.set_dyn_dim(dims::SEQ, n);
        cx.set_dyn_dim(dims::LOGIT_ROWS, 1);
        let ids: Vec<f32> = tokens.iter().map(|&t| t as f32).collect();
        let at: Vec<f32> = positions.iter().map(|&p| p as f32).collect();
        cx.set_tensor(self.inputs.token_ids.id, 0, Tensor::new(ids));
        cx.set_tensor(self.inputs.positions.id, 0, Tensor::new(at));
        cx.set_tensor(self.rotary.cos.id, 0, Tensor::new(cos));
        cx.set_tensor(self.rotary.sin.id, 0, Tensor::new(sin));
        cx.set_tensor(self.hidden_in.id, 0, Tensor::new(hidden.to_vec()));
        if ops::interruptible::execute(cx).is_err() {
            return Err(EngineError::Interrupted);
        }
        self.position += n;
        let logits = self.take(self.logits.id);
        let rows = self.take(self.hidden_out.id);
        Ok(DraftStep {
            logits,
            hidden: rows[(n - 1) * h..].to_vec(),
        })
    }

    fn position(&self) -> usize {
        self.position
    }

    fn truncate(&mut self, len: usize) {
        self.position = self.position.min(len);
    }

    fn hidden_size(&self) -> usize {
        self.config.hidden
    }

    fn compile_time(&self) -> Duration {
        self.compile_time
    }
}
