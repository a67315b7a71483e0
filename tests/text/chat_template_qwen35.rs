//! Qwen3.5's chat template (`fixtures/chat/qwen35/chat_template.jinja`, the template published with
//! Qwen3.5; llama.cpp keeps the same text as models/templates/Qwen3.5-4B.jinja) renders exactly
//! what Python's jinja2 renders in transformers' environment (`fixtures/chat/qwen35/renders.json`,
//! written by tools/chat_template_refs_qwen35.py): thinking on and off, tools, tool calls and
//! results, reasoning_content, content parts, and the template's own errors.

use crate::common::fixture;
use qwen::text::chat::{
    Chat, ChatError, ChatTemplate, Message, RenderOptions, Role, TemplateSource,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn renders() -> Value {
    let text = std::fs::read_to_string(fixture("chat/qwen35/renders.json")).expect("renders.json");
    serde_json::from_str(&text).expect("valid json")
}

fn template() -> ChatTemplate {
    let path = fixture("chat/qwen35/chat_template.jinja");
    let text = std::fs::read_to_string(&path).expect("template");
    let specials = [("eos_token", "<|im_end|>"), ("pad_token", "<|endoftext|>")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ChatTemplate::new(text, TemplateSource::File(path))
        .expect("compiles")
        .with_special_tokens(specials)
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

fn role(name: &str) -> Role {
    match name {
        "system" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn the_fixture_is_the_template_the_references_were_made_from() {
    let digest = format!("{:x}", Sha256::digest(template().text()));
    assert_eq!(digest, renders()["template_sha256"].as_str().unwrap());
}

#[test]
fn qwen35_template_renders_as_transformers_does() {
    let refs = renders();
    let cases = refs["cases"].as_array().unwrap();
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let template = template();
    for case in cases {
        let name = format!(
            "{} (generation prompt {}, enable_thinking {})",
            case["name"].as_str().unwrap(),
            case["add_generation_prompt"],
            case["enable_thinking"]
        );
        check(&name, template.render_context(&case["context"]), case);
    }
}

#[test]
fn plain_conversations_render_the_same_through_the_chat_api() {
    // What `--chat` does: role and content strings, the generation prompt, `--no-think`.
    let template = template();
    for case in renders()["cases"].as_array().unwrap() {
        if !case["plain"].as_bool().unwrap() {
            continue;
        }
        let messages: Vec<Message> = case["context"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                Message::new(
                    role(m["role"].as_str().unwrap()),
                    m["content"].as_str().unwrap(),
                )
            })
            .collect();
        let options = RenderOptions {
            add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap(),
            enable_thinking: case["enable_thinking"].as_bool(),
        };
        check(
            case["name"].as_str().unwrap(),
            template.render(&messages, options),
            case,
        );
    }
}

#[test]
fn thinking_is_on_by_default_and_no_think_closes_an_empty_block() {
    let turns = [Message::user("2+2?")];
    let thinking = Chat::new(template(), Some("Be brief.".into()), None);
    let prompt = thinking.render(&turns).unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n\
         <|im_start|>assistant\n<think>\n"
    );
    let no_think = Chat::new(template(), None, Some(false));
    let prompt = no_think.render(&turns).unwrap();
    assert!(
        prompt.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        "{prompt}"
    );
}
