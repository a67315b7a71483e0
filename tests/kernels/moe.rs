//! The mixture-of-experts CPU kernels (`qwen::cpu::moe`) against references on odd shapes:
//! - with tile kernels only, bit for bit the composition of the dense matmul kernel, one
//!   (token, expert) at a time, on every weight type and ISA, for decode, batches and batches
//!   longer than one pass, on one thread and on three;
//! - with 16-row panels (every ISA that has them), within rounding of the tile results;
//! - within the activation-quantization error of exact f64 math on dequantized weights;
//! - the router's choices and weights against a plain reimplementation;
//! - bad shapes and routings as errors.

use qwen::cpu::dot::panel;
use qwen::cpu::ggml_math::v_expf;
use qwen::cpu::moe::{
    moe_experts, route, ExpertTensor, ExpertWeights, MoePlan, MoeScratch, Routing,
};
use qwen::cpu::synth::{random_input, random_weights, Rng};
use qwen::cpu::{
    cpu_features, dequantize_row, matmul, Isa, KernelError, MatmulPlan, Scratch, ThreadPool,
};
use qwen::quant::GgmlType;

/// A layer's expert data: (type, bytes) for gate, up, down.
struct Layer {
    experts: usize,
    hidden: usize,
    ffn: usize,
    gate: (GgmlType, Vec<u8>),
    up: (GgmlType, Vec<u8>),
    down: (GgmlType, Vec<u8>),
}

impl Layer {
    fn new(rng: &mut Rng, types: [GgmlType; 3], experts: usize, hidden: usize, ffn: usize) -> Self {
        let [g, u, d] = types;
        Layer {
            experts,
            hidden,
            ffn,
            gate: (g, random_weights(rng, g, experts * ffn, hidden)),
            up: (u, random_weights(rng, u, experts * ffn, hidden)),
            down: (d, random_weights(rng, d, experts * hidden, ffn)),
        }
    }

    fn weights(&self) -> ExpertWeights<'_> {
        let e = self.experts;
        let t =
            |ty: GgmlType, rows, cols, data| ExpertTensor::new(ty, e, rows, cols, data).unwrap();
        ExpertWeights {
            gate: t(self.gate.0, self.ffn, self.hidden, &self.gate.1),
            up: t(self.up.0, self.ffn, self.hidden, &self.up.1),
            down: t(self.down.0, self.hidden, self.ffn, &self.down.1),
            shared: None,
        }
    }
}

/// `k` distinct experts per token, skewed so that expert 0 gets most tokens (it then goes
/// through panels) and the last expert none; weights positive, summing to 1.
fn routing(rng: &mut Rng, n_tokens: usize, experts: usize, k: usize) -> Routing {
    let mut r = Routing {
        n_tokens,
        k,
        n_experts: experts,
        ..Default::default()
    };
    for _ in 0..n_tokens {
        let mut chosen: Vec<u32> = vec![];
        while chosen.len() < k {
            let e = if chosen.is_empty() && rng.uniform(0.0, 1.0) < 0.7 {
                0
            } else {
                (rng.next_u64() % (experts as u64 - 1)) as u32
            };
            if !chosen.contains(&e) {
                chosen.push(e);
            }
        }
        let w: Vec<f32> = (0..k).map(|_| rng.uniform(0.1, 1.0)).collect();
        let total: f32 = w.iter().sum();
        r.experts.extend(chosen);
        r.weights.extend(w.iter().map(|v| v / total));
    }
    r
}

fn run_moe(
    pool: &ThreadPool,
    layer: &Layer,
    x: &[f32],
    r: &Routing,
    residual: &[f32],
    plan: &MoePlan,
) -> Vec<f32> {
    let mut out = vec![f32::NAN; x.len()];
    moe_experts(
        pool,
        &layer.weights(),
        x,
        r,
        Some(residual),
        &mut out,
        plan,
        &mut MoeScratch::default(),
    )
    .unwrap();
    out
}

/// The dense kernels, one token and one expert at a time, on tile kernels of `isa`.
fn reference(
    pool: &ThreadPool,
    layer: &Layer,
    x: &[f32],
    r: &Routing,
    residual: &[f32],
    isa: Isa,
) -> Vec<f32> {
    let w = layer.weights();
    let plan = MatmulPlan {
        panel: false,
        ..MatmulPlan::for_isa(isa)
    };
    let (h, f) = (layer.hidden, layer.ffn);
    let mut scratch = Scratch::default();
    let mut out = vec![0.0f32; x.len()];
    for t in 0..r.n_tokens {
        let xt = &x[t * h..(t + 1) * h];
        let o = &mut out[t * h..(t + 1) * h];
        for (slot, (&e, &wt)) in r.experts_of(t).iter().zip(r.weights_of(t)).enumerate() {
            let e = e as usize;
            let (mut g, mut u, mut act, mut y) =
                (vec![0.0; f], vec![0.0; f], vec![0.0; f], vec![0.0; h]);
            matmul(pool, &w.gate.expert(e), xt, 1, &mut g, &plan, &mut scratch).unwrap();
            matmul(pool, &w.up.expert(e), xt, 1, &mut u, &plan, &mut scratch).unwrap();
            for ((a, &gv), &uv) in act.iter_mut().zip(&g).zip(&u) {
                *a = (gv / (1.0 + v_expf(0.0 - gv))) * uv;
            }
            matmul(
                pool,
                &w.down.expert(e),
                &act,
                1,
                &mut y,
                &plan,
                &mut scratch,
            )
            .unwrap();
            for (ov, yv) in o.iter_mut().zip(&y) {
                if slot == 0 {
                    *ov = yv * wt;
                } else {
                    *ov += yv * wt;
                }
            }
        }
        for (ov, rv) in o.iter_mut().zip(&residual[t * h..(t + 1) * h]) {
            *ov += rv;
        }
    }
    out
}

fn tiles_only(isa: Isa) -> MoePlan {
    MoePlan {
        isa,
        panel_min_tokens: 0,
        gate_up_rows: 32,
        down_rows: 48,
        ..MoePlan::new()
    }
}

/// Shapes per weight type: (hidden, ffn) that are whole blocks but no round numbers of rows.
fn shapes(ty: GgmlType) -> (usize, usize) {
    match ty.block_size() {
        1 => (37, 19),
        32 => (160, 96),
        _ => (256, 256),
    }
}

const TYPES: [GgmlType; 18] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q5_1,
    GgmlType::Q4_1,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ2_XXS,
    GgmlType::IQ2_XS,
    GgmlType::IQ2_S,
    GgmlType::IQ3_XXS,
    GgmlType::IQ3_S,
    GgmlType::IQ1_S,
    GgmlType::IQ1_M,
    GgmlType::MXFP4,
];

#[test]
fn tiles_equal_the_dense_kernels_expert_by_expert() {
    let pools = [ThreadPool::new(1).unwrap(), ThreadPool::new(3).unwrap()];
    let mut rng = Rng::new(11);
    for ty in TYPES {
        let (hidden, ffn) = shapes(ty);
        let layer = Layer::new(&mut rng, [ty; 3], 5, hidden, ffn);
        for n in [1, 3, 13] {
            let r = routing(&mut rng, n, 5, 2);
            let x = random_input(&mut rng, n * hidden);
            let residual = random_input(&mut rng, n * hidden);
            for isa in cpu_features().available() {
                let want = reference(&pools[0], &layer, &x, &r, &residual, isa);
                for pool in &pools {
                    let got = run_moe(pool, &layer, &x, &r, &residual, &tiles_only(isa));
                    assert_eq!(got, want, "{ty} {isa} n={n} threads={}", pool.n_threads());
                }
            }
        }
    }
}

#[test]
fn batches_longer_than_a_pass_equal_token_by_token() {
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng::new(12);
    let layer = Layer::new(&mut rng, [GgmlType::Q8_0; 3], 6, 64, 32);
    let n = qwen::cpu::moe::MAX_PASS_TOKENS + 37;
    let r = routing(&mut rng, n, 6, 3);
    let x = random_input(&mut rng, n * 64);
    let residual = random_input(&mut rng, n * 64);
    let isa = cpu_features().best();
    let want = reference(&pool, &layer, &x, &r, &residual, isa);
    assert_eq!(
        run_moe(&pool, &layer, &x, &r, &residual, &tiles_only(isa)),
        want
    );
}

#[test]
fn mixed_types_take_their_own_activation_formats() {
    // Q4_K_M files mix Q4_K gate/up with Q6_K or Q8_0 down; here gate and up differ too.
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng::new(13);
    let types = [GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::Q6_K];
    let layer = Layer::new(&mut rng, types, 4, 256, 256);
    let r = routing(&mut rng, 9, 4, 2);
    let x = random_input(&mut rng, 9 * 256);
    let residual = vec![0.0; 9 * 256];
    for isa in cpu_features().available() {
        let want = reference(&pool, &layer, &x, &r, &residual, isa);
        assert_eq!(
            run_moe(&pool, &layer, &x, &r, &residual, &tiles_only(isa)),
            want,
            "{isa}"
        );
    }
}

#[test]
fn low_bit_mixes_take_their_own_kernels() {
    // UD-IQ1_S files: IQ1_S or IQ1_M gate/up experts with IQ2_XXS/IQ3_S/IQ4_XS down.
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng::new(15);
    for types in [
        [GgmlType::IQ1_S, GgmlType::IQ1_M, GgmlType::IQ2_XXS],
        [GgmlType::IQ2_S, GgmlType::IQ3_XXS, GgmlType::IQ4_XS],
    ] {
        let layer = Layer::new(&mut rng, types, 4, 256, 256);
        let r = routing(&mut rng, 9, 4, 2);
        let x = random_input(&mut rng, 9 * 256);
        let residual = random_input(&mut rng, 9 * 256);
        for isa in cpu_features().available() {
            let want = reference(&pool, &layer, &x, &r, &residual, isa);
            assert_eq!(
                run_moe(&pool, &layer, &x, &r, &residual, &tiles_only(isa)),
                want,
                "{types:?} {isa}"
            );
        }
    }
}

/// Largest |a - b| relative to the largest |b|.
fn relative_max_diff(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max(f64::from((x - y).abs())));
    diff / scale
}

#[test]
fn panels_agree_with_tiles() {
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng::new(14);
    let mut tested = 0;
    for isa in cpu_features().available() {
        for ty in TYPES.into_iter().filter(|&t| panel::supports(t, isa)) {
            tested += 1;
            let (hidden, ffn) = shapes(ty);
            let layer = Layer::new(&mut rng, [ty; 3], 5, hidden, ffn);
            let n = 21;
            let r = routing(&mut rng, n, 5, 2);
            let x = random_input(&mut rng, n * hidden);
            let residual = vec![0.0; n * hidden];
            let tiles = run_moe(&pool, &layer, &x, &r, &residual, &tiles_only(isa));
            let panels = MoePlan {
                panel_min_tokens: 2,
                ..tiles_only(isa)
            };
            let got = run_moe(&pool, &layer, &x, &r, &residual, &panels);
            // The two sum a row's blocks in different orders; a SwiGLU output that lands on
            // the other side of an 8-bit rounding step moves a down output by one quantum of it.
            let d = relative_max_diff(&got, &tiles);
            assert!(
                d < 2e-3,
                "{ty} {isa}: panels differ from tiles by {d:e} of the largest output"
            );
            assert_ne!(got, vec![0.0; got.len()]);
        }
    }
    if tested == 0 {
        eprintln!("skipped: this CPU has no panel kernels (AVX2 or AVX-512 VNNI)");
    }
}

/// Exact f64 math on dequantized weights with f32 activations.
fn exact(layer: &Layer, x: &[f32], r: &Routing) -> Vec<f32> {
    let deq = |(ty, data): &(GgmlType, Vec<u8>), rows: usize, cols: usize| {
        let mut out = vec![0.0f32; rows * cols];
        let rb = data.len() / rows;
        for (row, o) in data.chunks_exact(rb).zip(out.chunks_exact_mut(cols)) {
            dequantize_row(*ty, row, o).unwrap();
        }
        out
    };
    let (h, f, e) = (layer.hidden, layer.ffn, layer.experts);
    let (g, u, d) = (
        deq(&layer.gate, e * f, h),
        deq(&layer.up, e * f, h),
        deq(&layer.down, e * h, f),
    );
    let dot = |w: &[f32], v: &[f64]| -> f64 { w.iter().zip(v).map(|(&a, b)| a as f64 * b).sum() };
    let mut out = vec![0.0f32; x.len()];
    for t in 0..r.n_tokens {
        let xt: Vec<f64> = x[t * h..(t + 1) * h].iter().map(|&v| v as f64).collect();
        let mut acc = vec![0.0f64; h];
        for (&ex, &wt) in r.experts_of(t).iter().zip(r.weights_of(t)) {
            let ex = ex as usize;
            let act: Vec<f64> = (0..f)
                .map(|i| {
                    let row = (ex * f + i) * h;
                    let gv = dot(&g[row..row + h], &xt);
                    let uv = dot(&u[row..row + h], &xt);
                    gv / (1.0 + (-gv).exp()) * uv
                })
                .collect();
            for (i, a) in acc.iter_mut().enumerate() {
                let row = (ex * h + i) * f;
                *a += wt as f64 * dot(&d[row..row + f], &act);
            }
        }
        for (o, a) in out[t * h..(t + 1) * h].iter_mut().zip(acc) {
            *o = a as f32;
        }
    }
    out
}

#[test]
fn close_to_exact_math_on_dequantized_weights() {
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng::new(15);
    for ty in TYPES {
        let (hidden, ffn) = shapes(ty);
        let layer = Layer::new(&mut rng, [ty; 3], 5, hidden, ffn);
        let n = 11;
        let r = routing(&mut rng, n, 5, 2);
        // No outliers here: an outlier would set its block's 8-bit step for all the others.
        let x: Vec<f32> = (0..n * hidden).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let zero = vec![0.0; n * hidden];
        let got = run_moe(&pool, &layer, &x, &r, &zero, &MoePlan::new());
        let d = relative_max_diff(&got, &exact(&layer, &x, &r));
        // Float weights: f32 rounding only. Quantized: two 8-bit quantizations of the
        // activations (the input, the SwiGLU outputs), each off by up to half a step of 1/127
        // of its block's largest value; measured 0.2-1.7% of the largest output here (a wrong
        // expert, weight or row is off by the size of the output itself).
        // The low-bit i-quants (random grid points, signs and scales per 16 or 32) cancel more
        // in each dot than the other types' random quants, so the same activation noise is a
        // larger share of their smaller outputs: measured 1.6-3.5%.
        let low_bit = matches!(
            ty,
            GgmlType::IQ2_XXS
                | GgmlType::IQ2_XS
                | GgmlType::IQ2_S
                | GgmlType::IQ3_XXS
                | GgmlType::IQ3_S
                | GgmlType::IQ1_S
                | GgmlType::IQ1_M
        );
        let bound = match ty.block_size() {
            1 => 1e-5,
            _ if low_bit => 0.05,
            _ => 0.03,
        };
        assert!(
            d < bound,
            "{ty}: {d:e} of the largest output from exact math"
        );
    }
}

#[test]
fn bad_shapes_and_routings_are_errors() {
    let pool = ThreadPool::new(1).unwrap();
    let mut rng = Rng::new(16);
    let layer = Layer::new(&mut rng, [GgmlType::Q8_0; 3], 3, 64, 32);
    let mut w = layer.weights();
    let x = vec![0.5; 64];
    let mut out = vec![0.0; 64];
    let mut scratch = MoeScratch::default();
    let plan = MoePlan::new();
    let one = Routing {
        n_tokens: 1,
        k: 2,
        n_experts: 3,
        experts: vec![0, 2],
        weights: vec![0.5, 0.5],
    };
    let call = |w: &ExpertWeights, r: &Routing, x: &[f32], out: &mut [f32], s: &mut MoeScratch| {
        moe_experts(&pool, w, x, r, None, out, &plan, s)
    };
    assert!(call(&w, &one, &x, &mut out, &mut scratch).is_ok());
    let far = Routing {
        experts: vec![0, 3],
        ..one.clone()
    };
    assert_eq!(
        call(&w, &far, &x, &mut out, &mut scratch),
        Err(KernelError::ExpertIndex { experts: 3 })
    );
    assert!(matches!(
        call(&w, &one, &x[..32], &mut out, &mut scratch),
        Err(KernelError::SliceLen { .. })
    ));
    w.down.rows = 32;
    assert!(matches!(
        call(&w, &one, &x, &mut out, &mut scratch),
        Err(KernelError::ExpertShapes { .. })
    ));
    assert!(matches!(
        ExpertTensor::new(GgmlType::Q8_0, 3, 32, 64, &layer.gate.1[1..]),
        Err(KernelError::WeightBytes { .. })
    ));
}

/// The router against a plain reimplementation: softmax in f64, a stable descending sort (no
/// ties in random logits), renormalised weights.
#[test]
fn router_picks_the_top_experts_with_renormalised_weights() {
    let mut rng = Rng::new(17);
    for (experts, k) in [(8, 2), (16, 4), (128, 8), (7, 7)] {
        let n = 5;
        let logits: Vec<f32> = (0..n * experts).map(|_| rng.uniform(-4.0, 4.0)).collect();
        let mut r = Routing::default();
        route(&logits, experts, k, &mut r);
        for t in 0..n {
            let row = &logits[t * experts..(t + 1) * experts];
            let mut order: Vec<usize> = (0..experts).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let want: Vec<u32> = order[..k].iter().map(|&e| e as u32).collect();
            assert_eq!(r.experts_of(t), &want[..], "{experts} experts, token {t}");
            let top: Vec<f64> = order[..k].iter().map(|&e| (row[e] as f64).exp()).collect();
            let total: f64 = top.iter().sum();
            for (w, p) in r.weights_of(t).iter().zip(&top) {
                assert!((f64::from(*w) - p / total).abs() < 1e-6);
            }
        }
    }
}

#[test]
fn decode_reads_only_the_selected_experts() {
    // Poison every expert but the selected ones: a kernel reading another expert's bytes
    // would turn the output into NaN or change it.
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng::new(18);
    let mut layer = Layer::new(&mut rng, [GgmlType::F32; 3], 6, 37, 19);
    let r = Routing {
        n_tokens: 1,
        k: 2,
        n_experts: 6,
        experts: vec![4, 1],
        weights: vec![0.75, 0.25],
    };
    let x = random_input(&mut rng, 37);
    let zero = vec![0.0; 37];
    let before = run_moe(&pool, &layer, &x, &r, &zero, &MoePlan::new());
    for data in [&mut layer.gate.1, &mut layer.up.1, &mut layer.down.1] {
        let per = data.len() / 6;
        for e in [0, 2, 3, 5] {
            for b in data[e * per..(e + 1) * per].chunks_exact_mut(4) {
                b.copy_from_slice(&f32::NAN.to_le_bytes());
            }
        }
    }
    let after = run_moe(&pool, &layer, &x, &r, &zero, &MoePlan::new());
    assert_eq!(before, after);
    assert!(after.iter().all(|v| v.is_finite()));
}
