//! Test helpers: a small GGUF writer for synthetic files, and fixture paths.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod cli;
pub mod fixture_file;
pub mod gpu;
pub mod mtp_model;
pub mod qwen35_vocab;
pub mod rewrite;
pub mod synthetic;
pub mod twin;
pub mod vision_language;
pub mod watched;

pub use fixture_file::fixture;
use qwen::backend::EngineOptions;
use qwen::cpu::plans::PlanOptions;
use qwen::quant::GgmlType;
use qwen::settings::Mode;

/// A metadata value to write (GGUF type ids 0..=12).
#[derive(Debug, Clone)]
pub enum V {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    /// Element type id, then elements (each must be of that type).
    Arr(u32, Vec<V>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl V {
    pub fn s(s: &str) -> V {
        V::Str(s.to_string())
    }

    pub fn type_id(&self) -> u32 {
        match self {
            V::U8(_) => 0,
            V::I8(_) => 1,
            V::U16(_) => 2,
            V::I16(_) => 3,
            V::U32(_) => 4,
            V::I32(_) => 5,
            V::F32(_) => 6,
            V::Bool(_) => 7,
            V::Str(_) => 8,
            V::Arr(..) => 9,
            V::U64(_) => 10,
            V::I64(_) => 11,
            V::F64(_) => 12,
        }
    }

    /// The value's bytes, without its type id.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            V::U8(v) => out.extend(v.to_le_bytes()),
            V::I8(v) => out.extend(v.to_le_bytes()),
            V::U16(v) => out.extend(v.to_le_bytes()),
            V::I16(v) => out.extend(v.to_le_bytes()),
            V::U32(v) => out.extend(v.to_le_bytes()),
            V::I32(v) => out.extend(v.to_le_bytes()),
            V::F32(v) => out.extend(v.to_le_bytes()),
            V::Bool(v) => out.push(*v as u8),
            V::Str(s) => put_str(out, s),
            V::Arr(ty, items) => {
                out.extend(ty.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for item in items {
                    item.write(out);
                }
            }
            V::U64(v) => out.extend(v.to_le_bytes()),
            V::I64(v) => out.extend(v.to_le_bytes()),
            V::F64(v) => out.extend(v.to_le_bytes()),
        }
    }
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// A tensor to write: GGUF dims (innermost first), type id, data.
#[derive(Debug, Clone)]
pub struct T {
    pub name: String,
    pub dims: Vec<u64>,
    pub type_id: u32,
    pub data: Vec<u8>,
}

impl T {
    /// A tensor of `ty` with `shape` outermost first, its bytes a counting pattern.
    pub fn new(name: &str, ty: GgmlType, shape: &[u64]) -> T {
        let n: u64 = shape.iter().product();
        let bytes = ty.bytes_for(n).expect("whole blocks") as usize;
        T {
            name: name.to_string(),
            dims: shape.iter().rev().copied().collect(),
            type_id: ty.id(),
            data: (0..bytes).map(|i| (i % 251) as u8).collect(),
        }
    }
}

/// Where the writer put things, to patch a built file.
#[derive(Debug, Default)]
pub struct Layout {
    /// Offset of each tensor info's n_dims field.
    pub info_at: Vec<usize>,
    /// Offset of each tensor info's data-offset field.
    pub offset_field_at: Vec<usize>,
    /// Offset of each metadata value's type id.
    pub kv_type_at: Vec<usize>,
    pub data_offset: usize,
    /// Absolute offset of each tensor's data.
    pub tensor_at: Vec<usize>,
}

/// Builds a GGUF file in memory, packing tensor data at `alignment` (which should match any
/// `general.alignment` key) with no padding after the last tensor.
#[derive(Debug, Clone)]
pub struct Gguf {
    pub version: u32,
    pub kv: Vec<(String, V)>,
    pub tensors: Vec<T>,
    pub alignment: usize,
}

impl Default for Gguf {
    fn default() -> Self {
        Gguf {
            version: 3,
            kv: Vec::new(),
            tensors: Vec::new(),
            alignment: 32,
        }
    }
}

impl Gguf {
    pub fn kv(mut self, key: &str, v: V) -> Self {
        self.kv.push((key.to_string(), v));
        self
    }

    pub fn tensor(mut self, t: T) -> Self {
        self.tensors.push(t);
        self
    }

    pub fn build(&self) -> Vec<u8> {
        self.build_with_layout().0
    }

    pub fn build_with_layout(&self) -> (Vec<u8>, Layout) {
        let mut out = b"GGUF".to_vec();
        let mut layout = Layout::default();
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            put_str(&mut out, k);
            layout.kv_type_at.push(out.len());
            out.extend(v.type_id().to_le_bytes());
            v.write(&mut out);
        }
        let mut rel = 0usize;
        let mut rels = Vec::new();
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            layout.info_at.push(out.len());
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.type_id.to_le_bytes());
            layout.offset_field_at.push(out.len());
            out.extend((rel as u64).to_le_bytes());
            rels.push(rel);
            rel = (rel + t.data.len()).next_multiple_of(self.alignment);
        }
        out.resize(out.len().next_multiple_of(self.alignment), 0);
        layout.data_offset = out.len();
        for (t, rel) in self.tensors.iter().zip(rels) {
            out.resize(layout.data_offset + rel, 0);
            layout.tensor_at.push(out.len());
            out.extend(&t.data);
        }
        (out, layout)
    }
}

/// Sizes of a synthetic Qwen3 model.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub hidden: u64,
    pub layers: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub ffn: u64,
    pub vocab: u64,
    pub tied: bool,
}

pub const TINY: Dims = Dims {
    hidden: 32,
    layers: 2,
    heads: 4,
    kv_heads: 2,
    head_dim: 16,
    ffn: 96,
    vocab: 64,
    tied: true,
};

/// A complete, valid Qwen3 file (metadata as llama.cpp's converter writes it, F32 tensors).
pub fn qwen3(d: Dims) -> Gguf {
    let mut g = Gguf::default()
        .kv("general.architecture", V::s("qwen3"))
        .kv("general.name", V::s("synthetic"))
        .kv("qwen3.context_length", V::U32(4096))
        .kv("qwen3.embedding_length", V::U32(d.hidden as u32))
        .kv("qwen3.block_count", V::U32(d.layers as u32))
        .kv("qwen3.feed_forward_length", V::U32(d.ffn as u32))
        .kv("qwen3.attention.head_count", V::U32(d.heads as u32))
        .kv("qwen3.attention.head_count_kv", V::U32(d.kv_heads as u32))
        .kv("qwen3.attention.key_length", V::U32(d.head_dim as u32))
        .kv("qwen3.attention.value_length", V::U32(d.head_dim as u32))
        .kv("qwen3.rope.freq_base", V::F32(1e6))
        .kv("qwen3.attention.layer_norm_rms_epsilon", V::F32(1e-6));
    let f = GgmlType::F32;
    let (h, q, kv) = (d.hidden, d.heads * d.head_dim, d.kv_heads * d.head_dim);
    g = g.tensor(T::new("token_embd.weight", f, &[d.vocab, h]));
    g = g.tensor(T::new("output_norm.weight", f, &[h]));
    if !d.tied {
        g = g.tensor(T::new("output.weight", f, &[d.vocab, h]));
    }
    for i in 0..d.layers {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        for (name, shape) in [
            ("attn_norm", vec![h]),
            ("attn_q", vec![q, h]),
            ("attn_k", vec![kv, h]),
            ("attn_v", vec![kv, h]),
            ("attn_output", vec![h, q]),
            ("attn_q_norm", vec![d.head_dim]),
            ("attn_k_norm", vec![d.head_dim]),
            ("ffn_norm", vec![h]),
            ("ffn_gate", vec![d.ffn, h]),
            ("ffn_up", vec![d.ffn, h]),
            ("ffn_down", vec![h, d.ffn]),
        ] {
            g = g.tensor(T::new(&n(name), f, &shape));
        }
    }
    g
}

/// Experts per layer, experts per token and one expert's width of a synthetic Qwen3-MoE file.
pub const TINY_MOE: (u64, u64, u64) = (4, 2, 24);

/// A complete, valid Qwen3-MoE file of `d`'s attention shape: architecture `qwen3moe`, every key
/// under the `qwen3moe.` prefix with the expert counts of `moe` (experts, used, expert width),
/// and a router plus 3-D expert tensors in place of the dense feed-forward.
pub fn qwen3moe(d: Dims, moe: (u64, u64, u64)) -> Gguf {
    let (experts, used, width) = moe;
    let mut g = qwen3(d);
    for (key, value) in &mut g.kv {
        if let Some(rest) = key.strip_prefix("qwen3.") {
            *key = format!("qwen3moe.{rest}");
        }
        if key == "general.architecture" {
            *value = V::s("qwen3moe");
        }
    }
    g = g
        .kv("qwen3moe.expert_count", V::U32(experts as u32))
        .kv("qwen3moe.expert_used_count", V::U32(used as u32))
        .kv("qwen3moe.expert_feed_forward_length", V::U32(width as u32));
    g.tensors.retain(|t| {
        !["ffn_gate.", "ffn_up.", "ffn_down."]
            .iter()
            .any(|s| t.name.contains(s))
    });
    let (f, h) = (GgmlType::F32, d.hidden);
    for i in 0..d.layers {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        g = g
            .tensor(T::new(&n("ffn_gate_inp"), f, &[experts, h]))
            .tensor(T::new(&n("ffn_gate_exps"), f, &[experts, width, h]))
            .tensor(T::new(&n("ffn_up_exps"), f, &[experts, width, h]))
            .tensor(T::new(&n("ffn_down_exps"), f, &[experts, h, width]));
    }
    g
}

impl Gguf {
    /// Replaces (or removes, with `None`) the value of `key`.
    pub fn set(mut self, key: &str, v: Option<V>) -> Self {
        let i = self.kv.iter().position(|(k, _)| k == key);
        match (i, v) {
            (Some(i), Some(v)) => self.kv[i].1 = v,
            (Some(i), None) => {
                self.kv.remove(i);
            }
            (None, Some(v)) => self.kv.push((key.to_string(), v)),
            (None, None) => {}
        }
        self
    }

    /// Replaces (or removes, with `None`) tensor `name`.
    pub fn replace(mut self, name: &str, t: Option<T>) -> Self {
        let i = self
            .tensors
            .iter()
            .position(|t| t.name == name)
            .expect("tensor exists");
        match t {
            Some(t) => self.tensors[i] = t,
            None => {
                self.tensors.remove(i);
            }
        }
        self
    }
}

/// Engine options for the numerics tests: `mode`, a KV cache of `max_context` positions, no
/// profile or trace, and the default kernel plans (no search, nothing cached), so that results
/// never depend on the machine's timings.
pub fn engine_options(mode: Mode, max_context: usize) -> EngineOptions {
    EngineOptions {
        mode,
        max_context,
        profile: false,
        trace: None,
        plans: PlanOptions {
            search: false,
            cache_dir: None,
        },
    }
}
