//! `qwen`: run Qwen3 GGUF models on luminal, streaming text and timing every decode step.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};
use clap::Parser;

use qwen::cli::Args;
use qwen::config::Qwen3Config;
use qwen::engine::{Engine, EngineOptions, Mode};
use qwen::generate::{generate, GenerateOptions, StopConditions};
use qwen::gguf::GgufFile;
use qwen::inspect;
use qwen::report::{RunInfo, RunReport};
use qwen::sampler::{Sampler, SamplerConfig};

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    if args.inspect {
        return Ok(inspect::run(
            &args.model,
            args.json,
            &mut std::io::stdout().lock(),
        )?);
    }
    let test_time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let started = Instant::now();
    let file = GgufFile::open(&args.model)?;
    let config = Qwen3Config::from_gguf(&file)?;
    let tokenizer = load_tokenizer(args)?;
    let prompt_ids = prompt_ids(args, tokenizer.as_ref())?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;

    let max_context = args.ctx_size.map_or(config.context_length, |n| n as usize);
    let options = EngineOptions {
        mode: Mode::Standard,
        max_context,
        profile: args.kernel_timing,
    };
    let mut engine = Engine::new(&file, &config, options)?;

    let stop = StopConditions {
        eos_ids: eos_ids(tokenizer.as_ref()),
        ignore_eos: args.ignore_eos,
        stop_strings: vec![],
    };
    let mut sampler = Sampler::new(SamplerConfig::default())?;
    let gen_options = GenerateOptions {
        max_new_tokens: args.gen_tokens as usize,
        stop: &stop,
        interrupt: None,
    };
    let decode_text = |ids: &[u32]| -> Result<String, String> {
        match &tokenizer {
            Some(t) => t.decode(ids, false).map_err(|e| e.to_string()),
            None => Ok(ids.iter().map(|i| format!("{i} ")).collect()),
        }
    };
    let json = args.json;
    let mut sink = |piece: &str| {
        if json {
            eprint!("{piece}");
        } else {
            print!("{piece}");
            let _ = std::io::stdout().flush();
        }
    };
    let generation = generate(
        &mut engine,
        &prompt_ids,
        &mut sampler,
        &gen_options,
        decode_text,
        &mut sink,
    )?;
    if json {
        eprintln!()
    } else {
        println!()
    }

    let info = RunInfo {
        model_filename: args.model.display().to_string(),
        model_size: file.file_size(),
        model_n_params: file.n_elements(),
        parallel: args.parallel,
        n_threads: 1,
        test_time,
        load_ms,
        compile_ms: engine.compile_time().as_secs_f64() * 1e3,
    };
    let report = RunReport::new(info, &generation);
    eprintln!("{}", report.summary());
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

fn load_tokenizer(args: &Args) -> Result<Option<tokenizers::Tokenizer>> {
    if args.token_ids.is_some() {
        return Ok(None);
    }
    let t = tokenizers::Tokenizer::from_file(&args.tokenizer)
        .map_err(|e| anyhow::anyhow!("cannot load tokenizer {}: {e}", args.tokenizer.display()))?;
    Ok(Some(t))
}

fn prompt_ids(args: &Args, tokenizer: Option<&tokenizers::Tokenizer>) -> Result<Vec<u32>> {
    if let Some(ids) = &args.token_ids {
        return Ok(ids.clone());
    }
    let text = match args.prompt.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the prompt from stdin")?;
            s
        }
        Some(p) => p.to_string(),
        None => bail!("no prompt: give -p TEXT (or -p - to read standard input)"),
    };
    if text.is_empty() {
        bail!("the prompt is empty: give -p TEXT");
    }
    let Some(t) = tokenizer else {
        bail!("no tokenizer")
    };
    let enc = t
        .encode(text, false)
        .map_err(|e| anyhow::anyhow!("cannot tokenize the prompt: {e}"))?;
    Ok(enc.get_ids().to_vec())
}

fn eos_ids(tokenizer: Option<&tokenizers::Tokenizer>) -> Vec<u32> {
    let Some(t) = tokenizer else { return vec![] };
    ["<|im_end|>", "<|endoftext|>"]
        .iter()
        .filter_map(|s| t.token_to_id(s))
        .collect()
}
