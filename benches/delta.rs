//! Gated DeltaNet layer benchmark (`qwen::cpu::delta`): one layer of a real Qwen3.5 shape, a
//! decode step and a prompt, every prefill form and ISA, paired: the variants take turns in
//! each round, and each is reported as its fastest and median call and its ratio to the first
//! variant of its table within the same round (median and range over rounds), so that a
//! machine whose load changes still compares like with like. Prints figures, asserts nothing.
//!
//! `cargo bench --bench delta -- [SHAPE] [THREADS] [TOKENS] [ROUNDS]`: SHAPE `4b` (16 key /
//! 32 value heads of 128, as Qwen3.5-4B and 9B) or `0.8b` (16 / 16, as 0.8B and 2B); defaults
//! 4b, 2 threads, a 256-token prompt, 20 rounds (a decode table gets 20 times as many).

use std::time::Instant;

use qwen::cpu::delta::{
    fused, standard, FusedOptions, FusedScratch, FusedWeights, GdnInputs, GdnShape, GdnState,
    GdnWeights, HeadMap, Prefill, StandardScratch,
};
use qwen::cpu::synth::{random_input, Rng};
use qwen::cpu::{cpu_features, Isa, ThreadPool};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn arg(i: usize) -> Option<String> {
    std::env::args().filter(|a| !a.starts_with('-')).nth(i)
}

struct Data {
    conv: Vec<f32>,
    dt_bias: Vec<f32>,
    a: Vec<f32>,
    norm: Vec<f32>,
    qkv: Vec<f32>,
    z: Vec<f32>,
    alpha: Vec<f32>,
    beta: Vec<f32>,
}

impl Data {
    fn new(shape: &GdnShape, n: usize) -> Data {
        let mut rng = Rng::new(11);
        let mut vals = |len: usize, lo: f32, hi: f32| -> Vec<f32> {
            (0..len).map(|_| rng.uniform(lo, hi)).collect()
        };
        Data {
            conv: vals(shape.conv_dim() * shape.conv_kernel, -1.0, 1.0),
            dt_bias: vals(shape.v_heads, 0.5, 1.5),
            a: vals(shape.v_heads, -2.0, -0.01),
            norm: vals(shape.head_dim, 0.8, 1.2),
            qkv: random_input(&mut Rng::new(12), n * shape.conv_dim()),
            z: random_input(&mut Rng::new(13), n * shape.value_dim()),
            alpha: vals(n * shape.v_heads, -2.0, 2.0),
            beta: vals(n * shape.v_heads, -2.0, 2.0),
        }
    }
    fn weights(&self) -> GdnWeights<'_> {
        GdnWeights {
            conv: &self.conv,
            dt_bias: &self.dt_bias,
            a: &self.a,
            norm: &self.norm,
        }
    }
    fn inputs(&self, shape: &GdnShape, n: usize) -> GdnInputs<'_> {
        GdnInputs {
            qkv: &self.qkv[..n * shape.conv_dim()],
            z: &self.z[..n * shape.value_dim()],
            alpha: &self.alpha[..n * shape.v_heads],
            beta: &self.beta[..n * shape.v_heads],
        }
    }
}

/// A way to run the layer.
#[derive(Clone, Copy)]
enum Variant {
    Standard,
    Fused(FusedOptions),
}

impl Variant {
    fn name(&self) -> String {
        match self {
            Variant::Standard => "standard (llama.cpp order, 1 thread)".into(),
            Variant::Fused(o) => format!("fused {} {:?}", o.isa, o.prefill),
        }
    }
}

/// Seconds per call of each variant: in each round every variant runs one call (after a
/// warm-up call each), so the variants take turns at the finest grain; per variant the
/// fastest call (the one the machine's load disturbed least) and the median, and the median
/// and range over rounds of the ratio to the first variant's call of the same round.
#[allow(clippy::too_many_arguments)]
fn table(
    title: &str,
    shape: &GdnShape,
    data: &Data,
    n: usize,
    threads: usize,
    rounds: usize,
    variants: &[Variant],
) {
    let pool = ThreadPool::new(threads).unwrap();
    let weights = FusedWeights::new(shape, &data.weights()).unwrap();
    let inputs = data.inputs(shape, n);
    let mut out = vec![0.0f32; n * shape.value_dim()];
    let mut state = GdnState::new(shape);
    let (mut fs, mut ss) = (FusedScratch::default(), StandardScratch::default());
    let mut call = |v: &Variant| {
        let t = Instant::now();
        match v {
            Variant::Standard => standard::layer(
                shape,
                &data.weights(),
                &mut state,
                &inputs,
                &mut out,
                &mut ss,
            )
            .unwrap(),
            Variant::Fused(o) => {
                fused::layer(&pool, &weights, &mut state, &inputs, &mut out, &mut fs, *o).unwrap()
            }
        }
        t.elapsed().as_secs_f64()
    };
    variants.iter().for_each(|v| {
        call(v);
    });
    let mut secs = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        for (i, v) in variants.iter().enumerate() {
            secs[i].push(call(v));
        }
    }
    println!("\n{title}: {n} token(s), {threads} thread(s), {rounds} rounds");
    let state_bytes = (shape.ssm_state_len() * 4 * 2) as f64; // read and written
    for (i, v) in variants.iter().enumerate() {
        let ratios: Vec<f64> = (0..rounds).map(|r| secs[0][r] / secs[i][r]).collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
        let best = secs[i].iter().copied().fold(f64::MAX, f64::min);
        let mid = median(secs[i].clone());
        let rate = if n == 1 {
            format!("{:6.1} GB/s of state", state_bytes / best / 1e9)
        } else {
            format!("{:6.0} tokens/s", n as f64 / best)
        };
        println!(
            "  {:<42} fastest {:9.1} us (median {:9.1})  {rate}  vs first {:.2}x ({lo:.2}-{hi:.2})",
            v.name(),
            best * 1e6,
            mid * 1e6,
            median(ratios)
        );
    }
}

fn main() {
    let shape_name = arg(1).unwrap_or_else(|| "4b".into());
    let v_heads = if shape_name == "0.8b" { 16 } else { 32 };
    let shape = GdnShape {
        k_heads: 16,
        v_heads,
        head_dim: 128,
        conv_kernel: 4,
        map: HeadMap::Tiled,
        eps: 1e-6,
    };
    let threads = arg(2).and_then(|a| a.parse().ok()).unwrap_or(2usize).max(1);
    let tokens = arg(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(512usize)
        .max(2);
    let rounds = arg(4)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20usize)
        .max(1);
    let data = Data::new(&shape, tokens);
    let best = cpu_features().best();
    let isas: Vec<Isa> = cpu_features().available();
    println!("Qwen3.5-{shape_name} GDN layer: {shape:?}; best ISA {best}");

    let seq = |tile, isa| {
        Variant::Fused(FusedOptions {
            prefill: Prefill::Sequential { tile },
            isa,
        })
    };
    let mut decode: Vec<Variant> = isas.iter().rev().map(|&isa| seq(1, isa)).collect();
    decode.push(Variant::Standard);
    table(
        "decode step",
        &shape,
        &data,
        1,
        threads,
        rounds * 20,
        &decode,
    );

    let mut prompt = vec![seq(16, best)];
    for tile in [1, 4, 64, tokens] {
        prompt.push(seq(tile, best));
    }
    for size in [16, 32, 64, 128] {
        prompt.push(Variant::Fused(FusedOptions {
            prefill: Prefill::Chunked { size },
            isa: best,
        }));
    }
    for &isa in isas.iter().filter(|&&i| i != best) {
        prompt.push(seq(16, isa));
    }
    table("prompt", &shape, &data, tokens, threads, rounds, &prompt);
    table(
        "prompt, standard path",
        &shape,
        &data,
        tokens.min(64),
        1,
        3,
        &[Variant::Standard, seq(16, best)],
    );
}
