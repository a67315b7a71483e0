//! Fused, multi-threaded weight matmuls: one op for what the standard graph does in up to five.
//!
//! [`FusedMatMulCompiler`] takes the standard graph's [`WeightMatMul`]s and groups those that read
//! the same activations (q/k/v; gate/up), so the activations are normalised and quantized once
//! and all rows go through one pool job. Around the matmuls it folds in
//! - the RMSNorm that feeds them (when nothing else reads the normalised activations),
//! - SwiGLU, when a gate/up pair feeds one [`SwiGlu`],
//! - the residual add, when a single matmul's only reader adds it to the residual stream.
//!
//! A layer becomes four of these and one attention op. The kernels are `crate::cpu`'s SIMD
//! kernels on the weights in place in the memory map, with plans from [`crate::cpu::plans`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use luminal::op::{InputTensor, Operator};
use luminal::prelude::*;

use super::super::cost::{self, Cost, OpCost};
use super::super::input::{contiguous, f32_data};
use super::super::rewrite::{self, bound_matrix, consumers, is_op, op_as, sources, Source};
use super::super::rms_norm::{rms_norm_row, RmsNorm};
use super::super::strided::{BinaryKind, StridedBinary};
use super::super::swiglu::{swiglu_rows, SwiGlu};
use super::super::weight::{as_weight, WeightData};
use super::super::weight_matmul::WeightMatMul;
use super::runtime::Runtime;
use crate::cpu::dot::kernel_set;
use crate::cpu::matmul::{matmul_multi, MatmulPlan, WeightMatrix, MAX_MATRICES};
use crate::cpu::plans::{job_key, BATCH_TOKENS, SHORT_BATCH_MAX, SHORT_BATCH_TOKENS};
use crate::cpu::repack::RepackedMatrix;
use crate::cpu::shared::SharedMut;
use crate::progress::Phase;

/// What happens to the matmul outputs before they leave the op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    /// One output per weight.
    None,
    /// `residual + y` (one weight).
    AddResidual,
    /// `swish(y_gate) * y_up` (two weights, gate first).
    SwiGlu,
}

/// Inputs: `x [seq, cols]`, then the norm weight `[cols]` if `norm_eps` is set, then the
/// `n_weights` weights, then the residual `[seq, rows]` for [`Epilogue::AddResidual`].
pub struct FusedMatMul {
    runtime: Arc<Runtime>,
    norm_eps: Option<f32>,
    n_weights: usize,
    epilogue: Epilogue,
    /// One token; up to [`SHORT_BATCH_MAX`] (a speculative verification pass, a short prompt);
    /// more.
    decode: MatmulPlan,
    short: MatmulPlan,
    batch: MatmulPlan,
    /// The weights repacked into panels, in weight order, where the plans read them so
    /// (empty: every weight is read in place).
    repacked: Vec<Arc<RepackedMatrix>>,
    /// Normalised activations during a call: a buffer of the runtime's pool, handed back
    /// after the matmuls (held per op, a long prompt's would add up to gigabytes).
    normed: Vec<f32>,
}

impl std::fmt::Debug for FusedMatMul {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.kind())
    }
}

impl FusedMatMul {
    /// `FusedMatMul(RmsNorm+MatMulx3)`: what it fuses, the kind the kernel profile groups by.
    fn fused_kind(&self) -> String {
        let norm = if self.norm_eps.is_some() {
            "RmsNorm+"
        } else {
            ""
        };
        let count = match self.n_weights {
            1 => String::new(),
            n => format!("x{n}"),
        };
        let tail = match self.epilogue {
            Epilogue::None => "",
            Epilogue::AddResidual => "+Residual",
            Epilogue::SwiGlu => "+SwiGlu",
        };
        format!("FusedMatMul({norm}MatMul{count}{tail})")
    }
}

impl PartialEq for FusedMatMul {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

impl Operator for FusedMatMul {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let out = self.compute(&inp);
        self.runtime.buffers.recycle(inp);
        out.into_iter().map(Tensor::new).collect()
    }
    /// The cost model and kind, for the profiler (`cost::model_of`, `cost::kind_of`).
    fn custom(&mut self, key: &str, _: Box<dyn std::any::Any>) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key)
    }
}

impl FusedMatMul {
    fn compute(&mut self, inp: &[(InputTensor, ShapeTracker)]) -> Vec<Vec<f32>> {
        let rt = &self.runtime;
        let x = contiguous(&inp[0].0, &inp[0].1);
        let first_weight = 1 + usize::from(self.norm_eps.is_some());
        let ws: Vec<WeightMatrix<'_>> = inp[first_weight..first_weight + self.n_weights]
            .iter()
            .enumerate()
            .map(|(i, (t, _))| WeightMatrix {
                repacked: self.repacked.get(i).map(Arc::as_ref),
                ..as_weight(t).expect("fused matmul: weight input").matrix()
            })
            .collect();
        let cols = ws[0].cols;
        let n_tokens = x.len() / cols;
        let x: &[f32] = match self.norm_eps {
            Some(eps) => {
                let w = f32_data(&inp[1].0).expect("fused matmul: norm weight");
                self.normed = rt.buffers.take_stale(x.len());
                norm_tokens(rt, &x, w, eps, &mut self.normed);
                &self.normed
            }
            None => &x,
        };
        let mut outs: Vec<Vec<f32>> = ws
            .iter()
            .map(|w| rt.buffers.take_stale(n_tokens * w.rows))
            .collect();
        let plan = match n_tokens {
            1 => self.decode,
            n if n <= SHORT_BATCH_MAX => self.short,
            _ => self.batch,
        };
        {
            let mut ys: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
            let mut scratch = rt.scratch.lock().unwrap_or_else(|e| e.into_inner());
            matmul_multi(&rt.pool, &ws, x, n_tokens, &mut ys, &plan, &mut scratch)
                .unwrap_or_else(|e| panic!("fused matmul on validated weights failed: {e}"));
        }
        rt.buffers.give(std::mem::take(&mut self.normed));
        match self.epilogue {
            Epilogue::None => outs,
            Epilogue::AddResidual => {
                let residual = contiguous(&inp[first_weight + 1].0, &inp[first_weight + 1].1);
                for (v, r) in outs[0].iter_mut().zip(residual.iter()) {
                    *v += r;
                }
                outs
            }
            Epilogue::SwiGlu => {
                let rows = ws[0].rows;
                let mut out = rt.buffers.take_stale(n_tokens * rows);
                swiglu_tokens(rt, &outs[0], &outs[1], rows, &mut out);
                for buf in outs {
                    rt.buffers.give(buf);
                }
                vec![out]
            }
        }
    }
}

impl OpCost for FusedMatMul {
    fn kind(&self) -> String {
        self.fused_kind()
    }

    /// The activations (and the norm weight, the residual), every weight in its encoding,
    /// `2 · tokens · rows · cols` per weight, the norm's and the epilogue's arithmetic.
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        let first_weight = 1 + usize::from(self.norm_eps.is_some());
        let ws: Vec<&WeightData> = inp
            .iter()
            .skip(first_weight)
            .take(self.n_weights)
            .filter_map(|(t, _)| as_weight(t))
            .collect();
        let Some(cols) = ws.first().map(|w| w.cols as u64) else {
            return Cost::default();
        };
        let x = inp.first().map_or(0, |(_, t)| cost::read_len(t));
        let n_tokens = x / cols.max(1);
        let mut total = Cost::activations(x) + ws.iter().map(|w| w.matmul_cost(n_tokens)).sum();
        if self.norm_eps.is_some() {
            total += cost::input_activations(inp, 1);
            total.flops += 4 * x;
        }
        let out = n_tokens * ws[0].rows as u64;
        match self.epilogue {
            Epilogue::None => {}
            Epilogue::AddResidual => {
                total += cost::input_activations(inp, first_weight + 1);
                total.flops += out;
            }
            Epilogue::SwiGlu => total.flops += 4 * out,
        }
        total
    }
}

/// RMSNorm of every token (rows of `w.len()`), tokens split over the pool for a prompt.
fn norm_tokens(rt: &Runtime, x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let cols = w.len();
    for_token_ranges(rt, x.len() / cols, out, cols, |tokens, dst| {
        let src = &x[tokens.start * cols..tokens.end * cols];
        for (o, row) in dst.chunks_exact_mut(cols).zip(src.chunks_exact(cols)) {
            rms_norm_row(row, w, eps, o);
        }
    });
}

/// Runs `f(tokens, rows of out)` on consecutive ranges of the `n_tokens` tokens (rows of
/// `width` outputs), one range per pool thread; on the calling thread alone for a few tokens.
fn for_token_ranges<F>(rt: &Runtime, n_tokens: usize, out: &mut [f32], width: usize, f: F)
where
    F: Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
{
    let threads = rt.pool.n_threads().min(n_tokens / 2).max(1);
    if threads == 1 {
        return f(0..n_tokens, out);
    }
    let per = n_tokens.div_ceil(threads);
    let shared = SharedMut::new(out);
    rt.pool.run(threads, |i| {
        let tokens = (i * per).min(n_tokens)..((i + 1) * per).min(n_tokens);
        // SAFETY: each index writes its own tokens' rows.
        let dst = unsafe { shared.slice(tokens.start * width, tokens.len() * width) };
        f(tokens, dst);
    });
}

/// SwiGLU of every token, tokens split over the pool (a prompt's worth of `exp` is worth it).
fn swiglu_tokens(rt: &Runtime, gate: &[f32], up: &[f32], rows: usize, out: &mut [f32]) {
    for_token_ranges(rt, out.len() / rows, out, rows, |tokens, dst| {
        let span = tokens.start * rows..tokens.end * rows;
        swiglu_rows(&gate[span.clone()], &up[span], rows, dst);
    });
}

/// Replaces the standard graph's [`WeightMatMul`]s with [`FusedMatMul`]s (see the module
/// comment). Runs after the standard passes; matmuls on weights the SIMD kernels do not take stay
/// as they are.
pub struct FusedMatMulCompiler {
    pub runtime: Arc<Runtime>,
}

impl Compiler for FusedMatMulCompiler {
    fn compile<T: ToIdsMut>(&self, graph: &mut Graph, mut remap: T) {
        let progress = self.search_progress(graph);
        for group in matmul_groups(graph) {
            for part in compatible_parts(graph, &group) {
                self.fuse(graph, &mut remap, &part);
                if let Some(p) = &progress {
                    p.set(self.runtime.plans.searched_now() as u64);
                }
            }
        }
        self.runtime.plans.save();
    }
}

impl FusedMatMulCompiler {
    /// The kernel search's progress (matrix jobs searched of those the plan cache lacks), when
    /// there is anything to search.
    fn search_progress(&self, graph: &Graph) -> Option<Phase> {
        let mut keys = BTreeSet::new();
        for group in matmul_groups(graph) {
            for part in compatible_parts(graph, &group) {
                let mats = part_matrices(graph, &plan_fusion(graph, &part).matmuls);
                keys.extend([
                    job_key(&mats, 1),
                    job_key(&mats, SHORT_BATCH_TOKENS),
                    job_key(&mats, BATCH_TOKENS),
                ]);
            }
        }
        let to_search = self.runtime.plans.to_search(&keys);
        (to_search > 0).then(|| Phase::steps("kernel search", to_search as u64, "matrix jobs"))
    }
}

/// The weight matrices of `matmuls` the kernels take, in their order.
fn part_matrices<'g>(graph: &'g Graph, matmuls: &[NodeIndex]) -> Vec<WeightMatrix<'g>> {
    matmuls
        .iter()
        .filter_map(|&m| bound_matrix(graph, sources(graph, m)[1].0).map(WeightData::matrix))
        .collect()
}

/// Matmuls reading the same activations, in node order.
fn matmul_groups(graph: &Graph) -> Vec<Vec<NodeIndex>> {
    let mut groups: BTreeMap<(NodeIndex, u8), Vec<NodeIndex>> = BTreeMap::new();
    let mut nodes: Vec<NodeIndex> = graph.graph.node_indices().collect();
    nodes.sort();
    for node in nodes {
        if !is_op::<WeightMatMul>(graph, node) {
            continue;
        }
        if let [x, _] = sources(graph, node)[..] {
            groups.entry((x.0, x.1)).or_default().push(node);
        }
    }
    // Weights in file order (q, k, v; gate, up), so every layer's group has the same job key.
    let weight_node = |m: &NodeIndex| sources(graph, *m).get(1).map(|w| w.0);
    groups
        .into_values()
        .map(|mut g| {
            g.sort_by_key(weight_node);
            g
        })
        .collect()
}

/// Splits a group into the parts one `matmul_multi` call can take: weights the kernels support,
/// sharing one activation format, at most [`MAX_MATRICES`].
fn compatible_parts(graph: &Graph, group: &[NodeIndex]) -> Vec<Vec<NodeIndex>> {
    let isa = MatmulPlan::new().isa;
    let mut parts: Vec<(crate::cpu::quantize::ActFormat, Vec<NodeIndex>)> = vec![];
    for &m in group {
        let Some(w) = weight_of(graph, m) else {
            continue;
        };
        let Ok(set) = kernel_set(w.ty, isa, true) else {
            continue;
        };
        match parts
            .iter_mut()
            .find(|(fmt, p)| *fmt == set.fmt && p.len() < MAX_MATRICES)
        {
            Some((_, p)) => p.push(m),
            None => parts.push((set.fmt, vec![m])),
        }
    }
    parts.into_iter().map(|(_, p)| p).collect()
}

fn weight_of(graph: &Graph, matmul: NodeIndex) -> Option<&WeightData> {
    let [_, w] = sources(graph, matmul)[..] else {
        return None;
    };
    bound_matrix(graph, w.0)
}

/// How one part will be fused.
struct Fusion {
    /// The matmuls, in output order.
    matmuls: Vec<NodeIndex>,
    /// The node whose consumers the op's single output takes over (SwiGLU or residual add).
    tail: Option<NodeIndex>,
    epilogue: Epilogue,
    residual: Option<Source>,
    /// The RMSNorm node folded in, its input and weight, and eps.
    norm: Option<(NodeIndex, Source, Source, f32)>,
}

impl FusedMatMulCompiler {
    fn fuse<T: ToIdsMut>(&self, graph: &mut Graph, remap: &mut T, part: &[NodeIndex]) {
        let fusion = plan_fusion(graph, part);
        let x = sources(graph, part[0])[0];
        let weights: Vec<Source> = fusion
            .matmuls
            .iter()
            .map(|&m| sources(graph, m)[1])
            .collect();
        let mats = part_matrices(graph, &fusion.matmuls);
        let (decode, short, batch, repacked) = self.choose_plans(graph, &fusion.matmuls, &mats);
        let op = FusedMatMul {
            runtime: self.runtime.clone(),
            norm_eps: fusion.norm.map(|n| n.3),
            n_weights: weights.len(),
            epilogue: fusion.epilogue,
            decode,
            short,
            batch,
            repacked,
            normed: vec![],
        };
        let mut inputs = vec![];
        match fusion.norm {
            Some((_, norm_x, norm_w, _)) => inputs.extend([norm_x, norm_w]),
            None => inputs.push(x),
        }
        inputs.extend(weights);
        inputs.extend(fusion.residual);
        let new = rewrite::add_op(graph, Box::new(op), &inputs);
        let outputs: Vec<NodeIndex> = match fusion.tail {
            Some(tail) => vec![tail],
            None => fusion.matmuls.clone(),
        };
        for (i, old) in outputs.iter().enumerate() {
            rewrite::move_output(graph, remap, *old, new, i as u8);
        }
        let mut dead: Vec<NodeIndex> = fusion.matmuls.clone();
        dead.extend(fusion.tail);
        dead.extend(fusion.norm.map(|n| n.0));
        rewrite::remove_nodes(graph, &dead);
    }
}

impl FusedMatMulCompiler {
    /// The decode, short-batch and batch plans of a part's matrices `mats`, and the repacked
    /// copies they read. Matrices that can be repacked are, first (their mapped pages released
    /// as they are packed); the decode job's search decides whether they stay so (a decode step
    /// is what a run does most), and then every job reads the copies and the pages the search
    /// read in place are released again: the run holds the copies instead of the rows.
    fn choose_plans(
        &self,
        graph: &Graph,
        matmuls: &[NodeIndex],
        mats: &[WeightMatrix<'_>],
    ) -> (MatmulPlan, MatmulPlan, MatmulPlan, Vec<Arc<RepackedMatrix>>) {
        let rt = &self.runtime;
        let (pool, plans) = (&rt.pool, &rt.plans);
        let isa = MatmulPlan::new().isa;
        let file_backed = matmuls
            .iter()
            .all(|&m| weight_of(graph, m).is_some_and(WeightData::file_backed));
        let copies = rt
            .repacked
            .pack_all(pool, isa, mats, file_backed)
            .unwrap_or_default();
        let with_copies: Vec<WeightMatrix<'_>> = mats
            .iter()
            .zip(&copies)
            .map(|(w, rp)| WeightMatrix {
                repacked: Some(rp),
                ..*w
            })
            .collect();
        let keep = !copies.is_empty() && plans.choose(pool, &with_copies, 1).plan.repacked;
        if !keep {
            rt.repacked.forget(mats);
        }
        let ws = if keep { &with_copies[..] } else { mats };
        // With copies, the decode job was chosen above (the same job key: the same choice).
        let decode = plans.choose(pool, ws, 1).plan;
        let short = plans.choose(pool, ws, SHORT_BATCH_TOKENS).plan;
        let batch = plans.choose(pool, ws, BATCH_TOKENS).plan;
        // Kept copies are what every job reads (batches time only the copies' plans).
        if keep && file_backed {
            rt.repacked.release(mats);
        }
        let copies = if keep { copies.clone() } else { vec![] };
        (decode, short, batch, copies)
    }
}

fn plan_fusion(graph: &Graph, part: &[NodeIndex]) -> Fusion {
    let mut fusion = Fusion {
        matmuls: part.to_vec(),
        tail: None,
        epilogue: Epilogue::None,
        residual: None,
        norm: None,
    };
    let only_consumer = |n: NodeIndex| match consumers(graph, n)[..] {
        [c] if !graph.no_delete.contains(&n) => Some(c),
        _ => None,
    };
    match part {
        [gate_or_up, other] => {
            let (a, b) = (only_consumer(*gate_or_up), only_consumer(*other));
            if let (Some(sw), Some(sw2)) = (a, b) {
                if sw == sw2 && is_op::<SwiGlu>(graph, sw) && plain_inputs(graph, sw) {
                    let srcs = sources(graph, sw);
                    fusion.matmuls = vec![srcs[0].0, srcs[1].0];
                    fusion.tail = Some(sw);
                    fusion.epilogue = Epilogue::SwiGlu;
                }
            }
        }
        [single] => {
            if let Some(add) = only_consumer(*single).filter(|&a| is_residual_add(graph, a)) {
                let srcs = sources(graph, add);
                if let Some(i) = srcs.iter().position(|s| s.0 == *single) {
                    if plain_input(&srcs[i]) && srcs[1 - i].0 != *single {
                        fusion.residual = Some(srcs[1 - i]);
                        fusion.tail = Some(add);
                        fusion.epilogue = Epilogue::AddResidual;
                    }
                }
            }
        }
        _ => {}
    }
    let x = sources(graph, part[0])[0];
    if let Some(norm) = op_as::<RmsNorm>(graph, x.0) {
        let readers = consumers(graph, x.0);
        let all_ours = readers.iter().all(|r| part.contains(r));
        let edges_plain = part.iter().all(|&m| plain_input(&sources(graph, m)[0]));
        if all_ours && edges_plain && !graph.no_delete.contains(&x.0) {
            if let [norm_x, norm_w] = sources(graph, x.0)[..] {
                fusion.norm = Some((x.0, norm_x, norm_w, norm.eps));
            }
        }
    }
    fusion
}

fn is_residual_add(graph: &Graph, node: NodeIndex) -> bool {
    matches!(
        op_as::<StridedBinary>(graph, node),
        Some(StridedBinary(BinaryKind::Add))
    ) && sources(graph, node).len() == 2
        && !graph.no_delete.contains(&node)
}

/// Whether every data input of `node` is read as it lies (no broadcast, slice or padding).
fn plain_inputs(graph: &Graph, node: NodeIndex) -> bool {
    sources(graph, node).iter().all(plain_input)
}

fn plain_input(src: &Source) -> bool {
    let t = src.2;
    t.is_contiguous() && !t.is_sliced() && !t.is_padded()
}
