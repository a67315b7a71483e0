//! The CPU matmul kernels against references: every SIMD path against the scalar path of the
//! same quantized math, the quantized math against exact math on dequantized weights, thread
//! counts and tile shapes against each other, the activation quantizers against ggml's rules.

// Outputs are compared and reported by index; iterator chains would hide which one.
#![allow(clippy::needless_range_loop)]

use qwen::cpu::dot::panel;
use qwen::cpu::quantize::{reference, ActFormat, QuantActs};
use qwen::cpu::synth::{random_input, random_weights, Rng};
use qwen::cpu::{
    cpu_features, dequantize_row, matmul, matmul_multi, Isa, KernelError, MatmulPlan, Scratch,
    ThreadPool, WeightMatrix,
};
use qwen::quant::{GgmlType, SUPPORTED_TYPES};

fn put_f16(b: &mut [u8], off: usize, v: f32) {
    b[off..off + 2].copy_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes());
}

fn dequantized(ty: GgmlType, rows: usize, cols: usize, data: &[u8]) -> Vec<f32> {
    let rb = data.len() / rows;
    let mut out = vec![0.0; rows * cols];
    for (row, o) in data.chunks_exact(rb).zip(out.chunks_exact_mut(cols)) {
        dequantize_row(ty, row, o).unwrap();
    }
    out
}

fn run(pool: &ThreadPool, w: &WeightMatrix, x: &[f32], n: usize, plan: &MatmulPlan) -> Vec<f32> {
    let mut y = vec![f32::NAN; n * w.rows];
    matmul(pool, w, x, n, &mut y, plan, &mut Scratch::default()).unwrap();
    y
}

fn is_float(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

/// Activation block length of the integer path for `ty` (32 or 256), 1 for float weights.
fn act_block(ty: GgmlType) -> usize {
    match ty {
        t if is_float(t) => 1,
        // The K-quants, IQ4_XS and the low-bit i-quants: Q8_K super-blocks.
        t if t.block_size() == 256 => 256,
        _ => 32,
    }
}

/// Per output: the exact f64 dot on dequantized weights, a magnitude to scale rounding
/// tolerances by (`sum |w_c| * amax` of c's activation block, `sum |w_c x_c|` for float
/// weights), and the worst-case error that quantizing the activations can add.
struct Exact {
    value: Vec<f64>,
    norm: Vec<f64>,
    quant_bound: Vec<f64>,
}

fn exact(ty: GgmlType, rows: usize, cols: usize, data: &[u8], x: &[f32], n: usize) -> Exact {
    let wf = dequantized(ty, rows, cols, data);
    let ab = act_block(ty);
    let rb = data.len() / rows;
    let (mut value, mut norm, mut quant_bound) = (vec![], vec![], vec![]);
    for t in 0..n {
        let xt = &x[t * cols..(t + 1) * cols];
        for r in 0..rows {
            let wr = &wf[r * cols..(r + 1) * cols];
            let (mut v, mut nm, mut qb) = (0.0f64, 0.0f64, 0.0f64);
            for (b, (wb, xb)) in wr.chunks(ab).zip(xt.chunks(ab)).enumerate() {
                let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
                let sum_w: f64 = wb.iter().map(|w| w.abs() as f64).sum();
                v += wb
                    .iter()
                    .zip(xb)
                    .map(|(&w, &x)| w as f64 * x as f64)
                    .sum::<f64>();
                nm += if ab == 1 {
                    (wb[0] as f64 * xb[0] as f64).abs()
                } else {
                    sum_w * amax
                };
                qb += match act_block(ty) {
                    // Q8_K: |x - a*d| <= d/2 with d = amax/127 (f32 scale, RNE rounding).
                    256 => sum_w * amax * 0.5005 / 127.0,
                    // Q8_0/Q8_1: d/2 plus the f16 rounding of d (|a| <= 127, 2^-11 relative).
                    32 => {
                        let per = amax * (0.5 + 127.0 / 2048.0) / 127.0;
                        let mins = if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
                            let blk = &data[r * rb + b * ty.type_size()..];
                            let m =
                                half::f16::from_le_bytes([blk[2], blk[3]]).to_f32().abs() as f64;
                            let sum_x: f64 = xb.iter().map(|x| x.abs() as f64).sum();
                            // The min's share: |d q| <= |w| + |m|, and s = f16(d * sum a).
                            32.0 * m * per + m * (16.0 * amax / 127.0 * 1.001 + sum_x / 2048.0)
                        } else {
                            0.0
                        };
                        sum_w * per + mins
                    }
                    _ => 0.0,
                };
            }
            value.push(v);
            norm.push(nm);
            quant_bound.push(qb);
        }
    }
    Exact {
        value,
        norm,
        quant_bound,
    }
}

/// The SIMD/scalar agreement tolerance, relative to `norm`: several f32 roundings per block,
/// summed in a different order over at most ~100 terms in these tests.
const ORDER_TOL: f64 = 1e-5;

fn cols_for(ty: GgmlType) -> [usize; 2] {
    match ty.block_size() {
        1 => [37, 160],
        32 => [96, 320],
        _ => [256, 768],
    }
}

/// Whether panels of `isa` run on AMX tiles in this process.
fn amx_runs(isa: Isa) -> bool {
    #[cfg(target_arch = "x86_64")]
    return isa == Isa::Avx512Vnni && panel::amx::usable();
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        false
    }
}

#[test]
fn every_path_matches_scalar_and_exact_math() {
    let pool = ThreadPool::new(2).unwrap();
    let isas = cpu_features().available();
    let mut rng = Rng::new(0x1234_5678_9abc_def1);
    // Rows: fewer than a tile or panel, and two panels and a part; tokens: every count up to
    // one past the panels' largest call, and a prompt's worth.
    let shapes = SUPPORTED_TYPES
        .into_iter()
        .flat_map(|ty| cols_for(ty).map(|cols| (ty, cols)))
        .flat_map(|(ty, cols)| [(ty, cols, 7), (ty, cols, 37)]);
    for (ty, cols, rows) in shapes {
        let data = random_weights(&mut rng, ty, rows, cols);
        let w = WeightMatrix::new(ty, rows, cols, &data).unwrap();
        for n in (1..=panel::MAX_TOKENS + 1).chain([64]) {
            let x = random_input(&mut rng, n * cols);
            let ex = exact(ty, rows, cols, &data, &x, n);
            let scalar = run(&pool, &w, &x, n, &MatmulPlan::for_isa(Isa::Scalar));
            for i in 0..n * rows {
                let err = (scalar[i] as f64 - ex.value[i]).abs();
                let bound = ex.quant_bound[i] * 1.01 + ORDER_TOL * ex.norm[i] + 1e-30;
                assert!(
                    err <= bound,
                    "{ty} {rows}x{cols} n={n} out {i}: scalar {} exact {} err {err:e} > {bound:e}",
                    scalar[i],
                    ex.value[i]
                );
            }
            // Each ISA's tile kernels, and its panel kernels where it has them.
            let plans = isas.iter().flat_map(|&isa| {
                let tiles = MatmulPlan {
                    panel: false,
                    ..MatmulPlan::for_isa(isa)
                };
                let panels = MatmulPlan {
                    panel: true,
                    ..tiles
                };
                // AMX tiles, where this process runs them (the emulated tiles are tested in
                // the crate's own tests on every CPU with AVX-512).
                let amx = MatmulPlan {
                    amx: true,
                    token_tile: 16,
                    ..panels
                };
                std::iter::once(tiles)
                    .chain(panel::supports(ty, isa).then_some(panels))
                    .chain((panel::supports(ty, isa) && amx_runs(isa)).then_some(amx))
            });
            for plan in plans {
                let got = run(&pool, &w, &x, n, &plan);
                for i in 0..n * rows {
                    let err = (got[i] as f64 - scalar[i] as f64).abs();
                    let tol = ORDER_TOL * ex.norm[i] + 1e-30;
                    assert!(
                        err <= tol,
                        "{ty} {} {rows}x{cols} n={n} out {i}: {} vs scalar {} (err {err:e} > {tol:e})",
                        plan.describe(),
                        got[i],
                        scalar[i]
                    );
                }
            }
        }
    }
}

#[test]
fn f32_activation_path_matches_exact_math() {
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng::new(77);
    for ty in SUPPORTED_TYPES.into_iter().filter(|t| !is_float(*t)) {
        let (rows, cols) = (9, cols_for(ty)[1]);
        let data = random_weights(&mut rng, ty, rows, cols);
        let w = WeightMatrix::new(ty, rows, cols, &data).unwrap();
        let n = 5;
        let x = random_input(&mut rng, n * cols);
        let ex = exact(ty, rows, cols, &data, &x, n);
        for isa in cpu_features().available() {
            let plan = MatmulPlan {
                quantize_activations: false,
                ..MatmulPlan::for_isa(isa)
            };
            let got = run(&pool, &w, &x, n, &plan);
            for i in 0..n * rows {
                let norm: f64 = ex.norm[i];
                let err = (got[i] as f64 - ex.value[i]).abs();
                // f32 sums of exactly dequantized weights: only rounding, no quantization.
                assert!(
                    err <= ORDER_TOL * norm,
                    "{ty} {isa} f32 path out {i}: err {err:e}"
                );
            }
        }
    }
}

#[test]
fn thread_counts_and_tile_shapes_give_identical_bits() {
    let pool = ThreadPool::new(3).unwrap();
    let mut rng = Rng::new(99);
    for ty in SUPPORTED_TYPES {
        let (rows, cols) = (37, cols_for(ty)[1]);
        let data = random_weights(&mut rng, ty, rows, cols);
        let w = WeightMatrix::new(ty, rows, cols, &data).unwrap();
        for n in [1, 6] {
            let x = random_input(&mut rng, n * cols);
            for isa in cpu_features().available() {
                let base = MatmulPlan {
                    threads: 1,
                    ..MatmulPlan::for_isa(isa)
                };
                let want = run(&pool, &w, &x, n, &base);
                for (threads, chunk, rt, tt) in
                    [(2, 4, 4, 4), (3, 5, 2, 3), (3, 1, 1, 1), (2, 64, 8, 8)]
                {
                    let plan = MatmulPlan {
                        threads,
                        rows_per_chunk: chunk,
                        row_tile: rt,
                        token_tile: tt,
                        ..base
                    };
                    let got = run(&pool, &w, &x, n, &plan);
                    let same = same_bits(&want, &got);
                    assert!(
                        same,
                        "{ty} {isa} n={n} plan {} differs from 1 thread",
                        plan.describe()
                    );
                }
                // A token's result does not depend on the batch it came in: bit for bit on
                // the tile kernels; the panel kernels (batches only) sum block by block, so
                // there within the summation-order tolerance of the single-token result.
                let one = run(&pool, &w, &x[..cols], 1, &base);
                let panel = n > 1 && base.panel && panel::supports(ty, isa);
                if panel {
                    let ex = exact(ty, rows, cols, &data, &x[..cols], 1);
                    for (r, (a, b)) in one.iter().zip(&want).enumerate() {
                        let err = (*a as f64 - *b as f64).abs();
                        assert!(
                            err <= ORDER_TOL * ex.norm[r],
                            "{ty} {isa} row {r}: {a} vs {b}"
                        );
                    }
                } else {
                    assert!(
                        one.iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{ty} {isa}"
                    );
                }
            }
        }
    }
}

/// ggml's Q8_0 rule, written out again independently: d = amax/127 stored as f16, q = roundf(x/d).
fn ggml_q8_0(x: &[f32]) -> (Vec<i8>, Vec<f32>) {
    let (mut qs, mut ds) = (vec![], vec![]);
    for b in x.chunks(32) {
        let amax = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        qs.extend(b.iter().map(|&v| (v * id).round() as i8));
        ds.push(half::f16::from_f32(d).to_f32());
    }
    (qs, ds)
}

/// ggml's Q8_K rule: iscale = -127/max (max: signed value of the first largest |x|),
/// q = min(127, round-half-even(iscale * x)), d = 1/iscale, zero block -> d = 0.
fn ggml_q8_k(x: &[f32]) -> (Vec<i8>, Vec<f32>, Vec<i16>) {
    let (mut qs, mut ds, mut sums) = (vec![], vec![], vec![]);
    for b in x.chunks(256) {
        let mut max = 0.0f32;
        for &v in b {
            if v.abs() > max.abs() {
                max = v;
            }
        }
        if max == 0.0 {
            qs.extend(std::iter::repeat_n(0i8, 256));
            ds.push(0.0);
            sums.extend(std::iter::repeat_n(0i16, 16));
            continue;
        }
        let iscale = -127.0 / max;
        let q: Vec<i8> = b
            .iter()
            .map(|&v| ((iscale * v).round_ties_even() as i32).min(127) as i8)
            .collect();
        sums.extend(
            q.chunks(16)
                .map(|c| c.iter().map(|&v| v as i16).sum::<i16>()),
        );
        qs.extend(q);
        ds.push(1.0 / iscale);
    }
    (qs, ds, sums)
}

fn tricky_inputs(rng: &mut Rng) -> Vec<Vec<f32>> {
    let mut v = vec![
        vec![0.0; 512],
        (0..512).map(|i| (i as f32 - 256.0) * 0.5).collect(),
        (0..512)
            .map(|i| if i % 64 == 3 { 3e30 } else { 1e-3 })
            .collect(),
        (0..512usize)
            .map(|i| if i.is_multiple_of(7) { -4.0 } else { 4.0 })
            .collect(),
        (0..512)
            .map(|i| (i % 33) as f32 * 127.0 / 32.0 - 63.5)
            .collect(),
    ];
    v.push((0..512).map(|_| rng.uniform(-1.0, 1.0)).collect());
    // Exact ties: x / d lands on k + 0.5.
    v.push(
        (0..512usize)
            .map(|i| {
                if i.is_multiple_of(32) {
                    127.0
                } else {
                    (i % 20) as f32 + 0.5
                }
            })
            .collect(),
    );
    v
}

#[test]
fn activation_quantizers_follow_ggml() {
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng::new(5);
    for x in tricky_inputs(&mut rng) {
        let (q0, d0) = ggml_q8_0(&x);
        let (qk, dk, sk) = ggml_q8_k(&x);
        for isa in cpu_features().available() {
            let mut acts = QuantActs::default();
            acts.prepare(ActFormat::Q8_0 { offset: 128 }, 1, x.len());
            acts.quantize(&pool, 1, &x, isa);
            assert_eq!(&acts.tok_qs(0)[..x.len()], &q0[..], "{isa} q8_0 quants");
            assert_eq!(&acts.tok_d(0)[..d0.len()], &d0[..], "{isa} q8_0 scales");
            let c4: Vec<i32> = q0
                .chunks(4)
                .map(|c| -128 * c.iter().map(|&v| v as i32).sum::<i32>())
                .collect();
            assert_eq!(
                &acts.tok_c4(0)[..c4.len()],
                &c4[..],
                "{isa} lane corrections"
            );

            acts.prepare(ActFormat::Q8K, 1, x.len());
            acts.quantize(&pool, 1, &x, isa);
            assert_eq!(&acts.tok_qs(0)[..x.len()], &qk[..], "{isa} q8_K quants");
            assert_eq!(&acts.tok_d(0)[..dk.len()], &dk[..], "{isa} q8_K scales");
            assert_eq!(&acts.tok_bsums16(0)[..sk.len()], &sk[..], "{isa} q8_K sums");

            acts.prepare(ActFormat::Q8_1, 1, x.len());
            acts.quantize(&pool, 1, &x, isa);
            assert_eq!(&acts.tok_qs(0)[..x.len()], &q0[..], "{isa} q8_1 quants");
            for (b, q) in q0.chunks(32).enumerate() {
                let d = {
                    let amax = x[32 * b..32 * b + 32]
                        .iter()
                        .fold(0.0f32, |m, v| m.max(v.abs()));
                    amax / 127.0
                };
                let sum: i32 = q.iter().map(|&v| v as i32).sum();
                let s = half::f16::from_f32(sum as f32 * d).to_f32();
                assert_eq!(acts.tok_s(0)[b], s, "{isa} q8_1 s of block {b}");
            }
        }
    }
    // The scalar reference module agrees with the independent rules too.
    let x: Vec<f32> = (0..256).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
    let (mut qs, mut d, mut bs) = (vec![0i8; 256], vec![0f32; 1], vec![0i16; 16]);
    reference::quantize_q8_k(&x, &mut qs, &mut d, &mut bs);
    assert_eq!((qs, d, bs), ggml_q8_k(&x));
    assert_eq!(reference::round_away(2.5), 3);
    assert_eq!(reference::round_away(-2.5), -3);
    assert_eq!(reference::nearest_int(2.5), 2);
    assert_eq!(reference::nearest_int(-3.5), -4);
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let pool = ThreadPool::new(2).unwrap();
    let plan = MatmulPlan::default();
    let mut s = Scratch::default();
    let data = vec![0u8; 4 * 34];
    // cols not a whole number of blocks
    assert!(matches!(
        WeightMatrix::new(GgmlType::Q8_0, 4, 40, &data),
        Err(KernelError::PartialBlock { .. })
    ));
    // wrong byte count
    assert!(matches!(
        WeightMatrix::new(GgmlType::Q8_0, 5, 32, &data),
        Err(KernelError::WeightBytes { .. })
    ));
    // unsupported type
    assert_eq!(
        WeightMatrix::new(GgmlType::TQ1_0, 1, 256, &data).unwrap_err(),
        KernelError::UnsupportedType(GgmlType::TQ1_0)
    );
    let w = WeightMatrix::new(GgmlType::Q8_0, 4, 32, &data).unwrap();
    let mut y = vec![0.0; 8];
    let e = matmul(&pool, &w, &[0.0; 63], 2, &mut y, &plan, &mut s).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::SliceLen {
                what: "input x",
                ..
            }
        ),
        "{e}"
    );
    let e = matmul(&pool, &w, &[0.0; 64], 2, &mut y[..7], &plan, &mut s).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::SliceLen {
                what: "output y",
                ..
            }
        ),
        "{e}"
    );
    // A hand-built WeightMatrix with a short slice is caught at the call too.
    let bad = WeightMatrix {
        ty: GgmlType::Q8_0,
        rows: 4,
        cols: 32,
        data: &data[..100],
        repacked: None,
    };
    assert!(matches!(
        matmul(&pool, &bad, &[0.0; 64], 2, &mut y, &plan, &mut s),
        Err(KernelError::WeightBytes { .. })
    ));
    for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni, Isa::Neon] {
        let p = MatmulPlan::for_isa(isa);
        let r = matmul(&pool, &w, &[0.0; 64], 2, &mut y, &p, &mut s);
        if cpu_features().supports(isa) {
            assert!(r.is_ok(), "{isa}");
        } else {
            assert_eq!(r, Err(KernelError::IsaUnavailable(isa)));
        }
    }
    // Zero tokens or rows: nothing to do, no error.
    assert!(matmul(&pool, &w, &[], 0, &mut [], &plan, &mut s).is_ok());
}

#[test]
fn hand_built_blocks_dequantize_as_ggml_defines() {
    // Q8_0: d = 0.5, q = j - 16.
    let mut b = vec![0u8; 34];
    put_f16(&mut b, 0, 0.5);
    for j in 0..32 {
        b[2 + j] = (j as i8 - 16) as u8;
    }
    let mut out = vec![0.0; 32];
    dequantize_row(GgmlType::Q8_0, &b, &mut out).unwrap();
    assert!(out
        .iter()
        .enumerate()
        .all(|(j, &v)| v == (j as f32 - 16.0) * 0.5));
    // Q4_0: byte j holds weight j (low nibble) and j+16 (high nibble), minus 8.
    let mut b = vec![0u8; 18];
    put_f16(&mut b, 0, 2.0);
    b[2] = 0x9F; // w0 = 15-8 = 7, w16 = 9-8 = 1
    dequantize_row(GgmlType::Q4_0, &b, &mut out).unwrap();
    assert_eq!((out[0], out[16], out[1]), (14.0, 2.0, -16.0));
    // Q4_K: sub-block 0 scale 3 min 2, d = 1, dmin = 0.5; first quant 5 -> 1*3*5 - 0.5*2 = 14.
    let mut b = vec![0u8; 144];
    put_f16(&mut b, 0, 1.0);
    put_f16(&mut b, 2, 0.5);
    b[4] = 3;
    b[8] = 2;
    b[16] = 5;
    let mut out = vec![0.0; 256];
    dequantize_row(GgmlType::Q4_K, &b, &mut out).unwrap();
    assert_eq!(out[0], 14.0);
    // Q6_K: d = 1, scale 0 = -2, ql low nibble 1, qh bits 0 -> q = 1 - 32 = -31 -> 62.
    let mut b = vec![0u8; 210];
    put_f16(&mut b, 208, 1.0);
    b[192] = (-2i8) as u8;
    b[0] = 1;
    dequantize_row(GgmlType::Q6_K, &b, &mut out).unwrap();
    assert_eq!(out[0], 62.0);
}

#[test]
fn several_matrices_in_one_call_match_separate_calls() {
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng::new(11);
    let cols = 512;
    for group in [
        [GgmlType::Q8_0, GgmlType::Q8_0, GgmlType::Q8_0],
        [GgmlType::Q4_K, GgmlType::Q4_K, GgmlType::Q6_K],
        [GgmlType::F32, GgmlType::F16, GgmlType::BF16],
    ] {
        let rows = [24, 8, 13];
        let data: Vec<Vec<u8>> = group
            .iter()
            .zip(rows)
            .map(|(&ty, r)| random_weights(&mut rng, ty, r, cols))
            .collect();
        let ws: Vec<WeightMatrix> = group
            .iter()
            .zip(rows)
            .zip(&data)
            .map(|((&ty, r), d)| WeightMatrix::new(ty, r, cols, d).unwrap())
            .collect();
        for n in [1, 5] {
            let x = random_input(&mut rng, n * cols);
            for isa in cpu_features().available() {
                let plan = MatmulPlan::for_isa(isa);
                let mut outs: Vec<Vec<f32>> = rows.iter().map(|r| vec![0.0; n * r]).collect();
                let mut ys: Vec<&mut [f32]> = outs.iter_mut().map(|v| &mut v[..]).collect();
                matmul_multi(&pool, &ws, &x, n, &mut ys, &plan, &mut Scratch::default()).unwrap();
                for (w, got) in ws.iter().zip(&outs) {
                    let want = run(&pool, w, &x, n, &plan);
                    let same = same_bits(&want, got);
                    assert!(same, "{} in {group:?} on {isa}, n={n}", w.ty);
                }
            }
        }
    }
}

#[test]
fn several_matrices_must_agree_on_input_shape_and_format() {
    let pool = ThreadPool::new(2).unwrap();
    let plan = MatmulPlan::default();
    let mut s = Scratch::default();
    let a = vec![0u8; 2 * 34];
    let b = vec![0u8; 2 * 18];
    let c = vec![0u8; 2 * 68];
    let q8 = WeightMatrix::new(GgmlType::Q8_0, 2, 32, &a).unwrap();
    let q4 = WeightMatrix::new(GgmlType::Q4_0, 2, 32, &b).unwrap();
    let wide = WeightMatrix::new(GgmlType::Q8_0, 2, 64, &c).unwrap();
    let (mut y1, mut y2) = (vec![0.0; 2], vec![0.0; 2]);
    let e = matmul_multi(
        &pool,
        &[q8, q4],
        &[0.0; 32],
        1,
        &mut [&mut y1, &mut y2],
        &plan,
        &mut s,
    );
    assert!(
        matches!(e, Err(KernelError::FormatMismatch { .. })),
        "{e:?}"
    );
    let e = matmul_multi(
        &pool,
        &[q8, wide],
        &[0.0; 32],
        1,
        &mut [&mut y1, &mut y2],
        &plan,
        &mut s,
    );
    assert!(matches!(e, Err(KernelError::ColsMismatch { .. })), "{e:?}");
    let e = matmul_multi(
        &pool,
        &[q8, q8],
        &[0.0; 32],
        1,
        &mut [&mut y1],
        &plan,
        &mut s,
    );
    assert!(matches!(e, Err(KernelError::OutputCount { .. })), "{e:?}");
    let nine = [q8; 9];
    let e = matmul_multi(&pool, &nine, &[0.0; 32], 1, &mut [], &plan, &mut s);
    assert!(matches!(e, Err(KernelError::TooManyMatrices(9))), "{e:?}");
}

#[test]
fn activations_are_quantized_whatever_thread_count_is_asked_for() {
    // 64 tokens of 512: enough work to split. A thread count above the pool's size (or 0) once
    // left the tokens of the missing threads unquantized, or divided by zero.
    let pool = ThreadPool::new(2).unwrap();
    let (n, cols) = (64, 512);
    let x = random_input(&mut Rng::new(17), n * cols);
    let mut want = QuantActs::default();
    want.prepare(ActFormat::Q8_0 { offset: 128 }, n, cols);
    want.quantize(&pool, 1, &x, Isa::Scalar);
    for threads in [0, 2, 3, 8, 1000] {
        for isa in cpu_features().available() {
            let mut acts = QuantActs::default();
            acts.prepare(ActFormat::Q8_0 { offset: 128 }, n, cols);
            acts.quantize(&pool, threads, &x, isa);
            for t in 0..n {
                assert_eq!(
                    acts.tok_qs(t),
                    want.tok_qs(t),
                    "{isa}, {threads} threads, token {t}"
                );
                assert_eq!(
                    acts.tok_d(t),
                    want.tok_d(t),
                    "{isa}, {threads} threads, token {t}"
                );
            }
        }
    }
}

#[test]
fn gathered_tokens_carry_every_table_of_their_format() {
    // The MoE experts regroup quantized tokens with `gather`; each kernel family reads its own
    // tables (the AVX-512 per-16 panels of IQ2_XS, IQ2_S, IQ1_M, Q2_K and Q3_K read `s16`,
    // which a gather once left stale). A gathered token must equal the token quantized alone.
    let pool = ThreadPool::new(2).unwrap();
    let (n, cols) = (5, 512);
    let x = random_input(&mut Rng::new(21), n * cols);
    let rows = [3u32, 0, 4, 4, 1];
    let formats = [
        ActFormat::Q8_0 { offset: 128 },
        ActFormat::Q8_1,
        ActFormat::Q8K,
    ];
    for fmt in formats {
        for isa in cpu_features().available() {
            let mut all = QuantActs::default();
            all.prepare(fmt, n, cols);
            all.quantize(&pool, 2, &x, isa);
            let mut got = QuantActs::default();
            got.gather(&pool, 2, &all, &rows);
            for (i, &t) in rows.iter().enumerate() {
                let t = t as usize;
                let mut alone = QuantActs::default();
                alone.prepare(fmt, 1, cols);
                alone.quantize(&pool, 1, &x[t * cols..(t + 1) * cols], isa);
                let at = format!("{fmt:?} {isa}, gathered token {i}");
                assert_eq!(got.tok_qs(i), alone.tok_qs(0), "qs: {at}");
                assert_eq!(got.tok_d(i), alone.tok_d(0), "d: {at}");
                assert_eq!(got.tok_c32(i), alone.tok_c32(0), "c32: {at}");
                match fmt {
                    ActFormat::Q8K => {
                        assert_eq!(got.tok_d32(i), alone.tok_d32(0), "d32: {at}");
                        assert_eq!(got.tok_s32(i), alone.tok_s32(0), "s32: {at}");
                        assert_eq!(got.tok_c16(i), alone.tok_c16(0), "c16: {at}");
                        assert_eq!(got.tok_s16(i), alone.tok_s16(0), "s16: {at}");
                        assert_eq!(got.tok_bsums16(i), alone.tok_bsums16(0), "bsums16: {at}");
                        assert_eq!(got.tok_bsums32(i), alone.tok_bsums32(0), "bsums32: {at}");
                        assert_eq!(got.tok_qs_k4(i), alone.tok_qs_k4(0), "qs_k4: {at}");
                    }
                    _ => {
                        assert_eq!(got.tok_d4(i), alone.tok_d4(0), "d4: {at}");
                        assert_eq!(got.tok_c4(i), alone.tok_c4(0), "c4: {at}");
                        if fmt == ActFormat::Q8_1 {
                            assert_eq!(got.tok_s(i), alone.tok_s(0), "s: {at}");
                            assert_eq!(got.tok_s4(i), alone.tok_s4(0), "s4: {at}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn an_instruction_set_the_cpu_lacks_falls_back_to_the_portable_quantizer() {
    // `quantize` is safe: an ISA this CPU does not have must not reach its intrinsics.
    let pool = ThreadPool::new(1).unwrap();
    let x = random_input(&mut Rng::new(18), 4 * 256);
    let mut want = QuantActs::default();
    want.prepare(ActFormat::Q8K, 4, 256);
    want.quantize(&pool, 1, &x, Isa::Scalar);
    let all = [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni, Isa::Neon];
    for isa in all.into_iter().filter(|i| !cpu_features().supports(*i)) {
        let mut acts = QuantActs::default();
        acts.prepare(ActFormat::Q8K, 4, 256);
        acts.quantize(&pool, 1, &x, isa);
        for t in 0..4 {
            assert_eq!(acts.tok_qs(t), want.tok_qs(t), "{isa}");
        }
    }
}

#[test]
fn any_plan_runs_without_overflow_or_division_by_zero() {
    // A plan read from the cache file may hold anything; the kernels must stay in bounds.
    let pool = ThreadPool::new(2).unwrap();
    let data = random_weights(&mut Rng::new(19), GgmlType::Q8_0, 40, 64);
    let w = WeightMatrix::new(GgmlType::Q8_0, 40, 64, &data).unwrap();
    let x = random_input(&mut Rng::new(20), 3 * 64);
    let want = run(&pool, &w, &x, 3, &MatmulPlan::for_isa(Isa::Scalar));
    let base = MatmulPlan::new();
    let odd = [
        MatmulPlan {
            rows_per_chunk: usize::MAX,
            ..base
        },
        MatmulPlan {
            rows_per_chunk: usize::MAX - 2,
            row_tile: 3,
            ..base
        },
        MatmulPlan {
            row_tile: 0,
            token_tile: 0,
            ..base
        },
        MatmulPlan {
            row_tile: usize::MAX,
            token_tile: usize::MAX,
            ..base
        },
        MatmulPlan {
            threads: usize::MAX,
            ..base
        },
    ];
    for plan in odd {
        for panel in [false, true] {
            let plan = MatmulPlan { panel, ..plan };
            let got = run(&pool, &w, &x, 3, &plan);
            for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - r).abs() <= 1e-3 * r.abs().max(1.0),
                    "{plan:?} [{i}]: {g} vs {r}"
                );
            }
        }
    }
}

#[test]
fn prefetch_addresses_never_claim_to_stay_inside_their_buffer() {
    // Prefetches run ahead of the data, past the end of the last rows of a tensor: `add` would
    // promise the result stays inside the allocation (undefined behaviour otherwise);
    // `wrapping_add` promises nothing, and a prefetch of any address is harmless.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut stack = vec![std::path::PathBuf::from(root)];
    let mut sites = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for (n, line) in text.lines().enumerate() {
                let prefetch = ["_mm_prefetch", "_prefetch(", "prfm"]
                    .iter()
                    .any(|k| line.contains(k));
                if prefetch && line.contains('(') && !line.trim_start().starts_with("//") {
                    sites += 1;
                    assert!(
                        !line.contains(".add(") && !line.contains(".offset("),
                        "{}:{}: {}",
                        p.display(),
                        n + 1,
                        line.trim()
                    );
                }
            }
        }
    }
    assert!(sites >= 3, "the prefetch sites were not found ({sites})");
}

/// The AVX2 kernels of the 32-blocks sum each block exactly in integers and add
/// `isum * (d_w * d_a)` (then `m_w * s_a`) block by block, as the portable kernel does: the
/// same bits, whatever the tile shape.
#[test]
fn avx2_block_kernels_give_the_portable_bits() {
    if !cpu_features().available().contains(&Isa::Avx2) {
        eprintln!("skipped: this CPU has no AVX2");
        return;
    }
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng::new(4242);
    let legacy = [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q4_1,
        GgmlType::Q5_1,
        GgmlType::IQ4_NL,
        GgmlType::MXFP4,
    ];
    for ty in legacy {
        let (rows, cols) = (13, 256);
        let data = random_weights(&mut rng, ty, rows, cols);
        let w = WeightMatrix::new(ty, rows, cols, &data).unwrap();
        for n in [1, 3, 8, 11] {
            let x = random_input(&mut rng, n * cols);
            let want = run(&pool, &w, &x, n, &MatmulPlan::for_isa(Isa::Scalar));
            for (rt, tt) in [(1, 1), (2, 2), (4, 1), (4, 2), (4, 4), (8, 1), (2, 4)] {
                let plan = MatmulPlan {
                    row_tile: rt,
                    token_tile: tt,
                    panel: false,
                    ..MatmulPlan::for_isa(Isa::Avx2)
                };
                let got = run(&pool, &w, &x, n, &plan);
                let same = same_bits(&want, &got);
                assert!(same, "{ty} n={n} tile {rt}x{tt}: not the portable bits");
            }
        }
    }
}

/// The AVX2 panels (i-quants, the 32-block types, Q4_K, Q5_K, Q6_K) sum each (row, token)
/// block or super-block as the portable kernel's exact integers and do its float work in its
/// order: the portable bits, whatever the token tile and however the rows fall into panels.
#[test]
fn avx2_panels_give_the_portable_bits() {
    if !cpu_features().available().contains(&Isa::Avx2) {
        eprintln!("skipped: this CPU has no AVX2");
        return;
    }
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng::new(5151);
    let types = SUPPORTED_TYPES
        .into_iter()
        .filter(|&ty| panel::supports(ty, Isa::Avx2));
    let mut tested = 0;
    for ty in types {
        tested += 1;
        for (rows, cols) in [(37, 512), (16, 768)] {
            let data = random_weights(&mut rng, ty, rows, cols);
            let w = WeightMatrix::new(ty, rows, cols, &data).unwrap();
            for n in [2, 5, 9, 21] {
                let x = random_input(&mut rng, n * cols);
                let want = run(&pool, &w, &x, n, &MatmulPlan::for_isa(Isa::Scalar));
                for tt in [1, 3, 8] {
                    let plan = MatmulPlan {
                        token_tile: tt,
                        panel: true,
                        ..MatmulPlan::for_isa(Isa::Avx2)
                    };
                    let got = run(&pool, &w, &x, n, &plan);
                    let same = same_bits(&want, &got);
                    assert!(
                        same,
                        "{ty} {rows}x{cols} n={n} panel tile {tt}: not the portable bits"
                    );
                }
            }
        }
    }
    assert_eq!(
        tested, 19,
        "AVX2 panels: 7 i-quants, 7 32-block types, Q2_K ... Q6_K"
    );
}

/// Whether two outputs are equal bit for bit.
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}
