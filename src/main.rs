//! `qwen`: run Qwen3 GGUF models on luminal, streaming text and timing every decode step.
//!
//! The command line is parsed once into typed settings; `run` then loads the model, compiles
//! it, generates and reports.

use std::process::ExitCode;

use clap::Parser;

use qwen::cli::{self, Args, Subcommand};

fn main() -> ExitCode {
    let mut args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => return cli::report_parse_error(e),
    };
    if let Some(Subcommand::Compare(compare)) = args.command.take() {
        return match qwen::compare::run(&compare.settings()) {
            Ok(()) => ExitCode::SUCCESS,
            // Each of its messages names its cause: the chain of sources would repeat it.
            Err(e) => fail(anyhow::anyhow!("{e}")),
        };
    }
    match qwen::run::run(&args.settings()) {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => fail(e),
    }
}

/// Prints `e` as one line, even when a library's message spans several.
fn fail(e: anyhow::Error) -> ExitCode {
    let message = format!("{e:#}");
    let parts: Vec<&str> = message.lines().map(str::trim).collect();
    qwen::errln!("error: {}", parts.join(" "));
    ExitCode::FAILURE
}
