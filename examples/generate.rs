//! Load a Gemma 4 model and generate text, three sequences in one batch, each getting the
//! tokens it would get alone.
//!
//! The model is the one that ships inside onepath (`kjv-tiny`, see `models/kjv-tiny/`); to use
//! a real checkpoint, give its directory: `cargo run --release --example generate -- DIR`
//! (a Hugging Face or mlx-community Gemma 4 directory with config.json, the safetensors and
//! tokenizer.json).
//!
//! Run: `cargo run --release --example generate` (on Linux without a GPU, install lavapipe
//! first: `scripts/setup.sh`).

use onepath::gpu::{Gpu, GpuOptions};
use onepath_model::{LoadOptions, Logits, Model, RunOptions, SeqInput, open_checkpoint, shipped};
use onepath_text::Tokenizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gpu = pollster::block_on(Gpu::new(&GpuOptions::default()))?;

    // 1. The checkpoint and its tokenizer: a directory, or the shipped model.
    let (cfg, ckpt, tok) = match std::env::args().nth(1) {
        Some(dir) => {
            let dir = std::path::Path::new(&dir);
            let (cfg, ckpt) = open_checkpoint(dir)?;
            (cfg, ckpt, Tokenizer::from_file(dir.join("tokenizer.json"))?)
        }
        None => {
            let (cfg, ckpt) = shipped::checkpoint()?;
            (cfg, ckpt, Tokenizer::from_bytes(shipped::TOKENIZER)?)
        }
    };

    // 2. Weights on the GPU, with a paged KV cache for 3 sequences of 128 positions.
    let run = RunOptions::for_sequences(&cfg, 3, 128);
    let mut model = pollster::block_on(Model::load(
        &gpu,
        cfg,
        ckpt,
        &LoadOptions::default(),
        run,
        &mut |_, _| {},
    ))?;

    // 3. The step API: each step lists (sequence, first position, new tokens). The first step
    //    holds the three prompts (ragged, no padding); later steps one token per sequence.
    let prompts = [
        "In the beginning",
        "And the LORD said unto Moses",
        "Blessed are",
    ];
    let mut next: Vec<SeqInput> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(SeqInput {
                seq: i as u64,
                pos: 0,
                tokens: tok.encode(p, true)?,
                logits: Logits::Last,
            })
        })
        .collect::<Result<_, onepath_text::TextError>>()?;
    let mut outs = vec![Vec::new(); prompts.len()];
    for _ in 0..24 {
        let step = pollster::block_on(model.step(&gpu, &next, false))?;
        for (s, row) in next.iter_mut().zip(&step.rows) {
            // Greedy: the argmax was taken on the GPU; only token ids came back.
            outs[row.seq as usize].push(row.greedy);
            s.pos = row.pos + 1;
            s.tokens = vec![row.greedy];
        }
    }

    // 4. The same first prompt alone gives the same tokens, bit for bit the same logits.
    for s in 0..prompts.len() as u64 {
        model.free(s);
    }
    let mut alone = SeqInput {
        seq: 9,
        pos: 0,
        tokens: tok.encode(prompts[0], true)?,
        logits: Logits::Last,
    };
    let mut solo = Vec::new();
    for _ in 0..24 {
        let step = pollster::block_on(model.step(&gpu, std::slice::from_ref(&alone), false))?;
        solo.push(step.rows[0].greedy);
        alone.pos = step.rows[0].pos + 1;
        alone.tokens = vec![step.rows[0].greedy];
    }
    for (p, o) in prompts.iter().zip(&outs) {
        println!("{p}{}", tok.decode_with(o, true)?);
    }
    if solo != outs[0] {
        return Err("the first prompt alone gave other tokens than in the batch".into());
    }
    println!("\nthe first prompt alone gives the same 24 tokens as in the batch: yes");
    Ok(())
}
