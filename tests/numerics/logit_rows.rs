//! The last block's feed-forward runs only on the positions that get logits (as llama.cpp's
//! `inp_out_ids`): a prompt asked for its last position's logits must give the logits the same
//! prompt gives in that position when every position is computed.
//!
//! The two may differ in rounding only: standard mode sums a one-row product in the order
//! llama.cpp sums one row, and a batch in tinyBLAS's order, as llama.cpp does (whose last block,
//! too, runs on that row alone); parallel mode takes other kernels for one row than for a batch.
//! Measured: within 6e-6 in standard mode, equal in parallel mode, on logits reaching 18-27 in
//! magnitude. The bound is 1e-5 of the largest logit, and the argmax must agree.

use std::path::Path;

use qwen::backend::cpu_engine::Engine;
use qwen::backend::{Logits, Runner};
use qwen::gguf::GgufFile;
use qwen::model::config::Qwen3Config;
use qwen::settings::Mode;

use crate::common::{engine_options, fixture};

/// A dense Qwen3, a Qwen3-MoE and the hybrids (a gated-attention last block; the MoE ones
/// with a shared expert).
const MODELS: [&str; 5] = [
    "tiny-q8_0.gguf",
    "tiny-moe-q8_0.gguf",
    "tiny-qwen35-q8_0.gguf",
    "tiny-qwen35moe-q8_0.gguf",
    "tiny-qwen3next-q8_0.gguf",
];

/// Twenty tokens: enough for the parallel batch kernels (panels from 16 tokens, the experts'
/// from 8 of an expert's tokens).
const PROMPT: [u32; 20] = [
    3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26, 43, 38, 32, 79, 50, 28, 84, 19,
];

/// The prompt's last logits, asked as `want`.
fn last_logits(model: &Path, mode: Mode, want: Logits) -> Vec<f32> {
    let file = GgufFile::open(model).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    let config = Qwen3Config::from_gguf(&file).unwrap();
    let mut engine = Engine::new(&file, &config, engine_options(mode, 64)).unwrap();
    let logits = engine.forward(&PROMPT, want).unwrap();
    assert_eq!(logits.len() % config.vocab, 0);
    logits[logits.len() - config.vocab..].to_vec()
}

fn argmax(l: &[f32]) -> usize {
    (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap()
}

#[test]
fn the_last_row_alone_gives_the_logits_of_every_row() {
    for model in MODELS {
        let path = fixture(&format!("models/{model}"));
        for mode in [Mode::Standard, Mode::Parallel { threads: 2 }] {
            let alone = last_logits(&path, mode, Logits::Last);
            let every = last_logits(&path, mode, Logits::All);
            let what = format!("{model} {mode:?}");
            let spread = every.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let worst = alone
                .iter()
                .zip(&every)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst <= 1e-5 * spread, "{what}: {worst} of {spread}");
            assert_eq!(argmax(&alone), argmax(&every), "{what}");
        }
    }
}
