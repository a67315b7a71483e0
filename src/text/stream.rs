//! Token-to-text streaming that never splits a UTF-8 character (after candle's `TokenOutputStream`).
//!
//! With byte-level BPE one token may carry part of a multi-byte character; decoding up to that token
//! then ends in U+FFFD (the decoder's lossy stand-in for the incomplete bytes). The streamer holds
//! back such a trailing U+FFFD run until later tokens complete it and `finish` flushes whatever is
//! left, so the concatenation of all emitted pieces equals the decoding of all ids at once.
//!
//! Cost: each push decodes only a short window, from one token before the last point where the text
//! was complete, so streaming n tokens is O(n) decodes of bounded length, not O(n²).
//!
//! Assumption: the decoder is prefix-stable at complete-character boundaries, i.e. decoding more ids
//! only appends to the text (true of byte-level BPE and SentencePiece). If a decoder rewrites earlier
//! text, the streamer emits from the first byte that differs and never panics.

const REPLACEMENT: char = '\u{FFFD}';

/// Turns token ids into text; the streamer's only view of a tokenizer.
pub trait Decode {
    type Error;
    fn decode(&self, ids: &[u32]) -> Result<String, Self::Error>;
}

impl<F, E> Decode for F
where
    F: Fn(&[u32]) -> Result<String, E>,
{
    type Error = E;
    fn decode(&self, ids: &[u32]) -> Result<String, E> {
        self(ids)
    }
}

/// Incremental decoder: push ids one at a time, get back newly completed text.
pub struct TextStreamer<D> {
    decoder: D,
    /// Ids from the start of the current window (one token of context, then the undecided tail).
    window: Vec<u32>,
    /// The part of the window's decoded text already emitted (or held as context).
    emitted: String,
}

impl<D: Decode> TextStreamer<D> {
    pub fn new(decoder: D) -> Self {
        Self {
            decoder,
            window: Vec::new(),
            emitted: String::new(),
        }
    }

    /// Adds one id; returns the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>, D::Error> {
        self.window.push(id);
        let text = self.decoder.decode(&self.window)?;
        let complete = text.trim_end_matches(REPLACEMENT);
        let piece = self.take_new(&text, complete.len());
        if complete.len() == text.len() {
            self.reanchor()?;
        }
        Ok(piece)
    }

    /// Flushes everything not yet emitted, an incomplete trailing character included (as the decoder
    /// renders it), and resets the streamer for a new sequence.
    pub fn finish(&mut self) -> Result<Option<String>, D::Error> {
        let text = self.decoder.decode(&self.window)?;
        let piece = self.take_new(&text, text.len());
        self.window.clear();
        self.emitted.clear();
        Ok(piece)
    }

    /// Emits `text[..end]` beyond what was already emitted from this window.
    fn take_new(&mut self, text: &str, end: usize) -> Option<String> {
        let start = common_prefix_len(&self.emitted, text);
        if end <= start {
            return None;
        }
        let piece = text.get(start..end)?.to_owned();
        self.emitted.truncate(start);
        self.emitted.push_str(&piece);
        Some(piece)
    }

    /// The window's text is complete: restart the window at its last token, kept as left context
    /// for decoders whose output depends on it (e.g. SentencePiece's leading space).
    fn reanchor(&mut self) -> Result<(), D::Error> {
        if self.window.len() <= 1 {
            return Ok(());
        }
        let last = self.window.len() - 1;
        self.window.drain(..last);
        self.emitted = self.decoder.decode(&self.window)?;
        Ok(())
    }
}

/// Length in bytes of the longest common prefix of `a` and `b` that ends on a character boundary.
fn common_prefix_len(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, ca), cb)| ca != cb)
        .map_or(a.len().min(b.len()), |((i, _), _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::convert::Infallible;

    /// A byte-level "tokenizer": each id is an index into a table of byte strings.
    struct FakeBytes {
        vocab: Vec<Vec<u8>>,
        decoded_ids: Cell<usize>,
    }

    impl FakeBytes {
        fn new(vocab: Vec<Vec<u8>>) -> Self {
            Self {
                vocab,
                decoded_ids: Cell::new(0),
            }
        }
    }

    impl Decode for &FakeBytes {
        type Error = Infallible;
        fn decode(&self, ids: &[u32]) -> Result<String, Infallible> {
            self.decoded_ids.set(self.decoded_ids.get() + ids.len());
            let bytes: Vec<u8> = ids
                .iter()
                .flat_map(|&i| self.vocab[i as usize].iter().copied())
                .collect();
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
    }

    /// Splits `text`'s bytes into tokens at the given byte lengths (cycling), one vocab entry each.
    fn tokenize(text: &[u8], lengths: &[usize]) -> FakeBytes {
        let mut vocab = Vec::new();
        let mut at = 0;
        for &n in lengths.iter().cycle() {
            if at >= text.len() {
                break;
            }
            let end = (at + n).min(text.len());
            vocab.push(text[at..end].to_vec());
            at = end;
        }
        FakeBytes::new(vocab)
    }

    /// Streams every id; returns the pieces from `push` and what `finish` flushed.
    fn stream(tok: &FakeBytes) -> (Vec<String>, Option<String>) {
        let mut s = TextStreamer::new(tok);
        let mut pieces = Vec::new();
        for id in 0..tok.vocab.len() as u32 {
            if let Some(p) = s.push(id).unwrap() {
                pieces.push(p);
            }
        }
        let tail = s.finish().unwrap();
        (pieces, tail)
    }

    fn assert_roundtrip(text: &str, lengths: &[usize]) {
        let tok = tokenize(text.as_bytes(), lengths);
        let (pieces, tail) = stream(&tok);
        for p in &pieces {
            assert!(
                !p.contains(REPLACEMENT),
                "split char in {p:?} ({lengths:?})"
            );
        }
        let all: String = pieces.concat() + tail.as_deref().unwrap_or("");
        assert_eq!(all, text, "byte split {lengths:?}");
    }

    #[test]
    fn multibyte_text_split_every_way() {
        let texts = [
            "你好，世界！中文文本。",
            "emoji 😀🎉 and 👩‍👩‍👧 family",
            "e\u{301}cole nai\u{308}ve",
            "mixed: héllo 世界 🚀 end",
        ];
        for text in texts {
            for lengths in [&[1][..], &[2], &[3], &[1, 2], &[2, 1, 3], &[5], &[4, 1]] {
                assert_roundtrip(text, lengths);
            }
        }
    }

    #[test]
    fn emoji_split_across_four_tokens_is_held_then_emitted_whole() {
        let tok = tokenize("a😀b".as_bytes(), &[1]);
        let mut s = TextStreamer::new(&tok);
        let out: Vec<Option<String>> = (0..6).map(|id| s.push(id).unwrap()).collect();
        let expected = [Some("a"), None, None, None, Some("😀"), Some("b")];
        assert_eq!(out, expected.map(|p| p.map(String::from)));
        assert_eq!(s.finish().unwrap(), None);
    }

    #[test]
    fn trailing_incomplete_char_is_flushed_at_finish() {
        let mut bytes = b"ok ".to_vec();
        bytes.extend_from_slice(&"中".as_bytes()[..2]);
        let tok = tokenize(&bytes, &[1]);
        let (pieces, tail) = stream(&tok);
        assert_eq!(pieces.concat(), "ok ");
        assert_eq!(tail.as_deref(), Some("\u{FFFD}"));
    }

    #[test]
    fn genuine_invalid_byte_in_the_middle_is_not_held_forever() {
        let tok = FakeBytes::new(vec![b"a".to_vec(), vec![0xFF], b"b".to_vec()]);
        let mut s = TextStreamer::new(&tok);
        assert_eq!(s.push(0).unwrap().as_deref(), Some("a"));
        assert_eq!(s.push(1).unwrap(), None);
        assert_eq!(s.push(2).unwrap().as_deref(), Some("\u{FFFD}b"));
    }

    #[test]
    fn finish_resets_for_the_next_sequence() {
        let tok = tokenize(b"xy", &[1]);
        let mut s = TextStreamer::new(&tok);
        assert_eq!(s.push(0).unwrap().as_deref(), Some("x"));
        assert_eq!(s.finish().unwrap(), None);
        assert_eq!(s.push(1).unwrap().as_deref(), Some("y"));
    }

    #[test]
    fn decoding_work_is_linear() {
        let text = "streaming 中文 😀 ".repeat(200);
        let tok = tokenize(text.as_bytes(), &[1, 2, 3]);
        let n = tok.vocab.len();
        let (pieces, tail) = stream(&tok);
        assert_eq!(pieces.concat() + tail.as_deref().unwrap_or(""), text);
        // Each push decodes a window of a few ids, plus one for re-anchoring.
        assert!(
            tok.decoded_ids.get() < 12 * n,
            "{} ids decoded for {n} tokens",
            tok.decoded_ids.get()
        );
    }

    #[test]
    fn closures_are_decoders_and_errors_propagate() {
        let dec = |ids: &[u32]| -> Result<String, String> {
            if ids.contains(&9) {
                Err("bad id 9".into())
            } else {
                Ok(ids.iter().map(|i| i.to_string()).collect())
            }
        };
        let mut s = TextStreamer::new(dec);
        assert_eq!(s.push(1).unwrap().as_deref(), Some("1"));
        assert_eq!(s.push(2).unwrap().as_deref(), Some("2"));
        assert_eq!(s.push(9), Err("bad id 9".to_string()));
    }

    #[test]
    fn common_prefix_respects_char_boundaries() {
        assert_eq!(common_prefix_len("ab中", "ab中d"), 5);
        assert_eq!(common_prefix_len("ab中", "ab丁"), 2);
        assert_eq!(common_prefix_len("", "x"), 0);
    }
}
