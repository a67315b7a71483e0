//! `qwen`: run Qwen3 GGUF models on luminal, streaming text and timing every decode step.

use std::process::ExitCode;

use clap::Parser;

use qwen::cli::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    match qwen::run::run(&args) {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
