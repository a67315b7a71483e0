//! The tokenizer built from a GGUF file's metadata gives exactly the ids of Qwen3's tokenizer.json,
//! decodes back to the text, and every malformed or unsupported embedded tokenizer is a typed error.

use std::sync::OnceLock;

use crate::common::{fixture, Gguf, V};
use qwen::gguf::GgufFile;
use qwen::text::stream::TextStreamer;
use qwen::text::tokenizer::{Source, Specials, Tokenizer, TokenizerError};

const IM_START: u32 = 151644;
const IM_END: u32 = 151645;
const ENDOFTEXT: u32 = 151643;
const THINK: u32 = 151667;
const END_THINK: u32 = 151668;

/// Already in NFC, so decoding gives back the very same text.
const TEXTS: &[(&str, &str)] = &[
    ("english", "The quick brown fox jumps over the lazy dog. It's 5 o'clock; we'll see, they're done, I'd've gone, DON'T SHOUT."),
    ("code", "fn main() {\n    let xs: Vec<u32> = (0..10).map(|i| i * 2).collect();\n    println!(\"{xs:?} {}\", xs.len());\n}\n"),
    ("python", "def f(x):\n\tif x > 0:\n\t\treturn x ** 2  # square\n\treturn -x\n\n\nprint(f(3), f(-2))\n"),
    ("chinese", "你好，世界！今天天气怎么样？我们一起去公园散步吧。机器学习（ML）与深度学习。"),
    ("emoji", "I ❤️ Rust 🦀🚀 — family 👨‍👩‍👧‍👦, flags 🇫🇷🇯🇵, skin tones 👋🏽, 🫠🪿 new ones."),
    ("whitespace", "  leading\tand\t\ttabs   multiple   spaces\n\n\nnewlines \r\n crlf   \n   trailing   "),
    ("only spaces", "     "),
    ("newlines", "\n\n\n"),
    ("numbers", "12345 3.14159 1,000,000 0x1F -42 1e-9 2024-06-01 99.5% 007"),
    ("mixed scripts", "English, Русский, العربية, हिन्दी, 日本語のテキスト, 한국어, Ελληνικά, עברית, ไทย"),
    ("special tokens", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"),
    ("think markers", "<think>\nLet me reason.\n</think>\n\nThe answer is 4.<|im_end|>"),
    ("specials glued to text", "a<|im_end|>b<|endoftext|><|im_start|><|im_start|>system"),
    ("tool tokens", "<tool_call>\n{\"name\": \"f\"}\n</tool_call><|fim_prefix|>x<|fim_suffix|>"),
    ("case folding", "'S 'ſ 'K 'LL 'Re 'vE"),
    ("symbols", "~!@#$%^&*()_+`-=[]{}|;:'\",.<>/?\\ «» “quotes” … ‰ € £ ¥ © ™"),
    ("combining marks", "naïve façade Zürich Ångström"),
    ("rare characters", "𝄞 clef, \u{200b}zero width\u{200d}joiner, \u{feff}bom, \u{7f}del, \u{1}ctl"),
    ("empty", ""),
];

fn json() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        Tokenizer::from_file(fixture("tokenizer/tokenizer.json")).expect("fixture tokenizer.json")
    })
}

fn embedded() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let gguf = GgufFile::open(fixture("models/tiny-qwen3vocab-q8_0.gguf")).expect("fixture");
        Tokenizer::from_gguf(&gguf).expect("embedded tokenizer")
    })
}

/// The fixture tokenizer.json loaded straight through the `tokenizers` crate, with nothing of ours.
fn hf() -> tokenizers::Tokenizer {
    tokenizers::Tokenizer::from_file(fixture("tokenizer/tokenizer.json")).expect("fixture")
}

#[test]
fn embedded_tokenizer_gives_the_ids_of_tokenizer_json() {
    let reference = hf();
    for &(name, text) in TEXTS {
        let expected = reference
            .encode(text, true)
            .expect("encode")
            .get_ids()
            .to_vec();
        assert_eq!(json().encode(text, true).unwrap(), expected, "{name}: json");
        assert_eq!(
            embedded().encode(text, true).unwrap(),
            expected,
            "{name}: gguf"
        );
    }
}

#[test]
fn special_tokens_are_single_ids() {
    let ids = embedded()
        .encode("<|im_start|>user\nhi<|im_end|>", true)
        .unwrap();
    assert_eq!(ids.first(), Some(&IM_START));
    assert_eq!(ids.last(), Some(&IM_END));
    assert_eq!(ids.len(), 5, "<|im_start|> user \\n hi <|im_end|>: {ids:?}");
    let think = embedded().encode("<think>x</think>", true).unwrap();
    assert_eq!((think[0], think[think.len() - 1]), (THINK, END_THINK));
}

#[test]
fn without_allow_special_control_tokens_are_plain_text() {
    let mut reference = hf();
    reference.set_encode_special_tokens(true);
    for &(name, text) in TEXTS {
        let expected = reference
            .encode(text, true)
            .expect("encode")
            .get_ids()
            .to_vec();
        for (which, tok) in [("json", json()), ("gguf", embedded())] {
            let ids = tok.encode(text, false).unwrap();
            assert_eq!(ids, expected, "{name}: {which}");
            assert!(
                !ids.contains(&IM_START) && !ids.contains(&IM_END),
                "{name}: {which}"
            );
        }
    }
    // Non-special added tokens are still matched, as llama.cpp does with parse_special off.
    let ids = embedded().encode("<|im_start|><think>", false).unwrap();
    assert_eq!(ids.last(), Some(&THINK));
    assert!(ids.len() > 2, "{ids:?}");
}

#[test]
fn decoding_round_trips() {
    for &(name, text) in TEXTS {
        for (which, tok) in [("json", json()), ("gguf", embedded())] {
            let ids = tok.encode(text, true).unwrap();
            assert_eq!(
                tok.decode(&ids, Specials::Show).unwrap(),
                text,
                "{name}: {which}"
            );
        }
    }
}

#[test]
fn text_is_nfc_normalized_like_tokenizer_json() {
    let decomposed = "cafe\u{301} A\u{30a}ngstro\u{308}m";
    let composed = "café Ångström";
    for tok in [json(), embedded()] {
        let ids = tok.encode(decomposed, true).unwrap();
        assert_eq!(ids, tok.encode(composed, true).unwrap());
        assert_eq!(tok.decode(&ids, Specials::Show).unwrap(), composed);
    }
}

#[test]
fn skipping_specials_drops_control_tokens_and_keeps_think_markers() {
    let text = "<|im_start|>assistant\n<think>\nhm\n</think>\n\nHi!<|im_end|><|endoftext|>";
    for tok in [json(), embedded()] {
        let ids = tok.encode(text, true).unwrap();
        let shown = tok.decode(&ids, Specials::Skip).unwrap();
        assert_eq!(shown, "assistant\n<think>\nhm\n</think>\n\nHi!");
    }
}

#[test]
fn reference_prompt_encodes_to_llama_cpp_ids() {
    let refs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("refs/tiny-qwen3vocab-q8_0.json")).expect("refs"),
    )
    .expect("json");
    let expected: Vec<u32> = serde_json::from_value(refs["prompt_ids"].clone()).expect("ids");
    let prompt = "The quick brown fox jumps over the lazy dog.";
    assert_eq!(embedded().encode(prompt, true).unwrap(), expected);
    assert_eq!(json().encode(prompt, true).unwrap(), expected);
}

#[test]
fn vocabulary_facts() {
    // The GGUF pads the vocabulary to the embedding's 151936 rows with unused [PAD...] tokens.
    assert_eq!(embedded().vocab_size(), 151936);
    assert_eq!(embedded().max_id(), 151935);
    assert_eq!(json().vocab_size(), 151669);
    assert_eq!(json().max_id(), 151668);
    for tok in [json(), embedded()] {
        assert_eq!(tok.eos_ids(), &[ENDOFTEXT, IM_END]);
        assert!(tok.is_eos(IM_END) && tok.is_eos(ENDOFTEXT) && !tok.is_eos(IM_START));
        assert_eq!(tok.token_str(785).as_deref(), Some("The"));
        assert_eq!(tok.token_str(3974).as_deref(), Some("Ġquick"));
        assert_eq!(tok.token_str(IM_END).as_deref(), Some("<|im_end|>"));
        assert_eq!(tok.token_id("<think>"), Some(THINK));
    }
    assert_eq!(embedded().bos_id(), Some(ENDOFTEXT));
    assert_eq!(json().bos_id(), None);
    assert_eq!(embedded().token_str(151935).as_deref(), Some("[PAD151935]"));
    assert_eq!(
        embedded().decode(&[151700], Specials::Show).unwrap(),
        "[PAD151700]"
    );
    assert_eq!(json().decode(&[151700], Specials::Show).unwrap(), "");
}

#[test]
fn sources_are_reported() {
    assert_eq!(
        json().source(),
        &Source::TokenizerJson(fixture("tokenizer/tokenizer.json"))
    );
    let shown = embedded().source().to_string();
    assert!(
        shown.starts_with("embedded in ") && shown.ends_with("tiny-qwen3vocab-q8_0.gguf"),
        "{shown}"
    );
}

#[test]
fn streams_through_the_text_streamer() {
    let text = "<think>\n嗯🦀\n</think>\n\n你好 🇫🇷!<|im_end|>";
    let tok = embedded();
    let ids = tok.encode(text, true).unwrap();
    let mut streamer = TextStreamer::new(tok);
    let mut out = String::new();
    for id in ids {
        out.extend(streamer.push(id).unwrap());
    }
    out.extend(streamer.finish().unwrap());
    assert_eq!(out, "<think>\n嗯🦀\n</think>\n\n你好 🇫🇷!");
}

#[test]
fn fixture_without_tokenizer_says_what_to_do() {
    let gguf = GgufFile::open(fixture("models/tiny-q8_0.gguf")).expect("fixture");
    let err = Tokenizer::from_gguf(&gguf).unwrap_err();
    assert!(matches!(err, TokenizerError::NotEmbedded { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("\"none\"") && msg.contains("--tokenizer") && msg.contains("--token-ids"));
}

#[test]
fn missing_tokenizer_json_is_a_load_error() {
    let err = Tokenizer::from_file(fixture("tokenizer/nope.json")).unwrap_err();
    assert!(matches!(err, TokenizerError::Load { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.json"));
}

// Synthetic files: a six-token byte-level vocabulary.

fn strs(items: &[&str]) -> V {
    V::Arr(8, items.iter().map(|s| V::s(s)).collect())
}

fn i32s(items: &[i32]) -> V {
    V::Arr(5, items.iter().map(|&i| V::I32(i)).collect())
}

fn mini() -> Gguf {
    Gguf::default()
        .kv("general.architecture", V::s("qwen3"))
        .kv("tokenizer.ggml.model", V::s("gpt2"))
        .kv("tokenizer.ggml.pre", V::s("qwen2"))
        .kv(
            "tokenizer.ggml.tokens",
            strs(&["a", "b", "ab", "Ġ", "<|im_end|>", "<think>"]),
        )
        .kv("tokenizer.ggml.token_type", i32s(&[1, 1, 1, 1, 3, 4]))
        .kv("tokenizer.ggml.merges", strs(&["a b"]))
        .kv("tokenizer.ggml.eos_token_id", V::U32(4))
}

/// Which error a bad file must give.
type Expect = fn(&TokenizerError) -> bool;

fn load(g: Gguf) -> Result<Tokenizer, TokenizerError> {
    Tokenizer::from_gguf(&GgufFile::from_bytes(g.build()).expect("valid gguf"))
}

#[test]
fn synthetic_vocabulary_encodes_with_its_merges_and_types() {
    let tok = load(mini()).unwrap();
    assert_eq!(
        tok.encode("ab ab<think>a<|im_end|>", true).unwrap(),
        [2, 3, 2, 5, 0, 4]
    );
    assert_eq!(tok.eos_ids(), &[4]);
    assert_eq!((tok.vocab_size(), tok.max_id()), (6, 5));
    let with_bos = mini()
        .kv("tokenizer.ggml.bos_token_id", V::U32(1))
        .kv("tokenizer.ggml.add_bos_token", V::Bool(true));
    assert_eq!(load(with_bos).unwrap().encode("a", true).unwrap(), [1, 0]);
    // Without token types nothing is matched whole, as in llama.cpp.
    let untyped = load(mini().set("tokenizer.ggml.token_type", None)).unwrap();
    assert_eq!(untyped.encode("ab", true).unwrap(), [2]);
}

#[test]
fn unsupported_or_malformed_tokenizers_are_typed_errors() {
    let cases: Vec<(&str, Gguf, Expect)> = vec![
        (
            "no model key",
            mini().set("tokenizer.ggml.model", None),
            |e| matches!(e, TokenizerError::NotEmbedded { model, .. } if model == "missing"),
        ),
        (
            "sentencepiece",
            mini().set("tokenizer.ggml.model", Some(V::s("llama"))),
            |e| matches!(e, TokenizerError::UnsupportedModel { model, .. } if model == "llama"),
        ),
        (
            "llama3 pre-tokenizer",
            mini().set("tokenizer.ggml.pre", Some(V::s("llama-bpe"))),
            |e| matches!(e, TokenizerError::UnsupportedPre { pre, .. } if pre == "llama-bpe"),
        ),
        (
            "no pre-tokenizer",
            mini().set("tokenizer.ggml.pre", None),
            |e| matches!(e, TokenizerError::UnsupportedPre { pre, .. } if pre == "default"),
        ),
        (
            "model of the wrong type",
            mini().set("tokenizer.ggml.model", Some(V::U32(2))),
            |e| matches!(e, TokenizerError::Metadata { .. }),
        ),
        (
            "no merges",
            mini().set("tokenizer.ggml.merges", None),
            |e| matches!(e, TokenizerError::Metadata { .. }),
        ),
        (
            "merge without a space",
            mini().set("tokenizer.ggml.merges", Some(strs(&["ab"]))),
            |e| matches!(e, TokenizerError::BadMerge { index: 0, .. }),
        ),
        (
            "merge of unknown tokens",
            mini().set("tokenizer.ggml.merges", Some(strs(&["a c"]))),
            |e| matches!(e, TokenizerError::Build { .. }),
        ),
        (
            "duplicate token",
            mini().set(
                "tokenizer.ggml.tokens",
                Some(strs(&["a", "b", "ab", "Ġ", "a", "x"])),
            ),
            |e| {
                matches!(
                    e,
                    TokenizerError::DuplicateToken {
                        first: 0,
                        second: 4,
                        ..
                    }
                )
            },
        ),
        (
            "too few token types",
            mini().set("tokenizer.ggml.token_type", Some(i32s(&[1, 1]))),
            |e| {
                matches!(
                    e,
                    TokenizerError::TypeCount {
                        tokens: 6,
                        types: 2,
                        ..
                    }
                )
            },
        ),
        (
            "eos out of range",
            mini().set("tokenizer.ggml.eos_token_id", Some(V::U32(6))),
            |e| matches!(e, TokenizerError::SpecialIdOutOfRange { id: 6, .. }),
        ),
    ];
    for (name, gguf, expected) in cases {
        let err = load(gguf).expect_err(name);
        assert!(expected(&err), "{name}: {err:?}");
        assert!(!err.to_string().is_empty());
    }
}
