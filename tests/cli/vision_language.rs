//! Qwen3-VL's language models through the binary: text prompts give llama.cpp's greedy tokens
//! on the CPU (both paths) and on the reference GPU graph (dense), with a notice that images are
//! not read; `--inspect` shows the sections and says so too.

use crate::common::cli::{assert_ok, ids, json, run, stderr, stdout};
use crate::common::vision_language::{VisionLanguage, QWEN3VL, QWEN3VLMOE};
use crate::common::{fixture, V};
use serde_json::Value;

fn reference(vl: &VisionLanguage) -> Value {
    let text = std::fs::read_to_string(fixture(&format!("refs/{}", vl.reference()))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Greedy tokens of `vl` through the binary with `extra` arguments, and its stderr.
fn greedy(vl: &VisionLanguage, steps: usize, extra: &[&str]) -> (Vec<u32>, String) {
    let refs = reference(vl);
    let prompt: Vec<String> = ids(&refs["prompt_ids"])
        .iter()
        .map(u32::to_string)
        .collect();
    let (model, prompt, steps) = (vl.path(), prompt.join(","), steps.to_string());
    let mut args = vec![
        "-m",
        model.to_str().unwrap(),
        "--token-ids",
        &prompt,
        "-t",
        &steps,
        "--json",
    ];
    args.extend(extra);
    let out = run(&args);
    assert_ok(&out);
    (ids(&json(&out)["generated_token_ids"]), stderr(&out))
}

#[test]
fn text_prompts_give_llama_cpp_tokens_with_a_notice() {
    let parallel = ["--parallel", "--threads", "2"];
    for vl in [QWEN3VL, QWEN3VLMOE] {
        let expected = ids(&reference(&vl)["greedy_ids"]);
        let steps = 16;
        for mode in [&[][..], &parallel[..]] {
            let (tokens, err) = greedy(&vl, steps, mode);
            assert_eq!(tokens, expected[..steps], "{} {mode:?}", vl.arch);
            let notice = format!(
                "vision-language model ({}): text prompts only; images need its vision encoder, \
                 which this program does not run (1 deepstack layers unused)",
                vl.arch
            );
            assert!(err.contains(&notice), "{err}");
        }
    }
    let (tokens, _) = greedy(&QWEN3VL, 8, &["--backend", "reference"]);
    assert_eq!(tokens, ids(&reference(&QWEN3VL)["greedy_ids"])[..8]);
}

#[test]
fn image_encoder_tensors_are_counted_in_the_notice() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = QWEN3VL.gguf();
    let mut t = g.tensors[0].clone();
    t.name = "v.blk.0.attn_q.weight".to_string();
    g = g
        .tensor(t)
        .set("qwen3vl.n_deepstack_layers", Some(V::U32(0)));
    let path = dir.path().join("with-encoder.gguf");
    std::fs::write(&path, g.build()).unwrap();
    let out = run(&[
        "-m",
        path.to_str().unwrap(),
        "--token-ids",
        "1,2",
        "-t",
        "2",
    ]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("does not run (1 image-encoder tensors unused)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn inspect_shows_the_sections_and_says_text_only() {
    let model = QWEN3VL.path();
    let out = run(&["-m", model.to_str().unwrap(), "--inspect"]);
    assert_ok(&out);
    let text = stdout(&out);
    for expected in [
        "architecture:   qwen3vl",
        "  rope            first 16 of 16 dims of each head, sections [1, 1, 1, 5]",
        "  images          not supported: text only (1 deepstack layers, which add image \
         features, add nothing to text)",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    let out = run(&["-m", model.to_str().unwrap(), "--inspect", "--json"]);
    assert_ok(&out);
    let config = &json(&out)["config"];
    assert_eq!(config["arch"], "qwen3vl");
    assert_eq!(config["deepstack_layers"], 1);
    assert_eq!(config["rope_sections"], serde_json::json!([1, 1, 1, 5]));
}
