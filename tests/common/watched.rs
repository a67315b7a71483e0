//! A running `qwen` child the test acts on while it runs (SIGINT, a truncated model file): its
//! stdout and stderr drained on threads, a signal when either has printed, and an end bounded in
//! time so a test that would hang fails instead.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Which stream wrote (sent on every read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

pub struct Watched {
    child: Child,
    /// Kept open (and empty) so that a run reading standard input waits on it.
    stdin: Option<std::process::ChildStdin>,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<u8>>,
    wrote: mpsc::Receiver<Stream>,
}

/// Spawns `cmd` with every stream piped.
pub fn spawn(cmd: &mut Command) -> Watched {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let (tx, wrote) = mpsc::channel();
    let stdout = drain(
        child.stdout.take().expect("piped"),
        Stream::Stdout,
        tx.clone(),
    );
    let stderr = drain(child.stderr.take().expect("piped"), Stream::Stderr, tx);
    Watched {
        stdin: child.stdin.take(),
        child,
        stdout,
        stderr,
        wrote,
    }
}

fn drain(
    mut pipe: impl Read + Send + 'static,
    stream: Stream,
    wrote: mpsc::Sender<Stream>,
) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            let _ = wrote.send(stream);
        }
        all
    })
}

impl Watched {
    /// Waits until one of `streams` has written something; panics after `limit`.
    pub fn wait_for_output(&self, streams: &[Stream], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.wrote.recv_timeout(left) {
                Ok(s) if streams.contains(&s) => return,
                Ok(_) => {}
                Err(_) => panic!("no output on {streams:?} within {limit:?}"),
            }
        }
    }

    /// Sends SIGINT, as a Ctrl-C in a terminal does.
    pub fn interrupt(&self) {
        let sent = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -INT failed");
    }

    /// Waits for the exit and collects the output; kills the child and panics (naming `after`,
    /// what the test did) if it runs on for more than `limit`.
    pub fn finish_within(mut self, limit: Duration, after: &str) -> Output {
        let status = self.exit_within(limit, after);
        drop(self.stdin.take());
        Output {
            status,
            stdout: self.stdout.join().expect("stdout drained"),
            stderr: self.stderr.join().expect("stderr drained"),
        }
    }

    fn exit_within(&mut self, limit: Duration, after: &str) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be waited on") {
                return status;
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!("still running {limit:?} after {after}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
