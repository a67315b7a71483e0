//! The prompt of a run: its text (`-p TEXT`, `-p -` for standard input, `--prompt-file`) and its
//! token ids, as given or as a user turn rendered with the model's chat template.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use thiserror::Error;

use crate::cli::Args;
use crate::text::chat::{ChatError, ChatTemplate, Message, RenderOptions};
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

    #[error("the prompt ({from}) is empty: give some text")]
    Empty { from: String },

    #[error("-p - reads the prompt from standard input, which --interactive reads turns from: give the first turn with -p TEXT or --prompt-file")]
    StdinInteractive,

    #[error(transparent)]
    Chat(#[from] ChatError),

    #[error("cannot tokenize the prompt: {0}")]
    Tokenize(#[from] TokenizerError),
}

/// The prompt text the flags give, if any; empty text is an error.
pub fn read_text(args: &Args) -> Result<Option<String>, PromptError> {
    let (text, from) = if let Some(path) = &args.prompt_file {
        let text = std::fs::read_to_string(path).map_err(|err| PromptError::File {
            path: path.clone(),
            err,
        })?;
        (text, format!("file '{}'", path.display()))
    } else {
        match args.prompt.as_deref() {
            Some("-") if args.interactive => return Err(PromptError::StdinInteractive),
            Some("-") => (read_stdin()?, "standard input".to_string()),
            Some(p) => (p.to_string(), "-p".to_string()),
            None => return Ok(None),
        }
    };
    if text.is_empty() {
        return Err(PromptError::Empty { from });
    }
    Ok(Some(text))
}

/// The prompt text, which a non-interactive run must have.
pub fn required_text(args: &Args) -> Result<String, PromptError> {
    read_text(args)?.ok_or(PromptError::Missing)
}

fn read_stdin() -> Result<String, PromptError> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("reading the prompt from standard input (end it with Ctrl-D)");
    }
    let mut text = String::new();
    stdin
        .read_to_string(&mut text)
        .map_err(PromptError::Stdin)?;
    Ok(text)
}

/// A chat: the template, the system message and the thinking switch that every render uses.
#[derive(Debug)]
pub struct Chat {
    template: ChatTemplate,
    system: Option<String>,
    enable_thinking: Option<bool>,
}

impl Chat {
    pub fn new(template: ChatTemplate, args: &Args) -> Chat {
        Chat {
            template,
            system: args.system.clone(),
            // Unset unless --no-think: the template's own default is thinking on.
            enable_thinking: args.no_think.then_some(false),
        }
    }

    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// The prompt text of the conversation `turns` (after the system message), ending with the
    /// assistant's header for the model to continue.
    pub fn render(&self, turns: &[Message]) -> Result<String, PromptError> {
        let mut messages = Vec::with_capacity(turns.len() + 1);
        messages.extend(self.system.iter().map(Message::system));
        messages.extend_from_slice(turns);
        let options = RenderOptions {
            add_generation_prompt: true,
            enable_thinking: self.enable_thinking,
        };
        Ok(self.template.render(&messages, options)?)
    }
}

/// Token ids of prompt text; special-token text (`<|im_start|>`) is read as that token, as chat
/// templates write it and as llama.cpp reads prompts.
pub fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, PromptError> {
    Ok(tokenizer.encode(text, true)?)
}
