//! Progress of long phases: drawn on stderr when it is a terminal (a pseudo-terminal here),
//! never into a pipe and never beside `--json`.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Output, Stdio};

use crate::common::cli::*;

/// A run long enough to search kernels: `--parallel` with the plan cache off, so that every
/// matrix job is searched whatever an earlier run cached.
fn searched_run(extra: &[&str]) -> std::process::Command {
    let model = path(TINY_MODEL);
    let mut cmd = qwen();
    cmd.args(["-m", &model, "--parallel", "--threads", "2"])
        .args(["--token-ids", "1,2,3", "-t", "4"])
        .args(extra)
        .env("QWEN_PLAN_CACHE", "off")
        .env_remove("QWEN_PLAN_SEARCH");
    cmd
}

/// A pseudo-terminal: (the side the program writes to, the side this test reads).
fn pty() -> (OwnedFd, OwnedFd) {
    let (mut controller, mut terminal) = (-1, -1);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two file descriptors into the two ints given; no name buffer, no
    // terminal settings; the size is read only.
    let rc = unsafe {
        libc::openpty(
            &mut controller,
            &mut terminal,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned by nobody else.
    unsafe {
        (
            OwnedFd::from_raw_fd(terminal),
            OwnedFd::from_raw_fd(controller),
        )
    }
}

/// Runs `cmd` with stderr on a pseudo-terminal: its exit, stdout, and what the terminal showed.
fn on_a_terminal(mut cmd: std::process::Command) -> (Output, String) {
    let (terminal, controller) = pty();
    cmd.stdout(Stdio::piped()).stderr(Stdio::from(terminal));
    let child = cmd.spawn().expect("the binary runs");
    // The only other handle on the terminal side was in `cmd`: once the program ends, reads
    // of the controller side end too.
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut file = std::fs::File::from(controller);
        let mut shown = Vec::new();
        let mut buf = [0u8; 4096];
        // Linux answers EIO once no one holds the terminal side.
        while let Ok(n @ 1..) = file.read(&mut buf) {
            shown.extend_from_slice(&buf[..n]);
        }
        shown
    });
    let out = child.wait_with_output().expect("the binary ends");
    let shown = reader.join().expect("the reader ends");
    (out, String::from_utf8_lossy(&shown).to_string())
}

/// What a progress line holds, any of which must never reach a pipe or a JSON run.
const PROGRESS_MARKS: [&str; 5] = [
    "loading the model",
    "compiling",
    "kernel search",
    "matrix jobs",
    "\x1b[",
];

#[test]
fn long_phases_show_progress_on_a_terminal() {
    let (out, shown) = on_a_terminal(searched_run(&[]));
    assert_ok(&out);
    // Compiling and its search last long enough to be drawn (loading this tiny file may end
    // before the line's first tick), the search with its count.
    for mark in ["compiling", "kernel search [", " matrix jobs"] {
        assert!(shown.contains(mark), "{mark:?} not shown: {shown:?}");
    }
    let counted = shown
        .split("kernel search [")
        .skip(1)
        .filter_map(|s| s.split_once("] ")?.1.split_once(" matrix jobs"))
        .map(|(count, _)| count.to_string())
        .collect::<Vec<_>>();
    let last = counted.last().expect("a count is shown");
    let (done, total) = last.split_once('/').expect("done/total");
    assert!(total.parse::<u32>().unwrap() > 0, "{last}");
    assert!(
        done.parse::<u32>().unwrap() <= total.parse().unwrap(),
        "{last}"
    );
    // The line is cleared before the report: the report's lines are whole.
    let report = shown.rsplit("\x1b[2K").next().unwrap_or("");
    assert!(report.starts_with("load "), "{report:?}");
    // Stdout is a pipe: only the generated ids.
    assert_eq!(
        stdout(&out).split_whitespace().count(),
        4,
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains('\x1b'));
}

#[test]
fn nothing_is_drawn_into_a_pipe() {
    let out = searched_run(&[]).output().expect("the binary runs");
    assert_ok(&out);
    let err = stderr(&out);
    assert!(err.starts_with("load "), "{err:?}");
    assert!(!err.contains('\r'), "{err:?}");
    for mark in PROGRESS_MARKS {
        assert!(!err.contains(mark), "{mark:?} in a pipe: {err:?}");
    }
}

#[test]
fn nothing_is_drawn_beside_json_even_on_a_terminal() {
    let (out, shown) = on_a_terminal(searched_run(&["--json"]));
    let report = json(&out);
    assert_eq!(ids(&report["generated_token_ids"]).len(), 4);
    for mark in PROGRESS_MARKS {
        assert!(!shown.contains(mark), "{mark:?} with --json: {shown:?}");
    }
}
