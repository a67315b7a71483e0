//! Printing to stdout and stderr that never panics: `println!` panics when stdout is a closed
//! pipe (`qwen ... | head`) and `eprintln!` when stderr is. These drop the text instead, and a
//! closed stdout is remembered, so that generation whose text nobody reads anymore stops at its
//! next step, as other command-line tools end when their reader goes.

use std::fmt::Arguments;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::progress;

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Set once a write to stdout found its reader gone.
pub fn stdout_closed() -> &'static AtomicBool {
    &STDOUT_CLOSED
}

/// Writes `text` to stdout and flushes; a closed pipe is remembered, any failure dropped. A
/// progress line on the terminal is cleared first and drawn again after.
pub fn out_str(text: &str) {
    let written = progress::suspend(|| {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|_| out.flush())
    });
    if written.is_err_and(|e| e.kind() == ErrorKind::BrokenPipe) {
        STDOUT_CLOSED.store(true, Ordering::SeqCst);
    }
}

/// Writes `text` to stderr (unbuffered); a failure is dropped. A progress line is cleared first
/// and drawn again after.
pub fn err_str(text: &str) {
    progress::suspend(|| {
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    });
}

/// `print!`/`println!` for the macros.
pub fn out_fmt(args: Arguments<'_>, newline: bool) {
    let mut text = args.to_string();
    if newline {
        text.push('\n');
    }
    out_str(&text);
}

/// `eprint!`/`eprintln!` for the macros; one write, so that lines of two threads do not mix.
pub fn err_fmt(args: Arguments<'_>, newline: bool) {
    let mut text = args.to_string();
    if newline {
        text.push('\n');
    }
    err_str(&text);
}

/// `println!` that never panics (see the module).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::text::console::out_fmt(format_args!($($arg)*), true)
    };
}

/// `eprintln!` that never panics (see the module).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::text::console::err_fmt(format_args!($($arg)*), true)
    };
}

/// `eprint!` that never panics (see the module).
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::text::console::err_fmt(format_args!($($arg)*), false)
    };
}
