//! Continuous batching over the Gemma 4 step API, with no I/O and no async runtime: the
//! server, the CLI and the browser all drive the same [`Engine`].
//!
//! Requests arrive whenever the caller [`Engine::add`]s them; every [`Engine::step`] runs one
//! ragged batch holding each running request's next token and up to a fixed-size chunk of the
//! prompts still being read, admits waiting requests while KV pages last, and returns the new
//! tokens as [`Event`]s. Because a row's bits depend only on its own sequence (see the model
//! crate), each request gets exactly the tokens and logprobs it would get alone: whatever else
//! runs, however its prompt was chunked, whether it was preempted and recomputed, whether its
//! prefix came from the prefix cache.
//!
//! Memory is bounded by the model's page pools. A request waits while pages are short; when
//! running requests need pages that do not exist, the newest is preempted (pages freed,
//! requeued first, recomputed later). A request that could never fit is refused by `add`.
//! Nothing is dropped silently: every request ends with exactly one [`Event::Finished`].

mod engine;
mod prefix;
mod request;

pub use engine::{Engine, EngineConfig, Stats};
pub use request::{Event, FinishReason, Request, TokenLogprob, Usage};

/// A request's handle, unique for the engine's lifetime.
pub type RequestId = u64;

/// Why a request was refused or a step failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error(
        "the request needs {positions} positions ({prompt} prompt + {max_tokens} max tokens), \
         beyond the model's context of {context}"
    )]
    TooLong {
        positions: usize,
        prompt: usize,
        max_tokens: usize,
        context: usize,
    },
    #[error(
        "the request needs {need} {pool} KV pages, more than the cache holds ({total}); it can \
         never run here (give the cache more pages or ask for fewer tokens)"
    )]
    NeverFits {
        pool: &'static str,
        need: usize,
        total: usize,
    },
    #[error("the queue is full ({0} requests waiting)")]
    QueueFull(usize),
    #[error(transparent)]
    Model(#[from] onepath_model::ModelError),
    #[error(transparent)]
    Text(#[from] onepath_text::TextError),
}
