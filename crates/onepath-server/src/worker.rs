//! The engine's thread: it owns the engine, takes commands from the handlers, steps while
//! there is work and routes each event to the request it belongs to (by the engine's id, so a
//! handler never sees another request's tokens). A handler that went away (its receiver is
//! dropped: the client disconnected) gets its request cancelled at once.

use crate::metrics::Metrics;
use onepath_engine::{Engine, EngineError, Event, FinishReason, Request, RequestId};
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

pub enum Cmd {
    Add {
        req: Request,
        events: mpsc::UnboundedSender<Event>,
        reply: oneshot::Sender<Result<RequestId, EngineError>>,
    },
    Cancel(RequestId),
    /// Ends every request (the drain timeout after a shutdown signal).
    CancelAll,
    Stop,
}

struct Sub {
    events: mpsc::UnboundedSender<Event>,
    added: Instant,
    first: Option<Instant>,
}

/// Runs the engine until [`Cmd::Stop`] or until every sender is gone.
pub fn run(mut engine: Engine, rx: Receiver<Cmd>, metrics: Arc<Mutex<Metrics>>) {
    let mut subs: HashMap<RequestId, Sub> = HashMap::new();
    loop {
        // Block for a command only when there is nothing to step.
        let first = if engine.has_work() {
            match rx.try_recv() {
                Ok(c) => Some(c),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => Some(Cmd::Stop),
            }
        } else {
            Some(rx.recv().unwrap_or(Cmd::Stop))
        };
        let mut cmds: Vec<Cmd> = first.into_iter().collect();
        cmds.extend(rx.try_iter());
        for cmd in cmds {
            match cmd {
                Cmd::Add { req, events, reply } => {
                    let r = engine.add(req);
                    if let Ok(id) = &r {
                        subs.insert(
                            *id,
                            Sub {
                                events,
                                added: Instant::now(),
                                first: None,
                            },
                        );
                    }
                    // A handler gone before the answer: its request is cancelled below.
                    if let Err(Ok(id)) = reply.send(r) {
                        cancel(&mut engine, &mut subs, id, &metrics);
                    }
                }
                Cmd::Cancel(id) => cancel(&mut engine, &mut subs, id, &metrics),
                Cmd::CancelAll | Cmd::Stop => {
                    let stop = matches!(cmd, Cmd::Stop);
                    let ids: Vec<RequestId> = subs.keys().copied().collect();
                    for id in ids {
                        cancel(&mut engine, &mut subs, id, &metrics);
                    }
                    if stop {
                        return;
                    }
                }
            }
        }
        if engine.has_work() {
            let events = pollster::block_on(engine.step());
            let now = Instant::now();
            for ev in events {
                route(&mut engine, &mut subs, ev, now, &metrics);
            }
        }
        if let Ok(mut m) = metrics.lock() {
            m.observe(engine.stats(), Instant::now());
        }
    }
}

fn cancel(
    engine: &mut Engine,
    subs: &mut HashMap<RequestId, Sub>,
    id: RequestId,
    metrics: &Arc<Mutex<Metrics>>,
) {
    if let Some(ev) = engine.cancel(id) {
        route(engine, subs, ev, Instant::now(), metrics);
    }
}

fn route(
    engine: &mut Engine,
    subs: &mut HashMap<RequestId, Sub>,
    ev: Event,
    now: Instant,
    metrics: &Arc<Mutex<Metrics>>,
) {
    let id = ev.id();
    let Some(sub) = subs.get_mut(&id) else {
        return;
    };
    match &ev {
        Event::Token { .. } => {
            if sub.first.is_none() {
                sub.first = Some(now);
                if let Ok(mut m) = metrics.lock() {
                    m.first_token(now - sub.added);
                }
            }
            if sub.events.send(ev).is_err() {
                // The client is gone: stop computing for it.
                if let Some(end) = engine.cancel(id) {
                    log_end(id, sub, &end, now);
                    count(metrics, &end);
                }
                subs.remove(&id);
            }
        }
        Event::Finished { .. } => {
            log_end(id, sub, &ev, now);
            count(metrics, &ev);
            // The handler may be gone already; nothing more to do for it then.
            let _gone = sub.events.send(ev).is_err();
            subs.remove(&id);
        }
    }
}

fn count(metrics: &Arc<Mutex<Metrics>>, ev: &Event) {
    if let (Event::Finished { reason, .. }, Ok(mut m)) = (ev, metrics.lock()) {
        m.finished(reason);
    }
}

/// One line per request: id, token counts, time to first token, tokens/s, how it ended.
fn log_end(id: RequestId, sub: &Sub, ev: &Event, now: Instant) {
    let Event::Finished { reason, usage, .. } = ev else {
        return;
    };
    let ttft = sub.first.map(|f| (f - sub.added).as_secs_f64() * 1e3);
    let decode = sub.first.map(|f| (now - f).as_secs_f64());
    let tok_s = match decode {
        Some(d) if d > 0.0 && usage.completion_tokens > 1 => {
            (usage.completion_tokens - 1) as f64 / d
        }
        _ => 0.0,
    };
    let end = match reason {
        FinishReason::Error(e) => format!("error: {e}"),
        r => r.as_openai().to_string(),
    };
    tracing::info!(
        "request {id}: {} prompt tokens ({} cached), {} output tokens, first token {}, {:.1} tokens/s, {end}",
        usage.prompt_tokens,
        usage.cached_tokens,
        usage.completion_tokens,
        ttft.map_or("-".to_string(), |t| format!("{t:.1} ms")),
        tok_s,
    );
}

/// The handlers' side of the engine thread.
#[derive(Clone)]
pub struct Handle {
    pub tx: Sender<Cmd>,
}

impl Handle {
    /// Queues a request; its events arrive on the returned receiver.
    pub async fn add(
        &self,
        req: Request,
    ) -> Result<(RequestId, mpsc::UnboundedReceiver<Event>), crate::ApiError> {
        let (events, rx) = mpsc::unbounded_channel();
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Cmd::Add { req, events, reply })
            .map_err(|_| crate::ApiError::unavailable("the engine has stopped"))?;
        let id = answer
            .await
            .map_err(|_| crate::ApiError::unavailable("the engine has stopped"))??;
        Ok((id, rx))
    }

    pub fn cancel(&self, id: RequestId) {
        // If the engine has stopped, the request is over already.
        let _stopped = self.tx.send(Cmd::Cancel(id)).is_err();
    }
}
