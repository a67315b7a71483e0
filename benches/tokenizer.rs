//! How long loading a tokenizer takes: built from the GGUF metadata of the Qwen3-vocabulary fixture
//! (151,936 tokens, 151,387 merges) against tokenizer.json, and how fast each encodes.
//! Prints figures; checks nothing.
//!
//!   cargo bench --bench tokenizer
//!
//! Opening the GGUF (map and parse metadata, which reads the token strings) is timed separately
//! from building the tokenizer. Each figure is the median of a few runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use qwen::gguf::GgufFile;
use qwen::text::tokenizer::Tokenizer;

const RUNS: usize = 7;

#[path = "../tests/common/fixture_file.rs"]
mod fixture_file;
use fixture_file::fixture;

fn median<T>(mut f: impl FnMut() -> T) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gguf_path = fixture("models/tiny-qwen3vocab-q8_0.gguf");
    let json_path = fixture("tokenizer/tokenizer.json");
    let gguf = GgufFile::open(&gguf_path)?;
    let embedded = Tokenizer::from_gguf(&gguf)?;
    let json = Tokenizer::from_file(&json_path)?;

    let open = median(|| GgufFile::open(&gguf_path).map(|g| g.metadata().len()));
    let build = median(|| Tokenizer::from_gguf(&gguf).map(|t| t.vocab_size()));
    let load_json = median(|| Tokenizer::from_file(&json_path).map(|t| t.vocab_size()));
    println!(
        "GgufFile::open (metadata incl. vocabulary)  {:8.1} ms",
        ms(open)
    );
    println!(
        "Tokenizer::from_gguf                        {:8.1} ms",
        ms(build)
    );
    println!(
        "Tokenizer::from_file (tokenizer.json)       {:8.1} ms",
        ms(load_json)
    );

    let text = "The quick brown fox jumps over the lazy dog. 你好，世界！ fn main() { println!(\"hi\"); } "
        .repeat(100);
    for (name, tok) in [("gguf", &embedded), ("json", &json)] {
        let n = tok.encode(&text, true)?.len();
        let t = median(|| tok.encode(&text, true).map(|ids| ids.len()));
        println!(
            "encode {} bytes -> {n} tokens ({name})      {:8.2} ms",
            text.len(),
            ms(t)
        );
    }
    Ok(())
}
