//! Chat prompts: a model's Jinja chat template (GGUF `tokenizer.chat_template`, or the
//! `chat_template` of a tokenizer_config.json) rendered with minijinja set up like the Jinja
//! environment of Hugging Face transformers' `apply_chat_template`.
//!
//! That environment is `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)` with
//! the loop-controls extension, a `raise_exception(msg)` global and a `tojson` filter that is
//! Python's `json.dumps` (see [`pyjson`]); the context holds `messages`, `tools` and `documents`
//! (none here), `add_generation_prompt`, the special tokens and extra keywords such as
//! `enable_thinking`. Python string methods (`startswith`, `split`, `strip`, ...) come from
//! minijinja-contrib's pycompat; values print as Python prints them (see [`pyrepr`]).
//! Not provided: `strftime_now` (Qwen templates do not call it).

mod pyjson;
mod pyrepr;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use minijinja::value::Serde;
use minijinja::{Environment, Error as JinjaError, ErrorKind, Value};
use serde::Serialize;
use thiserror::Error;

use crate::gguf::{GgufError, GgufFile};

const TEMPLATE_NAME: &str = "chat_template";

/// Who speaks a message; serialized as the lowercase names templates compare against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message {
            role,
            content: content.into(),
        }
    }

    pub fn system(content: impl Into<String>) -> Message {
        Self::new(Role::System, content)
    }

    pub fn user(content: impl Into<String>) -> Message {
        Self::new(Role::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Message {
        Self::new(Role::Assistant, content)
    }
}

/// What to ask of the template besides the messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// End with the header of an assistant turn, for the model to continue.
    pub add_generation_prompt: bool,
    /// Qwen3's `enable_thinking`: `Some(false)` makes the template close an empty think block
    /// (`--no-think`); `None` leaves it undefined, the template's default (thinking on).
    pub enable_thinking: Option<bool>,
}

/// Where a template came from, for messages and the run report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    Gguf(String),
    File(PathBuf),
    Inline,
}

impl fmt::Display for TemplateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateSource::Gguf(path) => write!(f, "tokenizer.chat_template of {path}"),
            TemplateSource::File(path) => write!(f, "{}", path.display()),
            TemplateSource::Inline => write!(f, "<inline template>"),
        }
    }
}

/// A chat template that cannot be found, compiled or rendered.
#[derive(Debug, Error)]
pub enum ChatError {
    #[error(
        "'{gguf}' has no chat template (tokenizer.chat_template); pass a tokenizer_config.json \
         that has one, or prompt without --chat"
    )]
    NotInGguf { gguf: String },

    #[error("reading the chat template of '{gguf}': {err}")]
    Metadata { gguf: String, err: GgufError },

    #[error("cannot read '{path}': {err}")]
    Io { path: String, err: std::io::Error },

    #[error("'{path}' is not valid JSON: {err}")]
    Json {
        path: String,
        err: serde_json::Error,
    },

    #[error(
        "'{path}' has no usable chat_template ({why}); pass the model's own tokenizer_config.json, \
         or prompt without --chat"
    )]
    NotInConfig { path: String, why: String },

    #[error("the chat template ({source_name}) does not compile: {message}")]
    Syntax {
        source_name: String,
        message: String,
    },

    #[error("rendering the chat template ({source_name}) failed: {message}")]
    Render {
        source_name: String,
        message: String,
    },
}

/// A compiled chat template and the special tokens it may refer to (`bos_token`, ...).
pub struct ChatTemplate {
    env: Environment<'static>,
    text: String,
    source: TemplateSource,
    special_tokens: BTreeMap<String, String>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .field("special_tokens", &self.special_tokens)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `template`; syntax errors are reported here, not at the first render.
    pub fn new(template: impl Into<String>, source: TemplateSource) -> Result<Self, ChatError> {
        let text = template.into();
        let mut env = environment();
        env.add_template_owned(TEMPLATE_NAME, text.clone())
            .map_err(|e| ChatError::Syntax {
                source_name: source.to_string(),
                message: describe(&e),
            })?;
        Ok(ChatTemplate {
            env,
            text,
            source,
            special_tokens: BTreeMap::new(),
        })
    }

    /// The template a GGUF file embeds, with `bos_token` and `eos_token` taken from its
    /// vocabulary (as llama.cpp passes them).
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, ChatError> {
        let name = gguf.source().to_string();
        let template = match gguf.get_str("tokenizer.chat_template") {
            Ok(t) => t,
            Err(GgufError::MissingKey { .. }) => return Err(ChatError::NotInGguf { gguf: name }),
            Err(err) => return Err(ChatError::Metadata { gguf: name, err }),
        };
        let template = Self::new(template, TemplateSource::Gguf(name))?;
        Ok(template.with_special_tokens(gguf_special_tokens(gguf)))
    }

    /// The `chat_template` of a Hugging Face tokenizer_config.json (a string, or a list of named
    /// templates of which "default" is taken), with the special tokens the file names.
    pub fn from_tokenizer_config(path: impl AsRef<Path>) -> Result<Self, ChatError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| ChatError::Io {
            path: shown.clone(),
            err,
        })?;
        let config: serde_json::Value =
            serde_json::from_str(&text).map_err(|err| ChatError::Json {
                path: shown.clone(),
                err,
            })?;
        let template =
            config_template(&config).map_err(|why| ChatError::NotInConfig { path: shown, why })?;
        let template = Self::new(template, TemplateSource::File(path.to_path_buf()))?;
        Ok(template.with_special_tokens(config_special_tokens(&config)))
    }

    /// Sets the special-token variables (`bos_token`, `eos_token`, ...) the template sees.
    pub fn with_special_tokens(mut self, tokens: BTreeMap<String, String>) -> Self {
        self.special_tokens = tokens;
        self
    }

    pub fn source(&self) -> &TemplateSource {
        &self.source
    }

    /// The template's Jinja source.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The special-token variables the template sees.
    pub fn special_tokens(&self) -> &BTreeMap<String, String> {
        &self.special_tokens
    }

    /// The prompt text for `messages`, exactly as transformers' `apply_chat_template(...,
    /// tokenize=False)` would produce it.
    pub fn render(
        &self,
        messages: &[Message],
        options: RenderOptions,
    ) -> Result<String, ChatError> {
        let mut context: BTreeMap<String, Value> = self
            .special_tokens
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        context.insert("messages".into(), Value::from(Serde(messages)));
        context.insert("tools".into(), Value::from(()));
        context.insert("documents".into(), Value::from(()));
        context.insert(
            "add_generation_prompt".into(),
            Value::from(options.add_generation_prompt),
        );
        if let Some(thinking) = options.enable_thinking {
            context.insert("enable_thinking".into(), Value::from(thinking));
        }
        self.render_value(Value::from(context))
    }

    /// Renders with a context of the caller's making (tools, documents, other variables).
    pub fn render_context(&self, context: impl Serialize) -> Result<String, ChatError> {
        self.render_value(Value::from(Serde(context)))
    }

    fn render_value(&self, context: Value) -> Result<String, ChatError> {
        let render_error = |e: JinjaError| ChatError::Render {
            source_name: self.source.to_string(),
            message: describe(&e),
        };
        let template = self.env.get_template(TEMPLATE_NAME).map_err(render_error)?;
        template.render(context).map_err(render_error)
    }
}

/// minijinja configured as transformers configures jinja2 for chat templates.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    let mut syntax = minijinja::syntax::SyntaxConfig::builder();
    syntax.trim_blocks(true).lstrip_blocks(true);
    // The builder only fails on invalid custom delimiters; the defaults are used here.
    if let Ok(syntax) = syntax.build() {
        env.set_syntax(syntax);
    }
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_filter("tojson", pyjson::tojson);
    env.set_formatter(pyrepr::formatter);
    env
}

/// The template's own error message, as jinja2's TemplateError carries it.
fn raise_exception(message: String) -> Result<Value, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, message))
}

/// The error with its detail and the template line it points at.
fn describe(err: &JinjaError) -> String {
    match err.line() {
        Some(line) => format!("{err} (template line {line})"),
        None => err.to_string(),
    }
}

fn config_template(config: &serde_json::Value) -> Result<String, String> {
    match config.get("chat_template") {
        Some(serde_json::Value::String(t)) => Ok(t.clone()),
        Some(serde_json::Value::Array(named)) => named
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(str::to_string))
            .ok_or_else(|| "a list of named templates without \"default\"".to_string()),
        Some(_) => Err("chat_template is neither a string nor a list".to_string()),
        None => Err("no chat_template field".to_string()),
    }
}

/// transformers passes its special-tokens map: each token that is set, as its text (a plain
/// string, or an AddedToken object's "content").
fn config_special_tokens(config: &serde_json::Value) -> BTreeMap<String, String> {
    ["bos_token", "eos_token", "unk_token", "pad_token"]
        .into_iter()
        .filter_map(|key| {
            let value = config.get(key)?;
            let text = value.as_str().or_else(|| value.get("content")?.as_str())?;
            Some((key.to_string(), text.to_string()))
        })
        .collect()
}

fn gguf_special_tokens(gguf: &GgufFile) -> BTreeMap<String, String> {
    let Ok(tokens) = gguf.get_str_array("tokenizer.ggml.tokens") else {
        return BTreeMap::new();
    };
    [
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
    ]
    .into_iter()
    .filter_map(|(name, key)| {
        let id = gguf.get_u32(key).ok()?;
        let text = tokens.get(id as usize)?;
        Some((name.to_string(), text.clone()))
    })
    .collect()
}

/// A chat: the template, and the system message and thinking switch that every render uses.
#[derive(Debug)]
pub struct Chat {
    template: ChatTemplate,
    system: Option<String>,
    enable_thinking: Option<bool>,
}

impl Chat {
    /// `enable_thinking`: Qwen3's switch, `None` for the template's own default (thinking on).
    pub fn new(
        template: ChatTemplate,
        system: Option<String>,
        enable_thinking: Option<bool>,
    ) -> Chat {
        Chat {
            template,
            system,
            enable_thinking,
        }
    }

    /// The prompt text of the conversation `turns` (after the system message), ending with the
    /// assistant's header for the model to continue.
    pub fn render(&self, turns: &[Message]) -> Result<String, ChatError> {
        let mut messages = Vec::with_capacity(turns.len() + 1);
        messages.extend(self.system.iter().map(Message::system));
        messages.extend_from_slice(turns);
        let options = RenderOptions {
            add_generation_prompt: true,
            enable_thinking: self.enable_thinking,
        };
        self.template.render(&messages, options)
    }
}
