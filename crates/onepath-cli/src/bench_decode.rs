//! `onepath bench decode`: the whole decoder on a Gemma 4 E2B-shaped model with random MLX
//! 4-bit weights made in-process (`onepath_model::synthetic`): load time, prefill tokens/s of
//! a 512-token prompt, decode tokens/s at batch 1, 8 and 32 after a 128-token prompt each
//! (greedy, one submission and one readback of token ids per step), the GPU memory it holds,
//! and a check that rows of a batch equal the same sequences run alone, bit for bit.
//! `bench/peers/torch_decode.py` measures transformers on the same shape.

use crate::util::{adapter_json, median, yes};
use onepath_gpu::Gpu;
use onepath_model::profile::{Profile, ProfileMode};
use onepath_model::synthetic::{Shape, checkpoint};
use onepath_model::{LoadOptions, Logits, Model, RunOptions, SeqInput};
use serde_json::json;
use std::process::ExitCode;
use std::time::Instant;

type R<T> = Result<T, Box<dyn std::error::Error>>;

pub struct DecodeArgs {
    pub layers: usize,
    pub batches: Vec<usize>,
    pub steps: usize,
    pub prompt: usize,
    pub prefill: usize,
    /// Also measure where a step's time goes (host phases; GPU time per part of the step).
    pub profile: bool,
}

fn tokens(seed: u64, n: usize, vocab: usize) -> Vec<u32> {
    (0..n as u64)
        .map(|i| {
            ((i.wrapping_mul(0x9E37_79B9) ^ seed.wrapping_mul(0x85EB_CA6B)) >> 5) as u32
                % vocab as u32
        })
        .map(|t| t.max(3))
        .collect()
}

/// Prefills `b` sequences (ids `base..base+b`) with `prompt`-token prompts in one step.
fn prefill(gpu: &Gpu, m: &mut Model, base: u64, b: usize, prompt: usize) -> R<Vec<SeqInput>> {
    let v = m.config.vocab;
    let inputs: Vec<SeqInput> = (0..b as u64)
        .map(|s| SeqInput {
            seq: base + s,
            pos: 0,
            tokens: tokens(base + s, prompt, v),
            logits: Logits::Last,
        })
        .collect();
    let out = pollster::block_on(m.step(gpu, &inputs, false))?;
    Ok(out
        .rows
        .into_iter()
        .map(|r| SeqInput {
            seq: r.seq,
            pos: r.pos + 1,
            tokens: vec![r.greedy],
            logits: Logits::Last,
        })
        .collect())
}

/// `steps` greedy decode steps; returns each step's wall time (s) and the next inputs.
fn decode(
    gpu: &Gpu,
    m: &mut Model,
    mut next: Vec<SeqInput>,
    steps: usize,
    logits: bool,
) -> R<(Vec<f64>, Vec<Vec<f32>>)> {
    let mut times = Vec::with_capacity(steps);
    let mut rows = Vec::new();
    for _ in 0..steps {
        let t = Instant::now();
        let out = pollster::block_on(m.step(gpu, &next, logits))?;
        times.push(t.elapsed().as_secs_f64());
        for (s, r) in next.iter_mut().zip(out.rows) {
            s.pos = r.pos + 1;
            s.tokens = vec![r.greedy];
            if let Some(l) = r.logits {
                rows.push(l);
            }
        }
    }
    Ok((times, rows))
}

pub fn run(gpu: &Gpu, a: &DecodeArgs, as_json: bool) -> R<ExitCode> {
    let mut shape = Shape::e2b();
    shape.layers = a.layers;
    shape.kv_shared = shape.kv_shared.min(a.layers.saturating_sub(5));
    let t = Instant::now();
    let (cfg, ckpt) = checkpoint(&shape, 1)?;
    let build_s = t.elapsed().as_secs_f64();
    let max_b = a.batches.iter().copied().max().unwrap_or(1);
    let len = a.prefill.max(a.prompt + a.steps + 8);
    let mut run = RunOptions::for_sequences(&cfg, max_b + 2, len);
    run.max_rows = a.prefill.max(max_b * a.prompt).max(1);
    let t = Instant::now();
    let mut m = pollster::block_on(Model::load(
        gpu,
        cfg,
        ckpt,
        &LoadOptions::default(),
        run,
        &mut |_, _| {},
    ))?;
    let load_s = t.elapsed().as_secs_f64();

    // Prefill: one warm-up, then the timed one (a fresh sequence each).
    let mut prefill_s = Vec::new();
    for rep in 0..3u64 {
        let t = Instant::now();
        prefill(gpu, &mut m, 1000 + rep, 1, a.prefill)?;
        if rep > 0 {
            prefill_s.push(t.elapsed().as_secs_f64());
        }
        m.free(1000 + rep);
    }
    let prefill_tps = a.prefill as f64 / median(&prefill_s);

    let mut cases = Vec::new();
    for &b in &a.batches {
        let next = prefill(gpu, &mut m, 0, b, a.prompt)?;
        let (_, _) = decode(gpu, &mut m, next.clone(), 2, false)?;
        for s in 0..b as u64 {
            m.free(s);
        }
        let next = prefill(gpu, &mut m, 0, b, a.prompt)?;
        let (times, _) = decode(gpu, &mut m, next, a.steps, false)?;
        let total: f64 = times.iter().sum();
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
        for s in 0..b as u64 {
            m.free(s);
        }
        cases.push(json!({
            "batch": b,
            "tokens_per_s": (b * a.steps) as f64 / total,
            "step_ms_p50": median(&times) * 1e3,
            "step_ms_p99": p99 * 1e3,
        }));
    }

    // Invariance: rows 0 and b-1 of a batch of the largest size, 3 decode steps, against the
    // same sequences alone.
    let check_steps = 3;
    let b = max_b;
    let next = prefill(gpu, &mut m, 0, b, a.prompt)?;
    let (_, batched) = decode(gpu, &mut m, next, check_steps, true)?;
    for s in 0..b as u64 {
        m.free(s);
    }
    let mut equal = true;
    for s in [0usize, b - 1] {
        let mut alone = prefill(gpu, &mut m, s as u64, 1, a.prompt)?;
        alone[0].seq = s as u64;
        let (_, solo) = decode(gpu, &mut m, alone, check_steps, true)?;
        m.free(s as u64);
        for (i, row) in solo.iter().enumerate() {
            let bat = &batched[i * b + s];
            equal &= row
                .iter()
                .map(|x| x.to_bits())
                .eq(bat.iter().map(|x| x.to_bits()));
        }
    }
    let mut profiles = Vec::new();
    if a.profile {
        for &b in &a.batches {
            profiles.push(profile_batch(gpu, &mut m, b, a.prompt)?);
        }
    }
    let gpu_mib = m.gpu_bytes() as f64 / (1 << 20) as f64;
    if as_json {
        println!(
            "{}",
            json!({
                "adapter": adapter_json(gpu),
                "model": {"shape": "Gemma 4 E2B", "layers": a.layers, "weights": "MLX 4-bit g64 bf16 scales (random)", "kv": format!("{:?}", m.kv_dtype)},
                "build_s": build_s, "load_s": load_s,
                "prefill": {"tokens": a.prefill, "tokens_per_s": prefill_tps, "ms": median(&prefill_s) * 1e3},
                "decode": cases, "prompt": a.prompt, "steps": a.steps,
                "gpu_mib": gpu_mib,
                "batched_rows_equal_alone": equal,
                "profile": profiles,
            })
        );
    } else {
        println!("{}", gpu.describe());
        println!(
            "Gemma 4 E2B shape ({} layers), random MLX 4-bit weights, {:?} K/V",
            a.layers, m.kv_dtype
        );
        println!(
            "made in {build_s:.1} s, loaded in {load_s:.1} s, GPU memory held {gpu_mib:.0} MiB"
        );
        println!(
            "prefill {} tokens: {:.0} tokens/s ({:.1} ms)",
            a.prefill,
            prefill_tps,
            median(&prefill_s) * 1e3
        );
        println!(
            "{:>6} {:>12} {:>10} {:>10}",
            "batch", "tokens/s", "p50 ms", "p99 ms"
        );
        for c in &cases {
            println!(
                "{:>6} {:>12.1} {:>10.2} {:>10.2}",
                c["batch"],
                c["tokens_per_s"].as_f64().unwrap_or(0.0),
                c["step_ms_p50"].as_f64().unwrap_or(0.0),
                c["step_ms_p99"].as_f64().unwrap_or(0.0)
            );
        }
        println!(
            "batch-{b} rows 0 and {} equal the same sequences alone, bit for bit: {}",
            b - 1,
            yes(equal)
        );
        for p in &profiles {
            println!("profile {p:#}");
        }
    }
    Ok(if equal {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Host phases and GPU time per part of a decode step at batch `b` (ms per step), 8 steps
/// each way.
fn profile_batch(gpu: &Gpu, m: &mut Model, b: usize, prompt: usize) -> R<serde_json::Value> {
    let steps = 8;
    let mut out = json!({"batch": b});
    for mode in [ProfileMode::Phases, ProfileMode::Ops] {
        let next = prefill(gpu, m, 0, b, prompt)?;
        m.profile = Some(Profile::new(mode));
        decode(gpu, m, next, steps, false)?;
        let p = m.profile.take().expect("set above");
        for s in 0..b as u64 {
            m.free(s);
        }
        let per = |x: f64| x * 1e3 / p.pieces as f64;
        match mode {
            ProfileMode::Phases => {
                out["phases_ms"] = json!({
                    "host_prep": per(p.prep_s), "host_attention_plan": per(p.attn_s),
                    "host_record_submit": per(p.encode_s), "wait": per(p.wait_s),
                    "gpu_busy": per(p.gpu_s), "gpu_span": per(p.gpu_span_s),
                });
            }
            ProfileMode::Ops => {
                let ops: serde_json::Map<String, serde_json::Value> = p
                    .ops
                    .iter()
                    .map(|(k, (n, t))| {
                        (
                            k.to_string(),
                            json!({"dispatches": *n as f64 / p.pieces as f64, "gpu_ms": per(*t)}),
                        )
                    })
                    .collect();
                out["ops_own_pass_ms"] = serde_json::Value::Object(ops);
            }
        }
    }
    Ok(out)
}
