//! Where streamed text goes (stdout, or stderr when stdout carries `--json`) and how a reasoning
//! model's thinking is shown there: dimmed on a terminal, plain when the stream is not a terminal
//! or `NO_COLOR` is set (`CLICOLOR_FORCE` forces colour), left out with `--hide-think`.

use std::io::IsTerminal;

use crate::text::console;
use crate::text::think::{ends_inside_think, ThinkDisplay, ThinkStyle};

/// One response being printed.
pub struct TextOut {
    to_stderr: bool,
    think: ThinkDisplay,
}

impl TextOut {
    /// `prompt` decides whether the text starts inside a think block (templates may open it).
    pub fn new(to_stderr: bool, hide_think: bool, prompt: &str) -> TextOut {
        let style = think_style(to_stderr, hide_think);
        let think = if ends_inside_think(prompt) {
            ThinkDisplay::inside_think(style)
        } else {
            ThinkDisplay::new(style)
        };
        TextOut { to_stderr, think }
    }

    /// Prints the next piece of the stream.
    pub fn piece(&mut self, text: &str) {
        let shown = self.think.push(text);
        self.write(&shown);
    }

    /// Prints what the stream held back and ends the line.
    pub fn finish(&mut self) {
        let mut shown = self.think.finish();
        shown.push('\n');
        self.write(&shown);
    }

    fn write(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        // A closed pipe (`qwen ... | head`) must not panic or lose the report; a closed stdout
        // is remembered by `console`, and generation stops at its next step.
        if self.to_stderr {
            console::err_str(text);
        } else {
            console::out_str(text);
        }
    }
}

fn think_style(to_stderr: bool, hide: bool) -> ThinkStyle {
    if hide {
        return ThinkStyle::Hide;
    }
    let terminal = if to_stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    if colour(terminal, |k| std::env::var(k).ok()) {
        ThinkStyle::Dim
    } else {
        ThinkStyle::Plain
    }
}

/// The NO_COLOR and CLICOLOR_FORCE conventions (each counts when set and not empty; a
/// CLICOLOR_FORCE of 0 does not force); `var` reads the environment.
fn colour(terminal: bool, var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |k: &str| var(k).is_some_and(|v| !v.is_empty());
    if set("NO_COLOR") {
        return false;
    }
    terminal || (set("CLICOLOR_FORCE") && var("CLICOLOR_FORCE").as_deref() != Some("0"))
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn no_color_wins_and_force_overrides_a_pipe() {
        let env = |pairs: &'static [(&str, &str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(colour(true, env(&[])));
        assert!(!colour(false, env(&[])));
        assert!(!colour(true, env(&[("NO_COLOR", "1")])));
        assert!(colour(true, env(&[("NO_COLOR", "")])));
        assert!(colour(false, env(&[("CLICOLOR_FORCE", "1")])));
        assert!(!colour(false, env(&[("CLICOLOR_FORCE", "0")])));
        assert!(!colour(
            false,
            env(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")])
        ));
    }
}
