//! A straightforward `qwen35` forward pass for tests: the crate's GGUF reader and
//! dequantization, plain loops for everything but the gated DeltaNet layers, which run on the
//! kernels of `qwen::cpu::delta` (standard or fused). Written from the kit's HYBRID.md (section
//! 4) as llama.cpp computes it, including its default f16 KV cache; slow and simple on purpose,
//! so that it can judge the graph the engine builds.

use half::f16;
use qwen::cpu::delta::{
    fused, standard, FusedOptions, FusedScratch, FusedWeights, GdnInputs, GdnShape, GdnState,
    GdnWeights, HeadMap, StandardScratch,
};
use qwen::cpu::{dequantize_row, ThreadPool};
use qwen::gguf::GgufFile;

/// Which GDN kernels run.
#[derive(Debug, Clone, Copy)]
pub enum Kernels {
    Standard,
    Fused(FusedOptions),
}

/// A dequantized weight, `[rows][cols]` (GGUF `ne = {cols, rows}`).
struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl Matrix {
    /// `y[t][r] = sum_c x[t][c] w[r][c]`, each dot product in f64.
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        let n = x.len() / self.cols;
        let mut y = vec![0.0f32; n * self.rows];
        for t in 0..n {
            let xt = &x[t * self.cols..(t + 1) * self.cols];
            for r in 0..self.rows {
                let w = &self.data[r * self.cols..(r + 1) * self.cols];
                let dot: f64 = w
                    .iter()
                    .zip(xt)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                y[t * self.rows + r] = dot as f32;
            }
        }
        y
    }
}

/// The metadata the forward pass reads (keys `qwen35.*`).
#[derive(Debug, Clone)]
pub struct Config {
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f32,
    rope_base: f32,
    n_rot: usize,
    sections: [usize; 4],
    interval: usize,
    pub gdn: GdnShape,
}

impl Config {
    fn read(f: &GgufFile) -> Config {
        let u = |k: &str| {
            f.get_u32(&format!("qwen35.{k}"))
                .unwrap_or_else(|e| panic!("{e}")) as usize
        };
        let eps = f
            .get_f32("qwen35.attention.layer_norm_rms_epsilon")
            .unwrap();
        let sections = f.get_i32_array("qwen35.rope.dimension_sections").unwrap();
        let nextn = f.get_u32("qwen35.nextn_predict_layers").unwrap_or(0) as usize;
        let gdn = GdnShape {
            k_heads: u("ssm.group_count"),
            v_heads: u("ssm.time_step_rank"),
            head_dim: u("ssm.state_size"),
            conv_kernel: u("ssm.conv_kernel"),
            map: HeadMap::Tiled,
            eps,
        };
        assert_eq!(u("ssm.inner_size"), gdn.value_dim());
        assert_eq!(u("attention.key_length"), u("attention.value_length"));
        Config {
            hidden: u("embedding_length"),
            layers: u("block_count") - nextn,
            heads: u("attention.head_count"),
            kv_heads: u("attention.head_count_kv"),
            head_dim: u("attention.key_length"),
            eps,
            rope_base: f.get_f32("qwen35.rope.freq_base").unwrap(),
            n_rot: u("rope.dimension_count"),
            sections: std::array::from_fn(|i| sections[i] as usize),
            interval: u("full_attention_interval"),
            gdn,
        }
    }

    fn is_recurrent(&self, layer: usize) -> bool {
        !(layer + 1).is_multiple_of(self.interval)
    }
}

/// Gated full attention, with the layer's f16-rounded KV cache (`[position][kv_dim]`).
struct Attention {
    q: Matrix,
    k: Matrix,
    v: Matrix,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    out: Matrix,
    keys: Vec<f32>,
    values: Vec<f32>,
}

/// A gated DeltaNet layer and its state.
struct Delta {
    qkv: Matrix,
    gate: Matrix,
    alpha: Matrix,
    beta: Matrix,
    out: Matrix,
    conv: Vec<f32>,
    dt_bias: Vec<f32>,
    a: Vec<f32>,
    norm: Vec<f32>,
    fused: FusedWeights,
    state: GdnState,
}

#[allow(clippy::large_enum_variant)] // one per layer
enum Mixer {
    Attention(Attention),
    Delta(Delta),
}

struct Layer {
    attn_norm: Vec<f32>,
    post_norm: Vec<f32>,
    mixer: Mixer,
    ffn_gate: Matrix,
    ffn_up: Matrix,
    ffn_down: Matrix,
}

pub struct Model {
    pub config: Config,
    embed: Matrix,
    output_norm: Vec<f32>,
    /// `output.weight`, or the embedding when the file ties them (no `output.weight`).
    output: Option<Matrix>,
    layers: Vec<Layer>,
    position: usize,
    kernels: Kernels,
    pool: ThreadPool,
    standard_scratch: StandardScratch,
    fused_scratch: FusedScratch,
}

fn matrix(f: &GgufFile, name: &str) -> Matrix {
    let info = f
        .tensor(name)
        .unwrap_or_else(|| panic!("tensor {name} missing"));
    let dims = info.dims();
    let (cols, rows) = (dims[0] as usize, dims.get(1).copied().unwrap_or(1) as usize);
    let bytes = f.tensor_data(name).unwrap();
    let row_bytes = bytes.len() / rows;
    let mut data = vec![0.0f32; rows * cols];
    for (r, out) in data.chunks_exact_mut(cols).enumerate() {
        dequantize_row(
            info.ggml_type(),
            &bytes[r * row_bytes..(r + 1) * row_bytes],
            out,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    Matrix { rows, cols, data }
}

fn vector(f: &GgufFile, name: &str) -> Vec<f32> {
    matrix(f, name).data
}

impl Model {
    pub fn load(f: &GgufFile, kernels: Kernels, threads: usize) -> Model {
        let config = Config::read(f);
        let layers = (0..config.layers)
            .map(|i| Layer::load(f, &config, i))
            .collect();
        Model {
            embed: matrix(f, "token_embd.weight"),
            output_norm: vector(f, "output_norm.weight"),
            output: f
                .tensor("output.weight")
                .map(|_| matrix(f, "output.weight")),
            layers,
            config,
            position: 0,
            kernels,
            pool: ThreadPool::new(threads).unwrap(),
            standard_scratch: StandardScratch::default(),
            fused_scratch: FusedScratch::default(),
        }
    }

    /// The logits of every token of `ids`, which continue the sequence so far: `[n][vocab]`.
    pub fn forward(&mut self, ids: &[u32]) -> Vec<f32> {
        let h = self.config.hidden;
        let mut x: Vec<f32> = ids
            .iter()
            .flat_map(|&id| self.embed.data[id as usize * h..(id as usize + 1) * h].to_vec())
            .collect();
        for i in 0..self.layers.len() {
            // mixer
            let normed = rms_norm(&x, &self.layers[i].attn_norm, self.config.eps);
            let mixed = self.mixer(i, &normed);
            add(&mut x, &mixed);
            // feed-forward
            let layer = &self.layers[i];
            let normed = rms_norm(&x, &layer.post_norm, self.config.eps);
            let gate = layer.ffn_gate.apply(&normed);
            let up = layer.ffn_up.apply(&normed);
            let act: Vec<f32> = gate.iter().zip(&up).map(|(g, u)| silu(*g) * u).collect();
            add(&mut x, &layer.ffn_down.apply(&act));
        }
        self.position += ids.len();
        let normed = rms_norm(&x, &self.output_norm, self.config.eps);
        self.output.as_ref().unwrap_or(&self.embed).apply(&normed)
    }

    fn mixer(&mut self, i: usize, x: &[f32]) -> Vec<f32> {
        let Model {
            config,
            layers,
            position,
            kernels,
            pool,
            standard_scratch,
            fused_scratch,
            ..
        } = self;
        match &mut layers[i].mixer {
            Mixer::Attention(a) => a.forward(config, *position, x),
            Mixer::Delta(d) => {
                let shape = config.gdn;
                let (qkv, z) = (d.qkv.apply(x), d.gate.apply(x));
                let (alpha, beta) = (d.alpha.apply(x), d.beta.apply(x));
                let inputs = GdnInputs {
                    qkv: &qkv,
                    z: &z,
                    alpha: &alpha,
                    beta: &beta,
                };
                let n = x.len() / config.hidden;
                let mut o = vec![0.0f32; n * shape.value_dim()];
                let weights = GdnWeights {
                    conv: &d.conv,
                    dt_bias: &d.dt_bias,
                    a: &d.a,
                    norm: &d.norm,
                };
                match kernels {
                    Kernels::Standard => standard::layer(
                        &shape,
                        &weights,
                        &mut d.state,
                        &inputs,
                        &mut o,
                        standard_scratch,
                    ),
                    Kernels::Fused(options) => fused::layer(
                        pool,
                        &d.fused,
                        &mut d.state,
                        &inputs,
                        &mut o,
                        fused_scratch,
                        *options,
                    ),
                }
                .unwrap();
                d.out.apply(&o)
            }
        }
    }
}

impl Layer {
    fn load(f: &GgufFile, c: &Config, i: usize) -> Layer {
        let name = |t: &str| format!("blk.{i}.{t}");
        let m = |t: &str| matrix(f, &name(t));
        let v = |t: &str| vector(f, &name(t));
        let mixer = if c.is_recurrent(i) {
            let (conv, dt_bias, a, norm) = (
                v("ssm_conv1d.weight"),
                v("ssm_dt.bias"),
                v("ssm_a"),
                v("ssm_norm.weight"),
            );
            let weights = GdnWeights {
                conv: &conv,
                dt_bias: &dt_bias,
                a: &a,
                norm: &norm,
            };
            let fused = FusedWeights::new(&c.gdn, &weights).unwrap();
            Mixer::Delta(Delta {
                qkv: m("attn_qkv.weight"),
                gate: m("attn_gate.weight"),
                alpha: m("ssm_alpha.weight"),
                beta: m("ssm_beta.weight"),
                out: m("ssm_out.weight"),
                fused,
                state: GdnState::new(&c.gdn),
                conv,
                dt_bias,
                a,
                norm,
            })
        } else {
            Mixer::Attention(Attention {
                q: m("attn_q.weight"),
                k: m("attn_k.weight"),
                v: m("attn_v.weight"),
                q_norm: v("attn_q_norm.weight"),
                k_norm: v("attn_k_norm.weight"),
                out: m("attn_output.weight"),
                keys: Vec::new(),
                values: Vec::new(),
            })
        };
        Layer {
            attn_norm: v("attn_norm.weight"),
            post_norm: v("post_attention_norm.weight"),
            mixer,
            ffn_gate: m("ffn_gate.weight"),
            ffn_up: m("ffn_up.weight"),
            ffn_down: m("ffn_down.weight"),
        }
    }
}

impl Attention {
    /// Tokens at positions `start..`: causal attention over the cache and themselves.
    fn forward(&mut self, c: &Config, start: usize, x: &[f32]) -> Vec<f32> {
        let (hd, nh, nkv) = (c.head_dim, c.heads, c.kv_heads);
        let qg = self.q.apply(x); // [n][heads][query hd | gate hd]
        let n = qg.len() / (2 * nh * hd);
        let k = self.k.apply(x); // [n][kv_heads * hd]
        let v = self.v.apply(x);
        let mut q = vec![0.0f32; n * nh * hd];
        let mut gate = vec![0.0f32; n * nh * hd];
        for t in 0..n {
            for h in 0..nh {
                let src = &qg[(t * nh + h) * 2 * hd..][..2 * hd];
                let dst = (t * nh + h) * hd;
                let normed = rms_norm(&src[..hd], &self.q_norm, c.eps);
                q[dst..dst + hd].copy_from_slice(&rope(c, &normed, start + t));
                gate[dst..dst + hd].copy_from_slice(&src[hd..]);
            }
            for h in 0..nkv {
                let at = (t * nkv + h) * hd;
                let normed = rms_norm(&k[at..at + hd], &self.k_norm, c.eps);
                let rotated = rope(c, &normed, start + t);
                self.keys.extend(rotated.iter().map(|x| round_f16(*x)));
                self.values
                    .extend(v[at..at + hd].iter().map(|x| round_f16(*x)));
            }
        }
        let kv_dim = nkv * hd;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut out = vec![0.0f32; n * nh * hd];
        for t in 0..n {
            let visible = start + t + 1;
            for h in 0..nh {
                let kvh = h / (nh / nkv);
                let qh: Vec<f32> = q[(t * nh + h) * hd..][..hd]
                    .iter()
                    .map(|x| round_f16(*x))
                    .collect();
                let scores: Vec<f64> = (0..visible)
                    .map(|p| {
                        let key = &self.keys[p * kv_dim + kvh * hd..][..hd];
                        let dot: f64 = key
                            .iter()
                            .zip(&qh)
                            .map(|(a, b)| f64::from(*a) * f64::from(*b))
                            .sum();
                        f64::from(dot as f32 * scale)
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                let probs: Vec<f32> = e.iter().map(|x| round_f16((x / sum) as f32)).collect();
                for d in 0..hd {
                    let acc: f64 = (0..visible)
                        .map(|p| {
                            f64::from(probs[p]) * f64::from(self.values[p * kv_dim + kvh * hd + d])
                        })
                        .sum();
                    let g = gate[(t * nh + h) * hd + d];
                    out[(t * nh + h) * hd + d] = acc as f32 * sigmoid(g);
                }
            }
        }
        self.out.apply(&out)
    }
}

/// Partial rotary embedding of one head at text position `pos`: pairs `(i, i + n_rot/2)` for
/// `i < n_rot/2`, NEOX-style; pair `i` takes the position of its IMROPE section (text
/// positions are `[pos, pos, pos, 0]`, so a pair no section covers is not rotated).
fn rope(c: &Config, x: &[f32], pos: usize) -> Vec<f32> {
    let half = c.n_rot / 2;
    let [s0, s1, s2, s3] = c.sections;
    let span = (s0 + s1 + s2 + s3).max(1);
    let mut y = x.to_vec();
    for i in 0..half {
        let sector = i % span;
        let covered = (sector % 3 == 0 && sector < 3 * s0)
            || (sector % 3 == 1 && sector < 3 * s1)
            || (sector % 3 == 2 && sector < 3 * s2);
        let p = if covered { pos as f64 } else { 0.0 };
        let theta = p * f64::from(c.rope_base).powf(-2.0 * i as f64 / c.n_rot as f64);
        let (sin, cos) = (theta.sin(), theta.cos());
        let (a, b) = (f64::from(x[i]), f64::from(x[i + half]));
        y[i] = (a * cos - b * sin) as f32;
        y[i + half] = (a * sin + b * cos) as f32;
    }
    y
}

/// RMSNorm of each `w.len()`-long row of `x`, times `w`.
fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    for (row, out) in x.chunks_exact(w.len()).zip(y.chunks_exact_mut(w.len())) {
        let sum: f64 = row.iter().map(|v| f64::from(*v) * f64::from(*v)).sum();
        let scale = 1.0 / (sum / row.len() as f64 + f64::from(eps)).sqrt();
        for ((o, v), wi) in out.iter_mut().zip(row).zip(w) {
            *o = (f64::from(*v) * scale * f64::from(*wi)) as f32;
        }
    }
    y
}

fn add(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn round_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}
