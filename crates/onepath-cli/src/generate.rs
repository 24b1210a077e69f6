//! `onepath generate` and `onepath logits`: a model directory, prompts, text.
//!
//! Several prompts run together on the engine (continuous batching: prompts read in chunks
//! beside running decodes, `--arrive-every K` admits the i-th prompt at step i*K). A row's
//! logits do not depend on the batch, so each prompt gets the tokens it would get alone; a
//! seeded sample draws its random number from (seed, position) only, so sampling is
//! batch-free too.

use crate::{Source, model_source};
use indicatif::{ProgressBar, ProgressStyle};
use onepath_engine::{Engine, EngineConfig, Event, FinishReason, Request, RequestId};
use onepath_gpu::Gpu;
use onepath_model::{LoadOptions, Logits, Model, RunOptions, SeqInput, open_checkpoint, shipped};
use onepath_text::{ChatMessage, SamplingParams, Tokenizer};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

type R<T> = Result<T, Box<dyn std::error::Error>>;

/// One prompt as given on the command line.
#[derive(Clone, Debug)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

pub struct GenArgs {
    pub model: Option<PathBuf>,
    pub prompts: Vec<Prompt>,
    pub chat: bool,
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    pub quantize: Option<u32>,
    /// The i-th prompt joins the running batch at decode step `i * arrive_every`.
    pub arrive_every: u64,
}

/// The model's tokenizer: the shipped one, or the directory's `tokenizer.json` if it has one.
pub fn tokenizer(src: &Source) -> R<Option<Tokenizer>> {
    let dir = match src {
        Source::Shipped => return Ok(Some(Tokenizer::from_bytes(shipped::TOKENIZER)?)),
        Source::Dir(d) => d,
    };
    let path = dir.join("tokenizer.json");
    Ok(if path.exists() {
        Some(Tokenizer::from_file(&path)?)
    } else {
        None
    })
}

/// Loads the model for `seqs` sequences of up to `len` positions, with a progress bar on
/// stderr (hidden with `--json`).
pub fn load(
    gpu: &Gpu,
    src: &Source,
    quantize: Option<u32>,
    seqs: usize,
    len: usize,
    quiet: bool,
) -> R<Model> {
    let (cfg, ckpt) = match src {
        Source::Dir(dir) => open_checkpoint(dir)?,
        Source::Shipped => shipped::checkpoint()?,
    };
    let quantize = quantize
        .map(|bits| onepath_weights::QuantParams::new(64, bits, "--quantize"))
        .transpose()?;
    let opts = LoadOptions {
        quantize,
        ..Default::default()
    };
    let run = RunOptions::for_sequences(&cfg, seqs, len.min(cfg.max_positions));
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(cfg.layers as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("loading {msg} {bar:30} {pos}/{len} layers")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(src.to_string());
    let model = pollster::block_on(Model::load(gpu, cfg, ckpt, &opts, run, &mut |done, _| {
        bar.set_position(done as u64)
    }))?;
    bar.finish_and_clear();
    Ok(model)
}

/// Token ids of each prompt: `--tokens` as given, `--prompt` encoded (with `<bos>`), or in the
/// chat turn format with `--chat`.
fn encode(prompts: &[Prompt], tok: Option<&Tokenizer>, chat: bool) -> R<Vec<Vec<u32>>> {
    prompts
        .iter()
        .map(|p| match p {
            Prompt::Tokens(t) => Ok(t.clone()),
            Prompt::Text(text) => {
                let tok = tok.ok_or(
                    "--prompt needs a tokenizer.json in the model directory (or give --tokens)",
                )?;
                Ok(if chat {
                    tok.chat_prompt(&[ChatMessage::user(text.clone())], true)?
                } else {
                    tok.encode(text, true)?
                })
            }
        })
        .collect()
}

pub fn generate(gpu: Gpu, a: &GenArgs, as_json: bool) -> R<ExitCode> {
    if a.prompts.is_empty() {
        return Err("give at least one --prompt TEXT or --tokens ID,ID,...".into());
    }
    a.sampling.validate()?;
    let src = model_source(a.model.as_deref())?;
    let tok = tokenizer(&src)?;
    let prompts = encode(&a.prompts, tok.as_ref(), a.chat)?;
    let cfg = onepath_model::Config::from_json(&read_config(&src)?)?;
    for (i, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(format!("prompt {i} is empty: nothing to continue").into());
        }
        let need = p.len() + a.max_new_tokens;
        if need > cfg.max_positions {
            return Err(format!(
                "prompt {i} has {} tokens; with --max-new-tokens {} that is {need} positions, beyond \
                 the model's context of {}",
                p.len(),
                a.max_new_tokens,
                cfg.max_positions
            )
            .into());
        }
    }
    let n = prompts.len();
    let len = prompts.iter().map(Vec::len).max().unwrap_or(0) + a.max_new_tokens;
    let model = load(&gpu, &src, a.quantize, n, len, as_json)?;
    let decode_tok = tok.clone();
    let cfg = EngineConfig {
        max_running: n.clamp(1, 256),
        step_tokens: n.clamp(512, 4096),
        max_waiting: n,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(gpu, model, tok, cfg)?;
    let stream = !as_json && n == 1;
    let outs = run_engine(&mut engine, &prompts, a, &mut |_, text| {
        if stream {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
    })?;
    if stream {
        println!();
    }
    let tok = decode_tok.as_ref();
    let texts: Vec<Option<String>> = outs
        .iter()
        .map(|o| tok.and_then(|t| t.decode_with(o, true).ok()))
        .collect();
    if as_json {
        let outputs: Vec<_> = outs
            .iter()
            .zip(&texts)
            .map(|(o, t)| json!({"tokens": o, "text": t}))
            .collect();
        println!("{}", json!({ "outputs": outputs }));
    } else if !stream {
        for (i, (o, t)) in outs.iter().zip(&texts).enumerate() {
            println!("--- output {i} ({} tokens)", o.len());
            match t {
                Some(t) => println!("{t}"),
                None => println!("{o:?}"),
            }
        }
    } else if tok.is_none() {
        println!("{:?}", outs[0]);
    }
    Ok(ExitCode::SUCCESS)
}

/// The model's context (positions).
pub fn context_of(src: &Source) -> R<usize> {
    Ok(onepath_model::Config::from_json(&read_config(src)?)?.max_positions)
}

fn read_config(src: &Source) -> R<String> {
    let dir = match src {
        Source::Shipped => return Ok(shipped::CONFIG.to_string()),
        Source::Dir(d) => d,
    };
    let p = dir.join("config.json");
    std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()).into())
}

/// Generates up to `max_new_tokens` for every prompt on the engine, the i-th prompt arriving
/// at step `i * arrive_every`; `emit(i, text)` sees each piece of text as it comes. Returns the
/// new tokens of each prompt (a stop token excluded).
pub fn run_engine(
    engine: &mut Engine,
    prompts: &[Vec<u32>],
    a: &GenArgs,
    emit: &mut dyn FnMut(usize, &str),
) -> R<Vec<Vec<u32>>> {
    let n = prompts.len();
    let mut outs: Vec<Vec<u32>> = vec![Vec::new(); n];
    if a.max_new_tokens == 0 {
        return Ok(outs);
    }
    let mut ids: Vec<Option<RequestId>> = vec![None; n];
    let mut done = 0;
    let mut step = 0u64;
    while done < n {
        for (i, p) in prompts.iter().enumerate() {
            if ids[i].is_none() && step >= i as u64 * a.arrive_every {
                let mut req = Request::greedy(p.clone(), a.max_new_tokens);
                req.sampling = a.sampling;
                ids[i] = Some(engine.add(req)?);
            }
        }
        let index = |id: RequestId| ids.iter().position(|x| *x == Some(id));
        for ev in pollster::block_on(engine.step()) {
            let Some(i) = index(ev.id()) else { continue };
            match ev {
                Event::Token { token, text, .. } => {
                    outs[i].push(token);
                    emit(i, &text);
                }
                Event::Finished { reason, text, .. } => {
                    emit(i, &text);
                    done += 1;
                    if let FinishReason::Error(e) = reason {
                        return Err(format!("prompt {i}: {e}").into());
                    }
                }
            }
        }
        step += 1;
    }
    Ok(outs)
}

/// `onepath logits`: one full-sequence forward; the soft-capped f32 logits of every position
/// in a safetensors file, tensor `logits` `[T, vocab]`.
pub fn logits(
    gpu: &Gpu,
    model: Option<&Path>,
    tokens: &[u32],
    out: &Path,
    as_json: bool,
) -> R<ExitCode> {
    if tokens.is_empty() {
        return Err("--tokens is empty: give at least one token id".into());
    }
    let src = model_source(model)?;
    let mut model = load(gpu, &src, None, 1, tokens.len(), as_json)?;
    let m = &mut model;
    let input = SeqInput {
        seq: 0,
        pos: 0,
        tokens: tokens.to_vec(),
        logits: Logits::All,
    };
    let step = pollster::block_on(m.step(gpu, &[input], true))?;
    let vocab = m.config.vocab;
    let data: Vec<f32> = step
        .rows
        .into_iter()
        .flat_map(|r| r.logits.unwrap_or_default())
        .collect();
    let bytes: &[u8] = bytemuck::cast_slice(&data);
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::F32,
        vec![tokens.len(), vocab],
        bytes,
    )?;
    safetensors::serialize_to_file([("logits", view)], None, out)?;
    if as_json {
        println!(
            "{}",
            json!({"out": out.display().to_string(), "shape": [tokens.len(), vocab]})
        );
    } else {
        println!(
            "wrote logits [{}, {vocab}] to {}",
            tokens.len(),
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
