//! Chat templates render exactly what Python's jinja2 renders in transformers' environment
//! (tests/fixtures/chat/renders.json, written by tools/chat_template_refs.py), for Qwen3's template
//! from tokenizer_config.json and from the GGUF, and every missing or broken template is a typed
//! error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::common::fixture;
use qwen::gguf::GgufFile;
use qwen::text::chat::{ChatError, ChatTemplate, Message, RenderOptions, Role, TemplateSource};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Which error a bad input must give.
type Expect<E> = fn(&E) -> bool;

fn renders() -> Value {
    let text = std::fs::read_to_string(fixture("chat/renders.json")).expect("renders.json");
    serde_json::from_str(&text).expect("valid json")
}

fn config_template() -> ChatTemplate {
    ChatTemplate::from_tokenizer_config(fixture("tokenizer/tokenizer_config.json"))
        .expect("fixture template")
}

fn gguf_template() -> ChatTemplate {
    let gguf = GgufFile::open(fixture("models/tiny-qwen3vocab-q8_0.gguf")).expect("fixture");
    ChatTemplate::from_gguf(&gguf).expect("embedded template")
}

fn role(name: &str) -> Role {
    match name {
        "system" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => panic!("unknown role {other} in renders.json"),
    }
}

fn messages(case: &Value) -> Vec<Message> {
    let list = case["messages"].as_array().expect("messages");
    list.iter()
        .map(|m| {
            let content = m["content"].as_str().expect("content");
            Message::new(role(m["role"].as_str().expect("role")), content)
        })
        .collect()
}

fn options(case: &Value) -> RenderOptions {
    RenderOptions {
        add_generation_prompt: case["add_generation_prompt"].as_bool().expect("flag"),
        enable_thinking: case["enable_thinking"].as_bool(),
    }
}

/// The render agrees with Python's: the same text, or an error on both sides.
fn check(name: &str, got: Result<String, ChatError>, case: &Value) {
    match (case["expected"].as_str(), got) {
        (Some(expected), Ok(got)) => assert_eq!(got, expected, "{name}"),
        (None, Err(_)) => {}
        (Some(_), Err(err)) => panic!("{name}: Python renders it, we fail: {err}"),
        (None, Ok(got)) => panic!(
            "{name}: Python fails ({}), we render {got:?}",
            case["error"]
        ),
    }
}

#[test]
fn gguf_embeds_the_tokenizer_config_template() {
    let refs = renders();
    let digest = format!("{:x}", Sha256::digest(config_template().text()));
    assert_eq!(digest, refs["template_sha256"].as_str().expect("digest"));
    assert_eq!(gguf_template().text(), config_template().text());
}

#[test]
fn qwen3_template_renders_as_transformers_does() {
    let refs = renders();
    let cases = refs["conversations"].as_array().expect("conversations");
    assert!(cases.len() >= 60, "{} conversations", cases.len());
    for (which, template) in [("config", config_template()), ("gguf", gguf_template())] {
        for case in cases {
            let name = format!(
                "{which}: {} {:?}",
                case["name"].as_str().unwrap_or("?"),
                options(case)
            );
            check(&name, template.render(&messages(case), options(case)), case);
        }
    }
}

#[test]
fn qwen3_prompt_shapes() {
    let template = config_template();
    let conversation = [
        Message::system("Be brief."),
        Message::user("Hi"),
        Message::assistant("<think>\nsecret\n</think>\n\nHello!"),
        Message::user("2+2?"),
    ];
    let thinking = RenderOptions {
        add_generation_prompt: true,
        enable_thinking: None,
    };
    let prompt = template.render(&conversation, thinking).unwrap();
    assert!(
        !prompt.contains("secret"),
        "past reasoning is dropped: {prompt}"
    );
    assert!(prompt.ends_with("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"));
    let no_think = RenderOptions {
        enable_thinking: Some(false),
        ..thinking
    };
    let prompt = template.render(&conversation, no_think).unwrap();
    assert!(prompt.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
}

#[test]
fn environment_behaves_like_transformers_jinja() {
    let refs = renders();
    let cases = refs["environment"].as_array().expect("environment");
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let source = case["template"].as_str().expect("template");
        let template = ChatTemplate::new(source, TemplateSource::Inline)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        check(name, template.render_context(&case["context"]), case);
    }
}

#[test]
fn raise_exception_carries_the_template_message() {
    let source = "{% if messages|length > 1 %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}";
    let template = ChatTemplate::new(source, TemplateSource::Inline).unwrap();
    let err = template
        .render(
            &[Message::user("a"), Message::user("b")],
            RenderOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(err, ChatError::Render { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("Conversation roles must alternate"),
        "{err}"
    );
}

#[test]
fn special_tokens_come_from_the_config_or_the_vocabulary() {
    let config = config_template();
    let expected: BTreeMap<String, String> =
        [("eos_token", "<|im_end|>"), ("pad_token", "<|endoftext|>")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(config.special_tokens(), &expected);
    let gguf = gguf_template();
    assert_eq!(gguf.special_tokens()["bos_token"], "<|endoftext|>");
    assert_eq!(gguf.special_tokens()["eos_token"], "<|im_end|>");
    let probe = ChatTemplate::new("{{ eos_token }}|{{ bos_token }}", TemplateSource::Inline)
        .unwrap()
        .with_special_tokens(expected);
    assert_eq!(
        probe.render(&[], RenderOptions::default()).unwrap(),
        "<|im_end|>|"
    );
}

#[test]
fn gguf_without_template_says_what_to_do() {
    let gguf = GgufFile::open(fixture("models/tiny-q8_0.gguf")).expect("fixture");
    let err = ChatTemplate::from_gguf(&gguf).unwrap_err();
    assert!(matches!(err, ChatError::NotInGguf { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer_config.json"), "{err}");
}

#[test]
fn tokenizer_config_problems_are_typed_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let cases: Vec<(&str, PathBuf, Expect<ChatError>)> = vec![
        ("missing file", dir.path().join("nope.json"), |e| {
            matches!(e, ChatError::Io { .. })
        }),
        ("not json", write("bad.json", "{ chat_template"), |e| {
            matches!(e, ChatError::Json { .. })
        }),
        (
            "no template",
            write("none.json", r#"{"eos_token": "x"}"#),
            |e| matches!(e, ChatError::NotInConfig { .. }),
        ),
        (
            "named templates without default",
            write(
                "named.json",
                r#"{"chat_template": [{"name": "tool_use", "template": "x"}]}"#,
            ),
            |e| matches!(e, ChatError::NotInConfig { .. }),
        ),
        (
            "syntax error",
            write(
                "syntax.json",
                r#"{"chat_template": "{% for m in messages %}{{ m }"}"#,
            ),
            |e| matches!(e, ChatError::Syntax { .. }),
        ),
    ];
    for (name, path, expected) in cases {
        let err = ChatTemplate::from_tokenizer_config(&path).expect_err(name);
        assert!(expected(&err), "{name}: {err:?}");
    }
    let named = write(
        "named_ok.json",
        r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D{{ messages|length }}"}]}"#,
    );
    let template = ChatTemplate::from_tokenizer_config(&named).unwrap();
    let rendered = template.render(&[Message::user("x")], RenderOptions::default());
    assert_eq!(rendered.unwrap(), "D1");
}
