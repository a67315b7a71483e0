//! Mixture-of-experts kernel benchmark on a real file's expert tensors: prints figures, asserts
//! nothing.
//!
//! `cargo bench --bench moe -- FILE.gguf [THREADS] [LAYER] [PANEL_MIN]` (a qwen3moe, qwen35moe or
//! qwen3next file, e.g. one made by `make_qwen3_gguf.py --preset qwen3-30b-a3b --layers 2`).
//! Times one layer's experts, with its shared expert where it has one, for one token (decode:
//! the selected experts' bytes over the time, against the machine's read bandwidth measured
//! here) and for batches of 64 and 512 tokens (prefill), with routings drawn at random as a
//! trained router spreads them. PANEL_MIN overrides the plan's fewest tokens for an expert's
//! panels (0: tiles only), to compare thresholds.

use std::time::Duration;

#[path = "common/per_call.rs"]
mod per_call;
use per_call::per_call;

use qwen::cpu::moe::{
    moe_experts, ExpertTensor, ExpertWeights, MoePlan, MoeScratch, Routing, SharedExpert,
};
use qwen::cpu::synth::{random_input, Rng};
use qwen::cpu::ThreadPool;
use qwen::gguf::GgufFile;

fn tensor<'a>(file: &'a GgufFile, name: &str) -> ExpertTensor<'a> {
    let info = file
        .tensor(name)
        .unwrap_or_else(|| panic!("{name} not in the file"));
    let dims: Vec<usize> = info.shape().iter().map(|&d| d as usize).collect();
    let data = file.data_of(info).expect("tensor data");
    // `[experts, rows, cols]`; a shared expert's matrices are 2-D: one expert.
    let [experts, rows, cols] = match dims[..] {
        [rows, cols] => [1, rows, cols],
        _ => [dims[0], dims[1], dims[2]],
    };
    ExpertTensor::new(info.ggml_type(), experts, rows, cols, data).expect("expert tensor")
}

/// `k` distinct experts per token, uniformly at random, weights summing to 1.
fn routing(rng: &mut Rng, n: usize, experts: usize, k: usize) -> Routing {
    let mut r = Routing {
        n_tokens: n,
        k,
        n_experts: experts,
        ..Default::default()
    };
    for _ in 0..n {
        let mut chosen = vec![];
        while chosen.len() < k {
            let e = (rng.next_u64() % experts as u64) as u32;
            if !chosen.contains(&e) {
                chosen.push(e);
            }
        }
        r.experts.extend(chosen);
        r.weights.extend(std::iter::repeat_n(1.0 / k as f32, k));
    }
    r
}

/// GB/s of one thread pass reading `bytes` of fresh memory.
fn bandwidth(pool: &ThreadPool) -> f64 {
    let words = vec![1u64; (1 << 30) / 8];
    let threads = pool.n_threads();
    let secs = per_call(Duration::from_secs(2), || {
        let per = words.len() / threads;
        let sums: Vec<std::sync::atomic::AtomicU64> =
            (0..threads).map(|_| Default::default()).collect();
        pool.run(threads, |t| {
            let s: u64 = words[t * per..(t + 1) * per].iter().copied().sum();
            sums[t].store(s, std::sync::atomic::Ordering::Relaxed);
        });
        std::hint::black_box(&sums);
    });
    (words.len() * 8) as f64 / secs / 1e9
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(path) = args.first() else {
        eprintln!("usage: cargo bench --bench moe -- FILE.gguf [THREADS] [LAYER] [PANEL_MIN]");
        return;
    };
    let threads: usize = args.get(1).and_then(|t| t.parse().ok()).unwrap_or(2);
    let layer: usize = args.get(2).and_then(|t| t.parse().ok()).unwrap_or(0);
    let file = GgufFile::open(path).expect("a GGUF file");
    let arch = file
        .get_str("general.architecture")
        .expect("general.architecture");
    let used = format!("{arch}.expert_used_count");
    let k = file.get_u32(&used).expect(&used) as usize;
    let name = |t: &str| format!("blk.{layer}.{t}.weight");
    // The shared expert of qwen35moe and qwen3next files runs in the same call, as in a model.
    let shared_gate = file.tensor(&name("ffn_gate_inp_shexp")).map(|info| {
        let bytes = file.data_of(info).expect("tensor data");
        let floats = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        floats.collect::<Vec<f32>>()
    });
    let w = ExpertWeights {
        gate: tensor(&file, &name("ffn_gate_exps")),
        up: tensor(&file, &name("ffn_up_exps")),
        down: tensor(&file, &name("ffn_down_exps")),
        shared: shared_gate.as_deref().map(|gate_inp| SharedExpert {
            gate_inp,
            gate: tensor(&file, &name("ffn_gate_shexp")),
            up: tensor(&file, &name("ffn_up_shexp")),
            down: tensor(&file, &name("ffn_down_shexp")),
        }),
    };
    let (experts, ffn, hidden) = (w.gate.experts, w.gate.rows, w.gate.cols);
    let pool = ThreadPool::new(threads).expect("thread pool");
    let bw = bandwidth(&pool);
    println!(
        "{path}: layer {layer}, {experts} experts of {hidden}x{ffn} ({} gate, {} up, {} down), \
         {k} used{}; {threads} threads; read bandwidth {bw:.1} GB/s",
        w.gate.ty,
        w.up.ty,
        w.down.ty,
        if w.shared.is_some() {
            " and a shared one"
        } else {
            ""
        }
    );
    let mut rng = Rng::new(7);
    let mut plan = MoePlan::new();
    if let Some(n) = args.get(3).and_then(|t| t.parse().ok()) {
        plan.panel_min_tokens = n;
    }
    let mut scratch = MoeScratch::default();
    let per_expert = |t: &ExpertTensor| t.data.len() / t.experts;
    let shared_bytes = w.shared.as_ref().map_or(0, |s| {
        s.gate.data.len() + s.up.data.len() + s.down.data.len()
    });
    let active = k * (per_expert(&w.gate) + per_expert(&w.up) + per_expert(&w.down)) + shared_bytes;
    for n in [1usize, 64, 512] {
        let x = random_input(&mut rng, n * hidden);
        let mut out = vec![0.0f32; n * hidden];
        // A fresh routing per call for decode: other experts, cold in the caches as in a model
        // whose layers are far bigger than the last-level cache.
        let routings: Vec<Routing> = (0..64).map(|_| routing(&mut rng, n, experts, k)).collect();
        let mut i = 0;
        let secs = per_call(Duration::from_secs(3), || {
            let r = &routings[i % routings.len()];
            i += 1;
            moe_experts(&pool, &w, &x, r, None, &mut out, &plan, &mut scratch).expect("moe");
        });
        let macs = (n * k * 3 * hidden * ffn) as f64;
        if n == 1 {
            let gbs = active as f64 / secs / 1e9;
            println!(
                "decode  {:8.3} ms/layer  {gbs:6.1} GB/s of {:.1} MB active ({:.0}% of read bandwidth)",
                secs * 1e3,
                active as f64 / 1e6,
                100.0 * gbs / bw
            );
        } else {
            println!(
                "prefill {:8.3} ms/layer for {n} tokens  {:7.1} tok/s per layer  {:6.1} GMAC/s",
                secs * 1e3,
                n as f64 / secs,
                macs / secs / 1e9
            );
        }
    }
}
