//! The Qwen3.5/3.6 tokenizer (pre-tokenizer `qwen35`), from its tokenizer.json and from a GGUF
//! file's metadata, against llama.cpp's ids (`fixtures/tokenizer/qwen35/llama_cpp_ids.json`,
//! made by `tools/qwen35_token_ids.py` from a GGUF with the vocabulary embedded) on English,
//! Chinese, emoji, code, digits and more.
//!
//! The GGUF is written at test time from the tokenizer.json, as llama.cpp's converter lays it
//! out (`common::qwen35_vocab`): checked once against the kit's GGUF, whose tokens, types and
//! merges it equals.
//! A 28 MB model is thereby not committed.

use std::sync::OnceLock;

use crate::common::qwen35_vocab::{with_vocabulary, N_TOKENS};
use crate::common::{fixture, Gguf, V};
use qwen::gguf::GgufFile;
use qwen::text::tokenizer::{Specials, Tokenizer};
use serde_json::Value;

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
    with_vocabulary(Gguf::default().kv("general.architecture", V::s("qwen35")))
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
