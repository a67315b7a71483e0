//! Telling a reasoning model's thinking from its answer in streamed text: Qwen3 writes its
//! reasoning between `<think>` and `</think>` (each one token, so each arrives whole or, through
//! the UTF-8-safe streamer, possibly split across pieces). [`ThinkSplitter`] turns stream pieces
//! into [`Piece`]s; [`ThinkDisplay`] renders them plain, dimmed, or with the thinking hidden.

pub const THINK_OPEN: &str = "<think>";
pub const THINK_CLOSE: &str = "</think>";

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// A run of streamed text, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// The marker `<think>`.
    ThinkStart,
    /// Reasoning text, between the markers.
    Think(String),
    /// The marker `</think>`.
    ThinkEnd,
    /// Answer text, outside the markers.
    Answer(String),
}

/// Splits streamed text at the think markers. Text that could be the start of a marker is held
/// back until the next piece decides it (or [`ThinkSplitter::finish`] flushes it as text).
#[derive(Debug, Clone, Default)]
pub struct ThinkSplitter {
    thinking: bool,
    pending: String,
}

impl ThinkSplitter {
    /// Starts in the answer; a `<think>` opens the reasoning.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts inside the reasoning, for prompts that already end with `<think>` (see
    /// [`ends_inside_think`]).
    pub fn inside_think() -> Self {
        ThinkSplitter {
            thinking: true,
            pending: String::new(),
        }
    }

    /// Whether the text so far left the model inside a think block.
    pub fn is_thinking(&self) -> bool {
        self.thinking
    }

    /// Classifies the next piece of the stream.
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        let mut buf = std::mem::take(&mut self.pending);
        buf.push_str(text);
        let mut pieces = Vec::new();
        let mut rest = buf.as_str();
        loop {
            let marker = self.marker();
            if let Some(at) = rest.find(marker) {
                self.emit_text(&mut pieces, &rest[..at]);
                pieces.push(if self.thinking {
                    Piece::ThinkEnd
                } else {
                    Piece::ThinkStart
                });
                self.thinking = !self.thinking;
                rest = &rest[at + marker.len()..];
                continue;
            }
            // Markers are ASCII, so a suffix that matches a marker prefix starts on a char boundary.
            let held = partial_marker_len(rest, marker);
            self.emit_text(&mut pieces, &rest[..rest.len() - held]);
            self.pending = rest[rest.len() - held..].to_string();
            return pieces;
        }
    }

    /// Flushes text held back as a possible marker start: the stream ended, so it is text.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        self.emit_text(&mut pieces, &pending);
        pieces
    }

    fn marker(&self) -> &'static str {
        if self.thinking {
            THINK_CLOSE
        } else {
            THINK_OPEN
        }
    }

    fn emit_text(&self, pieces: &mut Vec<Piece>, text: &str) {
        if text.is_empty() {
            return;
        }
        pieces.push(if self.thinking {
            Piece::Think(text.to_string())
        } else {
            Piece::Answer(text.to_string())
        });
    }
}

/// Length of the longest proper prefix of `marker` that `text` ends with.
fn partial_marker_len(text: &str, marker: &str) -> usize {
    (1..marker.len())
        .rev()
        .find(|&k| text.ends_with(&marker[..k]))
        .unwrap_or(0)
}

/// Whether `prompt` leaves the model inside a think block (its last `<think>` is not closed), as
/// templates that open the block for the model do; then start with [`ThinkSplitter::inside_think`].
pub fn ends_inside_think(prompt: &str) -> bool {
    match (prompt.rfind(THINK_OPEN), prompt.rfind(THINK_CLOSE)) {
        (Some(open), Some(close)) => open > close,
        (Some(_), None) => true,
        _ => false,
    }
}

/// How to show the reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkStyle {
    /// As the model wrote it.
    Plain,
    /// Markers and reasoning in ANSI dim (for a terminal); each run is reset on its own, so a
    /// stream cut short never leaves the terminal dimmed.
    Dim,
    /// Markers and reasoning left out, and the blank lines that follow `</think>`.
    Hide,
}

/// Turns stream pieces into the text to print, in a [`ThinkStyle`].
#[derive(Debug, Clone)]
pub struct ThinkDisplay {
    style: ThinkStyle,
    splitter: ThinkSplitter,
    /// After a hidden think block, newlines are dropped until the answer's first other character.
    skipping_newlines: bool,
}

impl ThinkDisplay {
    pub fn new(style: ThinkStyle) -> Self {
        Self::with_splitter(style, ThinkSplitter::new())
    }

    /// For prompts that already opened the think block ([`ends_inside_think`]).
    pub fn inside_think(style: ThinkStyle) -> Self {
        Self::with_splitter(style, ThinkSplitter::inside_think())
    }

    fn with_splitter(style: ThinkStyle, splitter: ThinkSplitter) -> Self {
        ThinkDisplay {
            style,
            splitter,
            skipping_newlines: false,
        }
    }

    /// The text to print for the next stream piece (possibly empty).
    pub fn push(&mut self, text: &str) -> String {
        let pieces = self.splitter.push(text);
        self.render(pieces)
    }

    /// The text to print at the end of the stream.
    pub fn finish(&mut self) -> String {
        let pieces = self.splitter.finish();
        self.render(pieces)
    }

    fn render(&mut self, pieces: Vec<Piece>) -> String {
        let mut out = String::new();
        for piece in pieces {
            match (self.style, piece) {
                (_, Piece::Answer(text)) => out.push_str(self.answer(&text)),
                (ThinkStyle::Plain, piece) => out.push_str(marker_or_text(&piece)),
                (ThinkStyle::Dim, piece) => {
                    out.push_str(DIM);
                    out.push_str(marker_or_text(&piece));
                    out.push_str(RESET);
                }
                (ThinkStyle::Hide, Piece::ThinkEnd) => self.skipping_newlines = true,
                (ThinkStyle::Hide, _) => {}
            }
        }
        out
    }

    fn answer<'a>(&mut self, text: &'a str) -> &'a str {
        if !self.skipping_newlines {
            return text;
        }
        let kept = text.trim_start_matches(['\n', '\r']);
        self.skipping_newlines = kept.is_empty();
        kept
    }
}

fn marker_or_text(piece: &Piece) -> &str {
    match piece {
        Piece::ThinkStart => THINK_OPEN,
        Piece::ThinkEnd => THINK_CLOSE,
        Piece::Think(text) | Piece::Answer(text) => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "<think>\nLet me see: 2+2 🦀 <thin is not a tag, nor </thinker>.\n</think>\n\nIt is 4 <think-free> </think> 👍";

    fn expected() -> Vec<Piece> {
        vec![
            Piece::ThinkStart,
            Piece::Think("\nLet me see: 2+2 🦀 <thin is not a tag, nor </thinker>.\n".into()),
            Piece::ThinkEnd,
            Piece::Answer("\n\nIt is 4 <think-free> </think> 👍".into()),
        ]
    }

    /// Feeds `parts` in order and joins adjacent text of the same kind.
    fn split(parts: &[&str], mut splitter: ThinkSplitter) -> Vec<Piece> {
        let mut pieces = Vec::new();
        for part in parts {
            pieces.extend(splitter.push(part));
        }
        pieces.extend(splitter.finish());
        merge(pieces)
    }

    fn merge(pieces: Vec<Piece>) -> Vec<Piece> {
        let mut out: Vec<Piece> = Vec::new();
        for piece in pieces {
            match (out.last_mut(), piece) {
                (Some(Piece::Think(a)), Piece::Think(b))
                | (Some(Piece::Answer(a)), Piece::Answer(b)) => a.push_str(&b),
                (_, piece) => out.push(piece),
            }
        }
        out
    }

    fn boundaries(s: &str) -> Vec<usize> {
        (0..=s.len()).filter(|&i| s.is_char_boundary(i)).collect()
    }

    #[test]
    fn whole_stream_splits_at_the_markers() {
        assert_eq!(split(&[STREAM], ThinkSplitter::new()), expected());
    }

    #[test]
    fn markers_split_at_every_position_give_the_same_pieces() {
        for i in boundaries(STREAM) {
            let parts = [&STREAM[..i], &STREAM[i..]];
            assert_eq!(
                split(&parts, ThinkSplitter::new()),
                expected(),
                "split at {i}"
            );
        }
    }

    #[test]
    fn three_way_splits_around_the_markers_give_the_same_pieces() {
        let marker_bytes = 0..STREAM.find("\n\nIt").unwrap_or(0) + 2;
        for i in boundaries(STREAM)
            .into_iter()
            .filter(|i| marker_bytes.contains(i))
        {
            for j in boundaries(STREAM).into_iter().filter(|&j| j >= i) {
                let parts = [&STREAM[..i], &STREAM[i..j], &STREAM[j..]];
                assert_eq!(split(&parts, ThinkSplitter::new()), expected(), "{i} {j}");
            }
        }
    }

    #[test]
    fn one_character_at_a_time_gives_the_same_pieces() {
        let chars: Vec<String> = STREAM.chars().map(String::from).collect();
        let parts: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(split(&parts, ThinkSplitter::new()), expected());
    }

    #[test]
    fn a_held_back_marker_prefix_is_text_when_the_stream_ends() {
        let mut s = ThinkSplitter::new();
        assert_eq!(s.push("a <thi"), vec![Piece::Answer("a ".into())]);
        assert_eq!(s.finish(), vec![Piece::Answer("<thi".into())]);
        let mut s = ThinkSplitter::inside_think();
        assert_eq!(s.push("x</"), vec![Piece::Think("x".into())]);
        assert!(s.is_thinking());
        assert_eq!(s.finish(), vec![Piece::Think("</".into())]);
    }

    #[test]
    fn a_prompt_that_opened_the_block_starts_inside_it() {
        let pieces = split(&["reason</think>\n\nA"], ThinkSplitter::inside_think());
        assert_eq!(
            pieces,
            vec![
                Piece::Think("reason".into()),
                Piece::ThinkEnd,
                Piece::Answer("\n\nA".into())
            ]
        );
        assert!(ends_inside_think("<|im_start|>assistant\n<think>\n"));
        assert!(!ends_inside_think(
            "<|im_start|>assistant\n<think>\n\n</think>\n\n"
        ));
        assert!(!ends_inside_think("<|im_start|>assistant\n"));
    }

    fn display(style: ThinkStyle, parts: &[&str]) -> String {
        let mut d = ThinkDisplay::new(style);
        let mut out: String = parts.iter().map(|p| d.push(p)).collect();
        out.push_str(&d.finish());
        out
    }

    #[test]
    fn plain_display_is_the_stream_itself() {
        for i in boundaries(STREAM) {
            assert_eq!(
                display(ThinkStyle::Plain, &[&STREAM[..i], &STREAM[i..]]),
                STREAM
            );
        }
    }

    #[test]
    fn dim_display_wraps_only_the_reasoning() {
        let out = display(ThinkStyle::Dim, &[STREAM]);
        assert_eq!(out.replace(DIM, "").replace(RESET, ""), STREAM);
        assert!(out.starts_with("\x1b[2m<think>\x1b[0m\x1b[2m\nLet me"));
        assert!(out.ends_with("</think>\x1b[0m\n\nIt is 4 <think-free> </think> 👍"));
    }

    #[test]
    fn hidden_display_shows_only_the_answer() {
        for i in boundaries(STREAM) {
            let out = display(ThinkStyle::Hide, &[&STREAM[..i], &STREAM[i..]]);
            assert_eq!(out, "It is 4 <think-free> </think> 👍", "split at {i}");
        }
        // Newlines inside the answer, after its first character, are kept.
        assert_eq!(
            display(ThinkStyle::Hide, &["<think>x</think>\n", "\n", "a\n\nb"]),
            "a\n\nb"
        );
        assert_eq!(
            display(ThinkStyle::Hide, &["no thinking\n"]),
            "no thinking\n"
        );
    }
}
