//! Models written at test time with seeded random weights (rather than committed): tensors of
//! normally distributed values, a Q8_0 encoder, and the files some tests share, each written once
//! per test process into the build's temporary folder.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use qwen::quant::GgmlType;
use qwen::rng::Xoshiro256;

use super::fixture_file::write_atomically;
use super::{qwen3moe, Dims, Gguf, T};

/// Standard normal samples (Box-Muller over the seeded generator).
pub struct Normal(Xoshiro256);

impl Normal {
    pub fn new(seed: u64) -> Self {
        Normal(Xoshiro256::new(seed))
    }

    /// `n` samples times `std`.
    pub fn samples(&mut self, n: usize, std: f32) -> Vec<f32> {
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            // 1 - u is in (0, 1]: its logarithm is finite.
            let r = (-2.0 * (1.0 - self.0.next_f64()).ln()).sqrt();
            let angle = std::f64::consts::TAU * self.0.next_f64();
            out.push((r * angle.cos()) as f32 * std);
            out.push((r * angle.sin()) as f32 * std);
        }
        out.truncate(n);
        out
    }
}

/// `values` as Q8_0 blocks: per 32 values an f16 scale `max |x| / 127` and the values divided by
/// it, rounded. (`values.len()` a multiple of 32.)
pub fn q8_0_bytes(values: &[f32]) -> Vec<u8> {
    assert_eq!(values.len() % 32, 0, "whole Q8_0 blocks");
    let mut out = Vec::with_capacity(values.len() / 32 * 34);
    for block in values.chunks_exact(32) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend(half::f16::from_f32(d).to_le_bytes());
        out.extend(block.iter().map(|x| (x * inv).round() as i8 as u8));
    }
    out
}

/// A tensor of `ty` (F32 or Q8_0), `shape` outermost first, holding `values`.
pub fn tensor(name: &str, ty: GgmlType, shape: &[u64], values: &[f32]) -> T {
    let data = match ty {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::Q8_0 => q8_0_bytes(values),
        other => panic!("no test encoder for {other}"),
    };
    T {
        name: name.to_string(),
        dims: shape.iter().rev().copied().collect(),
        type_id: ty.id(),
        data,
    }
}

/// Replaces every tensor of `g` with seeded random values as a trained model's are spread:
/// norm weights near 1, matrices of std `3 / sqrt(fan-in)` (so that the layers, not the
/// embedding, decide the next token) in `matrices`' type, the router in F32, embedding rows of
/// std 1 in `matrices`' type.
pub fn randomize(g: Gguf, seed: u64, matrices: GgmlType) -> Gguf {
    let mut normal = Normal::new(seed);
    let tensors = g
        .tensors
        .iter()
        .map(|t| {
            let shape: Vec<u64> = t.dims.iter().rev().copied().collect();
            let n = shape.iter().product::<u64>() as usize;
            let fan_in = t.dims[0] as f32;
            let (ty, values) = if t.dims.len() == 1 {
                let noise = normal.samples(n, 0.2);
                (GgmlType::F32, noise.iter().map(|x| 1.0 + x).collect())
            } else if t.name == "token_embd.weight" {
                (matrices, normal.samples(n, 1.0))
            } else {
                let ty = match t.name.contains("ffn_gate_inp") {
                    true => GgmlType::F32,
                    false => matrices,
                };
                (ty, normal.samples(n, 3.0 / fan_in.sqrt()))
            };
            tensor(&t.name, ty, &shape, &values)
        })
        .collect();
    Gguf { tensors, ..g }
}

/// A tiny Qwen3-MoE (hidden 64, two layers, eight experts of width 32, two per token) with
/// the full Qwen3 vocabulary (151,936 rows, tied head) and no tokenizer metadata: it runs
/// with `tokenizer/tokenizer.json` and the chat template beside it. Q8_0 matrices, seeded
/// random weights; written once per test process.
pub fn moe_qwen3vocab() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dims = Dims {
            hidden: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            head_dim: 16,
            ffn: 192,
            // The embedding is written below, at full size.
            vocab: 32,
            tied: true,
        };
        let mut g = randomize(qwen3moe(dims, (8, 2, 32)), 6, GgmlType::Q8_0);
        let rows = normal_rows(7, 151_936, 64);
        let embd = tensor("token_embd.weight", GgmlType::Q8_0, &[151_936, 64], &rows);
        g = g.replace("token_embd.weight", Some(embd));
        let path = synthetic_dir().join("tiny-moe-qwen3vocab-q8_0.gguf");
        write_atomically(&path, &g.build());
        path
    })
}

fn normal_rows(seed: u64, rows: usize, cols: usize) -> Vec<f32> {
    Normal::new(seed).samples(rows * cols, 1.0)
}

/// Where the files of this module are written: beside the unpacked fixtures.
pub fn synthetic_dir() -> PathBuf {
    option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir)
        .join("qwen-synthetic")
}
