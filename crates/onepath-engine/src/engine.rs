//! The scheduler: which rows each step runs, which requests wait, which are preempted.
//!
//! Per step, in this order: every running request that has read its prompt feeds its last
//! token (oldest first); requests still reading their prompts feed up to `chunk` more prompt
//! tokens each while the step's row budget lasts; waiting requests are admitted (first come,
//! first served; a preempted request goes back to the front) while there are rows, sequence
//! slots and pages. Pages are counted on a copy of the KV cache's tables before anything runs;
//! when the running requests need more than exist, prefix-cache pages only the cache holds are
//! evicted first, then the newest running request is preempted.

use crate::prefix::{PAGE, PrefixCache};
use crate::request::{Event, FinishReason, Request, TokenLogprob, Usage};
use crate::{EngineError, RequestId};
use onepath_gpu::Gpu;
use onepath_model::kv::KvCache;
use onepath_model::{Kind, LogitRow, Logits, Model, ModelError, SeqInput};
use onepath_text::{StopChecker, Tokenizer};
use std::collections::VecDeque;

/// How the engine batches.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// Most prompt tokens one request feeds per step: a long prompt is read in chunks of this
    /// size beside the running decodes instead of stalling them.
    pub chunk: usize,
    /// Most token rows per step (decodes first, then prompt chunks).
    pub step_tokens: usize,
    /// Most requests running at once.
    pub max_running: usize,
    /// Most requests waiting; `add` refuses more with [`EngineError::QueueFull`].
    pub max_waiting: usize,
    /// Share the KV pages of identical prompt prefixes between requests.
    pub prefix_cache: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            chunk: 256,
            step_tokens: 512,
            max_running: 64,
            max_waiting: 1024,
            prefix_cache: true,
        }
    }
}

/// A snapshot of the engine's load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub running: usize,
    pub waiting: usize,
    /// Free pages (full-attention, sliding-window), and pages in all.
    pub free_pages: (usize, usize),
    pub total_pages: (usize, usize),
    /// Pages only the prefix cache holds (free once evicted).
    pub cached_pages: (usize, usize),
    pub steps: u64,
    pub generated_tokens: u64,
    /// Prompt (and recomputed) positions run through the model / taken from the cache.
    pub computed_tokens: u64,
    pub cached_tokens: u64,
    pub preemptions: u64,
}

struct Seq {
    id: RequestId,
    req: Request,
    /// Prompt, then every generated token (the last one not yet fed).
    tokens: Vec<u32>,
    generated: usize,
    /// Positions in the KV cache (0 while waiting).
    cached: usize,
    checker: Option<StopChecker>,
    stops: Vec<u32>,
    usage: Usage,
    /// Prefix-cache registration progress.
    registered: (usize, Option<u64>),
}

/// Continuous batching over one [`Model`] on one [`Gpu`].
pub struct Engine {
    gpu: Gpu,
    model: Model,
    tokenizer: Option<Tokenizer>,
    cfg: EngineConfig,
    default_stops: Vec<u32>,
    running: Vec<Seq>,
    waiting: VecDeque<Seq>,
    prefix: PrefixCache,
    next_id: RequestId,
    stats: Stats,
}

impl Engine {
    /// An engine over `model`. With a tokenizer, events carry text and stop strings work.
    pub fn new(
        gpu: Gpu,
        model: Model,
        tokenizer: Option<Tokenizer>,
        cfg: EngineConfig,
    ) -> Result<Engine, EngineError> {
        check_config(&cfg)?;
        let mut default_stops = model.config.eos.clone();
        if let Some(t) = &tokenizer {
            default_stops.extend(t.special().stop_ids());
        }
        default_stops.sort_unstable();
        default_stops.dedup();
        Ok(Engine {
            gpu,
            model,
            tokenizer,
            cfg,
            default_stops,
            running: Vec::new(),
            waiting: VecDeque::new(),
            prefix: PrefixCache::default(),
            next_id: 0,
            stats: Stats::default(),
        })
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.tokenizer.as_ref()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Changes how the engine batches (takes effect at the next step); turning the prefix
    /// cache off lets go of its pages.
    pub fn reconfigure(&mut self, cfg: EngineConfig) -> Result<(), EngineError> {
        check_config(&cfg)?;
        if !cfg.prefix_cache {
            self.clear_prefix_cache();
        }
        self.cfg = cfg;
        Ok(())
    }

    /// Queues a request. Refused at once, naming the reason, when it is malformed, longer than
    /// the context, could never fit in the KV cache, or the queue is full.
    pub fn add(&mut self, req: Request) -> Result<RequestId, EngineError> {
        let c = &self.model.config;
        req.validate(c.vocab, self.tokenizer.is_some())?;
        let positions = req.prompt.len() + req.max_tokens;
        if positions > c.max_positions {
            return Err(EngineError::TooLong {
                positions,
                prompt: req.prompt.len(),
                max_tokens: req.max_tokens,
                context: c.max_positions,
            });
        }
        self.check_fits(positions)?;
        if self.waiting.len() >= self.cfg.max_waiting {
            return Err(EngineError::QueueFull(self.waiting.len()));
        }
        let mut stops = req.stop_ids.clone();
        if !req.ignore_eos {
            stops.extend(&self.default_stops);
        }
        let checker = match &self.tokenizer {
            Some(t) => Some(StopChecker::new(t, &stops, &req.stop_strings)?),
            None => None,
        };
        let id = self.next_id;
        self.next_id += 1;
        let usage = Usage {
            prompt_tokens: req.prompt.len(),
            ..Usage::default()
        };
        self.waiting.push_back(Seq {
            id,
            tokens: req.prompt.clone(),
            req,
            generated: 0,
            cached: 0,
            checker,
            stops,
            usage,
            registered: (0, None),
        });
        Ok(id)
    }

    /// Whether a sequence of `positions` could run alone in the cache.
    fn check_fits(&self, positions: usize) -> Result<(), EngineError> {
        let kv = &self.model.kv;
        let pages = positions.div_ceil(PAGE);
        // A sliding layer holds the window plus one step's chunk, straddling up to two more
        // pages, and never more pages than the sequence has.
        let reach = (kv.window() as usize + self.cfg.chunk).div_ceil(PAGE) + 2;
        for (kind, need, what) in [
            (Kind::Full, pages, "full-attention"),
            (Kind::Sliding, reach.min(pages), "sliding-window"),
        ] {
            if !kv.uses(kind) {
                continue;
            }
            let largest = kv.pools(kind).buffers.iter().map(|b| b.total()).max();
            let total = largest.unwrap_or(0) as usize;
            if need > total {
                return Err(EngineError::NeverFits {
                    pool: what,
                    need,
                    total,
                });
            }
        }
        Ok(())
    }

    /// Ends a request now, freeing its pages; its `Finished` event, or `None` if it is unknown
    /// or already over.
    pub fn cancel(&mut self, id: RequestId) -> Option<Event> {
        let seq = if let Some(i) = self.running.iter().position(|s| s.id == id) {
            let s = self.running.remove(i);
            self.model.free(s.id);
            s
        } else {
            let i = self.waiting.iter().position(|s| s.id == id)?;
            self.waiting.remove(i)?
        };
        Some(finished(seq, FinishReason::Cancelled))
    }

    /// Whether a step would do anything.
    pub fn has_work(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty()
    }

    pub fn stats(&self) -> Stats {
        let kv = &self.model.kv;
        let cached = self.prefix.held_alone(kv);
        Stats {
            running: self.running.len(),
            waiting: self.waiting.len(),
            free_pages: (kv.full.free_pages(), kv.sliding.free_pages()),
            total_pages: (kv.full.total() as usize, kv.sliding.total() as usize),
            cached_pages: cached,
            ..self.stats
        }
    }

    /// Lets go of every page the prefix cache holds.
    pub fn clear_prefix_cache(&mut self) {
        self.prefix.clear(&mut self.model.kv);
    }

    /// Runs one step and returns what happened to each request in it.
    pub async fn step(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        let inputs = self.schedule();
        if inputs.is_empty() {
            return events;
        }
        let read = inputs.iter().any(|inp| {
            inp.logits == Logits::Last
                && self.running.iter().any(|s| {
                    s.id == inp.seq
                        && (!s.req.sampling.is_greedy() || s.req.logprobs.is_some() || s.req.logits)
                })
        });
        self.stats.steps += 1;
        match self.model.step(&self.gpu, &inputs, read).await {
            Ok(out) => {
                for inp in &inputs {
                    if let Some(s) = self.running.iter_mut().find(|s| s.id == inp.seq) {
                        s.cached += inp.tokens.len();
                        self.stats.computed_tokens += inp.tokens.len() as u64;
                    }
                }
                for row in out.rows {
                    self.take_row(row, &mut events);
                }
                if self.cfg.prefix_cache {
                    for s in &mut self.running {
                        let kv = &mut self.model.kv;
                        self.prefix.register(kv, s.id, &s.tokens, &mut s.registered);
                    }
                }
            }
            Err(e) => {
                // Every request of the failed step ends with the error; the rest go on.
                let msg = e.to_string();
                for inp in &inputs {
                    if let Some(i) = self.running.iter().position(|s| s.id == inp.seq) {
                        let s = self.running.remove(i);
                        self.model.free(s.id);
                        events.push(finished(s, FinishReason::Error(msg.clone())));
                    }
                }
            }
        }
        events
    }

    /// A logit row's token: sampled, checked against the stops and limits, emitted.
    fn take_row(&mut self, row: LogitRow, events: &mut Vec<Event>) {
        let Some(i) = self.running.iter().position(|s| s.id == row.seq) else {
            return;
        };
        let s = &mut self.running[i];
        let pos = row.pos + 1;
        let chosen = match (&row.logits, s.req.sampling.is_greedy()) {
            (Some(l), false) => onepath_text::sample(l, &s.req.sampling, u64::from(pos)),
            _ => Ok(row.greedy),
        };
        let logprob = match (&row.logits, s.req.logprobs, &chosen) {
            (Some(l), Some(n), Ok(id)) => Some(token_logprob(l, *id, n)),
            _ => None,
        };
        let (token, logprob) = match (chosen, logprob.transpose()) {
            (Ok(t), Ok(lp)) => (t, lp),
            (Err(e), _) | (_, Err(e)) => {
                let s = self.running.remove(i);
                self.model.free(s.id);
                events.push(finished(s, FinishReason::Error(e.to_string())));
                return;
            }
        };
        s.generated += 1;
        s.usage.completion_tokens += 1;
        self.stats.generated_tokens += 1;
        s.tokens.push(token);
        let is_stop = s.stops.contains(&token);
        let (text, stop_string) = match s.checker.as_mut().map(|c| c.push(token)) {
            Some(Ok(step)) => (step.text, step.stop.is_some()),
            Some(Err(e)) => {
                let s = self.running.remove(i);
                self.model.free(s.id);
                events.push(finished(s, FinishReason::Error(e.to_string())));
                return;
            }
            None => (String::new(), false),
        };
        let mut held = String::new();
        if is_stop {
            // The text held back before a stop token is final now.
            held = text;
        } else {
            events.push(Event::Token {
                id: s.id,
                token,
                pos,
                text,
                logprob,
                logits: if s.req.logits { row.logits } else { None },
            });
        }
        let reason = if is_stop || stop_string {
            Some(FinishReason::Stop)
        } else if s.generated >= s.req.max_tokens {
            Some(FinishReason::Length)
        } else {
            None
        };
        if let Some(reason) = reason {
            let s = self.running.remove(i);
            self.model.free(s.id);
            let mut end = finished(s, reason);
            if let Event::Finished { text, .. } = &mut end {
                text.insert_str(0, &held);
            }
            events.push(end);
        }
    }

    /// The next step's inputs, after any evictions, preemptions and admissions they need.
    fn schedule(&mut self) -> Vec<SeqInput> {
        let inputs = loop {
            match self.plan_running() {
                Ok(inputs) => break inputs,
                Err(()) => {
                    if self.prefix.evict_one(&mut self.model.kv) {
                        continue;
                    }
                    self.preempt_newest();
                }
            }
        };
        self.admit(inputs)
    }

    /// Inputs for the running requests, reserved on a copy of the cache; `Err` if pages ran
    /// short.
    fn plan_running(&self) -> Result<Vec<SeqInput>, ()> {
        let mut dry = self.model.kv.clone();
        let mut budget = self.cfg.step_tokens;
        let mut inputs = Vec::new();
        // Decodes first, then prompt chunks, each oldest first.
        for decoding in [true, false] {
            for s in &self.running {
                let pending = s.tokens.len() - s.cached;
                let is_decode = s.generated > 0 && pending == 1;
                if is_decode != decoding {
                    continue;
                }
                let n = pending.min(self.cfg.chunk).min(budget);
                if n == 0 {
                    continue;
                }
                if let Err(e) = dry.reserve(s.id, n as u32) {
                    debug_assert!(matches!(e, ModelError::OutOfPages { .. }), "{e}");
                    return Err(());
                }
                budget -= n;
                inputs.push(input(s, n));
            }
        }
        Ok(inputs)
    }

    /// Moves the newest running request back to the front of the queue, freeing its pages;
    /// it is recomputed from its tokens when readmitted.
    fn preempt_newest(&mut self) {
        let Some(mut s) = self.running.pop() else {
            return;
        };
        self.model.free(s.id);
        s.cached = 0;
        s.registered = (0, None);
        s.usage.preemptions += 1;
        self.stats.preemptions += 1;
        self.waiting.push_front(s);
    }

    /// Admits waiting requests in order while rows, slots and pages last.
    fn admit(&mut self, mut inputs: Vec<SeqInput>) -> Vec<SeqInput> {
        'again: loop {
            let used: usize = inputs.iter().map(|i| i.tokens.len()).sum();
            let mut budget = self.cfg.step_tokens.saturating_sub(used);
            let mut dry = self.model.kv.clone();
            for inp in &inputs {
                // Counted already (by plan_running or an admission below): cannot fail.
                let reserved = dry.reserve(inp.seq, inp.tokens.len() as u32);
                debug_assert!(reserved.is_ok(), "{reserved:?}");
            }
            while budget > 0 && self.running.len() < self.cfg.max_running {
                let Some(s) = self.waiting.front() else {
                    break 'again;
                };
                let hit = if self.cfg.prefix_cache {
                    self.prefix.lookup(&s.tokens, &self.model.kv)
                } else {
                    Default::default()
                };
                let start = hit.positions(self.model.kv.uses(Kind::Full));
                let n = (s.tokens.len() - start).min(self.cfg.chunk).min(budget);
                let mut trial = dry.clone();
                let fits = adopt(&mut trial, s.id, &hit, start)
                    .and_then(|()| trial.reserve(s.id, n as u32))
                    .is_ok();
                if !fits {
                    if self.prefix.evict_one(&mut self.model.kv) {
                        // Pages came free: count again from the real cache.
                        continue 'again;
                    }
                    break 'again;
                }
                let Some(mut s) = self.waiting.pop_front() else {
                    break 'again;
                };
                if let Err(e) = adopt(&mut self.model.kv, s.id, &hit, start) {
                    // The same adoption just succeeded on the copy; this cannot happen.
                    debug_assert!(false, "{e}");
                    self.waiting.push_front(s);
                    break 'again;
                }
                dry = trial;
                s.usage.cached_tokens += start;
                self.stats.cached_tokens += start as u64;
                s.cached = start;
                budget -= n;
                inputs.push(input(&s, n));
                self.running.push(s);
            }
            break;
        }
        inputs
    }
}

fn check_config(cfg: &EngineConfig) -> Result<(), EngineError> {
    if cfg.chunk == 0 || cfg.max_running == 0 || cfg.step_tokens < cfg.max_running.max(cfg.chunk) {
        return Err(EngineError::Invalid(format!(
            "engine config: chunk ({}) and max_running ({}) must be at least 1, and step_tokens \
             ({}) at least the larger of the two",
            cfg.chunk, cfg.max_running, cfg.step_tokens
        )));
    }
    Ok(())
}

/// Starts `seq` on a prefix-cache hit of `start` positions (nothing for a miss).
fn adopt(
    kv: &mut KvCache,
    seq: u64,
    hit: &crate::prefix::Hit,
    start: usize,
) -> Result<(), ModelError> {
    if start == 0 {
        return Ok(());
    }
    kv.adopt(seq, hit.buffer, &hit.full, &hit.sliding, start as u32)
}

/// The step input feeding `n` of `s`'s pending tokens.
fn input(s: &Seq, n: usize) -> SeqInput {
    let end = s.cached + n;
    SeqInput {
        seq: s.id,
        pos: s.cached as u32,
        tokens: s.tokens[s.cached..end].to_vec(),
        logits: if end == s.tokens.len() {
            Logits::Last
        } else {
            Logits::None
        },
    }
}

fn finished(mut s: Seq, reason: FinishReason) -> Event {
    let text = match s.checker.as_mut().map(StopChecker::finish) {
        Some(Ok(step)) => step.text,
        _ => String::new(),
    };
    Event::Finished {
        id: s.id,
        reason,
        usage: s.usage,
        text,
    }
}

/// The chosen token's log-probability and the `n` most likely tokens'.
fn token_logprob(
    logits: &[f32],
    id: u32,
    n: usize,
) -> Result<TokenLogprob, onepath_text::SampleError> {
    Ok(TokenLogprob {
        logprob: onepath_text::token_logprob(logits, id)?,
        top: onepath_text::top_logprobs(logits, n)?,
    })
}
