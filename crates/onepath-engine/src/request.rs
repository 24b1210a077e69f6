//! What a request asks for and what the engine tells about it.

use crate::{EngineError, RequestId};
use onepath_text::SamplingParams;

/// One generation request, in token ids (tokenizing and chat formatting happen before).
#[derive(Clone, Debug)]
pub struct Request {
    pub prompt: Vec<u32>,
    /// Most new tokens (a stop token counts), at least 1.
    pub max_tokens: usize,
    /// Greedy when `temperature` is 0; otherwise a sample drawn from `(seed, position)`
    /// only, so batching never changes it.
    pub sampling: SamplingParams,
    /// Ids that end generation besides the engine's defaults (the model's end of turn and
    /// eos, unless `ignore_eos`). The stop token itself is not emitted.
    pub stop_ids: Vec<u32>,
    /// Strings that end generation; the text is cut before them (needs the tokenizer).
    pub stop_strings: Vec<String>,
    /// `Some(n)`: each token's log-probability and the `n` most likely alternatives.
    pub logprobs: Option<usize>,
    pub ignore_eos: bool,
    /// Return each token's soft-capped logits (tests and debugging; costs a read-back).
    pub logits: bool,
}

impl Request {
    /// Greedy decoding of up to `max_tokens` after `prompt`, stopping at the defaults.
    pub fn greedy(prompt: Vec<u32>, max_tokens: usize) -> Request {
        Request {
            prompt,
            max_tokens,
            sampling: SamplingParams::greedy(),
            stop_ids: Vec::new(),
            stop_strings: Vec::new(),
            logprobs: None,
            ignore_eos: false,
            logits: false,
        }
    }

    pub(crate) fn validate(&self, vocab: usize, has_tokenizer: bool) -> Result<(), EngineError> {
        let bad = |m: String| Err(EngineError::Invalid(m));
        if self.prompt.is_empty() {
            return bad("the prompt is empty: nothing to continue".into());
        }
        if self.max_tokens == 0 {
            return bad("max_tokens must be at least 1".into());
        }
        if let Some((i, id)) = self
            .prompt
            .iter()
            .enumerate()
            .find(|(_, t)| **t as usize >= vocab)
        {
            return bad(format!(
                "token id {id} at position {i} is outside the vocabulary (size {vocab})"
            ));
        }
        if let Some(id) = self.stop_ids.iter().find(|t| **t as usize >= vocab) {
            return bad(format!(
                "stop token {id} is outside the vocabulary (size {vocab})"
            ));
        }
        if !self.stop_strings.is_empty() && !has_tokenizer {
            return bad("stop strings need a tokenizer; this engine has none".into());
        }
        if let Some(i) = self.stop_strings.iter().position(String::is_empty) {
            return bad(format!("stop string {i} is empty"));
        }
        if let Some(n) = self.logprobs
            && n > MAX_TOP_LOGPROBS
        {
            return bad(format!(
                "top logprobs is {n}; at most {MAX_TOP_LOGPROBS} are returned"
            ));
        }
        self.sampling
            .validate()
            .map_err(|e| EngineError::Invalid(e.to_string()))
    }
}

/// Most alternatives a request may ask for per token (OpenAI's limit is 20).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// A token's log-probability (temperature 1, over the whole vocabulary, in f64) and the most
/// likely alternatives.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub logprob: f64,
    pub top: Vec<(u32, f64)>,
}

/// Why a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token or stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    Cancelled,
    /// The step that held it failed (the message says why); its pages are freed.
    Error(String),
}

impl FinishReason {
    /// OpenAI's `finish_reason` value.
    pub fn as_openai(&self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
            FinishReason::Error(_) => "error",
        }
    }
}

/// Token counts of a finished request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Tokens generated, a final stop token included.
    pub completion_tokens: usize,
    /// Prompt positions taken from the prefix cache instead of computed.
    pub cached_tokens: usize,
    /// Times it was preempted and recomputed.
    pub preemptions: usize,
}

/// What a step tells about a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A new token (never a stop token) with the text it completes (possibly empty: text that
    /// may begin a stop string or a partial character is held back).
    Token {
        id: RequestId,
        token: u32,
        /// Its position in the sequence.
        pos: u32,
        text: String,
        logprob: Option<TokenLogprob>,
        /// The logits it was chosen from, when the request asked for them.
        logits: Option<Vec<f32>>,
    },
    /// The request's end; `text` is what was still held back. Exactly one per request.
    Finished {
        id: RequestId,
        reason: FinishReason,
        usage: Usage,
        text: String,
    },
}

impl Event {
    pub fn id(&self) -> RequestId {
        match self {
            Event::Token { id, .. } | Event::Finished { id, .. } => *id,
        }
    }
}
