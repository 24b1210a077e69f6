//! Engine test helpers: a fixture model behind an engine, a driver that feeds requests at
//! given steps, and each request's solo run to compare with.
#![allow(dead_code)]

use onepath_engine::{Engine, EngineConfig, Event, FinishReason, Request, TokenLogprob, Usage};
use onepath_gpu::{BackendChoice, Gpu, GpuOptions};
use onepath_model::{LoadOptions, Model, RunOptions, open_checkpoint};
use std::collections::HashMap;
use std::path::PathBuf;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/gemma4")
        .join(name)
}

/// A device on `ONEPATH_BACKEND`'s adapter; `None` (the test says it skips) without one,
/// a failure with `CI` set.
pub fn gpu() -> Option<Gpu> {
    let opts = GpuOptions {
        backend: BackendChoice::from_env().expect("ONEPATH_BACKEND"),
        force_fallback: false,
        shader_checks: GpuOptions::checks_from_env(),
    };
    match pollster::block_on(Gpu::new(&opts)) {
        Ok(g) => Some(g),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("CI is set and no GPU adapter is usable, which fails the run: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED (no GPU adapter; CI would fail here): {e}");
            None
        }
    }
}

/// An engine over fixture `name` with `pages` (full, sliding) KV pages.
pub fn engine(name: &str, pages: (u32, u32), cfg: EngineConfig) -> Option<Engine> {
    let gpu = gpu()?;
    let (mc, ckpt) = open_checkpoint(&fixture(name)).expect("fixture");
    let run = RunOptions {
        max_rows: 256,
        pages,
        kv_max_binding: None,
    };
    let opts = LoadOptions::default();
    let model = pollster::block_on(Model::load(&gpu, mc, ckpt, &opts, run, &mut |_, _| {}))
        .expect("load fixture");
    Some(Engine::new(gpu, model, None, cfg).expect("engine"))
}

/// Small chunks and steps, so prompts are read in several chunks beside running decodes.
pub fn small_steps() -> EngineConfig {
    EngineConfig {
        chunk: 32,
        step_tokens: 64,
        max_running: 8,
        max_waiting: 64,
        prefix_cache: true,
    }
}

/// What a request got, in bits.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub tokens: Vec<u32>,
    pub logits: Vec<Vec<u32>>,
    pub logprobs: Vec<Option<TokenLogprob>>,
    pub reason: FinishReason,
    pub usage: Usage,
}

/// A logprob as bits: (chosen, [(id, alternative)]).
type LogprobBits = Option<(u64, Vec<(u32, u64)>)>;

fn logprob_bits(l: &Option<TokenLogprob>) -> LogprobBits {
    l.as_ref().map(|t| {
        let top = t.top.iter().map(|(i, v)| (*i, v.to_bits())).collect();
        (t.logprob.to_bits(), top)
    })
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            tokens: vec![],
            logits: vec![],
            logprobs: vec![],
            reason: FinishReason::Cancelled,
            usage: Usage::default(),
        }
    }

    /// Tokens, logits and logprobs (the parts that must not depend on the batch).
    pub fn same_answer(&self, o: &Outcome) -> bool {
        let bits = |l: &[Option<TokenLogprob>]| l.iter().map(logprob_bits).collect::<Vec<_>>();
        self.tokens == o.tokens
            && self.logits == o.logits
            && bits(&self.logprobs) == bits(&o.logprobs)
            && self.reason == o.reason
    }
}

/// Gathers events into outcomes, by arrival index.
struct Collector {
    ids: Vec<Option<u64>>,
    partial: HashMap<u64, Outcome>,
    done: Vec<Option<Outcome>>,
}

impl Collector {
    fn take(&mut self, ev: Event) {
        let o = self.partial.entry(ev.id()).or_insert_with(Outcome::new);
        match ev {
            Event::Token {
                token,
                logprob,
                logits,
                ..
            } => {
                o.tokens.push(token);
                o.logprobs.push(logprob);
                let logits = logits.unwrap_or_default();
                o.logits.push(logits.iter().map(|x| x.to_bits()).collect());
            }
            Event::Finished {
                id, reason, usage, ..
            } => {
                o.reason = reason;
                o.usage = usage;
                let i = self.ids.iter().position(|x| *x == Some(id)).unwrap();
                assert!(self.done[i].is_none(), "request {i} finished twice");
                self.done[i] = self.partial.remove(&id);
            }
        }
    }
}

/// Feeds `arrivals` (step, request) and `cancels` (step, index into arrivals) and runs until
/// every request ended; each request's outcome, in arrival order.
pub fn drive(
    e: &mut Engine,
    arrivals: &[(u64, Request)],
    cancels: &[(u64, usize)],
) -> Vec<Outcome> {
    let mut c = Collector {
        ids: vec![None; arrivals.len()],
        partial: HashMap::new(),
        done: vec![None; arrivals.len()],
    };
    let mut step = 0u64;
    loop {
        for (i, (at, req)) in arrivals.iter().enumerate() {
            if *at == step {
                c.ids[i] = Some(e.add(req.clone()).expect("add"));
            }
        }
        for &(at, i) in cancels {
            if at == step
                && let Some(id) = c.ids[i]
                && let Some(ev) = e.cancel(id)
            {
                c.take(ev);
            }
        }
        let later = arrivals.iter().any(|(at, _)| *at > step);
        if !e.has_work() && !later {
            break;
        }
        for ev in pollster::block_on(e.step()) {
            c.take(ev);
        }
        step += 1;
        assert!(step < 100_000, "the engine does not finish");
    }
    c.done
        .into_iter()
        .enumerate()
        .map(|(i, o)| o.unwrap_or_else(|| panic!("request {i} never finished")))
        .collect()
}

/// Each request run alone, one after the other, with the prefix cache off.
pub fn solo(e: &mut Engine, reqs: &[Request]) -> Vec<Outcome> {
    let cfg = *e.config();
    e.reconfigure(EngineConfig {
        prefix_cache: false,
        ..cfg
    })
    .unwrap();
    let outs = reqs
        .iter()
        .map(|r| drive(e, &[(0, r.clone())], &[]).remove(0))
        .collect();
    e.reconfigure(cfg).unwrap();
    outs
}

/// Every page back in its pool once the prefix cache lets go.
pub fn assert_no_page_leaked(e: &mut Engine) {
    let s = e.stats();
    assert_eq!((s.running, s.waiting), (0, 0));
    assert_eq!(
        (
            s.free_pages.0 + s.cached_pages.0,
            s.free_pages.1 + s.cached_pages.1
        ),
        s.total_pages,
        "pages held by no request are neither free nor cached: {s:?}"
    );
    e.clear_prefix_cache();
    let s = e.stats();
    assert_eq!(s.free_pages, s.total_pages, "{s:?}");
}

/// Seeded prompt ids below `vocab` (a small linear congruential generator).
pub fn prompt(seed: u64, len: usize, vocab: u32) -> Vec<u32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Skip ids 0..4 (pad, eos, bos, unk in the fixtures' vocabulary).
            4 + ((x >> 33) as u32) % (vocab - 4)
        })
        .collect()
}
