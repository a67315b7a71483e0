//! `qwen`: run Qwen3 GGUF models on luminal, streaming text and timing every decode step.
//!
//! The command line is parsed once into typed settings; `run` then loads the model, compiles
//! it, generates and reports.

use std::process::ExitCode;

use clap::Parser;

use qwen::cli::{self, Args};

fn main() -> ExitCode {
    let settings = match Args::try_parse() {
        Ok(args) => args.settings(),
        Err(e) => return cli::report_parse_error(e),
    };
    match qwen::run::run(&settings) {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            // One line, even when a library's message spans several.
            let message = format!("{e:#}");
            let parts: Vec<&str> = message.lines().map(str::trim).collect();
            qwen::errln!("error: {}", parts.join(" "));
            ExitCode::FAILURE
        }
    }
}
