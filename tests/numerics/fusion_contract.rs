//! The fusion contract of `--parallel`: after compiling, every layer is the five fused operators
//! the passes promise (RMSNorm + q/k/v matmuls; attention with q/k norms, RoPE and the KV cache;
//! output projection + residual; RMSNorm + gate/up matmuls + SwiGLU; down projection +
//! residual), the head is one fused RMSNorm + matmul, and no unfused weight matmul, norm,
//! rotation or attention is left. A hybrid model's layers are held to the contract of their kind
//! (gated DeltaNet or gated attention).
//!
//! The passes (`ops::parallel`) pattern-match the op chain that `model::qwen3` writes. An edit
//! there that breaks a match would otherwise pass every numerics test and silently run the
//! slower standard ops; here it fails, naming the layer and the operator that is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use qwen::backend::cpu_engine::Engine;
use qwen::gguf::GgufFile;
use qwen::model::config::Qwen3Config;
use qwen::settings::Mode;

use crate::common::{engine_options, twin};

/// What each layer must hold after the parallel passes, by operator kind.
const PER_LAYER: [(&str, usize); 4] = [
    ("FusedMatMul(RmsNorm+MatMulx3)", 1),
    ("FusedAttention", 1),
    ("FusedMatMul(MatMul+Residual)", 2),
    ("FusedMatMul(RmsNorm+MatMulx2+SwiGlu)", 1),
];

/// A mixture-of-experts layer (`qwen3moe`): the attention half as above, then the f32 router
/// and one fused experts op (gate+up+SwiGLU, down, the residual add). The feed-forward's RMSNorm
/// stays a separate op: its output feeds both the router and the experts.
const PER_MOE_LAYER: [(&str, usize); 6] = [
    ("FusedMatMul(RmsNorm+MatMulx3)", 1),
    ("FusedAttention", 1),
    ("FusedMatMul(MatMul+Residual)", 1),
    ("RmsNorm", 1),
    ("MoeRouter", 1),
    ("MoeExperts(GateUp+SwiGlu+Down+Residual)", 1),
];

/// A gated DeltaNet layer (`qwen35`): the norm and the four input projections (qkv, the output
/// gate z, beta, alpha) in one op, the DeltaNet on the fused kernels, the output projection +
/// residual, then the feed-forward as above.
const PER_DELTA_NET_LAYER: [(&str, usize); 4] = [
    ("FusedMatMul(RmsNorm+MatMulx4)", 1),
    ("FusedDeltaNet", 1),
    ("FusedMatMul(MatMul+Residual)", 2),
    ("FusedMatMul(RmsNorm+MatMulx2+SwiGlu)", 1),
];

/// The feed-forward half of a hybrid mixture-of-experts layer (`qwen35moe`, `qwen3next`), after
/// its mixer's own ops: as [`PER_MOE_LAYER`]'s, the shared expert inside the experts op.
const HYBRID_MOE_FFN: [(&str, usize); 3] = [
    ("RmsNorm", 1),
    ("MoeRouter", 1),
    ("MoeExperts(GateUp+SwiGlu+Down+Shared+Residual)", 1),
];

/// The head: the final norm and the vocabulary matmul in one op.
const HEAD: &str = "FusedMatMul(RmsNorm+MatMul)";

/// Operator kinds that must not survive the parallel passes: each is a part of the block that
/// a fused op should have absorbed.
const UNFUSED: [&str; 6] = [
    "WeightMatMul",
    "CachedAttention",
    "RmsNorm",
    "Rope",
    "SwiGlu",
    "SumReduce",
];

/// Fixture model `name`, or the file at `name` when it is a path (a twin written at test time).
fn fixture(name: &str) -> PathBuf {
    match Path::new(name).is_absolute() {
        true => PathBuf::from(name),
        false => crate::common::fixture(&format!("models/{name}")),
    }
}

/// Kind and label of every operator of `model` compiled in parallel mode, and its layer count.
fn compiled_ops(model: &str) -> (Vec<(String, String)>, usize) {
    let file = GgufFile::open(fixture(model)).unwrap();
    let config = Qwen3Config::from_gguf(&file).unwrap();
    // Default plans: the contract is about the graph, not about what a search picked.
    let options = engine_options(Mode::Parallel { threads: 2 }, 32);
    let mut engine = Engine::new(&file, &config, options).unwrap();
    (engine.graph_ops(), config.layers)
}

/// The block a label names (`FusedAttention blk.3`, `... blk.3.attn_output`), if any.
fn layer_of(label: &str) -> Option<usize> {
    let at = label.find("blk.")?;
    label[at + 4..].split('.').next()?.parse().ok()
}

/// Checks the contract for `model`; every breach is listed in the panic message.
fn check_contract(model: &str) {
    check_layers(model, &PER_LAYER, &UNFUSED);
}

/// The contract of a mixture of experts: the standard experts op must be gone, and the one
/// RmsNorm per layer is expected (see [`PER_MOE_LAYER`]), not a breach.
fn check_moe_contract(model: &str) {
    let unfused: Vec<&str> = UNFUSED
        .iter()
        .copied()
        .filter(|k| *k != "RmsNorm")
        .collect();
    check_layers(
        model,
        &PER_MOE_LAYER,
        &[&unfused[..], &["MoeExperts"]].concat(),
    );
    let (ops, layers) = compiled_ops(model);
    let norms = ops.iter().filter(|(kind, _)| kind == "RmsNorm").count();
    assert_eq!(
        norms, layers,
        "{model}: one unfused RmsNorm per layer, no more: {ops:#?}"
    );
}

/// The contract of a hybrid model: each layer by its kind (a gated attention layer compiles as
/// Qwen3's does, the query's gate inside the fused attention), and neither standard mixer op left.
fn check_hybrid_contract(model: &str) {
    let file = GgufFile::open(fixture(model)).unwrap();
    let config = Qwen3Config::from_gguf(&file).unwrap();
    assert!(config.hybrid.is_some(), "{model}: a hybrid fixture");
    let kinds = |layer: usize| match config.is_recurrent(layer) {
        true => &PER_DELTA_NET_LAYER[..],
        false => &PER_LAYER[..],
    };
    assert!(
        (0..config.layers).any(|l| !config.is_recurrent(l)),
        "{model}: no attention layer"
    );
    let unfused = [&UNFUSED[..], &["DeltaNet", "GatedAttention"]].concat();
    check_layers_by(model, kinds, &unfused);
}

fn check_layers(model: &str, per_layer_kinds: &[(&str, usize)], unfused: &[&str]) {
    check_layers_by(model, |_| per_layer_kinds, unfused);
}

fn check_layers_by<'a>(
    model: &str,
    per_layer_kinds: impl Fn(usize) -> &'a [(&'a str, usize)],
    unfused: &[&str],
) {
    let (ops, layers) = compiled_ops(model);
    let mut per_layer: BTreeMap<usize, BTreeMap<&str, usize>> = BTreeMap::new();
    let mut breaches = vec![];
    let mut heads = 0;
    for (kind, label) in &ops {
        if unfused.contains(&kind.as_str()) {
            breaches.push(format!("unfused {label}"));
        }
        if kind == HEAD && label.contains("output_norm") {
            heads += 1;
        }
        if let Some(layer) = layer_of(label) {
            *per_layer
                .entry(layer)
                .or_default()
                .entry(kind.as_str())
                .or_default() += 1;
        }
    }
    for layer in 0..layers {
        let counts = per_layer.get(&layer);
        for &(kind, want) in per_layer_kinds(layer) {
            let got = counts.and_then(|c| c.get(kind)).copied().unwrap_or(0);
            if got < want {
                breaches.push(format!("blk.{layer}: {got} {kind}, expected {want}"));
            }
        }
    }
    if heads != 1 {
        breaches.push(format!(
            "{heads} fused heads ({HEAD} on output_norm), expected 1"
        ));
    }
    assert!(
        breaches.is_empty(),
        "{model}: the parallel passes no longer fuse the graph as promised:\n  {}\nall ops: {ops:#?}",
        breaches.join("\n  ")
    );
}

#[test]
fn tied_head_f32_fuses_every_layer() {
    check_contract("tiny-f32.gguf");
}

#[test]
fn tied_head_q8_0_fuses_every_layer() {
    check_contract("tiny-q8_0.gguf");
}

#[test]
fn untied_head_k_quants_fuse_every_layer() {
    check_contract("small-q4_k_m.gguf");
}

/// On the F32 twin of `small-q4_k_m`, written at test time.
#[test]
fn untied_head_f32_fuses_every_layer() {
    check_contract(&twin::f32_twin("small-q4_k_m.gguf").display().to_string());
}

#[test]
fn mixture_of_experts_f32_fuses_every_layer() {
    check_moe_contract("tiny-moe-f32.gguf");
}

#[test]
fn mixture_of_experts_k_quants_fuse_every_layer() {
    check_moe_contract("small-moe-q4_k_m.gguf");
}

#[test]
fn labels_name_their_layer() {
    assert_eq!(layer_of("FusedAttention blk.3"), Some(3));
    assert_eq!(
        layer_of("FusedMatMul(MatMul+Residual) blk.12.attn_output"),
        Some(12)
    );
    assert_eq!(layer_of("FusedMatMul(RmsNorm+MatMul) output_norm"), None);
}

#[test]
fn hybrid_q8_0_fuses_every_layer_by_its_kind() {
    check_hybrid_contract("tiny-qwen35-q8_0.gguf");
}

#[test]
fn hybrid_k_quants_fuse_every_layer_by_its_kind() {
    check_hybrid_contract("small-qwen35-q4_k_m.gguf");
}

/// The hybrid mixtures of experts: each layer's mixer fused by its kind (a DeltaNet layer's
/// norm and input projections in one op: four in `qwen35moe`, three in `qwen3next` with beta
/// and alpha in one `ssm_ba`; an attention layer's as Qwen3's), the output projection with the
/// residual, then the router and one experts op holding the shared expert; no standard mixer or
/// experts op left.
fn check_hybrid_moe_contract(model: &str, delta_inputs: &'static str) {
    let file = GgufFile::open(fixture(model)).unwrap();
    let config = Qwen3Config::from_gguf(&file).unwrap();
    let mixer = |recurrent: bool| -> Vec<(&'static str, usize)> {
        match recurrent {
            true => vec![(delta_inputs, 1), ("FusedDeltaNet", 1)],
            false => vec![("FusedMatMul(RmsNorm+MatMulx3)", 1), ("FusedAttention", 1)],
        }
    };
    let kinds: Vec<Vec<(&str, usize)>> = (0..config.layers)
        .map(|l| {
            let mut k = mixer(config.is_recurrent(l));
            k.push(("FusedMatMul(MatMul+Residual)", 1));
            k.extend(HYBRID_MOE_FFN);
            k
        })
        .collect();
    let unfused: Vec<&str> = UNFUSED
        .iter()
        .copied()
        .filter(|k| *k != "RmsNorm")
        .chain([
            "MoeExperts",
            "MoeExperts(+Shared)",
            "DeltaNet",
            "GatedAttention",
        ])
        .collect();
    check_layers_by(model, |l| &kinds[l][..], &unfused);
}

#[test]
fn hybrid_qwen35moe_fuses_every_layer_with_its_shared_expert() {
    check_hybrid_moe_contract("tiny-qwen35moe-q8_0.gguf", "FusedMatMul(RmsNorm+MatMulx4)");
}

#[test]
fn hybrid_qwen3next_fuses_every_layer_with_its_shared_expert() {
    check_hybrid_moe_contract("tiny-qwen3next-q8_0.gguf", "FusedMatMul(RmsNorm+MatMulx3)");
}
