//! The mixture-of-experts feed-forward on the `--parallel` path: the standard graph's
//! [`MoeRouter`] and [`MoeExperts`] replaced by multi-threaded SIMD versions on the quantized
//! expert tensors in the memory map.
//!
//! - [`FusedMoeRouter`]: router logits in f32 (the float kernels; a quantized router is
//!   dequantized, never multiplied on 8-bit activations, so the choice of experts stays as
//!   close to llama.cpp's as f32 sums allow), then the routing as llama.cpp computes it.
//! - [`FusedMoeExperts`]: `crate::cpu::moe::moe_experts` (decode reads only the selected experts;
//!   a batch groups its tokens by expert; gate and up with SwiGLU fused; activations quantized
//!   once per token), with the residual add folded in when the experts' sum only feeds it.

use std::sync::Arc;

use luminal::op::{InputTensor, Operator};
use luminal::prelude::*;

use super::super::cost::{self, Cost, OpCost};
use super::super::input::{contiguous, f32_data};
use super::super::moe_ffn::{experts_cost, router_cost, MoeExperts, MoeRouter};
use super::super::rewrite::{self, consumers, op_as, sources, Source};
use super::super::strided::{BinaryKind, StridedBinary};
use super::super::weight::{as_weight, WeightData};
use super::runtime::Runtime;
use crate::cpu::matmul::{matmul, MatmulPlan};
use crate::cpu::moe::{
    moe_experts, route, ExpertTensor, ExpertWeights, MoePlan, Routing, SharedExpert,
};

/// Inputs: `h [seq, hidden]` (normalised), the router `[experts, hidden]`. Output: the routing
/// `[seq, 2 used]` (see `super::super::moe_ffn`).
pub struct FusedMoeRouter {
    runtime: Arc<Runtime>,
    used: usize,
    plan: MatmulPlan,
    logits: Vec<f32>,
    routing: Routing,
}

impl std::fmt::Debug for FusedMoeRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MoeRouter(f32)")
    }
}

impl PartialEq for FusedMoeRouter {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

impl Operator for FusedMoeRouter {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let rt = &self.runtime;
        let h = contiguous(&inp[0].0, &inp[0].1);
        let router = as_weight(&inp[1].0)
            .expect("moe router: bound router")
            .matrix();
        let n = h.len() / router.cols;
        self.logits.resize(n * router.rows, 0.0);
        {
            let mut scratch = rt.scratch.lock().unwrap_or_else(|e| e.into_inner());
            matmul(
                &rt.pool,
                &router,
                &h,
                n,
                &mut self.logits,
                &self.plan,
                &mut scratch,
            )
            .unwrap_or_else(|e| panic!("moe router on a validated weight failed: {e}"));
        }
        route(&self.logits, router.rows, self.used, &mut self.routing);
        let out = self.routing.to_rows();
        rt.buffers.recycle(inp);
        vec![Tensor::new(out)]
    }
    /// The cost model and kind, for the profiler (`cost::model_of`, `cost::kind_of`).
    fn custom(&mut self, key: &str, _: Box<dyn std::any::Any>) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key)
    }
}

/// Inputs: `h [seq, hidden]`, the routing `[seq, 2 used]`, gate, up, down (as bound, see
/// [`MoeExperts`]), then the residual `[seq, hidden]` when folded in. Output `[seq, hidden]`.
pub struct FusedMoeExperts {
    runtime: Arc<Runtime>,
    experts: usize,
    used: usize,
    /// Inputs 5..=8 are a shared expert (see [`MoeExperts`]).
    shared: bool,
    residual: bool,
    decode: MoePlan,
    batch: MoePlan,
}

impl std::fmt::Debug for FusedMoeExperts {
    /// `MoeExperts(GateUp+SwiGlu+Down+Shared+Residual)`: what was fused in (a shared expert,
    /// the residual), the kind the kernel profile groups by.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = if self.shared { "+Shared" } else { "" };
        let residual = if self.residual { "+Residual" } else { "" };
        write!(f, "MoeExperts(GateUp+SwiGlu+Down{shared}{residual})")
    }
}

impl PartialEq for FusedMoeExperts {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

impl Operator for FusedMoeExperts {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let out = self.compute(&inp);
        self.runtime.buffers.recycle(inp);
        vec![Tensor::new(out)]
    }
    /// The cost model and kind, for the profiler (`cost::model_of`, `cost::kind_of`).
    fn custom(&mut self, key: &str, _: Box<dyn std::any::Any>) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key)
    }
}

impl OpCost for FusedMoeRouter {
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        router_cost(inp)
    }

    /// The standard router's kind: the same computation, only on the pool.
    fn kind(&self) -> String {
        "MoeRouter".to_string()
    }
}

impl OpCost for FusedMoeExperts {
    /// As the standard op's; a folded-in residual (the last input) counts as activations read.
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        experts_cost(inp, self.experts, self.used, self.shared)
    }

    /// What was fused in (`MoeExperts(GateUp+SwiGlu+Down+Shared+Residual)`), as the debug text
    /// says.
    fn kind(&self) -> String {
        format!("{self:?}")
    }
}

impl FusedMoeExperts {
    fn compute(&self, inp: &[(InputTensor, ShapeTracker)]) -> Vec<f32> {
        let rt = &self.runtime;
        let h = contiguous(&inp[0].0, &inp[0].1);
        let rows = f32_data(&inp[1].0).expect("moe experts: f32 routing");
        let routing = Routing::from_rows(rows, self.used, self.experts);
        let tensor = |i: usize, rows_per: fn(&WeightData, usize) -> usize| {
            let w = as_weight(&inp[i].0).expect("moe experts: bound expert tensors");
            let rows = rows_per(w, self.experts);
            ExpertTensor::new(w.ty, self.experts, rows, w.cols, w.bytes())
                .unwrap_or_else(|e| panic!("moe experts on validated tensors failed: {e}"))
        };
        let per_expert = |w: &WeightData, experts: usize| w.rows / experts;
        let w = ExpertWeights {
            gate: tensor(2, per_expert),
            up: tensor(3, per_expert),
            down: tensor(4, per_expert),
            shared: self.shared.then(|| {
                let one = |i: usize| {
                    let w = as_weight(&inp[i].0).expect("moe experts: bound shared expert");
                    ExpertTensor::new(w.ty, 1, w.rows, w.cols, w.bytes())
                        .unwrap_or_else(|e| panic!("moe experts on validated tensors failed: {e}"))
                };
                SharedExpert {
                    gate_inp: f32_data(&inp[5].0).expect("moe experts: the shared gate as f32"),
                    gate: one(6),
                    up: one(7),
                    down: one(8),
                }
            }),
        };
        let at = if self.shared { 9 } else { 5 };
        let residual = self.residual.then(|| contiguous(&inp[at].0, &inp[at].1));
        let mut out = rt.buffers.take(h.len());
        let plan = if routing.n_tokens == 1 {
            &self.decode
        } else {
            &self.batch
        };
        let mut scratch = rt.moe_scratch.lock().unwrap_or_else(|e| e.into_inner());
        moe_experts(
            &rt.pool,
            &w,
            &h,
            &routing,
            residual.as_deref(),
            &mut out,
            plan,
            &mut scratch,
        )
        .unwrap_or_else(|e| panic!("moe experts on validated tensors failed: {e}"));
        out
    }
}

/// Replaces the standard graph's [`MoeRouter`]s and [`MoeExperts`] with the fused ops above,
/// folding each experts op's residual add in when the add is its only reader.
pub struct FusedMoeCompiler {
    pub runtime: Arc<Runtime>,
}

impl Compiler for FusedMoeCompiler {
    fn compile<T: ToIdsMut>(&self, graph: &mut Graph, mut remap: T) {
        let nodes: Vec<NodeIndex> = graph.graph.node_indices().collect();
        for node in nodes {
            if let Some(router) = op_as::<MoeRouter>(graph, node) {
                let op = FusedMoeRouter {
                    runtime: self.runtime.clone(),
                    used: router.used,
                    plan: MatmulPlan {
                        quantize_activations: false,
                        panel: false,
                        ..MatmulPlan::new()
                    },
                    logits: vec![],
                    routing: Routing::default(),
                };
                swap_op(graph, &mut remap, node, Box::new(op), None);
            } else if let Some(experts) = op_as::<MoeExperts>(graph, node) {
                let (n_experts, used, shared) = (experts.experts, experts.used, experts.shared);
                let residual = residual_add(graph, node);
                let op = FusedMoeExperts {
                    runtime: self.runtime.clone(),
                    experts: n_experts,
                    used,
                    shared,
                    residual: residual.is_some(),
                    decode: MoePlan::new(),
                    batch: MoePlan::new(),
                };
                swap_op(graph, &mut remap, node, Box::new(op), residual);
            }
        }
    }
}

/// The residual add that is the only reader of `experts`: (the add node, the other operand).
fn residual_add(graph: &Graph, experts: NodeIndex) -> Option<(NodeIndex, Source)> {
    let [add] = consumers(graph, experts)[..] else {
        return None;
    };
    let is_add = matches!(
        op_as::<StridedBinary>(graph, add),
        Some(StridedBinary(BinaryKind::Add))
    );
    if !is_add || graph.no_delete.contains(&experts) || graph.no_delete.contains(&add) {
        return None;
    }
    let srcs = sources(graph, add);
    let [a, b] = srcs[..] else { return None };
    let (ours, other) = if a.0 == experts { (a, b) } else { (b, a) };
    let plain = |s: &Source| s.2.is_contiguous() && !s.2.is_sliced() && !s.2.is_padded();
    (ours.0 == experts && other.0 != experts && plain(&ours) && plain(&other))
        .then_some((add, other))
}

/// Puts `op` in place of `node` (same inputs, plus the residual's other operand when the add
/// is folded in), handing it the readers of `node` (or of the add).
fn swap_op<T: ToIdsMut>(
    graph: &mut Graph,
    remap: &mut T,
    node: NodeIndex,
    op: Box<dyn Operator>,
    residual: Option<(NodeIndex, Source)>,
) {
    let mut inputs = sources(graph, node);
    if let Some((_, other)) = residual {
        inputs.push(other);
    }
    let new = rewrite::add_op(graph, op, &inputs);
    let tail = residual.map_or(node, |(add, _)| add);
    rewrite::move_output(graph, remap, tail, new, 0);
    let mut dead = vec![tail];
    if tail != node {
        dead.push(node);
    }
    rewrite::remove_nodes(graph, &dead);
}
