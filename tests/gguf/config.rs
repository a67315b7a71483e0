//! Qwen3Config of every fixture model, and each way a file's metadata can fail to describe a
//! usable Qwen3 model.

use std::sync::Arc;

use crate::common::fixture_file::fixture_names;
use crate::common::{fixture, qwen3, qwen3moe, Dims, Gguf, T, TINY, TINY_MOE, V};
use qwen::gguf::{GgufFile, Storage};
use qwen::model::config::{
    Arch, ConfigError, DeltaProjections, HybridConfig, KeyHeads, MoeConfig, Qwen3Config,
    DEFAULT_ROPE_THETA,
};
use qwen::quant::GgmlType;

/// Parses `g` as a file named "synthetic.gguf" and reads its config.
fn config_of(g: &Gguf) -> Result<Qwen3Config, ConfigError> {
    let storage = Arc::new(Storage::Owned(g.build()));
    let file = GgufFile::from_storage(storage, "synthetic.gguf".to_string()).unwrap();
    Qwen3Config::from_gguf(&file)
}

fn err_of(g: &Gguf) -> (ConfigError, String) {
    let err = config_of(g).unwrap_err();
    let msg = err.to_string();
    (err, msg)
}

/// The sizes the fixture README gives for each model family.
fn expected(model: &str) -> Qwen3Config {
    let tiny = Qwen3Config {
        arch: Arch::Qwen3,
        hidden: 32,
        layers: 2,
        ffn: 96,
        heads: 4,
        kv_heads: 2,
        head_dim: 16,
        rope_dims: 16,
        rope_sections: None,
        rope_theta: 1e6,
        rms_eps: 1e-6,
        context_length: 40960,
        vocab: 512,
        tied_embeddings: true,
        moe: None,
        hybrid: None,
        deepstack_layers: 0,
    };
    if model.contains("qwen35moe") || model.contains("qwen3next") {
        return expected_hybrid_moe(model, tiny);
    }
    if model.contains("qwen35") {
        return expected_qwen35(model, tiny);
    }
    if model.contains("-moe") {
        return expected_moe(model, tiny);
    }
    if model.starts_with("small") {
        Qwen3Config {
            hidden: 256,
            heads: 8,
            head_dim: 64,
            rope_dims: 64,
            ffn: 768,
            tied_embeddings: false,
            ..tiny
        }
    } else if model.starts_with("tiny-qwen3vocab") {
        Qwen3Config {
            vocab: 151936,
            ..tiny
        }
    } else {
        tiny
    }
}

/// The Qwen3-MoE fixtures (see tests/fixtures/README.md).
fn expected_moe(model: &str, tiny: Qwen3Config) -> Qwen3Config {
    let experts = |experts, experts_used, expert_ffn| {
        Some(MoeConfig {
            experts,
            experts_used,
            expert_ffn,
            shared_ffn: None,
        })
    };
    if model.starts_with("small") {
        return Qwen3Config {
            arch: Arch::Qwen3Moe,
            hidden: 256,
            heads: 8,
            head_dim: 64,
            rope_dims: 64,
            ffn: 1024,
            tied_embeddings: false,
            moe: experts(16, 4, 256),
            ..tiny
        };
    }
    Qwen3Config {
        arch: Arch::Qwen3Moe,
        hidden: 64,
        ffn: 192,
        tied_embeddings: false,
        moe: experts(8, 2, 32),
        ..tiny
    }
}

/// The tiny hybrid mixtures of experts (the kit's HYBRID.md, section 1): tiny-qwen35's shape
/// with 8 experts of 32, 2 used, and a shared expert of 64; Qwen3-Next writes the dense width
/// (192), has no rotary sections, reads key heads grouped and stores beta and alpha fused.
fn expected_hybrid_moe(model: &str, tiny: Qwen3Config) -> Qwen3Config {
    let dense = expected_qwen35("tiny-qwen35", tiny);
    let moe = Some(MoeConfig {
        experts: 8,
        experts_used: 2,
        expert_ffn: 32,
        shared_ffn: Some(64),
    });
    let hybrid = dense.hybrid.clone().unwrap();
    if model.contains("qwen3next") {
        return Qwen3Config {
            arch: Arch::Qwen3Next,
            rope_sections: None,
            tied_embeddings: false,
            moe,
            hybrid: Some(HybridConfig {
                key_heads: KeyHeads::Grouped,
                projections: DeltaProjections::FusedBetaAlpha,
                ..hybrid
            }),
            ..dense
        };
    }
    Qwen3Config {
        arch: Arch::Qwen35Moe,
        // No feed_forward_length: the routed experts' width, 2 x 32.
        ffn: 64,
        tied_embeddings: false,
        moe,
        ..dense
    }
}

/// The Qwen3.5 fixtures (the kit's HYBRID.md, section 1): four layers, the last one attention.
fn expected_qwen35(model: &str, tiny: Qwen3Config) -> Qwen3Config {
    let small = model.starts_with("small");
    let (hidden, heads, head_dim, rot, ffn) = match small {
        true => (256, 8, 64, 16, 768),
        false => (64, 4, 32, 8, 192),
    };
    let (k_heads, v_heads, state) = if small { (4, 8, 32) } else { (2, 4, 16) };
    Qwen3Config {
        arch: Arch::Qwen35,
        hidden,
        layers: 4,
        ffn,
        heads,
        head_dim,
        rope_dims: rot,
        rope_sections: Some(if small { [3, 3, 2, 0] } else { [2, 1, 1, 0] }),
        rope_theta: 1e7,
        context_length: 262144,
        tied_embeddings: !small,
        hybrid: Some(HybridConfig {
            recurrent_layers: vec![true, true, true, false],
            conv_kernel: 4,
            state_size: state,
            k_heads,
            v_heads,
            key_heads: KeyHeads::Tiled,
            projections: DeltaProjections::Separate,
            mtp_layers: 0,
        }),
        ..tiny
    }
}

#[test]
fn config_of_every_fixture_model() {
    let mut checked = 0;
    for name in fixture_names("models") {
        let file = GgufFile::open(fixture(&format!("models/{name}"))).unwrap();
        let config = Qwen3Config::from_gguf(&file).unwrap();
        assert_eq!(config, expected(&name), "{name}");
        assert_eq!(
            config.n_params(),
            file.n_elements(),
            "{name}: formula vs tensors"
        );
        checked += 1;
    }
    assert_eq!(checked, 29);
}

#[test]
fn derived_widths_differ_from_hidden() {
    let file = GgufFile::open(fixture("models/small-q4_k_m.gguf")).unwrap();
    let c = Qwen3Config::from_gguf(&file).unwrap();
    assert_eq!(
        (c.q_dim(), c.kv_dim()),
        (512, 128),
        "q width 512 != hidden 256"
    );
    let attn_q = file.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(attn_q.shape(), [c.q_dim() as u64, c.hidden as u64]);
}

#[test]
fn a_valid_synthetic_model_and_its_defaults() {
    let c = config_of(&qwen3(TINY)).unwrap();
    assert_eq!(
        (c.hidden, c.vocab, c.context_length, c.tied_embeddings),
        (32, 64, 4096, true)
    );
    let untied = config_of(&qwen3(Dims {
        tied: false,
        ..TINY
    }))
    .unwrap();
    assert!(!untied.tied_embeddings);

    let no_optional = qwen3(TINY)
        .set("qwen3.rope.freq_base", None)
        .set("qwen3.attention.head_count_kv", None)
        .set("qwen3.attention.key_length", None)
        .set("qwen3.attention.value_length", None);
    // Without key_length head_dim is hidden / heads = 8, without head_count_kv kv_heads = heads,
    // so the tensors must have those shapes.
    let d = Dims {
        kv_heads: 4,
        head_dim: 8,
        ..TINY
    };
    let mut g = no_optional;
    g.tensors = qwen3(d).tensors;
    let c = config_of(&g).unwrap();
    assert_eq!(
        (c.head_dim, c.kv_heads, c.rope_theta),
        (8, 4, DEFAULT_ROPE_THETA)
    );
    let (_, msg) = err_of(
        &qwen3(TINY)
            .set("qwen3.attention.key_length", None)
            .set("qwen3.attention.value_length", None),
    );
    assert!(
        msg.contains("qwen3.embedding_length / qwen3.attention.head_count"),
        "{msg}"
    );
}

#[test]
fn another_architecture_is_named() {
    for arch in ["llama", "qwen2moe", "qwen2"] {
        let (err, msg) = err_of(&qwen3(TINY).set("general.architecture", Some(V::s(arch))));
        assert!(matches!(err, ConfigError::WrongArchitecture { .. }));
        assert!(
            msg.starts_with(&format!(
                "architecture '{arch}' is not supported (this program runs qwen3, qwen3moe, qwen35, qwen35moe, qwen3next, qwen3vl and qwen3vlmoe)"
            )),
            "{msg}"
        );
    }
    // A dense file that calls itself qwen3moe is read under the qwen3moe prefix, and says so.
    let (_, msg) = err_of(&qwen3(TINY).set("general.architecture", Some(V::s("qwen3moe"))));
    assert!(
        msg.contains("'qwen3moe.embedding_length' not found"),
        "{msg}"
    );
    let (err, _) = err_of(&qwen3(TINY).set("general.architecture", None));
    assert!(
        matches!(err, ConfigError::MissingKey { ref key, .. } if key == "general.architecture")
    );
}

#[test]
fn missing_and_mistyped_keys_are_named() {
    for key in [
        "qwen3.embedding_length",
        "qwen3.block_count",
        "qwen3.feed_forward_length",
        "qwen3.attention.head_count",
        "qwen3.attention.layer_norm_rms_epsilon",
        "qwen3.context_length",
    ] {
        let (err, msg) = err_of(&qwen3(TINY).set(key, None));
        assert!(
            matches!(err, ConfigError::MissingKey { .. }),
            "{key}: {msg}"
        );
        assert!(msg.contains(key) && msg.contains("synthetic.gguf"), "{msg}");
    }
    let (err, msg) = err_of(&qwen3(TINY).set("qwen3.embedding_length", Some(V::s("32"))));
    assert!(matches!(err, ConfigError::KeyType { .. }), "{msg}");
    assert!(msg.contains("qwen3.embedding_length"), "{msg}");
    let (err, _) = err_of(&qwen3(TINY).set("qwen3.rope.freq_base", Some(V::U32(10000))));
    assert!(
        matches!(err, ConfigError::KeyType { .. }),
        "an integer theta is a wrong type"
    );
    // any integer type that fits is accepted
    let c = config_of(&qwen3(TINY).set("qwen3.context_length", Some(V::U64(32768)))).unwrap();
    assert_eq!(c.context_length, 32768);
}

#[test]
fn zero_sizes_and_bad_floats() {
    let (err, msg) = err_of(&qwen3(TINY).set("qwen3.block_count", Some(V::U32(0))));
    assert!(matches!(err, ConfigError::ZeroSize { .. }), "{msg}");
    assert!(msg.contains("qwen3.block_count"));
    let (err, _) = err_of(&qwen3(TINY).set("qwen3.attention.head_count_kv", Some(V::U32(0))));
    assert!(matches!(err, ConfigError::ZeroSize { .. }));
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let (err, _) =
            err_of(&qwen3(TINY).set("qwen3.attention.layer_norm_rms_epsilon", Some(V::F32(bad))));
        assert!(matches!(err, ConfigError::BadFloat { .. }), "{bad}");
    }
}

#[test]
fn head_counts_must_group() {
    let d = Dims {
        heads: 6,
        kv_heads: 4,
        head_dim: 8,
        ..TINY
    };
    let (err, msg) = err_of(&qwen3(d));
    assert!(
        matches!(
            err,
            ConfigError::HeadsNotDivisible {
                heads: 6,
                kv_heads: 4,
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("qwen3.attention.head_count_kv"), "{msg}");

    let (err, _) = err_of(&qwen3(TINY).set("qwen3.attention.value_length", Some(V::U32(8))));
    assert!(matches!(
        err,
        ConfigError::ValueLengthMismatch {
            value_length: 8,
            key_length: 16,
            ..
        }
    ));

    let odd = Dims {
        heads: 2,
        kv_heads: 1,
        head_dim: 15,
        ..TINY
    };
    let (err, _) = err_of(&qwen3(odd));
    assert!(matches!(err, ConfigError::OddHeadDim { head_dim: 15, .. }));
}

#[test]
fn a_missing_tensor_is_named_with_the_file() {
    for name in [
        "blk.1.ffn_down.weight",
        "token_embd.weight",
        "output_norm.weight",
        "blk.0.attn_k_norm.weight",
    ] {
        let (err, msg) = err_of(&qwen3(TINY).replace(name, None));
        assert!(matches!(err, ConfigError::MissingTensor { .. }), "{msg}");
        assert_eq!(msg, format!("tensor '{name}' not found in synthetic.gguf; the file is not a complete Qwen3 model"));
    }
}

#[test]
fn a_shape_contradicting_the_metadata_names_the_key() {
    let f = GgmlType::F32;
    let cases = [
        (
            "blk.0.attn_q.weight",
            vec![48, 32],
            "qwen3.attention.head_count x qwen3.attention.key_length",
        ),
        (
            "blk.1.attn_k.weight",
            vec![32, 16],
            "qwen3.embedding_length",
        ),
        (
            "blk.0.ffn_up.weight",
            vec![64, 32],
            "qwen3.feed_forward_length",
        ),
        (
            "blk.0.attn_q_norm.weight",
            vec![32],
            "qwen3.attention.key_length",
        ),
        (
            "output_norm.weight",
            vec![32, 1],
            "expected 1 dimensions, found 2",
        ),
    ];
    for (name, shape, says) in cases {
        let (err, msg) = err_of(&qwen3(TINY).replace(name, Some(T::new(name, f, &shape))));
        assert!(
            matches!(err, ConfigError::ShapeMismatch { ref found, .. } if *found == shape),
            "{msg}"
        );
        assert!(msg.contains(name) && msg.contains(says), "{msg}");
    }
    // The untied output head must have the embedding's rows.
    let untied = qwen3(Dims {
        tied: false,
        ..TINY
    });
    let g = untied.replace("output.weight", Some(T::new("output.weight", f, &[63, 32])));
    let (_, msg) = err_of(&g);
    assert!(
        msg.contains("output.weight") && msg.contains("the rows of token_embd.weight"),
        "{msg}"
    );
    // qwen3.vocab_size must agree with the embedding
    let (err, _) = err_of(&qwen3(TINY).set("qwen3.vocab_size", Some(V::U32(65))));
    assert!(matches!(
        err,
        ConfigError::VocabMismatch {
            vocab_size: 65,
            rows: 64,
            ..
        }
    ));
    assert!(config_of(&qwen3(TINY).set("qwen3.vocab_size", Some(V::U32(64)))).is_ok());
}

#[test]
fn layers_beyond_block_count_contradict_it() {
    let g = qwen3(TINY).set("qwen3.block_count", Some(V::U32(1)));
    let (err, msg) = err_of(&g);
    assert!(
        matches!(
            err,
            ConfigError::ExtraLayer {
                layer: 1,
                layers: 1,
                ..
            }
        ),
        "{msg}"
    );
}

#[test]
fn unsupported_tensor_types_are_named() {
    // A model 256 wide so TQ1_0 (256-weight blocks) can hold a row.
    let d = Dims {
        hidden: 256,
        layers: 1,
        heads: 2,
        kv_heads: 1,
        head_dim: 128,
        ffn: 256,
        vocab: 4,
        tied: true,
    };
    let name = "blk.0.ffn_up.weight";
    let g = qwen3(d).replace(name, Some(T::new(name, GgmlType::TQ1_0, &[256, 256])));
    let (err, msg) = err_of(&g);
    assert!(matches!(
        err,
        ConfigError::UnsupportedType {
            ty: GgmlType::TQ1_0,
            ..
        }
    ));
    assert_eq!(
        msg,
        "unsupported tensor type TQ1_0 in 'blk.0.ffn_up.weight' (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, MXFP4)"
    );
    let norm = "blk.0.ffn_norm.weight";
    let g = qwen3(d).replace(norm, Some(T::new(norm, GgmlType::Q8_0, &[256])));
    let (err, msg) = err_of(&g);
    assert!(
        matches!(
            err,
            ConfigError::NormNotFloat {
                ty: GgmlType::Q8_0,
                ..
            }
        ),
        "{msg}"
    );
    let g = qwen3(d).replace(norm, Some(T::new(norm, GgmlType::BF16, &[256])));
    assert!(config_of(&g).is_ok(), "BF16 norms are accepted");
}

// ---- Qwen3-MoE (architecture qwen3moe) ----

#[test]
fn a_valid_synthetic_moe_model() {
    let c = config_of(&qwen3moe(TINY, TINY_MOE)).unwrap();
    let m = c.moe.expect("a mixture of experts");
    assert_eq!((m.experts, m.experts_used, m.expert_ffn), (4, 2, 24));
    // Total: all 4 experts' gate, up, down; active per token: only the 2 routed experts.
    let expert = 3 * 24 * 32;
    assert_eq!(c.expert_params(), expert);
    assert_eq!(c.n_params() - c.n_active_params(), 2 * 2 * expert);
    let dense = config_of(&qwen3(TINY)).unwrap();
    assert_eq!(dense.n_active_params(), dense.n_params());
}

#[test]
fn expert_width_falls_back_to_ffn_over_experts_used() {
    // llama.cpp: expert_feed_forward_length absent -> feed_forward_length / expert_used_count
    // (here 96 / 2 = 48, which the tensors then must have).
    let g = qwen3moe(TINY, (4, 2, 48)).set("qwen3moe.expert_feed_forward_length", None);
    assert_eq!(config_of(&g).unwrap().moe.unwrap().expert_ffn, 48);
    let g = g.set("qwen3moe.feed_forward_length", None);
    let (err, msg) = err_of(&g);
    assert!(matches!(err, ConfigError::MissingKey { .. }), "{msg}");
    assert!(
        msg.contains("'qwen3moe.expert_feed_forward_length' not found in synthetic.gguf"),
        "{msg}"
    );
}

#[test]
fn moe_errors_name_the_key_or_tensor() {
    for key in ["qwen3moe.expert_count", "qwen3moe.expert_used_count"] {
        let (_, msg) = err_of(&qwen3moe(TINY, TINY_MOE).set(key, None));
        assert!(msg.contains(&format!("'{key}' not found")), "{msg}");
    }
    // The dense keys of a qwen3moe file are read under its own prefix.
    let (_, msg) = err_of(&qwen3moe(TINY, TINY_MOE).set("qwen3moe.embedding_length", None));
    assert!(
        msg.contains("'qwen3moe.embedding_length' not found"),
        "{msg}"
    );

    let (err, msg) = err_of(&qwen3moe(TINY, (4, 5, 24)));
    assert!(
        matches!(err, ConfigError::TooManyExpertsUsed { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("qwen3moe.expert_used_count (5) is more than qwen3moe.expert_count (4)"),
        "{msg}"
    );

    let g = qwen3moe(TINY, TINY_MOE).replace("blk.1.ffn_up_exps.weight", None);
    let (_, msg) = err_of(&g);
    assert!(
        msg.contains("tensor 'blk.1.ffn_up_exps.weight' not found"),
        "{msg}"
    );

    // An expert tensor of the wrong width says which dimension and which key.
    let bad = T::new("blk.0.ffn_down_exps.weight", GgmlType::F32, &[4, 32, 16]);
    let (err, msg) =
        err_of(&qwen3moe(TINY, TINY_MOE).replace("blk.0.ffn_down_exps.weight", Some(bad)));
    assert!(matches!(err, ConfigError::ShapeMismatch { .. }), "{msg}");
    assert!(msg.contains("blk.0.ffn_down_exps.weight"), "{msg}");
    assert!(msg.contains("qwen3moe.expert_feed_forward_length"), "{msg}");

    // A dense feed-forward in a qwen3moe file: the router is what is missing.
    let mut dense = qwen3(TINY);
    for (key, _) in &mut dense.kv {
        if let Some(rest) = key.strip_prefix("qwen3.") {
            *key = format!("qwen3moe.{rest}");
        }
    }
    let dense = dense
        .set("general.architecture", Some(V::s("qwen3moe")))
        .kv("qwen3moe.expert_count", V::U32(4))
        .kv("qwen3moe.expert_used_count", V::U32(2));
    let (_, msg) = err_of(&dense);
    assert!(
        msg.contains("tensor 'blk.0.ffn_gate_inp.weight' not found"),
        "{msg}"
    );
}

/// The tiny qwen35 fixture as the test writer holds it (four blocks, the last one attention).
fn tiny_qwen35() -> Gguf {
    let file = GgufFile::open(fixture("models/tiny-qwen35-f32.gguf")).unwrap();
    crate::common::rewrite::read(&file)
}

#[test]
fn an_explicit_layer_list_wins_over_the_interval_and_must_cover_every_block() {
    let list = |v: &[bool]| Some(V::Arr(7, v.iter().map(|&b| V::Bool(b)).collect()));
    // An interval of 2 would make blocks 1 and 3 attention; the list keeps the file's pattern.
    let g = tiny_qwen35()
        .set("qwen35.full_attention_interval", Some(V::U32(2)))
        .set(
            "qwen35.attention.recurrent_layers",
            list(&[true, true, true, false]),
        );
    let c = config_of(&g).unwrap();
    let kinds: Vec<bool> = (0..4).map(|l| c.is_recurrent(l)).collect();
    assert_eq!(kinds, [true, true, true, false]);
    // A list that makes block 0 attention asks for its attention tensors.
    let g = tiny_qwen35().set(
        "qwen35.attention.recurrent_layers",
        list(&[false, true, true, false]),
    );
    let (err, msg) = err_of(&g);
    assert!(matches!(err, ConfigError::MissingTensor { .. }), "{msg}");
    assert!(msg.contains("blk.0.attn_q.weight"), "{msg}");
    // The interval alone gives the fixture's own pattern.
    let c = config_of(&tiny_qwen35()).unwrap();
    let kinds: Vec<bool> = (0..4).map(|l| c.is_recurrent(l)).collect();
    assert_eq!(kinds, [true, true, true, false]);

    let short = tiny_qwen35().set("qwen35.attention.recurrent_layers", list(&[true, false]));
    let (err, msg) = err_of(&short);
    assert!(
        matches!(err, ConfigError::RecurrentLayersLength { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("qwen35.attention.recurrent_layers") && msg.contains("2 entries"),
        "{msg}"
    );
}

#[test]
fn mtp_layers_shorten_the_trunk_and_may_not_take_all_of_it() {
    let g = tiny_qwen35().set("qwen35.nextn_predict_layers", Some(V::U32(1)));
    let c = config_of(&g).unwrap();
    assert_eq!((c.layers, c.hybrid.as_ref().unwrap().mtp_layers), (3, 1));
    for mtp in [4, 5] {
        let g = tiny_qwen35().set("qwen35.nextn_predict_layers", Some(V::U32(mtp)));
        let (err, msg) = err_of(&g);
        assert!(matches!(err, ConfigError::TooManyMtpLayers { .. }), "{msg}");
        assert!(
            msg.contains("qwen35.nextn_predict_layers") && msg.contains("qwen35.block_count"),
            "{msg}"
        );
    }
}

#[test]
fn rope_sections_must_turn_some_pair_and_be_integers() {
    let sections = |v: [i32; 4]| Some(V::Arr(5, v.into_iter().map(V::I32).collect()));
    let g = tiny_qwen35().set("qwen35.rope.dimension_sections", sections([0, 0, 0, 0]));
    let (err, msg) = err_of(&g);
    assert!(
        matches!(err, ConfigError::EmptyRopeSections { .. }),
        "{msg}"
    );
    assert!(msg.contains("qwen35.rope.dimension_sections"), "{msg}");
    let mistyped = Some(V::Arr(8, vec![V::s("2"), V::s("2"), V::s("0"), V::s("0")]));
    let g = tiny_qwen35().set("qwen35.rope.dimension_sections", mistyped);
    let (_, msg) = err_of(&g);
    assert!(msg.contains("qwen35.rope.dimension_sections"), "{msg}");
    let g = tiny_qwen35().set("qwen35.rope.dimension_sections", None);
    let (_, msg) = err_of(&g);
    assert!(msg.contains("qwen35.rope.dimension_sections"), "{msg}");
}

/// A Qwen3-VL language model is the Qwen3 (or Qwen3-MoE) it is made from, with its rotary
/// sections and deepstack layer count; without the sections (llama.cpp requires them) it is
/// refused, naming the key.
#[test]
fn vision_language_models_are_qwen3_with_sections() {
    use crate::common::vision_language::{DEEPSTACK_LAYERS, QWEN3VL, QWEN3VLMOE};
    for (vl, arch) in [(QWEN3VL, Arch::Qwen3Vl), (QWEN3VLMOE, Arch::Qwen3VlMoe)] {
        let plain = GgufFile::open(fixture(&format!("models/{}", vl.source))).unwrap();
        let plain = Qwen3Config::from_gguf(&plain).unwrap();
        let c = config_of(&vl.gguf()).unwrap();
        let sections = vl.sections.map(|s| s as usize);
        assert_eq!(
            c,
            Qwen3Config {
                arch,
                rope_sections: Some(sections),
                deepstack_layers: DEEPSTACK_LAYERS as usize,
                ..plain
            }
        );
        let key = format!("{}.rope.dimension_sections", vl.arch);
        let (err, msg) = err_of(&vl.gguf().set(&key, None));
        assert!(matches!(err, ConfigError::MissingKey { .. }), "{msg}");
        assert!(msg.contains(&key), "{msg}");
        // Without a deepstack count (llama.cpp's default) there are none.
        let key = format!("{}.n_deepstack_layers", vl.arch);
        assert_eq!(
            config_of(&vl.gguf().set(&key, None))
                .unwrap()
                .deepstack_layers,
            0
        );
    }
}
