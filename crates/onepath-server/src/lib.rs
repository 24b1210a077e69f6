//! An OpenAI-compatible HTTP server over the engine (axum + tokio): `POST /v1/completions`,
//! `POST /v1/chat/completions` (whole or streamed as server-sent events ending with
//! `data: [DONE]`), `GET /v1/models`, `GET /health`, `GET /metrics`.
//!
//! The engine runs on its own thread ([`worker`]); handlers talk to it through channels. Each
//! request's tokens are exactly what it would get alone, whatever else is running (the
//! engine's guarantee), and seeded sampling is batched like everything else. A client that
//! disconnects cancels its request; bad requests get OpenAI-style JSON errors (400, 404, 413,
//! 429, 503) naming the problem.

mod api;
mod error;
mod metrics;
mod respond;
mod worker;

pub use error::ApiError;

use api::{ChatBody, CompletionBody, Parsed, Prompt};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use onepath_engine::{Engine, Event};
use onepath_text::Tokenizer;
use respond::{Answer, Chunk, Endpoint, Meta};
use serde_json::json;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The name clients give as `model`.
    pub model_name: String,
    /// Largest request body (bytes); larger ones get 413.
    pub body_limit: usize,
    /// After SIGINT/SIGTERM, in-flight requests get this long to finish before they are
    /// cancelled.
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            model_name: "onepath".into(),
            body_limit: 1 << 20,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

struct AppState {
    engine: worker::Handle,
    metrics: Arc<Mutex<metrics::Metrics>>,
    tokenizer: Option<Tokenizer>,
    model: String,
    context: usize,
    created: u64,
    draining: AtomicBool,
    next: AtomicU64,
}

type Shared = Arc<AppState>;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Serves `engine` on `listener` until `shutdown` resolves; then stops accepting, lets
/// in-flight requests finish (for at most `drain_timeout`, then cancels them) and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Engine,
    cfg: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tokenizer = engine.tokenizer().cloned();
    let context = engine.model().config.max_positions;
    let metrics = Arc::new(Mutex::new(metrics::Metrics::default()));
    let (tx, rx) = std::sync::mpsc::channel();
    let m = metrics.clone();
    let thread = std::thread::Builder::new()
        .name("onepath-engine".into())
        .spawn(move || worker::run(engine, rx, m))?;
    let state = Arc::new(AppState {
        engine: worker::Handle { tx: tx.clone() },
        metrics,
        tokenizer,
        model: cfg.model_name.clone(),
        context,
        created: now_secs(),
        draining: AtomicBool::new(false),
        next: AtomicU64::new(0),
    });
    let app = router(state.clone(), cfg.body_limit);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let drain = cfg.drain_timeout;
    let cancel_tx = tx.clone();
    let st = state.clone();
    tokio::spawn(async move {
        shutdown.await;
        st.draining.store(true, Ordering::SeqCst);
        tracing::info!("shutting down: no new requests; {drain:?} for in-flight ones");
        let _ = stop_tx.send(true);
        tokio::time::sleep(drain).await;
        tracing::info!("drain timeout: cancelling what is still running");
        let _stopped = cancel_tx.send(worker::Cmd::CancelAll).is_err();
    });
    let mut stop_rx2 = stop_rx.clone();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop_rx2.wait_for(|s| *s).await;
        })
        .await;
    let _stopped = tx.send(worker::Cmd::Stop).is_err();
    let joined = tokio::task::spawn_blocking(move || thread.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        tracing::error!("the engine thread panicked");
    }
    drop(stop_rx);
    result
}

/// Parses a request body exactly as the handlers do, without running it: `Ok` if it would be
/// accepted, else the error message a client would get (the fuzzer's entry).
pub fn check_body(chat: bool, body: &[u8]) -> Result<(), String> {
    let r = if chat {
        api::from_json::<ChatBody>(body).and_then(ChatBody::parse)
    } else {
        api::from_json::<CompletionBody>(body).and_then(CompletionBody::parse)
    };
    r.map(|_| ()).map_err(|e| e.message)
}

fn router(state: Shared, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .fallback(|| async {
            ApiError::invalid(None, "no such endpoint").status(StatusCode::NOT_FOUND)
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn models(State(s): State<Shared>) -> Json<serde_json::Value> {
    Json(json!({"object": "list", "data": [
        {"id": s.model, "object": "model", "created": s.created, "owned_by": "onepath"}
    ]}))
}

async fn health(State(s): State<Shared>) -> Response {
    if s.draining.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        )
            .into_response()
    } else {
        Json(json!({"status": "ok"})).into_response()
    }
}

async fn metrics_text(State(s): State<Shared>) -> Response {
    let text = s.metrics.lock().map(|m| m.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        let status = e.status();
        let err = ApiError::invalid(None, format!("cannot read the request body: {e}"));
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            err.status(status).with_code("body_too_large")
        } else {
            err
        }
    })
}

async fn completions(State(s): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    let parsed = body_bytes(body)
        .and_then(|b| api::from_json::<CompletionBody>(&b))
        .and_then(CompletionBody::parse);
    match parsed {
        Ok(p) => respond(s, p, Endpoint::Completions).await,
        Err(e) => e.into_response(),
    }
}

async fn chat(State(s): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    let parsed = body_bytes(body)
        .and_then(|b| api::from_json::<ChatBody>(&b))
        .and_then(ChatBody::parse);
    match parsed {
        Ok(p) => respond(s, p, Endpoint::Chat).await,
        Err(e) => e.into_response(),
    }
}

/// The prompt as token ids.
fn tokens(s: &AppState, prompt: Prompt) -> Result<Vec<u32>, ApiError> {
    let need_tok = || {
        s.tokenizer.as_ref().ok_or_else(|| {
            ApiError::invalid(
                Some("prompt"),
                "this model has no tokenizer.json: give the prompt as a list of token ids",
            )
        })
    };
    let text_err = |e: onepath_text::TextError| ApiError::invalid(Some("prompt"), e.to_string());
    match prompt {
        Prompt::Tokens(t) => Ok(t),
        Prompt::Text(t) => need_tok()?.encode(&t, true).map_err(text_err),
        Prompt::Chat(m) => need_tok()?
            .chat_prompt(&m, true)
            .map_err(|e| ApiError::invalid(Some("messages"), e.to_string())),
    }
}

/// Cancels its request when dropped before the end (the client went away).
struct Guard {
    engine: worker::Handle,
    id: u64,
    done: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done {
            self.engine.cancel(self.id);
        }
    }
}

async fn respond(s: Shared, p: Parsed, endpoint: Endpoint) -> Response {
    match run(s, p, endpoint).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run(s: Shared, p: Parsed, endpoint: Endpoint) -> Result<Response, ApiError> {
    if s.draining.load(Ordering::SeqCst) {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    if p.model != s.model {
        return Err(ApiError::invalid(
            Some("model"),
            format!(
                "unknown model {:?}; this server serves {:?}",
                p.model, s.model
            ),
        )
        .with_code("model_not_found"));
    }
    let mut req = p.req;
    req.prompt = tokens(&s, p.prompt)?;
    if req.max_tokens == usize::MAX {
        // A chat reply with no limit: up to the end of the context.
        req.max_tokens = s.context.saturating_sub(req.prompt.len()).max(1);
    }
    let (id, mut rx) = s.engine.add(req).await?;
    let n = s.next.fetch_add(1, Ordering::Relaxed);
    let meta = Meta {
        id: match endpoint {
            Endpoint::Completions => format!("cmpl-{n}"),
            Endpoint::Chat => format!("chatcmpl-{n}"),
        },
        created: now_secs(),
        model: s.model.clone(),
        endpoint,
    };
    let mut guard = Guard {
        engine: s.engine.clone(),
        id,
        done: false,
    };
    let tok = s.tokenizer.clone();
    let logprobs = p.logprobs.is_some();
    if !p.stream {
        let mut a = Answer::default();
        while let Some(ev) = rx.recv().await {
            if a.take(ev) {
                break;
            }
        }
        guard.done = true;
        if let Some(onepath_engine::FinishReason::Error(e)) = &a.finish {
            return Err(ApiError::internal(e.clone()));
        }
        return Ok(Json(respond::whole(&meta, &a, tok.as_ref(), logprobs)).into_response());
    }
    let stream = Streamer {
        rx,
        guard,
        meta,
        tok,
        logprobs,
        include_usage: p.include_usage,
        queue: VecDeque::new(),
        text_len: 0,
        started: false,
        ended: false,
    };
    let events = futures_util::stream::unfold(stream, |mut st| async move {
        let ev = st.next().await?;
        Some((Ok::<_, Infallible>(ev), st))
    });
    Ok(Sse::new(events).into_response())
}

/// One streamed response: engine events in, SSE events out.
struct Streamer {
    rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    guard: Guard,
    meta: Meta,
    tok: Option<Tokenizer>,
    logprobs: bool,
    include_usage: bool,
    queue: VecDeque<SseEvent>,
    text_len: usize,
    started: bool,
    ended: bool,
}

impl Streamer {
    fn push(&mut self, v: serde_json::Value) {
        self.queue
            .push_back(SseEvent::default().data(v.to_string()));
    }

    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            if self.ended {
                return None;
            }
            if !self.started && self.meta.endpoint == Endpoint::Chat {
                self.started = true;
                let c = Chunk {
                    text: "",
                    tokens: &[],
                    logprobs: None,
                    finish: None,
                    role: true,
                };
                let v = respond::chunk(&self.meta, c, self.include_usage);
                self.push(v);
                continue;
            }
            self.started = true;
            let Some(ev) = self.rx.recv().await else {
                // The engine stopped without finishing the request (it never does that).
                self.ended = true;
                return None;
            };
            match ev {
                Event::Token {
                    token,
                    text,
                    logprob,
                    ..
                } => {
                    let lp = self.logprobs.then(|| {
                        let lps: Vec<_> = logprob.into_iter().collect();
                        respond::logprobs_json(
                            self.meta.endpoint,
                            self.tok.as_ref(),
                            &[token],
                            &lps,
                            self.text_len,
                        )
                    });
                    self.text_len += text.len();
                    let c = Chunk {
                        text: &text,
                        tokens: &[token],
                        logprobs: lp,
                        finish: None,
                        role: false,
                    };
                    let v = respond::chunk(&self.meta, c, self.include_usage);
                    self.push(v);
                }
                Event::Finished {
                    reason,
                    usage,
                    text,
                    ..
                } => {
                    self.guard.done = true;
                    self.ended = true;
                    if let onepath_engine::FinishReason::Error(e) = &reason {
                        let err = ApiError::internal(e.clone());
                        self.push(err.body());
                    } else {
                        let c = Chunk {
                            text: &text,
                            tokens: &[],
                            logprobs: None,
                            finish: Some(&reason),
                            role: false,
                        };
                        let v = respond::chunk(&self.meta, c, self.include_usage);
                        self.push(v);
                        if self.include_usage {
                            let v = respond::usage_chunk(&self.meta, &usage);
                            self.push(v);
                        }
                    }
                    self.queue.push_back(SseEvent::default().data("[DONE]"));
                }
            }
        }
    }
}
