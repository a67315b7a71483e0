//! Streaming the ids of real Qwen3 tokenizations reproduces the tokenizer's own decoding exactly.

use qwen::text::stream::TextStreamer;
use tokenizers::Tokenizer;

fn tokenizer() -> Tokenizer {
    let path = crate::common::fixture("tokenizer/tokenizer.json");
    Tokenizer::from_file(path).expect("fixture tokenizer.json loads")
}

/// Streams `ids`; returns the emitted pieces (finish's remainder last) and how many pushes held back.
fn stream(tok: &Tokenizer, ids: &[u32]) -> (Vec<String>, usize) {
    let mut s = TextStreamer::new(|ids: &[u32]| tok.decode(ids, false));
    let mut pieces = Vec::new();
    let mut held = 0;
    for &id in ids {
        match s.push(id).expect("decode") {
            Some(p) => pieces.push(p),
            None => held += 1,
        }
    }
    pieces.extend(s.finish().expect("decode"));
    (pieces, held)
}

#[test]
fn mixed_text_streams_to_the_full_decoding() {
    let tok = tokenizer();
    let texts = [
        "Hello, world! 你好，世界。Emoji: 😀🦀🧬 and a family 👩‍👩‍👧, café, naïve, 𝄞 clef.",
        "混合文本：机器学习（ML）与深度学习 🤖🚀，再加上 emoji 🫠🪿 结尾",
        "<|im_start|>user\n写一首关于🦀的诗<|im_end|>\n<|im_start|>assistant\n",
    ];
    let mut total_held = 0;
    for text in texts {
        let ids = tok.encode(text, false).expect("encode").get_ids().to_vec();
        let full = tok.decode(&ids, false).expect("decode");
        let (pieces, held) = stream(&tok, &ids);
        for p in &pieces {
            assert!(!p.contains('\u{FFFD}'), "piece {p:?} splits a character");
        }
        assert_eq!(pieces.concat(), full);
        assert_eq!(full, text, "the fixture tokenizer round-trips this text");
        total_held += held;
    }
    // Rare emoji are byte tokens in Qwen3's vocabulary, so some pushes must have held back.
    assert!(total_held > 0, "the test never exercised a split character");
}

#[test]
fn truncated_character_is_flushed_as_the_tokenizer_decodes_it() {
    let tok = tokenizer();
    let ids = tok
        .encode("ok 🦀", false)
        .expect("encode")
        .get_ids()
        .to_vec();
    // Drop the last byte token: the crab is now incomplete.
    let cut = &ids[..ids.len() - 1];
    let expected = tok.decode(cut, false).expect("decode");
    assert!(
        expected.ends_with('\u{FFFD}'),
        "{expected:?}: the crab was not split"
    );
    let (pieces, _) = stream(&tok, cut);
    assert_eq!(pieces.concat(), expected);
}
