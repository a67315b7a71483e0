//! Speculative decoding leaves the model exactly where plain decoding leaves it: after a greedy
//! `--mtp` generation on a block that is accepted, cut short and rejected in turn, the trunk
//! holds the same positions, and one more step gives the same logits as after a plain
//! generation of the same tokens, so no rejected draft leaked into the KV cache or the
//! recurrent states. Both modes.

use qwen::backend::cpu_engine::Engine;
use qwen::backend::{EngineOptions, Logits, Runner};
use qwen::generate::{generate, GenerateOptions, Generation, StopConditions};
use qwen::gguf::GgufFile;
use qwen::model::config::Qwen3Config;
use qwen::sampler::{Sampler, SamplerConfig};
use qwen::settings::{BackendChoice, Mode};
use qwen::speculative::{self, setup, SpeculativeOptions};
use qwen::text::tokenizer::text_decoder;

use crate::common::mtp_model::{with_mtp, MtpKind};
use crate::common::{engine_options, fixture};

const PROMPT: [u32; 12] = [1, 17, 42, 300, 5, 99, 256, 7, 8, 128, 64, 3];
const TOKENS: usize = 40;

fn options(mode: Mode) -> EngineOptions {
    engine_options(mode, 128)
}

fn greedy() -> Sampler {
    Sampler::new(SamplerConfig::default()).unwrap()
}

fn run_options(stop: &StopConditions, max_new_tokens: usize) -> GenerateOptions<'_> {
    GenerateOptions {
        max_new_tokens,
        stop,
        interrupt: None,
        output_closed: None,
        trace: None,
    }
}

fn check(mode: Mode) {
    let src = GgufFile::open(fixture("models/tiny-qwen35-f32.gguf")).unwrap();
    let bytes = with_mtp(&src, MtpKind::Agreeing { trunk_scale: 0.1 });
    let file = GgufFile::from_bytes(bytes).unwrap();
    let config = Qwen3Config::from_gguf(&file).unwrap();
    let stop = StopConditions {
        ignore_eos: true,
        ..Default::default()
    };
    let mut sink = |_: &str| {};

    let (mut spec_engine, mut drafter) =
        setup::open(BackendChoice::Cpu, &file, &config, options(mode)).unwrap();
    let spec: Generation = speculative::generate(
        spec_engine.as_mut(),
        &mut drafter,
        &PROMPT,
        &mut greedy(),
        // Plain generation runs every token it keeps, the speculative loop all but the last:
        // one token more brings both to the same position.
        &run_options(&stop, TOKENS + 1),
        SpeculativeOptions { draft_max: 4 },
        text_decoder(None),
        &mut sink,
    )
    .unwrap();
    let stats = spec.speculative.clone().unwrap();
    assert!(stats.accepted > 0 && stats.rejected > 0, "{stats:?}");

    let mut plain_engine = Engine::new(&file, &config, options(mode)).unwrap();
    let plain = generate(
        &mut plain_engine,
        &PROMPT,
        &mut greedy(),
        &run_options(&stop, TOKENS),
        text_decoder(None),
        &mut sink,
    )
    .unwrap();
    assert_eq!(
        spec.generated_ids[..TOKENS],
        plain.generated_ids,
        "{mode:?}"
    );
    assert_eq!(spec.generated_ids.len(), TOKENS + 1);
    assert_eq!(spec_engine.position(), PROMPT.len() + TOKENS, "{mode:?}");
    assert_eq!(plain_engine.position(), PROMPT.len() + TOKENS, "{mode:?}");

    let last = [spec.generated_ids[TOKENS]];
    let a = spec_engine.forward(&last, Logits::Last).unwrap();
    let b = plain_engine.forward(&last, Logits::Last).unwrap();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst < 1e-4,
        "{mode:?}: logits after the run differ by {worst}"
    );
}

#[test]
fn speculative_decoding_leaves_no_trace_standard() {
    check(Mode::Standard);
}

#[test]
fn speculative_decoding_leaves_no_trace_parallel() {
    check(Mode::Parallel { threads: 2 });
}
