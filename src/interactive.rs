//! `--interactive`: a chat in the terminal. Each line of standard input is a user turn; `/exit`
//! or the end of input ends the session, Ctrl-C stops an answer (and, at the prompt, the session).
//!
//! Every turn renders the whole conversation with the chat template, then runs through the model
//! only the tokens after the longest prefix the KV cache already holds. Usually that is the new
//! turn alone; Qwen3's template drops the reasoning of earlier answers, so after a thinking
//! answer the cache is kept up to where that answer began and rewritten from there.

use std::io::{BufRead, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::backend::Runner;
use crate::generate::{
    context_full_notice, generate, GenerateOptions, Generation, StopConditions, StopReason,
};
use crate::interrupt::Outcome;
use crate::load::Loaded;
use crate::prompt;
use crate::sampler::Sampler;
use crate::settings::Settings;
use crate::text::chat::{Chat, Message};
use crate::text::console;
use crate::text::display::TextOut;
use crate::text::tokenizer::{text_decoder, Tokenizer};

/// The conversation and what the KV cache holds of it.
struct Session<'a> {
    settings: &'a Settings,
    max_context: usize,
    stop: StopConditions,
    tokenizer: &'a Tokenizer,
    chat: &'a Chat,
    engine: &'a mut dyn Runner,
    sampler: Sampler,
    turns: Vec<Message>,
    /// The token at each position of the KV cache.
    cached: Vec<u32>,
}

/// How one turn was computed, for its timing line.
struct TurnStats {
    reused: usize,
    generation: Generation,
    /// From the turn's line to its first sampled token: rendering and tokenizing the
    /// conversation, the prompt pass, the sampling.
    first_token: Option<Duration>,
}

/// How often a wait for input looks at the Ctrl-C flag.
const POLL: Duration = Duration::from_millis(50);

/// The session: `first` (the prompt's text, if any) is the first turn, then each line of
/// standard input.
pub fn run(
    settings: &Settings,
    loaded: &Loaded,
    engine: &mut dyn Runner,
    first: Option<String>,
    interrupt: &AtomicBool,
) -> Result<Outcome> {
    let sampler = Sampler::new(settings.generation.sampling.clone())?;
    let (Some(tokenizer), Some(chat)) = (&loaded.tokenizer, &loaded.chat) else {
        bail!("--interactive needs a tokenizer and a chat template");
    };
    let mut session = Session {
        settings,
        max_context: loaded.max_context,
        stop: StopConditions::new(loaded.eos_ids(), &settings.generation),
        tokenizer,
        chat,
        engine,
        sampler,
        turns: Vec::new(),
        cached: Vec::new(),
    };
    let terminal = std::io::stdin().is_terminal();
    if terminal {
        crate::errln!(
            "chat with the model: one line per turn; /exit or Ctrl-D ends, Ctrl-C stops an answer"
        );
    }
    let lines = read_lines();
    let mut next = first;
    let mut n_turn = 0;
    loop {
        let text = match next.take() {
            Some(text) => text,
            None => match wait_for_line(&lines, interrupt, terminal) {
                Input::Line(line) => line,
                Input::NotText(n) => {
                    crate::errln!(
                        "warning: line {n} of standard input is not UTF-8 text: skipped (the \
                         session goes on with the next line)"
                    );
                    continue;
                }
                Input::End => return Ok(Outcome::Done),
                Input::Failed(e) => {
                    crate::errln!("warning: cannot read standard input ({e}): the session ends");
                    return Ok(Outcome::Done);
                }
                Input::Interrupted => return Ok(Outcome::Interrupted),
            },
        };
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim() == "/exit" {
            return Ok(Outcome::Done);
        }
        if text.trim().is_empty() {
            continue;
        }
        n_turn += 1;
        let stats = session.turn(text, interrupt)?;
        crate::errln!("{}", turn_summary(n_turn, &stats));
        match stats.generation.stop {
            StopReason::ContextFull => {
                crate::errln!("{}", context_full_notice(session.max_context))
            }
            // Nobody reads the answers anymore (`qwen -i ... | head`): end quietly.
            StopReason::OutputClosed => return Ok(Outcome::Done),
            _ => {}
        }
        // A Ctrl-C that stopped this answer does not end the session.
        interrupt.store(false, Ordering::SeqCst);
    }
}

impl Session<'_> {
    /// Answers `user`, streaming the answer to stdout.
    fn turn(&mut self, user: &str, interrupt: &AtomicBool) -> Result<TurnStats> {
        let request = Instant::now();
        self.turns.push(Message::user(user));
        let text = self.chat.render(&self.turns)?;
        let ids = prompt::encode(self.tokenizer, &text)?;
        let max_context = self.max_context;
        if ids.len() > max_context {
            bail!(
                "the conversation has grown to {} tokens but the context holds {max_context}: \
                 start a new session, or raise --ctx-size",
                ids.len()
            );
        }
        // At least one token must run, to give the logits of the next one.
        let reused = common_prefix(&self.cached, &ids).min(ids.len() - 1);
        let reused = self.engine.truncate(reused);
        self.cached.truncate(reused);
        let new = &ids[reused..];

        let options = GenerateOptions {
            max_new_tokens: self.settings.generation.max_new_tokens,
            stop: &self.stop,
            interrupt: Some(interrupt),
            output_closed: Some(console::stdout_closed()),
            trace: None,
        };
        let to_prompt_pass = request.elapsed();
        let mut out = TextOut::new(false, self.settings.report.hide_think, &text);
        let generation = generate(
            self.engine,
            new,
            &mut self.sampler,
            &options,
            text_decoder(Some(self.tokenizer)),
            &mut |piece| out.piece(piece),
        )?;
        out.finish();

        self.cached.extend_from_slice(new);
        self.cached.extend_from_slice(&generation.generated_ids);
        // The last token (end of sequence, stop string, full context) may not have been run.
        self.cached.truncate(self.engine.position());
        self.turns.push(Message::assistant(generation.text.clone()));
        let first_token = generation.first_token.map(|t| to_prompt_pass + t);
        Ok(TurnStats {
            reused,
            generation,
            first_token,
        })
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// `turn 2: prompt 14 new tokens (+31 cached) in 3.20 ms, 4375.00 tok/s; first token after
/// 3.61 ms; generated 8 tokens in 61.30 ms, 114.19 tok/s; stop: max_tokens`
fn turn_summary(n: usize, stats: &TurnStats) -> String {
    let g = &stats.generation;
    let ms = |ns: &[u64]| ns.iter().sum::<u64>() as f64 / 1e6;
    let rate = |count: usize, ms: f64| {
        if ms > 0.0 {
            count as f64 * 1e3 / ms
        } else {
            0.0
        }
    };
    let (prefill_ms, decode_ms) = (ms(g.prefill.as_ns()), ms(g.decode.as_ns()));
    let first = stats.first_token.map_or(String::new(), |t| {
        format!("first token after {:.2} ms; ", t.as_secs_f64() * 1e3)
    });
    format!(
        "turn {n}: prompt {} new tokens (+{} cached) in {prefill_ms:.2} ms, {:.2} tok/s; \
         {first}generated {} tokens in {decode_ms:.2} ms, {:.2} tok/s; stop: {}",
        g.prompt_ids.len(),
        stats.reused,
        rate(g.prompt_ids.len(), prefill_ms),
        g.generated_ids.len(),
        rate(g.decode.len(), decode_ms),
        g.stop.kind().name()
    )
}

/// What waiting for the next turn gave.
enum Input {
    Line(String),
    /// Line `n` (from 1) was not UTF-8.
    NotText(usize),
    End,
    /// Reading failed (the input is gone); what it said.
    Failed(String),
    Interrupted,
}

/// Lines of standard input, read on their own thread so that a Ctrl-C at the prompt is seen.
/// Each is read as bytes: a line that is not UTF-8 is reported as such, and reading goes on.
fn read_lines() -> Receiver<Input> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        for n in 1.. {
            let mut bytes = Vec::new();
            let input = match stdin.read_until(b'\n', &mut bytes) {
                Ok(0) => break,
                Ok(_) => match String::from_utf8(bytes) {
                    Ok(line) => Input::Line(line),
                    Err(_) => Input::NotText(n),
                },
                Err(e) => Input::Failed(e.to_string()),
            };
            let failed = matches!(input, Input::Failed(_));
            if send.send(input).is_err() || failed {
                break;
            }
        }
    });
    receive
}

fn wait_for_line(lines: &Receiver<Input>, interrupt: &AtomicBool, terminal: bool) -> Input {
    if terminal {
        crate::err!("> ");
    }
    loop {
        if interrupt.load(Ordering::SeqCst) {
            return Input::Interrupted;
        }
        match lines.recv_timeout(POLL) {
            Ok(input) => return input,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Input::End,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::common_prefix;

    #[test]
    fn common_prefix_stops_at_the_first_difference() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4, 5]), 2);
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
        assert_eq!(common_prefix(&[7], &[1]), 0);
    }
}
