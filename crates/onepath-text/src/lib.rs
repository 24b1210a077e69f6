//! Text around the decoder, in pure Rust (no GPU; builds for `wasm32-unknown-unknown`):
//!
//! - [`Tokenizer`]: a thin wrapper over the `tokenizers` crate for Hugging Face `tokenizer.json`
//!   files (BPE with byte fallback, as Gemma 3 and Gemma 4 ship them): [`Tokenizer::encode`],
//!   [`Tokenizer::decode`], the [`SpecialTokens`] found by name, and a [`StreamDecoder`] that
//!   turns tokens into text incrementally without ever splitting a character.
//! - [`Tokenizer::chat_prompt`]: the Gemma 4 turn format (with Gemma 3's names as a fallback),
//!   built in token ids from the tokenizer's own control tokens.
//! - [`sample`] / [`top_logprobs`] with [`SamplingParams`]: greedy and seeded sampling whose
//!   random number is a pure function of `(seed, position)` ([`random_bits`]), so a request's
//!   sample depends on neither the batch it runs in nor the order of steps ([`sampling`] states
//!   the exact rule).
//! - [`StopChecker`]: stop tokens and stop strings, holding back text that may begin a stop string.
//!
//! Bad input (missing or malformed files, token ids out of range, invalid UTF-8, NaN logits,
//! invalid sampling parameters) gives an error naming the problem, never a panic.

#![warn(missing_docs)]

pub mod chat;
mod error;
pub mod sampling;
mod stop;
mod tokenizer;

pub use chat::{ChatMessage, ChatStyle, Role};
pub use error::{Result, SampleError, TextError};
pub use sampling::{
    SamplingParams, greedy, random_bits, sample, token_logprob, top_logprobs, uniform,
};
pub use stop::{StopChecker, StopReason, StopStep};
pub use tokenizer::{SpecialTokens, StreamDecoder, Tokenizer};
