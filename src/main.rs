//! `qwen`: run Qwen3 GGUF models on luminal.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Parser;

use qwen::inspect;

/// Run Qwen3 GGUF models on luminal.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// GGUF model file (default: setup/qwen3-4b.gguf).
    #[arg(
        short,
        long,
        default_value = "setup/qwen3-4b.gguf",
        hide_default_value = true
    )]
    model: PathBuf,

    /// Print what the model file holds (metadata, config, tensor types and shapes) and exit.
    /// Exits non-zero, after the report, when the file is not a valid Qwen3 model.
    #[arg(long)]
    inspect: bool,

    /// Print machine-readable JSON on stdout instead of text (with --inspect: one object).
    #[arg(long)]
    json: bool,
}

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
    bail!("nothing to do yet: only --inspect is implemented (try: qwen --model FILE --inspect)")
}
