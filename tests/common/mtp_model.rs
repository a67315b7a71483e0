//! qwen35 and qwen35moe files with a multi-token-prediction block, written at test time from a
//! fixture (an F32 one where the trunk is scaled):
//! its metadata and tensors copied, `block_count` and `nextn_predict_layers` raised by one, and
//! block `N` (the trunk's depth) appended as HYBRID.md section 9 lays it out.
//!
//! Two kinds of block:
//! - [`MtpKind::Random`]: seeded random weights (drafts are then almost always rejected);
//! - [`MtpKind::Agreeing`]: a block that agrees with the trunk by construction. The trunk's
//!   output projections (`attn_output`, `ssm_out`, `ffn_down`) are scaled by `trunk_scale`, so at
//!   0 the trunk predicts from the current token's embedding alone; the block projects only the
//!   embedding half (`eh_proj = [I | 0]`), its attention and feed-forward outputs are zero and
//!   its head norm is `output_norm`, so it drafts what that trunk predicts: every draft is
//!   accepted. A small non-zero scale lets the context (the recurrent states) move the trunk's
//!   choice away from the draft now and then: partial acceptance.

use qwen::gguf::GgufFile;
use qwen::quant::GgmlType;

use super::{T, V};

/// Which block to append.
#[derive(Debug, Clone, Copy)]
pub enum MtpKind {
    Random { seed: u64 },
    Agreeing { trunk_scale: f32 },
}

/// The bytes of `src` (a qwen35 or qwen35moe file without a block; F32 for an agreeing block)
/// with a block of `kind`.
pub fn with_mtp(src: &GgufFile, kind: MtpKind) -> Vec<u8> {
    let arch = src.get_str("general.architecture").unwrap().to_string();
    let key = |k: &str| format!("{arch}.{k}");
    let layers = src.get_u32(&key("block_count")).unwrap() as u64;
    let mut g = super::rewrite::read(src)
        .set(&key("block_count"), Some(V::U32(layers as u32 + 1)))
        .set(&key("nextn_predict_layers"), Some(V::U32(1)));
    let scale = match kind {
        MtpKind::Agreeing { trunk_scale } => trunk_scale,
        MtpKind::Random { .. } => 1.0,
    };
    for t in g.tensors.iter_mut() {
        let output = ["attn_output", "ssm_out", "ffn_down"]
            .iter()
            .any(|p| t.name.ends_with(&format!(".{p}.weight")));
        if output && scale != 1.0 {
            assert_eq!(t.type_id, GgmlType::F32.id(), "scaling needs an F32 file");
            t.data = f32_bytes(
                &floats(&t.data)
                    .iter()
                    .map(|x| x * scale)
                    .collect::<Vec<_>>(),
            );
        }
    }
    let output_norm = floats(src.tensor_data("output_norm.weight").unwrap());
    for t in block(src, &arch, layers, kind, &output_norm) {
        g.tensors.push(t);
    }
    g.build()
}

/// Block `n`'s tensors, F32, shapes outermost first.
fn block(src: &GgufFile, arch: &str, n: u64, kind: MtpKind, output_norm: &[f32]) -> Vec<T> {
    let u = |k: &str| src.get_u32(&format!("{arch}.{k}")).unwrap() as u64;
    let (h, heads, kv, hd) = (
        u("embedding_length"),
        u("attention.head_count"),
        u("attention.head_count_kv"),
        u("attention.key_length"),
    );
    // (experts, expert width, shared-expert width) of a qwen35moe file.
    let moe = src.get_u32(&format!("{arch}.expert_count")).ok().map(|e| {
        (
            e as u64,
            u("expert_feed_forward_length"),
            u("expert_shared_feed_forward_length"),
        )
    });
    let ffn = match moe {
        Some(_) => 0,
        None => u("feed_forward_length"),
    };
    let mut rng = Lcg(match kind {
        MtpKind::Random { seed } => seed,
        MtpKind::Agreeing { .. } => 1,
    });
    let random = matches!(kind, MtpKind::Random { .. });
    let mut t = |name: &str, shape: &[u64], fill: Fill| {
        let count: u64 = shape.iter().product();
        let v: Vec<f32> = match fill {
            Fill::Ones if random => (0..count).map(|_| 1.0 + 0.2 * rng.normal()).collect(),
            Fill::Ones => vec![1.0; count as usize],
            Fill::Zeros if !random => vec![0.0; count as usize],
            Fill::Zeros | Fill::Matrix => {
                let fan_in = shape[shape.len() - 1] as f32;
                (0..count).map(|_| rng.normal() / fan_in.sqrt()).collect()
            }
            Fill::Values(v) => v.to_vec(),
        };
        T {
            name: format!("blk.{n}.{name}.weight"),
            dims: shape.iter().rev().copied().collect(),
            type_id: GgmlType::F32.id(),
            data: f32_bytes(&v),
        }
    };
    // [I | 0]: the embedding half only (the agreeing block).
    let eh_identity: Vec<f32> = (0..h)
        .flat_map(|r| (0..2 * h).map(move |c| if c == r { 1.0 } else { 0.0 }))
        .collect();
    let eh = if random {
        Fill::Matrix
    } else {
        Fill::Values(&eh_identity)
    };
    let head_norm = if random {
        Fill::Ones
    } else {
        Fill::Values(output_norm)
    };
    let mut tensors = vec![
        t("attn_norm", &[h], Fill::Ones),
        t("post_attention_norm", &[h], Fill::Ones),
        t("attn_q", &[2 * heads * hd, h], Fill::Matrix),
        t("attn_k", &[kv * hd, h], Fill::Matrix),
        t("attn_v", &[kv * hd, h], Fill::Matrix),
        t("attn_q_norm", &[hd], Fill::Ones),
        t("attn_k_norm", &[hd], Fill::Ones),
        t("attn_output", &[h, heads * hd], Fill::Zeros),
    ];
    match moe {
        // A qwen35moe block's feed-forward is the trunk's kind: routed experts and a shared one.
        Some((experts, ffe, ffs)) => tensors.extend([
            t("ffn_gate_inp", &[experts, h], Fill::Matrix),
            t("ffn_gate_exps", &[experts, ffe, h], Fill::Matrix),
            t("ffn_up_exps", &[experts, ffe, h], Fill::Matrix),
            t("ffn_down_exps", &[experts, h, ffe], Fill::Zeros),
            t("ffn_gate_inp_shexp", &[h], Fill::Matrix),
            t("ffn_gate_shexp", &[ffs, h], Fill::Matrix),
            t("ffn_up_shexp", &[ffs, h], Fill::Matrix),
            t("ffn_down_shexp", &[h, ffs], Fill::Zeros),
        ]),
        None => tensors.extend([
            t("ffn_gate", &[ffn, h], Fill::Matrix),
            t("ffn_up", &[ffn, h], Fill::Matrix),
            t("ffn_down", &[h, ffn], Fill::Zeros),
        ]),
    }
    tensors.extend([
        t("nextn.eh_proj", &[h, 2 * h], eh),
        t("nextn.enorm", &[h], Fill::Ones),
        t("nextn.hnorm", &[h], Fill::Ones),
        t("nextn.shared_head_norm", &[h], head_norm),
    ]);
    tensors
}

/// How a block tensor is drawn (a random block draws every kind at random).
#[derive(Clone, Copy)]
enum Fill<'a> {
    Ones,
    Zeros,
    Matrix,
    Values(&'a [f32]),
}

/// A seeded generator of roughly normal values (a sum of uniforms).
struct Lcg(u64);

impl Lcg {
    fn uniform(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }

    fn normal(&mut self) -> f32 {
        (0..12).map(|_| self.uniform()).sum::<f32>() - 6.0
    }
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
