//! A hybrid model (qwen35) in conversation: Qwen3.5's vocabulary and chat template from the file,
//! `--chat` and `--no-think` prompts as the template renders them and the tokenizer splits them,
//! and `-i` turns that run only their new tokens yet answer as fresh runs of the whole
//! conversation do (the DeltaNet layers' recurrent states are restored to where a turn's new
//! tokens start, since a recurrent state cannot be cut back the way a KV cache can).

use std::collections::BTreeMap;

use crate::common::cli::*;
use crate::common::fixture;
use crate::common::qwen35_vocab::{chat_template, tiny_model, tiny_moe_models};
use qwen::text::chat::{ChatTemplate, Message, RenderOptions, TemplateSource};
use qwen::text::tokenizer::Tokenizer;

const MODES: [&[&str]; 2] = [&[], &["--parallel", "--threads", "2"]];

fn model() -> String {
    tiny_model().display().to_string()
}

/// What Qwen3.5's template renders for `messages`, with a generation prompt.
fn render(messages: &[Message], enable_thinking: Option<bool>) -> String {
    let specials: BTreeMap<String, String> = [("eos_token", "<|im_end|>")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let template = ChatTemplate::new(chat_template(), TemplateSource::Inline)
        .unwrap()
        .with_special_tokens(specials);
    let options = RenderOptions {
        add_generation_prompt: true,
        enable_thinking,
    };
    template.render(messages, options).unwrap()
}

/// Ids of `text` by Qwen3.5's tokenizer.json, special tokens matched.
fn qwen35_ids(text: &str) -> Vec<u32> {
    let tok = Tokenizer::from_file(fixture("tokenizer/qwen35/tokenizer.json")).unwrap();
    tok.encode(text, true).unwrap()
}

#[test]
fn chat_renders_qwen35s_template_with_and_without_thinking() {
    let model = model();
    for mode in MODES {
        for (flags, thinking) in [(&[][..], None), (&["--no-think"][..], Some(false))] {
            let args = ["-m", &model, "--json", "--chat", "-p", "hi", "-t", "3"];
            let r = json(&run(&[&args[..], &["--ignore-eos"], flags, mode].concat()));
            let expected = render(&[Message::user("hi")], thinking);
            assert_eq!(
                ids(&r["prompt_token_ids"]),
                qwen35_ids(&expected),
                "{mode:?} {flags:?}: {expected:?}"
            );
            assert_eq!(ids(&r["generated_token_ids"]).len(), 3, "{mode:?}");
        }
    }
    // The two renders differ (the closed think block): the flag reached the template.
    let hi = [Message::user("hi")];
    assert_ne!(render(&hi, None), render(&hi, Some(false)));
}

#[test]
fn interactive_turns_reuse_the_state_and_answer_as_fresh_runs() {
    interactive_turns_answer_as_fresh_runs(&model());
}

/// The hybrid mixtures of experts (qwen35moe, qwen3next) chat as the dense one does: the
/// template's prompt, and `-i` turns that answer as fresh runs.
#[test]
fn hybrid_mixtures_of_experts_chat_and_keep_their_state_across_turns() {
    for model in tiny_moe_models() {
        let model = model.display().to_string();
        for mode in MODES {
            let args = ["-m", &model, "--json", "--chat", "-p", "hi", "-t", "3"];
            let r = json(&run(&[&args[..], &["--ignore-eos"], mode].concat()));
            let expected = render(&[Message::user("hi")], None);
            assert_eq!(
                ids(&r["prompt_token_ids"]),
                qwen35_ids(&expected),
                "{model}"
            );
        }
        interactive_turns_answer_as_fresh_runs(&model);
    }
}

/// `-i` on `model`, in both modes: each turn runs only its new tokens and answers as a fresh run
/// of the whole conversation's text does.
fn interactive_turns_answer_as_fresh_runs(model: &str) {
    for mode in MODES {
        // --stop "\n" keeps each answer on one line of stdout.
        let base = ["-m", model, "-t", "6", "--stop", "\n"];
        let base = [&base[..], mode].concat();
        let input = "Hello there\nWhat next?\nAnd then?\n";
        let out = run_with_stdin(&[&base[..], &["-i"]].concat(), input);
        assert_ok(&out);
        let err = stderr(&out);
        let answers: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        assert_eq!(answers.len(), 3, "{mode:?}: {answers:?}");
        let turns = turn_counts(&err);
        assert_eq!(turns.len(), 3, "{err}");

        let mut messages = Vec::new();
        let mut previous: Vec<u32> = Vec::new();
        for (i, question) in input.lines().enumerate() {
            messages.push(Message::user(question));
            let text = render(&messages, None);
            let ids = qwen35_ids(&text);
            let (new, cached) = turns[i];
            assert_eq!(new + cached, ids.len(), "turn {i}: {err}");
            // At least the tokens this prompt shares with the last one are not run again (the
            // template renders an earlier answer without the generation prompt's think tag).
            let shared = ids
                .iter()
                .zip(&previous)
                .take_while(|(a, b)| a == b)
                .count();
            assert!(
                cached >= shared && new > 0,
                "turn {i} reuses {shared}: {err}"
            );
            assert!(
                i == 0 || shared > 0,
                "turn {i}: the conversation is a prefix"
            );
            // A fresh run of the whole conversation's text answers the same.
            let fresh = run(&[&base[..], &["-p", &text]].concat());
            assert_ok(&fresh);
            assert_eq!(
                stdout(&fresh),
                format!("{}\n", answers[i]),
                "{mode:?} turn {i}"
            );
            messages.push(Message::assistant(answers[i].clone()));
            previous = ids;
        }
    }
}

#[test]
fn the_files_own_tokenizer_comes_before_the_setup_default() {
    // Qwen3's tokenizer as setup/tokenizer.json: its ids all fit the 248k vocabulary, so only the
    // order keeps it from being used on a Qwen3.5 file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("setup")).unwrap();
    let qwen3 = fixture(TOKENIZER);
    std::fs::copy(&qwen3, dir.path().join("setup/tokenizer.json")).unwrap();
    let text = "Hello, 世界! 12345 éa";
    let out = qwen()
        .current_dir(dir.path())
        .args(["-m", &model(), "-p", text, "-t", "1", "--json"])
        .output()
        .unwrap();
    assert_ok(&out);
    let prompt = ids(&json(&out)["prompt_token_ids"]);
    assert_eq!(prompt, qwen35_ids(text));
    let qwen3_ids = Tokenizer::from_file(&qwen3)
        .unwrap()
        .encode(text, true)
        .unwrap();
    assert_ne!(prompt, qwen3_ids, "the text tells the two tokenizers apart");
}
