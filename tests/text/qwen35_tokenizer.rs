//! The Qwen3.5/3.6 tokenizer (pre-tokenizer `qwen35`), from its tokenizer.json and from a GGUF
//! file's metadata, against llama.cpp's ids (`fixtures/tokenizer/qwen35/llama_cpp_ids.json`,
//! made by `tools/qwen35_token_ids.py` from a GGUF with the vocabulary embedded) on English,
//! Chinese, emoji, code, digits and more.
//!
//! The GGUF is written at test time from the tokenizer.json, as llama.cpp's converter lays it
//! out (tokens by id, the 33 added tokens typed control or user-defined, `[PAD{id}]` rows typed
//! unused up to 248320, the merges, eos `<|im_end|>`, bos and padding `<|endoftext|>`, no bos
//! added): checked once against the kit's GGUF, whose tokens, types and merges it equals.
//! A 28 MB model is thereby not committed.

use std::sync::OnceLock;

use crate::common::{fixture, Gguf, V};
use qwen::gguf::GgufFile;
use qwen::text::tokenizer::{Specials, Tokenizer};
use serde_json::Value;

const N_TOKENS: usize = 248_320;

struct Case {
    name: String,
    text: String,
    parse_special: bool,
    ids: Vec<u32>,
}

fn cases() -> Vec<Case> {
    let path = fixture("tokenizer/qwen35/llama_cpp_ids.json");
    let refs: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    refs["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            text: c["text"].as_str().unwrap().to_string(),
            parse_special: c["parse_special"].as_bool().unwrap(),
            ids: serde_json::from_value(c["ids"].clone()).unwrap(),
        })
        .collect()
}

fn json() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_file(fixture("tokenizer/qwen35/tokenizer.json")).unwrap())
}

fn embedded() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let file = GgufFile::from_bytes(vocabulary_gguf().build()).unwrap();
        Tokenizer::from_gguf(&file).unwrap()
    })
}

/// A GGUF holding only the Qwen3.5 vocabulary, from tokenizer.json.
fn vocabulary_gguf() -> Gguf {
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
    let strs = |v: Vec<String>| V::Arr(8, v.into_iter().map(V::Str).collect());
    Gguf::default()
        .kv("general.architecture", V::s("qwen35"))
        .kv("tokenizer.ggml.model", V::s("gpt2"))
        .kv("tokenizer.ggml.pre", V::s("qwen35"))
        .kv("tokenizer.ggml.tokens", strs(tokens))
        .kv(
            "tokenizer.ggml.token_type",
            V::Arr(5, types.into_iter().map(V::I32).collect()),
        )
        .kv(
            "tokenizer.ggml.merges",
            strs(
                merges
                    .iter()
                    .map(|m| m.as_str().unwrap().to_string())
                    .collect(),
            ),
        )
        .kv("tokenizer.ggml.eos_token_id", V::U32(248_046))
        .kv("tokenizer.ggml.padding_token_id", V::U32(248_044))
        .kv("tokenizer.ggml.bos_token_id", V::U32(248_044))
        .kv("tokenizer.ggml.add_bos_token", V::Bool(false))
}

#[test]
fn tokenizer_json_gives_llama_cpp_ids() {
    for case in cases() {
        let ids = json().encode(&case.text, case.parse_special).unwrap();
        assert_eq!(ids, case.ids, "{}: {:?}", case.name, case.text);
    }
}

#[test]
fn gguf_vocabulary_gives_llama_cpp_ids() {
    for case in cases() {
        let ids = embedded().encode(&case.text, case.parse_special).unwrap();
        assert_eq!(ids, case.ids, "{}: {:?}", case.name, case.text);
    }
}

#[test]
fn the_qwen35_split_differs_from_qwen2_on_marks() {
    // The same vocabulary under Qwen2's split cuts a combining mark off its letter; the test
    // data must catch a tokenizer that ignores the pre-tokenizer key.
    let mut gguf = vocabulary_gguf();
    for (key, value) in &mut gguf.kv {
        if key == "tokenizer.ggml.pre" {
            *value = V::s("qwen2");
        }
    }
    let qwen2 = Tokenizer::from_gguf(&GgufFile::from_bytes(gguf.build()).unwrap()).unwrap();
    let marks = cases().into_iter().find(|c| c.name == "marks").unwrap();
    assert_ne!(qwen2.encode(&marks.text, false).unwrap(), marks.ids);
}

#[test]
fn decoding_gives_the_text_back() {
    for case in cases() {
        for (which, tok) in [("json", json()), ("gguf", embedded())] {
            let text = tok.decode(&case.ids, Specials::Show).unwrap();
            assert_eq!(text, case.text, "{which} {}", case.name);
        }
    }
}

#[test]
fn vocabulary_facts() {
    let (json, gguf) = (json(), embedded());
    assert_eq!(gguf.vocab_size(), N_TOKENS);
    assert_eq!(json.max_id(), 248_076);
    for tok in [json, gguf] {
        assert_eq!(tok.token_id("<|im_end|>"), Some(248_046));
        assert_eq!(tok.token_id("<think>"), Some(248_068));
        assert!(tok.is_eos(248_046) && tok.is_eos(248_044));
        // `<think>` is shown when special tokens are skipped; `<|im_end|>` is not
        let shown = tok
            .decode(&[248_068, 9419, 248_046], Specials::Skip)
            .unwrap();
        assert_eq!(shown, "<think>Hello");
    }
    assert_eq!(gguf.bos_id(), Some(248_044));
}
