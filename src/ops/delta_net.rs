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
//! A speculative verification pass instead keeps the state after each of its tokens
//! ([`StateCommand::KeepSteps`]), so that rejected drafts are undone by a restore alone.
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
        }
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
        self.steps_len = 0;
        let Some(at) = self.keep_next.take() else {
            return layer(&mut self.now, inputs, out);
        };
        self.steps_at = at;
        let shape = self.shape;
        let n = inputs.n_tokens(&shape);
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
    pub fn apply(&mut self, command: StateCommand) -> bool {
        match command {
            StateCommand::Save { at } => {
                self.saved.insert(at, self.now.clone());
            }
            StateCommand::Restore { at: 0 } => self.now.reset(),
            StateCommand::Restore { at } => {
                let kept = self.steps[..self.steps_len].get(step_index(self.steps_at, at));
                match self.saved.get(&at).or(kept) {
                    Some(s) => self.now.clone_from(s),
                    None => return false,
                }
                // The steps after `at` are gone with the tokens they folded in.
                self.steps_len = 0;
            }
            StateCommand::Forget { at } => {
                self.saved.remove(&at);
            }
            StateCommand::KeepSteps { at } => self.keep_next = Some(at),
        }
        true
    }

    /// Answers the custom hook: `Some(Box<bool>)` for a [`StateCommand`] under [`STATE`].
    pub fn answer(
        &mut self,
        key: &str,
        input: Box<dyn std::any::Any>,
    ) -> Option<Box<dyn std::any::Any>> {
        if key != STATE {
            return None;
        }
        let command = input.downcast::<StateCommand>().ok()?;
        Some(Box::new(self.apply(*command)))
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
        cost::answer(self, key).or_else(|| self.state.answer(key, input))
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
        assert!(s.answer("other", Box::new(())).is_none());
        let done = s.answer(STATE, Box::new(StateCommand::Restore { at: 0 }));
        assert_eq!(
            done.and_then(|b| b.downcast::<bool>().ok()).map(|b| *b),
            Some(true)
        );
    }
}
