//! Progress of the long phases of a run (loading, compiling, the kernel search, the prompt pass,
//! the read-bandwidth test, `--sweep` depths, `--repeat` runs) on one line of stderr, drawn only
//! where a person watches: when the run allows it (not with `--json`) and stderr is a terminal.
//! Anywhere else (pipes, files, tests, `--json`) nothing is written, so logs and reports stay
//! exactly as they were.
//!
//! Phases nest (the kernel search runs inside compiling, a prompt pass inside `--repeat` runs):
//! the line shows the innermost open phase and returns to the outer one when it ends. Text
//! printed while a phase is shown goes through [`suspend`], which clears the line first and
//! draws it again after, so the two never mix.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether the run lets progress be drawn (set once it knows its output settings).
static ALLOWED: AtomicBool = AtomicBool::new(false);

/// The line on stderr while any phase is open.
static LINE: Mutex<Option<Line>> = Mutex::new(None);

/// Ids of phases, so that each removes its own frame whatever order they end in.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// How often the spinner turns while a phase shows no other change.
const TICK: Duration = Duration::from_millis(120);

/// Lets phases draw from now on (when stderr is a terminal), or stops them; `false` is the
/// default, so that the library draws nothing unless a run asks.
pub fn allow(on: bool) {
    ALLOWED.store(on, Ordering::Relaxed);
}

fn shown() -> bool {
    ALLOWED.load(Ordering::Relaxed) && std::io::stderr().is_terminal()
}

/// Runs `f` (which writes to stdout or stderr) with the progress line cleared, and draws the
/// line again after.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let line = lock();
    match line.as_ref() {
        Some(line) => line.bar.suspend(f),
        None => f(),
    }
}

fn lock() -> MutexGuard<'static, Option<Line>> {
    // A panic while drawing leaves at worst a stale line: keep going.
    LINE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One open phase; it leaves the line when dropped.
#[must_use = "the phase ends when this is dropped"]
pub struct Phase {
    /// `None`: not shown (nothing to update).
    id: Option<u64>,
}

impl Phase {
    /// A phase of unknown length: its label beside a spinner.
    pub fn spinner(label: impl Into<String>) -> Phase {
        Phase::open(label.into(), None)
    }

    /// A phase of `total` steps named `unit` ("3/12 matrix jobs").
    pub fn steps(label: impl Into<String>, total: u64, unit: &'static str) -> Phase {
        Phase::open(label.into(), Some((total, unit)))
    }

    fn open(label: String, steps: Option<(u64, &'static str)>) -> Phase {
        if !shown() {
            return Phase { id: None };
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let frame = Frame {
            id,
            label,
            steps,
            done: 0,
        };
        let mut line = lock();
        match line.as_mut() {
            Some(line) => line.push(frame),
            None => *line = Some(Line::new(frame)),
        }
        Phase { id: Some(id) }
    }

    /// Sets how many steps are done.
    pub fn set(&self, done: u64) {
        let Some(id) = self.id else { return };
        if let Some(line) = lock().as_mut() {
            line.set(id, done);
        }
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        let mut line = lock();
        let empty = line.as_mut().is_some_and(|l| l.pop(id));
        if empty {
            if let Some(l) = line.take() {
                l.bar.finish_and_clear();
            }
        }
    }
}

/// What one phase shows.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    id: u64,
    label: String,
    /// Total steps and their unit; `None` for a spinner.
    steps: Option<(u64, &'static str)>,
    done: u64,
}

/// The bar on stderr and the phases open on it, innermost last.
struct Line {
    bar: ProgressBar,
    frames: Frames,
}

impl Line {
    /// The line showing `first`.
    fn new(first: Frame) -> Line {
        // Style and text before the first tick, so that nothing else is ever drawn.
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(style())
            .with_message(first.render());
        bar.enable_steady_tick(TICK);
        Line {
            bar,
            frames: Frames(vec![first]),
        }
    }

    fn push(&mut self, frame: Frame) {
        self.frames.push(frame);
        self.draw();
    }

    fn set(&mut self, id: u64, done: u64) {
        if self.frames.set(id, done) {
            self.draw();
        }
    }

    /// Removes phase `id`; true when none is left.
    fn pop(&mut self, id: u64) -> bool {
        self.frames.remove(id);
        match self.frames.top() {
            Some(_) => {
                self.draw();
                false
            }
            None => true,
        }
    }

    /// Shows the innermost phase: one message, so one draw.
    fn draw(&self) {
        if let Some(top) = self.frames.top() {
            self.bar.set_message(top.render());
        }
    }
}

/// A spinner, then the text [`Frame::render`] makes.
const TEMPLATE: &str = "{spinner} {msg}";

fn style() -> ProgressStyle {
    // The template parses (tested); a plain spinner would still do.
    ProgressStyle::with_template(TEMPLATE).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// Width of the bar of a phase of counted steps, in characters.
const BAR_WIDTH: u64 = 24;

impl Frame {
    /// The label, and for counted steps a bar, steps done of the total and their unit:
    /// `kernel search [=====>       ] 5/14 matrix jobs`.
    fn render(&self) -> String {
        let Some((total, unit)) = self.steps else {
            return self.label.clone();
        };
        let filled = (self.done.min(total) * BAR_WIDTH)
            .checked_div(total)
            .unwrap_or(0);
        let mut bar = "=".repeat(filled as usize);
        if filled < BAR_WIDTH {
            bar.push('>');
            bar.push_str(&" ".repeat((BAR_WIDTH - filled - 1) as usize));
        }
        format!("{} [{bar}] {}/{total} {unit}", self.label, self.done)
    }
}

/// The open phases, innermost last.
#[derive(Debug, Default)]
struct Frames(Vec<Frame>);

impl Frames {
    fn push(&mut self, frame: Frame) {
        self.0.push(frame);
    }

    /// Records `done` for phase `id` (a total that was an estimate grows to it); true when it
    /// is the phase shown.
    fn set(&mut self, id: u64, done: u64) -> bool {
        let top = self.0.last().map(|f| f.id);
        if let Some(f) = self.0.iter_mut().find(|f| f.id == id) {
            f.done = done;
            if let Some((total, unit)) = f.steps.filter(|(total, _)| done > *total) {
                f.steps = Some((done.max(total), unit));
            }
        }
        top == Some(id)
    }

    fn remove(&mut self, id: u64) {
        self.0.retain(|f| f.id != id);
    }

    fn top(&self) -> Option<&Frame> {
        self.0.last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: u64, label: &str, steps: Option<(u64, &'static str)>) -> Frame {
        Frame {
            id,
            label: label.to_string(),
            steps,
            done: 0,
        }
    }

    #[test]
    fn the_innermost_phase_is_shown_and_the_outer_one_returns() {
        let mut frames = Frames::default();
        frames.push(frame(1, "compiling", None));
        frames.push(frame(2, "kernel search", Some((12, "matrix jobs"))));
        assert!(frames.set(2, 5), "the shown phase");
        assert_eq!(frames.top().map(|f| (f.id, f.done)), Some((2, 5)));
        assert_eq!(
            frames.top().and_then(|f| f.steps),
            Some((12, "matrix jobs"))
        );
        assert!(frames.set(2, 14));
        assert_eq!(
            frames.top().and_then(|f| f.steps),
            Some((14, "matrix jobs")),
            "grown"
        );
        assert!(!frames.set(1, 1), "an outer phase is not shown");
        frames.remove(2);
        assert_eq!(frames.top().map(|f| f.label.as_str()), Some("compiling"));
        assert_eq!(frames.top().map(|f| f.done), Some(1), "kept while hidden");
        frames.remove(1);
        assert_eq!(frames.top(), None);
    }

    #[test]
    fn phases_may_end_out_of_order() {
        let mut frames = Frames::default();
        frames.push(frame(1, "a", None));
        frames.push(frame(2, "b", None));
        frames.remove(1);
        assert_eq!(frames.top().map(|f| f.id), Some(2));
        frames.remove(2);
        assert!(frames.top().is_none());
    }

    #[test]
    fn nothing_is_drawn_unless_allowed() {
        // Unit tests never allow drawing: a phase is a no-op and leaves no line behind.
        let phase = Phase::steps("kernel search", 3, "matrix jobs");
        phase.set(2);
        assert!(phase.id.is_none());
        drop(phase);
        assert!(lock().is_none());
        assert_eq!(suspend(|| 7), 7);
    }

    #[test]
    fn the_template_parses() {
        assert!(ProgressStyle::with_template(TEMPLATE).is_ok());
    }

    #[test]
    fn a_phase_renders_its_label_and_its_steps() {
        assert_eq!(frame(1, "compiling", None).render(), "compiling");
        let mut search = frame(2, "kernel search", Some((4, "matrix jobs")));
        let bar = |filled: usize| {
            let mut b = "=".repeat(filled);
            if filled < 24 {
                b.push('>');
                b.push_str(&" ".repeat(23 - filled));
            }
            b
        };
        assert_eq!(
            search.render(),
            format!("kernel search [{}] 0/4 matrix jobs", bar(0))
        );
        search.done = 1;
        assert_eq!(
            search.render(),
            format!("kernel search [{}] 1/4 matrix jobs", bar(6))
        );
        search.done = 4;
        assert_eq!(
            search.render(),
            format!("kernel search [{}] 4/4 matrix jobs", bar(24))
        );
        let empty = Frame {
            steps: Some((0, "runs")),
            ..search
        };
        assert!(empty.render().ends_with("4/0 runs"), "no division by zero");
    }
}
