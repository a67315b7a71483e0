//! Ctrl-C: the first press sets a process-wide flag that every long phase looks at (loading,
//! the kernel search, each op of a forward pass, each generation step, reading standard input),
//! so the run stops at the next such point with the output and report kept; a second exits at
//! once. And how a run ends.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};

static REQUESTED: AtomicBool = AtomicBool::new(false);

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

/// The flag a Ctrl-C sets.
pub fn flag() -> &'static AtomicBool {
    &REQUESTED
}

/// Whether a Ctrl-C came (and was not cleared since).
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Installs the handler; the flag it sets on Ctrl-C.
pub fn install() -> Result<&'static AtomicBool> {
    let installed = ctrlc::set_handler(|| {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    // Only one handler per process: a second engine in the same process (tests) reuses nothing.
    if let Err(e) = installed {
        if !matches!(e, ctrlc::Error::MultipleHandlers) {
            return Err(e).context("cannot install the Ctrl-C handler");
        }
    }
    Ok(&REQUESTED)
}
