//! The gated DeltaNet of the hybrid models (Qwen3.5/3.6, Qwen3-Next) as one op that owns the
//! layer's recurrent state, as [`super::cached_attention`]'s op owns the KV cache: from the raw
//! projections (`qkv`, `z`, `beta`, `alpha`) to the gated RMSNorm's output, the input of
//! `ssm_out`. The kernels are `crate::cpu::delta`'s: here llama.cpp's order of operations, one
//! thread ([`DeltaNet`]); `--parallel` swaps in the fused kernels across the pool
//! ([`super::parallel::fused_delta_net`]).
//!
//! A recurrent state cannot be cut back to a prefix as a KV cache can: the engine saves it at
//! chosen positions and restores one when it rewinds ([`StateCommand`], sent through luminal's
//! `Operator::custom` hook, which the decorators forward); it re-runs the tokens from there.
//! A speculative verification pass instead keeps what a rewind into it needs
//! ([`StateCommand::KeepSteps`]), so that rejected drafts are undone without running the model
//! again: the state after each of its tokens (the standard op: a restore alone), or, where the
//! kernel's results do not depend on how a run of tokens is split into calls (the fused op,
//! [`LayerState::replaying`]), the state at its start and its inputs: the pass then runs in one
//! call, and a rewind into it restores the start and folds the accepted tokens in again before
//! the state is next used (one call over a few tokens instead of a copy of the state per token).
//!
//! Inputs: `qkv [seq, conv_dim]`, `z [seq, value_dim]`, `beta`, `alpha [seq, v_heads]`,
//! `ssm_conv1d [conv_dim, conv_kernel]`, `ssm_dt [v_heads]`, `ssm_a [v_heads]`, `ssm_norm
//! [state]`, `positions [seq]`. Output: `[seq, value_dim]`.

use std::collections::BTreeMap;

use luminal::op::{InputTensor, Operator};
use luminal::prelude::*;

use super::cost::{self, Cost, OpCost};
use super::input::{contiguous, f32_data};
use crate::cpu::delta::{self, GdnInputs, GdnShape, GdnState, GdnWeights, StandardScratch};

/// The `Operator::custom` key of [`StateCommand`]s.
pub const STATE: &str = "qwen.recurrent_state";

/// What the engine asks of a layer's recurrent state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateCommand {
    /// Remember the state as it stands now, which is at position `at`.
    Save { at: usize },
    /// Go back to the state saved at `at` (0: the start of a sequence, always there).
    Restore { at: usize },
    /// Forget the state saved at `at`.
    Forget { at: usize },
    /// Run the next pass, which starts at position `at`, token by token and keep the state
    /// after each of its tokens (but the last, which is the live state) until the pass after it:
    /// a restore to any position inside the pass then needs no recompute.
    KeepSteps { at: usize },
}

/// One layer's recurrent state for one sequence, and the states saved at earlier positions.
#[derive(Debug, Clone)]
pub struct LayerState {
    pub shape: GdnShape,
    pub now: GdnState,
    saved: BTreeMap<usize, GdnState>,
    /// The states after each token of the last pass, when it kept them (`steps[i]` is at
    /// `steps_at + i + 1`); only the first `steps_len` are current (the buffers are reused).
    steps: Vec<GdnState>,
    steps_len: usize,
    steps_at: usize,
    /// Set by [`StateCommand::KeepSteps`] for the next pass.
    keep_next: Option<usize>,
    /// Kept passes are replayed rather than stepped ([`LayerState::replaying`]).
    replay: Option<Box<ReplayPass>>,
}

/// A pass kept for replay: the state at its start and its inputs.
#[derive(Debug, Clone, Default)]
struct ReplayPass {
    start: Option<GdnState>,
    qkv: Vec<f32>,
    z: Vec<f32>,
    alpha: Vec<f32>,
    beta: Vec<f32>,
    /// The position of its first token; its tokens (0: nothing to restore into).
    at: usize,
    len: usize,
    /// Tokens of it a rewind left to fold into the live state before its next use.
    pending: usize,
}

impl ReplayPass {
    /// Keeps `now` (the state at `at`) and the pass's inputs.
    fn keep(&mut self, at: usize, now: &GdnState, inputs: &GdnInputs<'_>, n: usize) {
        match &mut self.start {
            Some(s) => s.clone_from(now),
            None => self.start = Some(now.clone()),
        }
        for (dst, src) in [
            (&mut self.qkv, inputs.qkv),
            (&mut self.z, inputs.z),
            (&mut self.alpha, inputs.alpha),
            (&mut self.beta, inputs.beta),
        ] {
            dst.clear();
            dst.extend_from_slice(src);
        }
        (self.at, self.len, self.pending) = (at, n, 0);
    }

    /// The first `n` tokens' inputs.
    fn inputs(&self, shape: &GdnShape, n: usize) -> GdnInputs<'_> {
        let (cd, vd, vh) = (shape.conv_dim(), shape.value_dim(), shape.v_heads);
        GdnInputs {
            qkv: &self.qkv[..n * cd],
            z: &self.z[..n * vd],
            alpha: &self.alpha[..n * vh],
            beta: &self.beta[..n * vh],
        }
    }
}

impl LayerState {
    pub fn new(shape: GdnShape) -> Self {
        LayerState {
            shape,
            now: GdnState::new(&shape),
            saved: BTreeMap::new(),
            steps: vec![],
            steps_len: 0,
            steps_at: 0,
            keep_next: None,
            replay: None,
        }
    }

    /// Kept passes run in one call and are replayed on a rewind (see the module comment): for
    /// kernels whose results over a run of tokens are those of one call per token.
    pub fn replaying(mut self) -> Self {
        self.replay = Some(Box::default());
        self
    }

    /// Folds the tokens a rewind left pending into the live state, with `layer`.
    fn fold_pending(&mut self, layer: &mut impl FnMut(&mut GdnState, &GdnInputs<'_>, &mut [f32])) {
        let Some(r) = self.replay.as_deref_mut().filter(|r| r.pending > 0) else {
            return;
        };
        let n = std::mem::take(&mut r.pending);
        let mut out = vec![0.0; n * self.shape.value_dim()];
        layer(&mut self.now, &r.inputs(&self.shape, n), &mut out);
    }

    /// Runs one pass over `inputs` with `layer` (a kernel over any run of tokens): in one call,
    /// or, when the engine asked to keep the steps, token by token, keeping the state after each
    /// token but the last.
    pub fn run(
        &mut self,
        inputs: &GdnInputs<'_>,
        out: &mut [f32],
        mut layer: impl FnMut(&mut GdnState, &GdnInputs<'_>, &mut [f32]),
    ) {
        self.fold_pending(&mut layer);
        self.steps_len = 0;
        let keep = self.keep_next.take();
        let n = inputs.n_tokens(&self.shape);
        if let Some(r) = self.replay.as_deref_mut() {
            match keep {
                Some(at) => r.keep(at, &self.now, inputs, n),
                None => r.len = 0,
            }
            return layer(&mut self.now, inputs, out);
        }
        let Some(at) = keep else {
            return layer(&mut self.now, inputs, out);
        };
        self.steps_at = at;
        let shape = self.shape;
        let (cd, vd, vh) = (shape.conv_dim(), shape.value_dim(), shape.v_heads);
        for (t, out) in out.chunks_exact_mut(vd).enumerate().take(n) {
            let one = GdnInputs {
                qkv: &inputs.qkv[t * cd..(t + 1) * cd],
                z: &inputs.z[t * vd..(t + 1) * vd],
                alpha: &inputs.alpha[t * vh..(t + 1) * vh],
                beta: &inputs.beta[t * vh..(t + 1) * vh],
            };
            layer(&mut self.now, &one, out);
            if t + 1 < n {
                self.keep_step();
            }
        }
    }

    /// Appends the live state to the kept steps, reusing a buffer where there is one.
    fn keep_step(&mut self) {
        match self.steps.get_mut(self.steps_len) {
            Some(s) => s.clone_from(&self.now),
            None => self.steps.push(self.now.clone()),
        }
        self.steps_len += 1;
    }

    /// Carries out `command`; `false` when a restore finds nothing saved at that position.
    /// `layer` folds tokens a rewind left pending into the state before it is saved.
    pub fn apply_with(
        &mut self,
        command: StateCommand,
        mut layer: impl FnMut(&mut GdnState, &GdnInputs<'_>, &mut [f32]),
    ) -> bool {
        match command {
            StateCommand::Save { at } => {
                self.fold_pending(&mut layer);
                self.saved.insert(at, self.now.clone());
            }
            StateCommand::Restore { at } => return self.restore(at),
            _ => return self.apply(command),
        }
        true
    }

    /// Carries out `command`; `false` when a restore finds nothing saved at that position.
    /// A save with replayed tokens pending needs the kernel: [`LayerState::apply_with`].
    pub fn apply(&mut self, command: StateCommand) -> bool {
        match command {
            StateCommand::Save { at } => {
                assert!(
                    self.replay.as_ref().is_none_or(|r| r.pending == 0),
                    "a state with tokens to replay is saved through apply_with"
                );
                self.saved.insert(at, self.now.clone());
            }
            StateCommand::Restore { at } => return self.restore(at),
            StateCommand::Forget { at } => {
                self.saved.remove(&at);
            }
            StateCommand::KeepSteps { at } => self.keep_next = Some(at),
        }
        true
    }

    /// Goes back to the state at `at`: the start, a saved state, a step the last pass kept,
    /// or a position inside a replayable pass (its start, and its first tokens to fold in).
    fn restore(&mut self, at: usize) -> bool {
        // Whatever happens, the steps after `at` are gone with the tokens they folded in.
        let kept = self.steps[..self.steps_len].get(step_index(self.steps_at, at));
        let inside = self
            .replay
            .as_deref()
            .filter(|r| at > r.at && at < r.at + r.len)
            .and_then(|r| r.start.as_ref());
        let found = match (at, self.saved.get(&at).or(kept), inside) {
            (0, _, _) => {
                self.now.reset();
                None
            }
            (_, Some(s), _) => {
                self.now.clone_from(s);
                None
            }
            (_, None, Some(start)) => {
                self.now.clone_from(start);
                self.replay.as_deref().map(|r| at - r.at)
            }
            (_, None, None) => return false,
        };
        self.steps_len = 0;
        if let Some(r) = self.replay.as_deref_mut() {
            (r.pending, r.len) = (found.unwrap_or(0), 0);
        }
        true
    }

    /// Answers the custom hook: `Some(Box<bool>)` for a [`StateCommand`] under [`STATE`];
    /// `layer` as for [`LayerState::apply_with`].
    pub fn answer(
        &mut self,
        key: &str,
        input: Box<dyn std::any::Any>,
        layer: impl FnMut(&mut GdnState, &GdnInputs<'_>, &mut [f32]),
    ) -> Option<Box<dyn std::any::Any>> {
        if key != STATE {
            return None;
        }
        let command = input.downcast::<StateCommand>().ok()?;
        Some(Box::new(self.apply_with(*command, layer)))
    }
}

/// Where the state at position `at` is among the steps of a pass that started at `steps_at`
/// (`usize::MAX`, found nowhere, for a position at or before the start).
fn step_index(steps_at: usize, at: usize) -> usize {
    at.checked_sub(steps_at + 1).unwrap_or(usize::MAX)
}

/// The layer's per-call inputs, contiguous.
pub struct Projections<'a> {
    pub qkv: std::borrow::Cow<'a, [f32]>,
    pub z: std::borrow::Cow<'a, [f32]>,
    pub beta: std::borrow::Cow<'a, [f32]>,
    pub alpha: std::borrow::Cow<'a, [f32]>,
}

impl<'a> Projections<'a> {
    /// Inputs 0..4 of a DeltaNet op.
    pub fn of(inp: &'a [(InputTensor<'a>, ShapeTracker)]) -> Self {
        let input = |i: usize| contiguous(&inp[i].0, &inp[i].1);
        Projections {
            qkv: input(0),
            z: input(1),
            beta: input(2),
            alpha: input(3),
        }
    }

    pub fn inputs(&self) -> GdnInputs<'_> {
        GdnInputs {
            qkv: &self.qkv,
            z: &self.z,
            alpha: &self.alpha,
            beta: &self.beta,
        }
    }
}

/// The layer's own parameters: inputs 4..8 of a DeltaNet op (f32, as the loader decodes them).
pub fn weights<'a>(inp: &'a [(InputTensor<'a>, ShapeTracker)]) -> GdnWeights<'a> {
    let vector = |i: usize| {
        f32_data(&inp[i].0)
            .map(Vec::as_slice)
            .expect("delta net: f32 parameters")
    };
    GdnWeights {
        conv: vector(4),
        dt_bias: vector(5),
        a: vector(6),
        norm: vector(7),
    }
}

/// The gated DeltaNet in llama.cpp's order of operations, one thread.
#[derive(Debug)]
pub struct DeltaNet {
    pub state: LayerState,
    scratch: StandardScratch,
}

impl DeltaNet {
    pub fn new(shape: GdnShape) -> Self {
        DeltaNet {
            state: LayerState::new(shape),
            scratch: StandardScratch::default(),
        }
    }
}

impl PartialEq for DeltaNet {
    /// Each layer's state is its own: never merge two DeltaNet ops.
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

impl Operator for DeltaNet {
    fn process(&mut self, inp: Vec<(InputTensor, ShapeTracker)>) -> Vec<Tensor> {
        let projections = Projections::of(&inp);
        let shape = self.state.shape;
        let inputs = projections.inputs();
        let mut out = vec![0.0; inputs.n_tokens(&shape) * shape.value_dim()];
        let weights = weights(&inp);
        let scratch = &mut self.scratch;
        self.state.run(&inputs, &mut out, |state, inputs, out| {
            delta::standard::layer(&shape, &weights, state, inputs, out, scratch)
                .expect("the graph gives a DeltaNet op inputs of its config's shape");
        });
        vec![Tensor::new(out)]
    }

    /// The cost model and kind, for the profiler; state commands, for the engine.
    fn custom(
        &mut self,
        key: &str,
        input: Box<dyn std::any::Any>,
    ) -> Option<Box<dyn std::any::Any>> {
        cost::answer(self, key).or_else(|| {
            self.state.answer(key, input, |_, _, _| {
                unreachable!("the standard op keeps a pass's steps: nothing to replay")
            })
        })
    }
}

impl OpCost for DeltaNet {
    fn cost(&self, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
        call_cost(&self.state.shape, inp)
    }
}

/// What one call over `inp` reads and computes: the inputs, the parameters and the state
/// (read and written once), and per token the convolution, the norms, the delta rule (per
/// value head four `S`-long passes over each row of its `S x S` state) and the gated norm.
pub fn call_cost(shape: &GdnShape, inp: &[(InputTensor, ShapeTracker)]) -> Cost {
    let n = inp
        .get(8)
        .and_then(|(t, _)| f32_data(t))
        .map_or(0, |p| p.len() as u64);
    let (cd, vd, s) = (
        shape.conv_dim() as u64,
        shape.value_dim() as u64,
        shape.head_dim as u64,
    );
    let (k, vh) = (shape.conv_kernel as u64, shape.v_heads as u64);
    let state = (shape.conv_state_len() + shape.ssm_state_len()) as u64;
    let per_token = cd * (2 * k + 4) + 2 * shape.key_dim() as u64 * 3 + vh * s * s * 8 + vd * 8;
    (0..8)
        .map(|i| cost::input_activations(inp, i))
        .sum::<Cost>()
        + Cost {
            activation_bytes: 4 * state,
            flops: n * per_token,
            ..Cost::default()
        }
}

/// The projections and parameters of one DeltaNet call.
pub struct DeltaNetInputs<S, C, V, H, K, T>
where
    S: Dimension,
    C: Dimension,
    V: Dimension,
    H: Dimension,
    K: Dimension,
    T: Dimension,
{
    pub qkv: GraphTensor<(S, C)>,
    pub z: GraphTensor<(S, V)>,
    pub beta: GraphTensor<(S, H)>,
    pub alpha: GraphTensor<(S, H)>,
    pub conv: GraphTensor<(C, K)>,
    pub dt: GraphTensor<(H,)>,
    pub a: GraphTensor<(H,)>,
    pub norm: GraphTensor<(T,)>,
    pub positions: GraphTensor<(S,)>,
}

/// Adds a DeltaNet op (the caller made it for one layer) to the graph.
pub fn delta_net<S, C, V, H, K, T>(
    i: DeltaNetInputs<S, C, V, H, K, T>,
    op: DeltaNet,
) -> GraphTensor<(S, V)>
where
    S: Dimension,
    C: Dimension,
    V: Dimension,
    H: Dimension,
    K: Dimension,
    T: Dimension,
{
    let id = i
        .qkv
        .graph()
        .add_op(op)
        .input(i.qkv.id, 0, i.qkv.shape)
        .input(i.z.id, 0, i.z.shape)
        .input(i.beta.id, 0, i.beta.shape)
        .input(i.alpha.id, 0, i.alpha.shape)
        .input(i.conv.id, 0, i.conv.shape)
        .input(i.dt.id, 0, i.dt.shape)
        .input(i.a.id, 0, i.a.shape)
        .input(i.norm.id, 0, i.norm.shape)
        .input(i.positions.id, 0, i.positions.shape)
        .finish();
    GraphTensor::from_id(
        id,
        ShapeTracker::new(&[S::const_size(), V::const_size()]),
        i.qkv.graph_ref,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::delta::{GdnWeights, HeadMap};

    fn shape() -> GdnShape {
        GdnShape {
            k_heads: 1,
            v_heads: 2,
            head_dim: 2,
            conv_kernel: 2,
            map: HeadMap::Tiled,
            eps: 1e-6,
        }
    }

    #[test]
    fn saved_states_come_back_and_position_zero_is_the_start() {
        let mut s = LayerState::new(shape());
        s.now.ssm.fill(1.0);
        assert!(s.apply(StateCommand::Save { at: 3 }));
        s.now.ssm.fill(2.0);
        assert!(s.apply(StateCommand::Restore { at: 3 }));
        assert!(s.now.ssm.iter().all(|&v| v == 1.0));
        assert!(
            !s.apply(StateCommand::Restore { at: 5 }),
            "nothing saved at 5"
        );
        assert!(s.apply(StateCommand::Restore { at: 0 }));
        assert!(s.now.ssm.iter().chain(&s.now.conv).all(|&v| v == 0.0));
        assert!(s.apply(StateCommand::Forget { at: 3 }));
        assert!(!s.apply(StateCommand::Restore { at: 3 }));
    }

    #[test]
    fn kept_steps_restore_any_position_inside_the_pass() {
        let sh = shape();
        let mut s = LayerState::new(sh);
        let n = 4;
        let inputs_of = |n: usize| {
            let f = |len: usize, k: f32| (0..n * len).map(|i| (i as f32 * k).sin()).collect();
            (
                f(sh.conv_dim(), 0.7),
                f(sh.value_dim(), 0.3),
                f(sh.v_heads, 1.1),
                f(sh.v_heads, 0.5),
            )
        };
        let (qkv, z, alpha, beta): (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) = inputs_of(n);
        let inputs = GdnInputs {
            qkv: &qkv,
            z: &z,
            alpha: &alpha,
            beta: &beta,
        };
        let weights_data = (
            vec![0.25; sh.conv_dim() * sh.conv_kernel],
            vec![0.1; 2],
            vec![-0.5; 2],
            vec![1.0; 2],
        );
        let w = GdnWeights {
            conv: &weights_data.0,
            dt_bias: &weights_data.1,
            a: &weights_data.2,
            norm: &weights_data.3,
        };
        let mut scratch = StandardScratch::default();
        let mut run = |s: &mut LayerState, inputs: &GdnInputs<'_>, out: &mut [f32]| {
            s.run(inputs, out, |state, inputs, out| {
                delta::standard::layer(&sh, &w, state, inputs, out, &mut scratch).unwrap();
            });
        };
        // The states one token at a time, from position 10.
        let mut reference = vec![];
        let mut one = LayerState::new(sh);
        let mut out1 = vec![0.0; sh.value_dim()];
        let vd = sh.value_dim();
        let (cd, vh) = (sh.conv_dim(), sh.v_heads);
        for t in 0..n {
            let step = GdnInputs {
                qkv: &qkv[t * cd..(t + 1) * cd],
                z: &z[t * vd..(t + 1) * vd],
                alpha: &alpha[t * vh..(t + 1) * vh],
                beta: &beta[t * vh..(t + 1) * vh],
            };
            run(&mut one, &step, &mut out1);
            reference.push(one.now.clone());
        }
        let mut out = vec![0.0; n * vd];
        assert!(s.apply(StateCommand::KeepSteps { at: 10 }));
        run(&mut s, &inputs, &mut out);
        assert_eq!(
            s.now.ssm,
            reference[n - 1].ssm,
            "the live state is the last token's"
        );
        for k in (1..n).rev() {
            let mut back = s.clone();
            assert!(
                back.apply(StateCommand::Restore { at: 10 + k }),
                "step {k} kept"
            );
            assert_eq!(back.now.ssm, reference[k - 1].ssm);
            assert_eq!(back.now.conv, reference[k - 1].conv);
            assert!(!back.apply(StateCommand::Restore { at: 10 + k + 1 }) || k + 1 == n);
        }
        assert!(
            !s.clone().apply(StateCommand::Restore { at: 10 }),
            "the pass's start is not kept"
        );
        // An ordinary pass forgets the steps.
        run(&mut s, &inputs, &mut out);
        assert!(!s.apply(StateCommand::Restore { at: 11 }));
    }

    #[test]
    fn the_hook_answers_only_state_commands() {
        let mut s = LayerState::new(shape());
        let no_replay = |_: &mut GdnState, _: &GdnInputs<'_>, _: &mut [f32]| unreachable!();
        assert!(s.answer("other", Box::new(()), no_replay).is_none());
        let done = s.answer(STATE, Box::new(StateCommand::Restore { at: 0 }), no_replay);
        assert_eq!(
            done.and_then(|b| b.downcast::<bool>().ok()).map(|b| *b),
            Some(true)
        );
    }

    /// A replaying state runs a kept pass in one call; a rewind into it restores its start and
    /// folds the accepted tokens in before the state is next used (the next pass, or a save):
    /// the states and outputs of one call per token, bit for bit.
    #[test]
    fn a_replayed_pass_rewinds_to_any_position_inside_it() {
        use crate::cpu::delta::fused::{self, FusedOptions, FusedScratch, FusedWeights};
        use crate::cpu::pool::ThreadPool;
        let sh = GdnShape {
            k_heads: 2,
            v_heads: 4,
            head_dim: 16,
            conv_kernel: 4,
            map: HeadMap::Tiled,
            eps: 1e-6,
        };
        let n = 4;
        let seq = |len: usize, k: f32, from: usize| -> Vec<f32> {
            (from * len..(from + n + 1) * len)
                .map(|i| (i as f32 * k).sin())
                .collect()
        };
        let (cd, vd, vh) = (sh.conv_dim(), sh.value_dim(), sh.v_heads);
        let (qkv, z, alpha, beta) = (
            seq(cd, 0.37, 0),
            seq(vd, 0.11, 0),
            seq(vh, 0.9, 0),
            seq(vh, 0.45, 0),
        );
        let tokens = |a: usize, b: usize| GdnInputs {
            qkv: &qkv[a * cd..b * cd],
            z: &z[a * vd..b * vd],
            alpha: &alpha[a * vh..b * vh],
            beta: &beta[a * vh..b * vh],
        };
        let params = (
            seq(cd * sh.conv_kernel / (n + 1) + 1, 0.2, 0),
            vec![0.1; vh],
            vec![-0.5; vh],
            vec![1.0; sh.head_dim],
        );
        let w = GdnWeights {
            conv: &params.0[..cd * sh.conv_kernel],
            dt_bias: &params.1,
            a: &params.2,
            norm: &params.3,
        };
        let fused = FusedWeights::new(&sh, &w).unwrap();
        let pool = ThreadPool::new(2).unwrap();
        let mut scratch = FusedScratch::default();
        let mut layer = |state: &mut GdnState, inputs: &GdnInputs<'_>, out: &mut [f32]| {
            fused::layer(
                &pool,
                &fused,
                state,
                inputs,
                out,
                &mut scratch,
                FusedOptions::default(),
            )
            .unwrap();
        };
        // One call per token: the state after each of the pass's tokens.
        let mut one = GdnState::new(&sh);
        let mut states = vec![];
        for t in 0..n {
            layer(&mut one, &tokens(t, t + 1), &mut vec![0.0; vd]);
            states.push(one.clone());
        }
        let mut s = LayerState::new(sh).replaying();
        assert!(s.apply(StateCommand::KeepSteps { at: 10 }));
        s.run(&tokens(0, n), &mut vec![0.0; n * vd], &mut layer);
        assert_eq!(
            s.now.ssm,
            states[n - 1].ssm,
            "the live state is the last token's"
        );
        // The token after a rewind to 10 + k is the pass's token k (any input would do).
        for k in 1..n {
            let mut want = states[k - 1].clone();
            let mut want_out = vec![0.0; vd];
            layer(&mut want, &tokens(k, k + 1), &mut want_out);

            let mut back = s.clone();
            assert!(back.apply_with(StateCommand::Restore { at: 10 + k }, &mut layer));
            assert!(
                !back.apply(StateCommand::Restore { at: 10 + k }),
                "only once"
            );
            let mut out = vec![0.0; vd];
            back.run(&tokens(k, k + 1), &mut out, &mut layer);
            assert_eq!(
                (&back.now.ssm, &back.now.conv),
                (&want.ssm, &want.conv),
                "k={k}"
            );
            assert_eq!(out, want_out, "k={k}: the next token's output");

            let mut saved = s.clone();
            assert!(saved.apply_with(StateCommand::Restore { at: 10 + k }, &mut layer));
            assert!(saved.apply_with(StateCommand::Save { at: 10 + k }, &mut layer));
            assert!(saved.apply(StateCommand::Restore { at: 10 + k }));
            assert_eq!(
                saved.now.ssm,
                states[k - 1].ssm,
                "k={k}: a save folds the replay"
            );
        }
        assert!(
            !s.clone().apply(StateCommand::Restore { at: 10 }),
            "not the start"
        );
        assert!(
            !s.clone().apply(StateCommand::Restore { at: 10 + n }),
            "nor the end"
        );
        // An ordinary pass forgets the kept one.
        s.run(&tokens(n, n + 1), &mut vec![0.0; vd], &mut layer);
        assert!(!s.apply(StateCommand::Restore { at: 11 }));
    }
}
