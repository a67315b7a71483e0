//! Qwen3.5's vocabulary as GGUF metadata, and a tiny `qwen35` model that carries it, both written
//! at test time from the committed tokenizer.json (a 248k-row model is not committed).
//!
//! The metadata is laid out as llama.cpp's converter writes it: tokens by id, the 33 added
//! tokens typed control or user-defined, `[PAD{id}]` rows typed unused up to 248320, the
//! merges, eos `<|im_end|>`, bos and padding `<|endoftext|>`, no bos added.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use qwen::gguf::GgufFile;
use qwen::quant::GgmlType;
use qwen::rng::Xoshiro256;
use serde_json::Value;

use super::fixture_file::{fixture, write_atomically};
use super::rewrite;
use super::{Gguf, T, V};

/// Rows of the Qwen3.5 vocabulary (tokens, added tokens and padding).
pub const N_TOKENS: usize = 248_320;

/// `g` with the Qwen3.5 vocabulary's tokenizer metadata added.
pub fn with_vocabulary(g: Gguf) -> Gguf {
    let path = fixture("tokenizer/qwen35/tokenizer.json");
    let hf: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let vocab = hf["model"]["vocab"].as_object().unwrap();
    let mut tokens = vec![String::new(); vocab.len()];
    for (text, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = text.clone();
    }
    let mut types = vec![1i32; tokens.len()]; // normal
    for added in hf["added_tokens"].as_array().unwrap() {
        assert_eq!(added["id"].as_u64().unwrap() as usize, tokens.len());
        tokens.push(added["content"].as_str().unwrap().to_string());
        // special: control (matched whole, hidden); `<think>`, `<tool_call>`...: user-defined
        types.push(if added["special"].as_bool().unwrap() {
            3
        } else {
            4
        });
    }
    while tokens.len() < N_TOKENS {
        types.push(5); // unused
        tokens.push(format!("[PAD{}]", tokens.len()));
    }
    let merges = hf["model"]["merges"].as_array().unwrap();
    let merges = merges.iter().map(|m| m.as_str().unwrap().to_string());
    let strs = |v: Vec<String>| V::Arr(8, v.into_iter().map(V::Str).collect());
    g.kv("tokenizer.ggml.model", V::s("gpt2"))
        .kv("tokenizer.ggml.pre", V::s("qwen35"))
        .kv("tokenizer.ggml.tokens", strs(tokens))
        .kv(
            "tokenizer.ggml.token_type",
            V::Arr(5, types.into_iter().map(V::I32).collect()),
        )
        .kv("tokenizer.ggml.merges", strs(merges.collect()))
        .kv("tokenizer.ggml.eos_token_id", V::U32(248_046))
        .kv("tokenizer.ggml.padding_token_id", V::U32(248_044))
        .kv("tokenizer.ggml.bos_token_id", V::U32(248_044))
        .kv("tokenizer.ggml.add_bos_token", V::Bool(false))
}

/// Qwen3.5's published chat template (the fixture the template tests check against Python).
pub fn chat_template() -> String {
    std::fs::read_to_string(fixture("chat/qwen35/chat_template.jinja")).unwrap()
}

/// The tiny qwen35 fixture (hidden 64, four layers: three DeltaNet, one gated attention; Q8_0)
/// with a tied embedding of [`N_TOKENS`] seeded random F32 rows (std 1), the Qwen3.5
/// vocabulary and chat template: a hybrid model that chats. Written once per test binary.
pub fn tiny_model() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| chatting("tiny-qwen35-q8_0.gguf"))
}

/// [`tiny_model`] made from the tiny hybrid mixtures of experts (`tiny-qwen35moe-q8_0`,
/// `tiny-qwen3next-q8_0`: routed and shared experts, the DeltaNet layers, grouped key heads for
/// qwen3next), in that order: their conversations exercise the experts' and the recurrent
/// states' rewinding together. (A real Qwen3-Next file carries Qwen3's vocabulary; the model
/// does not care which vocabulary its rows stand for.)
pub fn tiny_moe_models() -> &'static [PathBuf; 2] {
    static PATHS: OnceLock<[PathBuf; 2]> = OnceLock::new();
    PATHS.get_or_init(|| {
        [
            chatting("tiny-qwen35moe-q8_0.gguf"),
            chatting("tiny-qwen3next-q8_0.gguf"),
        ]
    })
}

/// Fixture `base` with the Qwen3.5 vocabulary, a random tied embedding of its size and the chat
/// template, written beside the test binary's other files.
fn chatting(base: &str) -> PathBuf {
    let file = GgufFile::open(fixture(&format!("models/{base}"))).unwrap();
    let arch = file.get_str("general.architecture").unwrap().to_string();
    let mut g = rewrite::read(&file);
    g.kv.retain(|(k, _)| !k.starts_with("tokenizer."));
    let embd = g.tensors.iter().find(|t| t.name == "token_embd.weight");
    let hidden = embd.expect("the fixture has an embedding").dims[0];
    let embedding = random_f32("token_embd.weight", &[N_TOKENS as u64, hidden], 35);
    let g = g.set(&format!("{arch}.vocab_size"), Some(V::U32(N_TOKENS as u32)));
    let mut g = with_vocabulary(g.replace("token_embd.weight", Some(embedding)))
        .kv("tokenizer.chat_template", V::Str(chat_template()));
    // An untied head of the fixture's vocabulary goes: the embedding serves as the head.
    if g.tensors.iter().any(|t| t.name == "output.weight") {
        g = g.replace("output.weight", None);
    }
    let name = base.replace("-q8_0.gguf", "-qwen35vocab.gguf");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    write_atomically(&path, &g.build());
    path
}

/// An F32 tensor of `shape` (outermost first), uniform in [-sqrt 3, sqrt 3) (std 1).
fn random_f32(name: &str, shape: &[u64], seed: u64) -> T {
    let mut rng = Xoshiro256::new(seed);
    let n: u64 = shape.iter().product();
    let data = (0..n)
        .flat_map(|_| (((rng.next_f64() * 2.0 - 1.0) * 3f64.sqrt()) as f32).to_le_bytes())
        .collect();
    T {
        name: name.to_string(),
        dims: shape.iter().rev().copied().collect(),
        type_id: GgmlType::F32.id(),
        data,
    }
}
