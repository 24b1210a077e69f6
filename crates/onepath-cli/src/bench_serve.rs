//! `onepath bench serve`: the engine under Poisson arrivals on a Gemma 4 E2B-shaped model with
//! random MLX 4-bit weights (`onepath_model::synthetic`), at several concurrency levels.
//!
//! Per level C: the engine runs at most C requests; N = max(4C, 16) requests (a 128-token
//! random prompt, exactly 128 new greedy tokens, no stop) arrive as a Poisson process of rate
//! `load * C / T`, T the time one request takes at batch C (from a calibration run of C
//! requests). Reported: aggregate tokens/s (all new tokens over first arrival to last finish),
//! steady tokens/s (over the steps that ran C requests), decode-only tokens/s (over the steps
//! at C requests that held no prompt rows: the engine's own cost beside `bench decode`), time
//! to first token (arrival to first token, queueing included) and inter-token latency,
//! p50/p99 by nearest rank. `bench/peers/torch_serve.py` measures transformers' continuous
//! batching the same way.

use crate::util::adapter_json;
use onepath_engine::{Engine, EngineConfig, Event, Request};
use onepath_gpu::Gpu;
use onepath_model::synthetic::{Shape, checkpoint};
use onepath_model::{LoadOptions, Model, RunOptions};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

type R<T> = Result<T, Box<dyn std::error::Error>>;

pub struct ServeBenchArgs {
    pub layers: usize,
    pub concurrency: Vec<usize>,
    pub prompt: usize,
    pub new_tokens: usize,
    pub load: f64,
}

/// Nearest-rank percentile of `v` (sorted here), in ms.
fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1] * 1e3
}

/// A small seeded generator: prompts and arrival gaps.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    fn uniform(&mut self) -> f64 {
        (self.next() as f64 + 0.5) / (1u64 << 53) as f64
    }
}

fn request(rng: &mut Lcg, prompt: usize, new: usize, vocab: usize) -> Request {
    let p = (0..prompt)
        .map(|_| 4 + (rng.next() % (vocab as u64 - 4)) as u32)
        .collect();
    let mut r = Request::greedy(p, new);
    r.ignore_eos = true;
    r
}

/// Per request: arrival, token times.
#[derive(Default)]
struct Trace {
    arrival: Option<Instant>,
    tokens: Vec<Instant>,
}

/// One level: returns its JSON figures.
fn level(e: &mut Engine, a: &ServeBenchArgs, c: usize, seed: u64) -> R<Value> {
    let vocab = e.model().config.vocab;
    let cfg = EngineConfig {
        max_running: c,
        max_waiting: 4096,
        ..*e.config()
    };
    e.reconfigure(EngineConfig {
        step_tokens: cfg.step_tokens.max(c + cfg.chunk),
        ..cfg
    })?;
    let mut rng = Lcg(seed);
    // Calibration: C requests at once; the time one takes sets the arrival rate.
    let t0 = Instant::now();
    for _ in 0..c {
        e.add(request(&mut rng, a.prompt, a.new_tokens.min(32), vocab))?;
    }
    while e.has_work() {
        pollster::block_on(e.step());
    }
    let per_request =
        t0.elapsed().as_secs_f64() * a.new_tokens as f64 / a.new_tokens.min(32) as f64;
    let rate = a.load * c as f64 / per_request;
    let n = (4 * c).max(16);
    let mut at = Vec::with_capacity(n);
    let mut t = 0.0;
    for _ in 0..n {
        at.push(t);
        t += -rng.uniform().ln() / rate;
    }
    let reqs: Vec<Request> = (0..n)
        .map(|_| request(&mut rng, a.prompt, a.new_tokens, vocab))
        .collect();
    let mut traces: HashMap<u64, Trace> = HashMap::new();
    let (mut next, start) = (0, Instant::now());
    let (mut steady_s, mut steady_tok, mut dec_s, mut dec_tok) = (0.0, 0u64, 0.0, 0u64);
    while next < n || e.has_work() {
        let now = start.elapsed().as_secs_f64();
        while next < n && at[next] <= now {
            let id = e.add(reqs[next].clone())?;
            traces.entry(id).or_default().arrival = Some(start + Duration::from_secs_f64(at[next]));
            next += 1;
        }
        if !e.has_work() {
            std::thread::sleep(Duration::from_secs_f64((at[next] - now).max(0.0)));
            continue;
        }
        let before = e.stats();
        let t = Instant::now();
        let events = pollster::block_on(e.step());
        let (done, dt) = (Instant::now(), t.elapsed().as_secs_f64());
        let after = e.stats();
        let made = after.generated_tokens - before.generated_tokens;
        if before.running == c {
            steady_s += dt;
            steady_tok += made;
            if after.computed_tokens - before.computed_tokens == made {
                dec_s += dt;
                dec_tok += made;
            }
        }
        for ev in events {
            if let Event::Token { id, .. } = ev {
                traces.entry(id).or_default().tokens.push(done);
            }
        }
    }
    let (mut ttft, mut itl) = (Vec::new(), Vec::new());
    let (mut first, mut last, mut total) = (None::<Instant>, None::<Instant>, 0usize);
    for tr in traces.values() {
        let Some(arr) = tr.arrival else { continue };
        first = Some(first.map_or(arr, |f: Instant| f.min(arr)));
        if let Some(f) = tr.tokens.first() {
            ttft.push((*f - arr).as_secs_f64());
        }
        for w in tr.tokens.windows(2) {
            itl.push((w[1] - w[0]).as_secs_f64());
        }
        if let Some(l) = tr.tokens.last() {
            last = Some(last.map_or(*l, |x: Instant| x.max(*l)));
        }
        total += tr.tokens.len();
    }
    let wall = match (first, last) {
        (Some(f), Some(l)) => (l - f).as_secs_f64(),
        _ => f64::NAN,
    };
    let rate_or_null = |tok: u64, s: f64| {
        if s > 0.0 {
            json!(tok as f64 / s)
        } else {
            Value::Null
        }
    };
    Ok(json!({
        "concurrency": c, "requests": n, "arrival_rate_per_s": rate,
        "aggregate_tokens_per_s": total as f64 / wall,
        "steady_tokens_per_s": rate_or_null(steady_tok, steady_s),
        "decode_only_tokens_per_s": rate_or_null(dec_tok, dec_s),
        "ttft_ms": {"p50": pct(&mut ttft, 50.0), "p99": pct(&mut ttft, 99.0)},
        "itl_ms": {"p50": pct(&mut itl.clone(), 50.0), "p99": pct(&mut itl, 99.0)},
        "wall_s": wall, "preemptions": e.stats().preemptions,
    }))
}

pub fn run(gpu: Gpu, a: &ServeBenchArgs, as_json: bool) -> R<ExitCode> {
    let mut shape = Shape::e2b();
    shape.layers = a.layers;
    shape.kv_shared = shape.kv_shared.min(a.layers.saturating_sub(5));
    let (cfg, ckpt) = checkpoint(&shape, 1)?;
    let max_c = a.concurrency.iter().copied().max().unwrap_or(1);
    let run = RunOptions::for_sequences(&cfg, max_c, a.prompt + a.new_tokens + 8);
    let m = pollster::block_on(Model::load(
        &gpu,
        cfg,
        ckpt,
        &LoadOptions::default(),
        run,
        &mut |_, _| {},
    ))?;
    let adapter = adapter_json(&gpu);
    let mut e = Engine::new(gpu, m, None, EngineConfig::default())?;
    let mut levels = Vec::new();
    for (i, &c) in a.concurrency.iter().enumerate() {
        if !as_json {
            eprintln!("concurrency {c}...");
        }
        levels.push(level(&mut e, a, c.max(1), 7 + i as u64)?);
    }
    if as_json {
        println!(
            "{}",
            json!({
                "adapter": adapter,
                "model": {"shape": "Gemma 4 E2B", "layers": a.layers, "weights": "MLX 4-bit g64 (random)"},
                "prompt": a.prompt, "new_tokens": a.new_tokens, "load": a.load,
                "levels": levels,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Gemma 4 E2B shape ({} layers), random 4-bit weights; {}-token prompts, {} new tokens, \
         Poisson arrivals at load {}",
        a.layers, a.prompt, a.new_tokens, a.load
    );
    println!(
        "{:>5} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9} {:>9}",
        "conc", "agg t/s", "steady", "decode", "ttft p50", "ttft p99", "itl p50", "itl p99"
    );
    let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
    for l in &levels {
        println!(
            "{:>5} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9} {:>9}",
            l["concurrency"],
            f(&l["aggregate_tokens_per_s"]),
            f(&l["steady_tokens_per_s"]),
            f(&l["decode_only_tokens_per_s"]),
            f(&l["ttft_ms"]["p50"]),
            f(&l["ttft_ms"]["p99"]),
            f(&l["itl_ms"]["p50"]),
            f(&l["itl_ms"]["p99"])
        );
    }
    Ok(ExitCode::SUCCESS)
}
