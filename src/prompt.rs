//! The prompt of a run: its text (`-p TEXT`, `-p -` for standard input, `--prompt-file`) and its
//! token ids, as given (`--token-ids`, checked against the vocabulary) or as the text's tokens,
//! rendered first as a user turn of the chat template when the run chats.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::settings::PromptSource;
use crate::text::chat::{Chat, ChatError, Message};
use crate::text::tokenizer::{Tokenizer, TokenizerError};

#[derive(Debug, Error)]
pub enum PromptError {
    #[error(
        "no prompt: give -p TEXT, --prompt-file FILE or -p - (standard input), or --interactive"
    )]
    Missing,

    #[error("cannot read the prompt file '{path}': {err}")]
    File { path: PathBuf, err: std::io::Error },

    #[error("cannot read the prompt from standard input: {0}")]
    Stdin(std::io::Error),

    /// A Ctrl-C came while standard input was being read.
    #[error("interrupted while reading the prompt")]
    Interrupted,

    #[error("the prompt ({from}) is empty: give some text")]
    Empty { from: String },

    #[error("-p - reads the prompt from standard input, which --interactive reads turns from: give the first turn with -p TEXT or --prompt-file")]
    StdinInteractive,

    #[error("--token-ids is empty: give at least one id")]
    NoIds,

    #[error(
        "--token-ids: id {id} is outside the model's vocabulary of {vocab} tokens (ids 0 to {})",
        .vocab - 1
    )]
    IdOutOfRange { id: u32, vocab: usize },

    #[error("no tokenizer to encode the prompt: give --tokenizer FILE or --token-ids")]
    NoTokenizer,

    #[error(transparent)]
    Chat(#[from] ChatError),

    #[error("cannot tokenize the prompt: {0}")]
    Tokenize(#[from] TokenizerError),
}

/// A prompt's ids and the text they came from (empty for `--token-ids`).
pub struct Prompt {
    pub ids: Vec<u32>,
    pub text: String,
    /// Rendering the chat template and tokenizing (zero for `--token-ids`): the part of the
    /// time to first token before the model runs.
    pub encode_time: Duration,
}

/// The prompt text `source` gives, if any (token ids are no text); empty text is an error.
/// `interactive`: standard input carries the turns, so it cannot also carry the prompt.
pub fn read_text(source: &PromptSource, interactive: bool) -> Result<Option<String>, PromptError> {
    let (text, from) = match source {
        PromptSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|err| PromptError::File {
                path: path.clone(),
                err,
            })?;
            (text, format!("file '{}'", path.display()))
        }
        PromptSource::Stdin if interactive => return Err(PromptError::StdinInteractive),
        PromptSource::Stdin => (read_stdin()?, "standard input".to_string()),
        PromptSource::Text(p) => (p.clone(), "-p".to_string()),
        PromptSource::None | PromptSource::TokenIds(_) => return Ok(None),
    };
    if text.is_empty() {
        return Err(PromptError::Empty { from });
    }
    Ok(Some(text))
}

/// Standard input to its end, read on a thread of its own so that a Ctrl-C is seen while it
/// waits (the thread is left blocked; the program ends soon after).
fn read_stdin() -> Result<String, PromptError> {
    if std::io::stdin().is_terminal() {
        crate::errln!("reading the prompt from standard input (end it with Ctrl-D)");
    }
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let read = std::io::stdin().read_to_string(&mut text).map(|_| text);
        let _ = send.send(read);
    });
    loop {
        if crate::interrupt::requested() {
            return Err(PromptError::Interrupted);
        }
        match receive.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(read) => return read.map_err(PromptError::Stdin),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(PromptError::Stdin(std::io::ErrorKind::BrokenPipe.into()))
            }
        }
    }
}

/// The prompt of a non-interactive run: the ids given, checked against the model's `vocab`, or
/// the text's tokens (through `chat`'s template when the run chats).
pub fn build(
    source: &PromptSource,
    tokenizer: Option<&Tokenizer>,
    chat: Option<&Chat>,
    vocab: usize,
) -> Result<Prompt, PromptError> {
    if let PromptSource::TokenIds(ids) = source {
        if ids.is_empty() {
            return Err(PromptError::NoIds);
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(PromptError::IdOutOfRange { id, vocab });
        }
        return Ok(Prompt {
            ids: ids.clone(),
            text: String::new(),
            encode_time: Duration::ZERO,
        });
    }
    let mut text = read_text(source, false)?.ok_or(PromptError::Missing)?;
    let Some(tokenizer) = tokenizer else {
        return Err(PromptError::NoTokenizer);
    };
    let start = Instant::now();
    if let Some(chat) = chat {
        text = chat.render(&[Message::user(text)])?;
    }
    let ids = encode(tokenizer, &text)?;
    Ok(Prompt {
        ids,
        text,
        encode_time: start.elapsed(),
    })
}

/// Token ids of prompt text; special-token text (`<|im_start|>`) is read as that token, as chat
/// templates write it and as llama.cpp reads prompts.
pub fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, PromptError> {
    Ok(tokenizer.encode(text, true)?)
}
