//! `onepath crosscheck`: the same prompts on every backend this machine reaches (Vulkan,
//! Metal, DX12, GL), and optionally the browser's WebGPU through a logits file written by
//! `web/test.sh`. Per pair of backends it reports whether the greedy tokens agree (and the
//! first step where they don't), the share of logit positions whose whole row is bitwise equal,
//! and the largest |difference| of a logit.
//!
//! Greedy tokens are generated per backend (no stop tokens: exactly `--max-new-tokens` steps).
//! Logits are teacher-forced on one token sequence per prompt, the same for every backend
//! (prompt + the first backend's greedy tokens), so the comparison never mixes inputs.
//! Exits 1 if greedy tokens differ between any two backends; bitwise equality is measured and
//! reported, not required (drivers differ in `exp`, `tanh`, FMA contraction and f16 rounding).

use crate::{Source, model_source};
use onepath_gpu::{BackendChoice, Gpu, GpuError, GpuOptions};
use onepath_model::{LoadOptions, Logits, Model, RunOptions, SeqInput, open_checkpoint, shipped};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[path = "crosscheck_ops.rs"]
mod ops;

type R<T> = Result<T, Box<dyn std::error::Error>>;

pub struct CrossArgs {
    pub model: Option<PathBuf>,
    /// Prompts as token ids; empty: the model directory's `reference.safetensors` prompts, or
    /// a few fixed texts through its tokenizer.
    pub prompts: Vec<Vec<u32>>,
    pub max_new_tokens: usize,
    pub backends: Vec<BackendChoice>,
    pub browser_logits: Option<PathBuf>,
    pub shader_checks: bool,
}

/// What one backend computed.
struct Run {
    name: String,
    adapter: String,
    /// Greedy tokens per prompt.
    tokens: Vec<Vec<u32>>,
    /// Teacher-forced logits per prompt, `[T, vocab]` flattened.
    logits: Vec<Vec<f32>>,
    /// The op census's outputs ([`ops::ORDER`]).
    ops: Vec<Vec<f32>>,
}

/// How two backends' logits compare.
#[derive(Debug, Default, PartialEq)]
pub struct LogitStats {
    pub positions: usize,
    pub positions_equal: usize,
    pub values: usize,
    pub values_equal: usize,
    pub max_abs_diff: f32,
}

impl LogitStats {
    /// Adds `a` and `b` (same length, whole rows of `vocab`) to the counts.
    pub fn add(&mut self, a: &[f32], b: &[f32], vocab: usize) {
        for (ra, rb) in a.chunks(vocab).zip(b.chunks(vocab)) {
            let mut row_equal = true;
            for (x, y) in ra.iter().zip(rb) {
                if x.to_bits() == y.to_bits() {
                    self.values_equal += 1;
                } else {
                    row_equal = false;
                    let d = (x - y).abs();
                    // NaN on one side counts as an infinite difference.
                    self.max_abs_diff =
                        self.max_abs_diff
                            .max(if d.is_nan() { f32::INFINITY } else { d });
                }
            }
            self.values += ra.len();
            self.positions += 1;
            self.positions_equal += usize::from(row_equal);
        }
    }

    fn json(&self) -> Value {
        json!({
            "positions": self.positions,
            "positions_bitwise_equal": self.positions_equal,
            "position_share": self.positions_equal as f64 / self.positions.max(1) as f64,
            "value_share": self.values_equal as f64 / self.values.max(1) as f64,
            "max_abs_diff": self.max_abs_diff,
        })
    }
}

/// `--tokens` values (`2,17,9`), one prompt each.
pub fn parse_prompts(values: &[String]) -> R<Vec<Vec<u32>>> {
    values
        .iter()
        .map(|v| {
            v.split(',')
                .map(|t| {
                    t.trim()
                        .parse::<u32>()
                        .map_err(|e| format!("--tokens {v}: `{t}` is not a token id ({e})").into())
                })
                .collect()
        })
        .collect()
}

/// First index where `a` and `b` differ (a length difference counts), or `None`.
pub fn first_difference(a: &[u32], b: &[u32]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))
}

/// The backends to try when none is named: every native one wgpu may have here.
pub fn default_backends() -> Vec<BackendChoice> {
    if cfg!(target_os = "macos") {
        vec![
            BackendChoice::Metal,
            BackendChoice::Vulkan,
            BackendChoice::Gl,
        ]
    } else if cfg!(windows) {
        vec![
            BackendChoice::Vulkan,
            BackendChoice::Dx12,
            BackendChoice::Gl,
        ]
    } else {
        vec![BackendChoice::Vulkan, BackendChoice::Gl]
    }
}

fn open(src: &Source) -> R<(onepath_model::Config, onepath_weights::Checkpoint)> {
    Ok(match src {
        Source::Dir(d) => open_checkpoint(d)?,
        Source::Shipped => shipped::checkpoint()?,
    })
}

/// Greedy tokens of every prompt (sequences 0..n, batched), exactly `new` per prompt.
async fn greedy(gpu: &Gpu, m: &mut Model, prompts: &[Vec<u32>], new: usize) -> R<Vec<Vec<u32>>> {
    let mut outs = vec![Vec::new(); prompts.len()];
    let mut inputs: Vec<SeqInput> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| SeqInput {
            seq: i as u64,
            pos: 0,
            tokens: p.clone(),
            logits: Logits::Last,
        })
        .collect();
    for _ in 0..new {
        let out = m.step(gpu, &inputs, false).await?;
        for (row, input) in out.rows.iter().zip(inputs.iter_mut()) {
            outs[row.seq as usize].push(row.greedy);
            input.pos = row.pos + 1;
            input.tokens = vec![row.greedy];
        }
    }
    for i in 0..prompts.len() {
        m.free(i as u64);
    }
    Ok(outs)
}

/// Teacher-forced logits of `tokens` (one sequence, every position).
async fn forward(gpu: &Gpu, m: &mut Model, tokens: &[u32]) -> R<Vec<f32>> {
    let seq = 1 << 40;
    let input = SeqInput {
        seq,
        pos: 0,
        tokens: tokens.to_vec(),
        logits: Logits::All,
    };
    let out = m.step(gpu, &[input], true).await;
    m.free(seq);
    let mut all = Vec::new();
    for r in out?.rows {
        all.extend(r.logits.ok_or("a logit row came back without logits")?);
    }
    Ok(all)
}

/// Runs everything on one backend: greedy tokens, then the teacher-forced sequences (`forced`,
/// or each prompt + its own greedy tokens when this is the first backend), then `extra`.
fn run_backend(
    gpu: &Gpu,
    src: &Source,
    prompts: &[Vec<u32>],
    new: usize,
    forced: Option<&[Vec<u32>]>,
    extra: Option<&[u32]>,
) -> R<(Run, Option<Vec<f32>>)> {
    let (cfg, ckpt) = open(src)?;
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0) + new;
    let len = longest.max(extra.map_or(0, <[u32]>::len));
    if len > cfg.max_positions {
        return Err(format!(
            "{len} positions are beyond the model's context of {}",
            cfg.max_positions
        )
        .into());
    }
    let run = RunOptions::for_sequences(&cfg, prompts.len() + 1, len);
    pollster::block_on(async {
        let mut m =
            Model::load(gpu, cfg, ckpt, &LoadOptions::default(), run, &mut |_, _| {}).await?;
        let tokens = greedy(gpu, &mut m, prompts, new).await?;
        let own: Vec<Vec<u32>>;
        let seqs = match forced {
            Some(f) => f,
            None => {
                own = prompts
                    .iter()
                    .zip(&tokens)
                    .map(|(p, t)| p.iter().chain(t).copied().collect())
                    .collect();
                &own
            }
        };
        let mut logits = Vec::with_capacity(seqs.len());
        for s in seqs {
            logits.push(forward(gpu, &mut m, s).await?);
        }
        let extra = match extra {
            Some(t) => Some(forward(gpu, &mut m, t).await?),
            None => None,
        };
        let run = Run {
            name: String::new(),
            adapter: gpu.describe(),
            tokens,
            logits,
            ops: ops::outputs(gpu, &m.ckpt)?,
        };
        Ok((run, extra))
    })
}

/// The prompts to use when none are given.
fn default_prompts(src: &Source) -> R<Vec<Vec<u32>>> {
    if let Source::Dir(d) = src {
        let path = d.join("reference.safetensors");
        if path.exists() {
            let bytes =
                std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let st = safetensors::SafeTensors::deserialize(&bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let mut out = Vec::new();
            while let Ok(t) = st.tensor(&format!("prompt.{}", out.len())) {
                if t.dtype() != safetensors::Dtype::I32 {
                    return Err(format!("{}: prompt tensors must be I32", path.display()).into());
                }
                let ids: Vec<i32> = bytemuck::pod_collect_to_vec(t.data());
                out.push(
                    ids.into_iter()
                        .map(|x| u32::try_from(x).map_err(|_| format!("negative token id {x}")))
                        .collect::<Result<Vec<u32>, _>>()?,
                );
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }
    let tok = crate::generate::tokenizer(src)?
        .ok_or("the model directory has neither reference.safetensors prompts nor a tokenizer.json: give --tokens")?;
    ["In the beginning", "And God said", "Blessed are the"]
        .iter()
        .map(|t| Ok(tok.encode(t, true)?))
        .collect()
}

/// The browser's logits file: tensor `logits` `[T, vocab]` (F32) and its tokens in the
/// metadata (`tokens`: comma-separated ids), as `web/test.mjs` writes it.
pub fn read_browser_logits(path: &Path) -> R<(String, Vec<u32>, Vec<f32>, usize)> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bad = |why: String| format!("--browser-logits {}: {why}", path.display());
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
    let t = st
        .tensor("logits")
        .map_err(|_| bad("no tensor `logits`".into()))?;
    if t.dtype() != safetensors::Dtype::F32 || t.shape().len() != 2 {
        return Err(bad(format!(
            "`logits` must be F32 [T, vocab]; it is {:?} {:?}",
            t.dtype(),
            t.shape()
        ))
        .into());
    }
    let md = meta.metadata().clone().unwrap_or_default();
    let text = md
        .get("tokens")
        .ok_or_else(|| bad("no `tokens` entry in the metadata".into()))?;
    let tokens = text
        .split(',')
        .map(|s| s.trim().parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("metadata `tokens` is not a list of ids ({e})")))?;
    let (rows, vocab) = (t.shape()[0], t.shape()[1]);
    if rows != tokens.len() {
        return Err(bad(format!("{rows} logit rows for {} tokens", tokens.len())).into());
    }
    let backend = md
        .get("backend")
        .cloned()
        .unwrap_or_else(|| "browser".into());
    Ok((
        backend,
        tokens,
        bytemuck::pod_collect_to_vec(t.data()),
        vocab,
    ))
}

pub fn run(a: &CrossArgs, as_json: bool) -> R<ExitCode> {
    let src = model_source(a.model.as_deref())?;
    let prompts = if a.prompts.is_empty() {
        default_prompts(&src)?
    } else {
        a.prompts.clone()
    };
    if prompts.iter().any(Vec::is_empty) {
        return Err("a prompt is empty: nothing to continue".into());
    }
    let browser = a
        .browser_logits
        .as_deref()
        .map(read_browser_logits)
        .transpose()?;
    let vocab = open(&src)?.0.vocab;
    if let Some((_, _, _, v)) = &browser
        && *v != vocab
    {
        return Err(format!("the browser logits have vocab {v}; the model has {vocab}").into());
    }
    let mut runs: Vec<Run> = Vec::new();
    let mut skipped: Vec<Value> = Vec::new();
    let mut extras: Vec<Vec<f32>> = Vec::new();
    let mut forced: Option<Vec<Vec<u32>>> = None;
    for &b in &a.backends {
        let opts = GpuOptions {
            backend: b,
            force_fallback: false,
            shader_checks: a.shader_checks,
        };
        let gpu = match pollster::block_on(Gpu::new(&opts)) {
            Ok(g) => g,
            Err(e @ (GpuError::NoAdapter { .. } | GpuError::RequestDevice { .. })) => {
                skipped.push(json!({"backend": b.to_string(), "why": e.to_string()}));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let extra = browser.as_ref().map(|(_, t, _, _)| t.as_slice());
        let (mut r, x) = run_backend(
            &gpu,
            &src,
            &prompts,
            a.max_new_tokens,
            forced.as_deref(),
            extra,
        )
        .map_err(|e| format!("backend {b}: {e}"))?;
        r.name = b.to_string();
        if forced.is_none() {
            forced = Some(
                prompts
                    .iter()
                    .zip(&r.tokens)
                    .map(|(p, t)| p.iter().chain(t).copied().collect())
                    .collect(),
            );
        }
        extras.extend(x);
        runs.push(r);
    }
    if runs.is_empty() {
        return Err(format!("no backend could be opened: {skipped:?}").into());
    }
    let mut pairs = Vec::new();
    let mut all_equal = true;
    for i in 0..runs.len() {
        for j in i + 1..runs.len() {
            let (x, y) = (&runs[i], &runs[j]);
            let diffs: Vec<Option<usize>> = x
                .tokens
                .iter()
                .zip(&y.tokens)
                .map(|(p, q)| first_difference(p, q))
                .collect();
            let mut stats = LogitStats::default();
            for (p, q) in x.logits.iter().zip(&y.logits) {
                stats.add(p, q, vocab);
            }
            let equal = diffs.iter().all(Option::is_none);
            all_equal &= equal;
            let census = ops::compare(&x.ops, &y.ops);
            let first_op = ops::ORDER
                .iter()
                .zip(&census)
                .find(|(_, s)| s.values_equal != s.values)
                .map(|(name, _)| *name);
            let op_rows: Vec<Value> = ops::ORDER
                .iter()
                .zip(&census)
                .map(|(name, s)| {
                    json!({"op": name, "bitwise_equal": s.values_equal == s.values,
                           "value_share": s.values_equal as f64 / s.values.max(1) as f64,
                           "max_abs_diff": s.max_abs_diff})
                })
                .collect();
            pairs.push(json!({
                "a": x.name, "b": y.name,
                "tokens_equal": equal,
                "first_differing_step": diffs,
                "logits": stats.json(),
                "ops": op_rows,
                "first_differing_op": first_op,
            }));
        }
    }
    if let Some((name, _, logits, _)) = &browser {
        for (r, x) in runs.iter().zip(&extras) {
            let mut stats = LogitStats::default();
            stats.add(logits, x, vocab);
            pairs.push(json!({
                "a": r.name, "b": "browser", "browser": name,
                "tokens_equal": Value::Null,
                "logits": stats.json(),
            }));
        }
    }
    let report = json!({
        "model": src.to_string(),
        "prompts": prompts.len(),
        "max_new_tokens": a.max_new_tokens,
        "backends": runs.iter().map(|r| json!({"backend": r.name, "adapter": r.adapter, "tokens": r.tokens})).collect::<Vec<_>>(),
        "skipped": skipped,
        "pairs": pairs,
        "all_tokens_equal": all_equal,
    });
    if as_json {
        println!("{report}");
    } else {
        print_table(&report);
    }
    Ok(if all_equal {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_table(r: &Value) {
    println!(
        "crosscheck {} ({} prompts, {} greedy steps)",
        r["model"].as_str().unwrap_or(""),
        r["prompts"],
        r["max_new_tokens"]
    );
    for b in r["backends"].as_array().into_iter().flatten() {
        println!(
            "  {:<7} {}",
            b["backend"].as_str().unwrap_or(""),
            b["adapter"].as_str().unwrap_or("")
        );
    }
    for s in r["skipped"].as_array().into_iter().flatten() {
        println!(
            "  {:<7} not available: {}",
            s["backend"].as_str().unwrap_or(""),
            s["why"].as_str().unwrap_or("")
        );
    }
    println!(
        "{:<18} {:>13} {:>16} {:>12} {:>12}",
        "pair", "tokens equal", "positions equal", "values equal", "max |diff|"
    );
    for p in r["pairs"].as_array().into_iter().flatten() {
        let l = &p["logits"];
        let tokens = match &p["tokens_equal"] {
            Value::Bool(true) => "yes".to_string(),
            Value::Bool(false) => {
                let steps: Vec<String> = p["first_differing_step"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        if s.is_null() {
                            "-".into()
                        } else {
                            s.to_string()
                        }
                    })
                    .collect();
                format!("NO (step {})", steps.join(","))
            }
            _ => "n/a".to_string(),
        };
        println!(
            "{:<18} {:>13} {:>10}/{:<5} {:>11.2}% {:>12.3e}",
            format!(
                "{} vs {}",
                p["a"].as_str().unwrap_or(""),
                p["b"].as_str().unwrap_or("")
            ),
            tokens,
            l["positions_bitwise_equal"],
            l["positions"],
            100.0 * l["value_share"].as_f64().unwrap_or(0.0),
            l["max_abs_diff"].as_f64().unwrap_or(f64::NAN)
        );
        for o in p["ops"].as_array().into_iter().flatten() {
            println!(
                "    op {:<44} {:>8} {:>8.2}% equal, max |diff| {:.3e}",
                o["op"].as_str().unwrap_or(""),
                if o["bitwise_equal"] == true {
                    "same"
                } else {
                    "DIFFERS"
                },
                100.0 * o["value_share"].as_f64().unwrap_or(0.0),
                o["max_abs_diff"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
}
