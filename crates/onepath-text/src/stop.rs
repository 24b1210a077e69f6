//! Stop tokens and stop strings over a stream of generated tokens.

use crate::error::{Result, TextError};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A stop token was generated (its text is not emitted).
    Token(u32),
    /// The stop string with this index (in the list given to [`StopChecker::new`]) appeared;
    /// the text is cut just before it.
    String(usize),
}

/// What one token gives: text to show now, and whether to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopStep {
    /// Text to emit now (possibly empty).
    pub text: String,
    /// `Some` once generation must stop.
    pub stop: Option<StopReason>,
}

/// Decodes generated tokens and watches for stop tokens and stop strings.
///
/// Per token ([`StopChecker::push`]) it says what text to emit and whether to stop. Text that
/// could be the beginning of a stop string is held back until it is known not to be one (or
/// released by [`StopChecker::finish`] at the end). A stop string is matched in the decoded text
/// wherever it falls across tokens; the earliest match wins (the lower index when two start at
/// the same place). Special tokens that are not stop tokens emit no text (the decoder skips
/// them). After a stop, `push` emits nothing and repeats the reason.
#[derive(Debug, Clone)]
pub struct StopChecker {
    decoder: StreamDecoder,
    stop_ids: Vec<u32>,
    stop_strings: Vec<String>,
    pending: String,
    stopped: Option<StopReason>,
}

impl StopChecker {
    /// A checker for `stop_ids` (e.g. [`crate::SpecialTokens::stop_ids`]) and `stop_strings`.
    /// Error: [`TextError::InvalidStop`] for an empty stop string.
    pub fn new(
        tok: &Tokenizer,
        stop_ids: &[u32],
        stop_strings: &[impl AsRef<str>],
    ) -> Result<Self> {
        let stop_strings: Vec<String> = stop_strings
            .iter()
            .map(|s| s.as_ref().to_string())
            .collect();
        if let Some(i) = stop_strings.iter().position(|s| s.is_empty()) {
            return Err(TextError::InvalidStop(format!(
                "stop string {i} is empty and would match everywhere"
            )));
        }
        Ok(StopChecker {
            decoder: tok.stream_decoder(true),
            stop_ids: stop_ids.to_vec(),
            stop_strings,
            pending: String::new(),
            stopped: None,
        })
    }

    /// Why generation stopped, once it has.
    pub fn stopped(&self) -> Option<StopReason> {
        self.stopped
    }

    /// Takes the next generated token. Error: [`TextError::TokenOutOfRange`].
    pub fn push(&mut self, id: u32) -> Result<StopStep> {
        if let Some(reason) = self.stopped {
            return Ok(StopStep {
                text: String::new(),
                stop: Some(reason),
            });
        }
        if self.stop_ids.contains(&id) {
            // The text held before the stop token is final now.
            let tail = self.decoder.flush()?;
            self.pending.push_str(&tail);
            return Ok(self.conclude(StopReason::Token(id)));
        }
        let piece = self.decoder.step(id)?;
        self.pending.push_str(&piece);
        if let Some((at, index)) = self.find_stop() {
            return Ok(self.cut(at, index));
        }
        let keep = self.held_suffix_start();
        let text = self.pending[..keep].to_string();
        self.pending.drain(..keep);
        Ok(StopStep { text, stop: None })
    }

    /// Ends generation (e.g. at the length limit): releases the text still held, cut before a
    /// stop string if one completes in it. Emits nothing if already stopped.
    pub fn finish(&mut self) -> Result<StopStep> {
        if let Some(reason) = self.stopped {
            return Ok(StopStep {
                text: String::new(),
                stop: Some(reason),
            });
        }
        let tail = self.decoder.flush()?;
        self.pending.push_str(&tail);
        let step = match self.find_stop() {
            Some((at, index)) => self.cut(at, index),
            None => StopStep {
                text: std::mem::take(&mut self.pending),
                stop: None,
            },
        };
        Ok(step)
    }

    /// Stops for `reason` unless a stop string completes in the pending text first.
    fn conclude(&mut self, reason: StopReason) -> StopStep {
        if let Some((at, index)) = self.find_stop() {
            return self.cut(at, index);
        }
        self.stopped = Some(reason);
        StopStep {
            text: std::mem::take(&mut self.pending),
            stop: Some(reason),
        }
    }

    fn cut(&mut self, at: usize, index: usize) -> StopStep {
        let reason = StopReason::String(index);
        self.stopped = Some(reason);
        let text = self.pending[..at].to_string();
        self.pending.clear();
        StopStep {
            text,
            stop: Some(reason),
        }
    }

    /// The earliest stop string in the pending text: (byte offset, index).
    fn find_stop(&self) -> Option<(usize, usize)> {
        self.stop_strings
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.pending.find(s.as_str()).map(|at| (at, i)))
            .min()
    }

    /// Where the longest suffix of the pending text that begins some stop string starts (the
    /// pending length if none does).
    fn held_suffix_start(&self) -> usize {
        let p = &self.pending;
        p.char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stop_strings.iter().any(|s| s.starts_with(&p[i..])))
            .unwrap_or(p.len())
    }
}
