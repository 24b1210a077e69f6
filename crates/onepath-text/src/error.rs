//! Error types.

use std::path::PathBuf;

/// Errors of the tokenizer, the chat format and the stop checker.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// The tokenizer file does not exist.
    #[error("tokenizer file not found: {}", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The tokenizer file exists but could not be read.
    #[error("cannot read tokenizer file {}: {source}", path.display())]
    Io {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a tokenizer.json the `tokenizers` crate accepts.
    #[error("malformed tokenizer JSON: {0}")]
    Malformed(String),
    /// A token id passed to a decoder is not in the vocabulary.
    #[error("token id {id} is out of range: the vocabulary has {vocab_size} entries")]
    TokenOutOfRange {
        /// The offending id.
        id: u32,
        /// The tokenizer's [`crate::Tokenizer::vocab_size`].
        vocab_size: usize,
    },
    /// Input bytes are not valid UTF-8.
    #[error("input is not valid UTF-8: invalid byte sequence at byte offset {valid_up_to}")]
    InvalidUtf8 {
        /// Length of the longest valid prefix.
        valid_up_to: usize,
    },
    /// The operation needs a control token this tokenizer does not have.
    #[error("the tokenizer has no {0} token")]
    MissingToken(&'static str),
    /// A chat role name that is not user, model, assistant or system.
    #[error("unknown chat role {0:?}: expected user, model, assistant or system")]
    UnknownRole(String),
    /// A conversation the chat format cannot express.
    #[error("invalid chat: {0}")]
    InvalidChat(String),
    /// A stop string that can never match (the empty string).
    #[error("invalid stop string: {0}")]
    InvalidStop(String),
    /// The `tokenizers` crate failed while encoding or decoding.
    #[error("tokenizer failed: {0}")]
    Tokenizer(String),
}

/// Result with [`TextError`].
pub type Result<T, E = TextError> = std::result::Result<T, E>;

/// Errors of [`crate::sample`], [`crate::greedy`] and [`crate::top_logprobs`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SampleError {
    /// Temperature is NaN, infinite or negative.
    #[error("temperature must be finite and >= 0, got {0}")]
    InvalidTemperature(f32),
    /// `top_p` is outside (0, 1].
    #[error("top_p must be in (0, 1], got {0}")]
    InvalidTopP(f32),
    /// `top_k` is 0.
    #[error("top_k must be at least 1, got 0")]
    InvalidTopK,
    /// No logits at all.
    #[error("empty logits")]
    EmptyLogits,
    /// More logits than token ids (`u32`) can name.
    #[error("{0} logits: more than u32 token ids can address")]
    TooManyLogits(usize),
    /// A logit is NaN.
    #[error("NaN logit for token {token}{}", at(*position))]
    NanLogit {
        /// The position being sampled, where the caller gave one.
        position: Option<u64>,
        /// The token whose logit is NaN.
        token: u32,
    },
    /// A logit is +infinity (-infinity is allowed: it masks the token out).
    #[error("+infinite logit for token {token}{}", at(*position))]
    InfiniteLogit {
        /// The position being sampled, where the caller gave one.
        position: Option<u64>,
        /// The token whose logit is +infinity.
        token: u32,
    },
    /// A token id beyond the logits.
    #[error("token id {id} is outside the {vocab} logits")]
    TokenOutOfRange {
        /// The id asked for.
        id: u32,
        /// How many logits there are.
        vocab: usize,
    },
    /// Every logit is -infinity: no token can be chosen.
    #[error("every logit is -infinity{}: no token can be chosen", at(*position))]
    AllMasked {
        /// The position being sampled, where the caller gave one.
        position: Option<u64>,
    },
}

fn at(position: Option<u64>) -> String {
    position
        .map(|p| format!(" at position {p}"))
        .unwrap_or_default()
}
