//! Ctrl-C: a handler that turns the first press into a flag (generation stops at its next step,
//! the output and report kept) and a second into an immediate exit, and how a run ends.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

/// How a run ended, for the exit code.
pub enum Outcome {
    Done,
    /// Ctrl-C: the output so far and the report were still printed.
    Interrupted,
}

impl Outcome {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Outcome::Done => ExitCode::SUCCESS,
            // 128 + SIGINT, as shells report it.
            Outcome::Interrupted => ExitCode::from(130),
        }
    }
}

/// Installs the handler; the flag it sets on Ctrl-C.
pub fn install() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    let installed = ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    // Only one handler per process: a second engine in the same process (tests) reuses nothing.
    if let Err(e) = installed {
        if !matches!(e, ctrlc::Error::MultipleHandlers) {
            return Err(e).context("cannot install the Ctrl-C handler");
        }
    }
    Ok(flag)
}
