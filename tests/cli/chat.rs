//! Through the binary: where the tokenizer and chat template come from, `--chat`, `--system`,
//! `--no-think`, how thinking is shown, `--interactive`, stop conditions and prompt sources.

use crate::common::cli::*;
use qwen::text::chat::{ChatTemplate, Message, RenderOptions};
use serde_json::Value;

const PROMPT: &str = "The quick brown fox jumps over the lazy dog.";

fn reference() -> Value {
    let text = std::fs::read_to_string(path("refs/tiny-qwen3vocab-q8_0.deq.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Ids of `text` by the `tokenizers` crate on Qwen3's tokenizer.json, special tokens matched.
fn hf_ids(text: &str) -> Vec<u32> {
    let tok = tokenizers::Tokenizer::from_file(path(TOKENIZER)).unwrap();
    tok.encode(text, false).unwrap().get_ids().to_vec()
}

/// `args` on the full-vocabulary model with the fixture tokenizer, as JSON.
fn vocab_json(args: &[&str]) -> Value {
    let (model, tok) = (path(VOCAB_MODEL), path(TOKENIZER));
    let mut all = vec!["-m", &model, "--tokenizer", &tok, "--json"];
    all.extend_from_slice(args);
    json(&run(&all))
}

#[test]
fn the_embedded_tokenizer_gives_the_reference_ids() {
    // Run where there is no setup/tokenizer.json, without --tokenizer.
    let dir = tempfile::tempdir().unwrap();
    let model = path(VOCAB_MODEL);
    let out = qwen()
        .current_dir(dir.path())
        .args([
            "-m",
            &model,
            "-p",
            PROMPT,
            "-t",
            "6",
            "--ignore-eos",
            "--json",
        ])
        .output()
        .unwrap();
    let r = json(&out);
    let reference = reference();
    assert_eq!(ids(&r["prompt_token_ids"]), ids(&reference["prompt_ids"]));
    assert_eq!(
        ids(&r["generated_token_ids"]),
        ids(&reference["greedy_ids"])[..6]
    );
    // The same with the tokenizer.json given.
    let r2 = vocab_json(&["-p", PROMPT, "-t", "6", "--ignore-eos"]);
    assert_eq!(r2["prompt_token_ids"], r["prompt_token_ids"]);
    assert_eq!(r2["text"], r["text"]);
}

#[test]
fn the_default_tokenizer_path_is_setup_tokenizer_json() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("setup")).unwrap();
    std::fs::copy(path(TOKENIZER), dir.path().join("setup/tokenizer.json")).unwrap();
    // The Qwen3 tokenizer does not fit the 512-token model: the error shows it was picked up.
    let model = path(TINY_MODEL);
    let out = qwen()
        .current_dir(dir.path())
        .args(["-m", &model, "-p", "hi"])
        .output()
        .unwrap();
    assert_one_line_error(&out, &["setup/tokenizer.json", "ids up to 151668", "512"]);
    // Without it the model's own is looked for, and this one has none.
    std::fs::remove_file(dir.path().join("setup/tokenizer.json")).unwrap();
    let out = qwen()
        .current_dir(dir.path())
        .args(["-m", &model, "-p", "hi"])
        .output()
        .unwrap();
    assert_one_line_error(&out, &["embeds no tokenizer", "--tokenizer", "--token-ids"]);
}

#[test]
fn a_tokenizer_that_is_given_must_exist_and_fit() {
    let model = path(VOCAB_MODEL);
    let out = run(&[
        "-m",
        &model,
        "--tokenizer",
        "/nonexistent/tokenizer.json",
        "-p",
        "hi",
    ]);
    assert_one_line_error(&out, &["/nonexistent/tokenizer.json"]);
    let (tiny, tok) = (path(TINY_MODEL), path(TOKENIZER));
    let out = run(&["-m", &tiny, "--tokenizer", &tok, "-p", "hi"]);
    assert_one_line_error(&out, &["tokenizer.json", "151668", "512 token embeddings"]);
    let out = run(&["-m", &tiny, "--tokenizer", &tok, "--token-ids", "1,2"]);
    assert_one_line_error(&out, &["512 token embeddings"]);
}

#[test]
fn chat_wraps_the_prompt_in_the_template() {
    let r = vocab_json(&["--chat", "-p", "hi", "-t", "2"]);
    let expected = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(ids(&r["prompt_token_ids"]), hf_ids(expected));

    let r = vocab_json(&["--system", "Be brief.", "--no-think", "-p", "hi", "-t", "2"]);
    let expected = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n\
                    <|im_start|>assistant\n<think>\n\n</think>\n\n";
    assert_eq!(ids(&r["prompt_token_ids"]), hf_ids(expected));
}

#[test]
fn without_a_template_in_the_model_the_tokenizer_config_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(path(VOCAB_MODEL)).unwrap();
    patch(
        &mut bytes,
        b"tokenizer.chat_template",
        b"tokenizer.chat_templatX",
    );
    let model = write(dir.path(), "no-template.gguf", &bytes)
        .display()
        .to_string();
    let tok = write(
        dir.path(),
        "tokenizer.json",
        &std::fs::read(path(TOKENIZER)).unwrap(),
    );
    let tok = tok.display().to_string();

    let out = run(&["-m", &model, "--tokenizer", &tok, "--chat", "-p", "hi"]);
    assert_one_line_error(&out, &["no chat template", "tokenizer_config.json"]);

    std::fs::copy(
        path("tokenizer/tokenizer_config.json"),
        dir.path().join("tokenizer_config.json"),
    )
    .unwrap();
    let out = run(&[
        "-m",
        &model,
        "--tokenizer",
        &tok,
        "--chat",
        "-p",
        "hi",
        "-t",
        "2",
        "--json",
    ]);
    let expected = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(ids(&json(&out)["prompt_token_ids"]), hf_ids(expected));
}

/// Generated text that is all reasoning: the prompt opens the think block.
fn think_run(env: &[(&str, &str)], extra: &[&str]) -> (String, String) {
    let (model, tok) = (path(VOCAB_MODEL), path(TOKENIZER));
    let mut args = vec![
        "-m",
        &model,
        "--tokenizer",
        &tok,
        "-p",
        "<think>",
        "-t",
        "8",
    ];
    args.extend_from_slice(extra);
    args.push("--ignore-eos");
    let out = qwen()
        .args(&args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert_ok(&out);
    let mut json_args = args.clone();
    json_args.push("--json");
    let text = json(&run(&json_args))["text"].as_str().unwrap().to_string();
    (stdout(&out), text)
}

#[test]
fn thinking_is_dimmed_on_a_terminal_plain_in_a_pipe_hidden_on_request() {
    let (plain, text) = think_run(&[], &[]);
    assert!(!text.is_empty());
    assert_eq!(plain, format!("{text}\n"), "plain when not a terminal");

    let (dim, _) = think_run(&[("CLICOLOR_FORCE", "1")], &[]);
    assert!(dim.starts_with("\x1b[2m"), "{dim:?}");
    assert_eq!(dim.replace("\x1b[2m", "").replace("\x1b[0m", ""), plain);

    let (no_color, _) = think_run(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")], &[]);
    assert_eq!(no_color, plain);

    let (hidden, _) = think_run(&[], &["--hide-think"]);
    let answer = text
        .rsplit_once("</think>")
        .map_or("", |(_, after)| after.trim_start_matches(['\n', '\r']));
    assert_eq!(hidden, format!("{answer}\n"));
}

#[test]
fn end_of_sequence_ids_come_from_the_metadata() {
    // Make the third greedy token the model's eos token: generation stops before it.
    let greedy = ids(&reference()["greedy_ids"]);
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(path(VOCAB_MODEL)).unwrap();
    let at = u32_value_at(&bytes, "tokenizer.ggml.eos_token_id");
    bytes[at..at + 4].copy_from_slice(&greedy[2].to_le_bytes());
    let model = write(dir.path(), "eos.gguf", &bytes).display().to_string();

    let out = qwen()
        .current_dir(dir.path())
        .args(["-m", &model, "-p", PROMPT, "-t", "10", "--json"])
        .output()
        .unwrap();
    let r = json(&out);
    assert_eq!(ids(&r["generated_token_ids"]), greedy[..2]);
    assert_eq!(r["stop_reason"], "eos");

    let out = qwen()
        .current_dir(dir.path())
        .args([
            "-m",
            &model,
            "-p",
            PROMPT,
            "-t",
            "10",
            "--json",
            "--ignore-eos",
        ])
        .output()
        .unwrap();
    assert_eq!(ids(&json(&out)["generated_token_ids"]), greedy[..10]);
}

#[test]
fn stop_strings_end_the_text_before_them() {
    let r = vocab_json(&["-p", PROMPT, "-t", "12", "--ignore-eos"]);
    let text = r["text"].as_str().unwrap().to_string();
    // A stop string from the middle of the text: from its 5th character, 3 characters long.
    let chars: Vec<char> = text.chars().collect();
    let stop: String = chars[5..8].iter().collect();
    let cut = &text[..text.find(&stop).unwrap()];
    let r = vocab_json(&[
        "-p",
        PROMPT,
        "-t",
        "12",
        "--stop",
        "never-there",
        "--stop",
        &stop,
    ]);
    assert_eq!(r["text"].as_str().unwrap(), cut);
    assert_eq!(r["stop_reason"], "stop_string");
}

#[test]
fn the_prompt_can_come_from_a_file_or_standard_input() {
    let (model, tok) = (path(VOCAB_MODEL), path(TOKENIZER));
    let expected = ids(&reference()["prompt_ids"]);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "prompt.txt", PROMPT.as_bytes());
    let file = file.display().to_string();
    let base = ["-m", &model, "--tokenizer", &tok, "-t", "1", "--json"];

    let out = run(&[&base[..], &["--prompt-file", &file]].concat());
    assert_eq!(ids(&json(&out)["prompt_token_ids"]), expected);
    let out = run_with_stdin(&[&base[..], &["-p", "-"]].concat(), PROMPT);
    assert_eq!(ids(&json(&out)["prompt_token_ids"]), expected);
}

#[test]
fn help_states_every_sampling_default() {
    let out = run(&["--help"]);
    assert_ok(&out);
    let help = stdout(&out);
    for (flag, default) in [
        ("--temperature", "(default: 0)"),
        ("--top-k", "(default: 0)"),
        ("--top-p", "(default: 1 = off)"),
        ("--min-p", "(default: 0 = off)"),
        ("--repeat-penalty", "(default: 1)"),
        ("--repeat-last-n", "(default: 64)"),
        ("--seed", "(default: from the clock"),
        ("--gen-tokens", "(default: 256)"),
        ("--ctx-size", "(default: the model's context"),
    ] {
        // The flag's own entry: from its line to the next flag's.
        let section = help
            .split(&format!("{flag} <"))
            .nth(1)
            .unwrap_or_else(|| panic!("{flag} missing"));
        let section = section.split("\n  -").next().unwrap();
        assert!(section.contains(default), "{flag}: {section}");
    }
}

fn render(messages: &[Message]) -> String {
    let template =
        ChatTemplate::from_tokenizer_config(path("tokenizer/tokenizer_config.json")).unwrap();
    let options = RenderOptions {
        add_generation_prompt: true,
        enable_thinking: None,
    };
    template.render(messages, options).unwrap()
}

#[test]
fn interactive_keeps_the_cache_and_runs_only_new_tokens() {
    for mode in [&[][..], &["--parallel", "--threads", "2"][..]] {
        interactive_turns(&path(VOCAB_MODEL), mode);
    }
}

#[test]
fn interactive_on_a_mixture_of_experts() {
    for mode in [&[][..], &["--parallel", "--threads", "2"][..]] {
        interactive_turns(&moe_vocab_model(), mode);
    }
}

#[test]
fn chat_on_a_mixture_of_experts() {
    let (model, tok) = (moe_vocab_model(), path(TOKENIZER));
    for mode in [&[][..], &["--parallel", "--threads", "2"][..]] {
        let args = [
            "-m",
            &model,
            "--tokenizer",
            &tok,
            "--json",
            "--chat",
            "-p",
            "hi",
        ];
        let r = json(&run(
            &[&args[..], &["-t", "3", "--ignore-eos"], mode].concat()
        ));
        let expected = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
        assert_eq!(ids(&r["prompt_token_ids"]), hf_ids(expected), "{mode:?}");
        assert_eq!(ids(&r["generated_token_ids"]).len(), 3, "{mode:?}");
    }
}

#[test]
fn the_written_mixture_of_experts_has_the_full_vocabulary_and_no_tokenizer() {
    let r = json(&run(&["-m", &moe_vocab_model(), "--inspect", "--json"]));
    assert_eq!(r["architecture"], "qwen3moe");
    let c = &r["config"];
    assert_eq!(
        (&c["vocab"], &c["tied_embeddings"]),
        (&151936.into(), &true.into())
    );
    assert_eq!((&c["experts"], &c["experts_used"]), (&8.into(), &2.into()));
    // The tests above pass --tokenizer: nothing is embedded for them to fall back on.
    assert_eq!(r["tokenizer_embedded"], false);
    assert_eq!(r["chat_template_embedded"], false);
}

/// A tiny mixture of experts (qwen3moe) with the full Qwen3 vocabulary and no tokenizer metadata,
/// written at test time: it runs with [`TOKENIZER`] and the chat template of the
/// tokenizer_config.json next to it.
fn moe_vocab_model() -> String {
    crate::common::synthetic::moe_qwen3vocab()
        .display()
        .to_string()
}

/// Two turns of `model` in `mode`: token counts per turn, and answers equal to fresh runs of the
/// same text.
fn interactive_turns(model: &str, mode: &[&str]) {
    let tok = path(TOKENIZER);
    // --stop "\n" keeps each answer on one line of stdout.
    let base = ["-m", model, "--tokenizer", &tok, "-t", "6", "--stop", "\n"];
    let base = [&base[..], mode].concat();
    let out = run_with_stdin(&[&base[..], &["-i"]].concat(), "Hello there\nWhat next?\n");
    assert_ok(&out);
    let err = stderr(&out);
    let answers: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(answers.len(), 2, "{mode:?}: {answers:?}");
    // Answers that say something, and differ with the conversation (else the comparison with
    // fresh runs below would hold for a model that ignored its context).
    assert!(
        answers.iter().all(|a| !a.is_empty()) && answers[0] != answers[1],
        "{mode:?}: {answers:?}"
    );
    let turns = turn_counts(&err);
    assert_eq!(turns.len(), 2, "{err}");

    let first = render(&[Message::user("Hello there")]);
    let first_ids = hf_ids(&first);
    assert_eq!(turns[0], (first_ids.len(), 0));
    let both = render(&[
        Message::user("Hello there"),
        Message::assistant(answers[0].clone()),
        Message::user("What next?"),
    ]);
    let (new, cached) = turns[1];
    assert_eq!(new + cached, hf_ids(&both).len(), "{err}");
    assert!(cached >= first_ids.len(), "the first turn is reused: {err}");

    // Each answer is what a fresh run of the whole conversation's text gives: the reused cache
    // holds what a full prompt pass would. (Greedy on well-separated logits: the prompt pass
    // and the decode steps sum in different orders, ~1e-6 apart.)
    for (text, answer) in [(&first, &answers[0]), (&both, &answers[1])] {
        let fresh = run(&[&base[..], &["-p", text]].concat());
        assert_ok(&fresh);
        assert_eq!(stdout(&fresh), format!("{answer}\n"), "{mode:?}");
    }
}

#[test]
fn interactive_ends_at_exit_and_takes_a_first_prompt() {
    let (model, tok) = (path(VOCAB_MODEL), path(TOKENIZER));
    let args = [
        "-m",
        &model,
        "--tokenizer",
        &tok,
        "-i",
        "-t",
        "3",
        "-p",
        "First",
    ];
    let out = run_with_stdin(&args, "Second\n/exit\nnever\n");
    assert_ok(&out);
    let turns = turn_counts(&stderr(&out));
    assert_eq!(turns.len(), 2, "{}", stderr(&out));
    assert_eq!(turns[0].0, hf_ids(&render(&[Message::user("First")])).len());

    let out = run_with_stdin(&["-m", &model, "--tokenizer", &tok, "-i", "-p", "-"], "x\n");
    assert_one_line_error(&out, &["-p -", "--interactive"]);
    let out = run(&["-m", &model, "-i", "--json"]);
    assert_one_line_error(&out, &["--json"]);
}
