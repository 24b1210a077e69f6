//! The decoder's one rule, bitwise: a (sequence, position)'s logits do not depend on how its
//! tokens were cut into steps (one prefill, token-by-token decode, chunks of any size, a step
//! cut to fit the working set), on which other sequences share its steps (staggered, with
//! different lengths, prefill beside decode), or on where its pages are.
//!
//! Prompts of 150 tokens cross two 64-key page boundaries and the fixtures' 8-key sliding
//! window many times. Model a is HF bf16 (dense kernels, f16 K/V); model b is MLX 4-bit with
//! `attention_k_eq_v` and 2 sliding / 1 full KV heads.

mod common;
mod gemma4_common;
use common::assert_same_bits;
use gemma4_common::*;
use onepath_model::{Logits, Model, RunOptions, SeqInput, open_checkpoint};

fn prompt(seed: u32, len: usize, vocab: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed * 97) >> 7) % vocab as u32)
        .collect()
}

/// All logits of `tokens` fed as sequence `seq` in pieces of `chunk` tokens (each its own step).
fn in_chunks(
    gpu: &onepath::gpu::Gpu,
    m: &mut Model,
    seq: u64,
    tokens: &[u32],
    chunk: usize,
) -> Vec<f32> {
    let mut out = Vec::new();
    for (i, piece) in tokens.chunks(chunk).enumerate() {
        let input = SeqInput {
            seq,
            pos: (i * chunk) as u32,
            tokens: piece.to_vec(),
            logits: Logits::All,
        };
        let step = pollster::block_on(m.step(gpu, &[input], true)).unwrap();
        out.extend(step.rows.into_iter().flat_map(|r| r.logits.unwrap()));
    }
    m.free(seq);
    out
}

#[test]
fn prefill_decode_and_chunked_prefill_give_the_same_bits() {
    let Some(gpu) = common::gpu() else { return };
    for name in ["a-bf16", "b-q4"] {
        let mut m = load(gpu, name, 2);
        let toks = prompt(1, 150, m.config.vocab);
        let whole = in_chunks(gpu, &mut m, 1, &toks, toks.len());
        // Steps that ask for no logits (a prompt's first chunks) change nothing either.
        let v = m.config.vocab;
        for (i, piece) in toks[..100].chunks(37).enumerate() {
            let input = SeqInput {
                seq: 3,
                pos: (i * 37) as u32,
                tokens: piece.to_vec(),
                logits: Logits::None,
            };
            let out = pollster::block_on(m.step(gpu, &[input], true)).unwrap();
            assert!(out.rows.is_empty());
        }
        let rest = SeqInput {
            seq: 3,
            pos: 100,
            tokens: toks[100..].to_vec(),
            logits: Logits::All,
        };
        let out = pollster::block_on(m.step(gpu, &[rest], true)).unwrap();
        m.free(3);
        let got: Vec<f32> = out
            .rows
            .into_iter()
            .flat_map(|r| r.logits.unwrap())
            .collect();
        assert_same_bits(
            &got,
            &whole[100 * v..],
            &format!("{name}: after steps without logits"),
        );
        for chunk in [1, 7, 64, 100] {
            let got = in_chunks(gpu, &mut m, 2, &toks, chunk);
            assert_same_bits(
                &got,
                &whole,
                &format!("{name}: chunks of {chunk} vs one prefill"),
            );
        }
    }
}

#[test]
fn a_sequence_in_a_busy_batch_equals_itself_alone() {
    let Some(gpu) = common::gpu() else { return };
    for name in ["a-bf16", "b-q4"] {
        let mut m = load(gpu, name, 6);
        let v = m.config.vocab;
        let target = prompt(3, 90, v);
        let alone = in_chunks(gpu, &mut m, 100, &target, 90);
        // The target arrives at step 3 while others run: some prefill in chunks, some decode
        // one token a step; a late one joins after the target. Pages interleave.
        let others: Vec<Vec<u32>> = (0..4)
            .map(|s| prompt(10 + s, 40 + 37 * s as usize, v))
            .collect();
        let mut fed = [0usize; 5];
        let mut got = Vec::new();
        for step in 0..40 {
            let mut inputs = Vec::new();
            for (s, toks) in others.iter().enumerate() {
                let start = if s == 3 { 6 } else { s };
                if step < start || fed[s] >= toks.len() {
                    continue;
                }
                let n = if s % 2 == 0 { 1 } else { 13 }.min(toks.len() - fed[s]);
                inputs.push(SeqInput {
                    seq: s as u64,
                    pos: fed[s] as u32,
                    tokens: toks[fed[s]..fed[s] + n].to_vec(),
                    logits: Logits::Last,
                });
                fed[s] += n;
            }
            if step >= 3 && fed[4] < target.len() {
                let n = [17, 1, 30, 2, 40][(step - 3) % 5].min(target.len() - fed[4]);
                inputs.insert(
                    inputs.len() / 2,
                    SeqInput {
                        seq: 100,
                        pos: fed[4] as u32,
                        tokens: target[fed[4]..fed[4] + n].to_vec(),
                        logits: Logits::All,
                    },
                );
                fed[4] += n;
            }
            if inputs.is_empty() {
                break;
            }
            let out = pollster::block_on(m.step(gpu, &inputs, true)).unwrap();
            got.extend(
                out.rows
                    .into_iter()
                    .filter(|r| r.seq == 100)
                    .flat_map(|r| r.logits.unwrap()),
            );
        }
        assert_eq!(fed[4], target.len());
        assert_same_bits(&got, &alone, &format!("{name}: in a busy batch vs alone"));
    }
}

#[test]
fn a_step_cut_to_fit_the_working_set_changes_nothing() {
    let Some(gpu) = common::gpu() else { return };
    let (cfg, ckpt) = open_checkpoint(&fixture("a-q4")).unwrap();
    let mut run = RunOptions::for_sequences(&cfg, 3, 64);
    run.max_rows = 5;
    let mut small = pollster::block_on(onepath_model::Model::load(
        gpu,
        cfg,
        ckpt,
        &Default::default(),
        run,
        &mut |_, _| {},
    ))
    .unwrap();
    let mut big = load(gpu, "a-q4", 3);
    let v = big.config.vocab;
    let inputs: Vec<SeqInput> = (0..3)
        .map(|s| SeqInput {
            seq: s,
            pos: 0,
            tokens: prompt(s as u32, 9 + 4 * s as usize, v),
            logits: Logits::All,
        })
        .collect();
    let a = pollster::block_on(small.step(gpu, &inputs, true)).unwrap();
    let b = pollster::block_on(big.step(gpu, &inputs, true)).unwrap();
    let flat = |o: onepath_model::StepOutput| {
        o.rows
            .into_iter()
            .flat_map(|r| r.logits.unwrap())
            .collect::<Vec<f32>>()
    };
    assert_same_bits(
        &flat(a),
        &flat(b),
        "a step cut into 5-row pieces vs one piece",
    );
}

/// `--quantize 4` at load is MLX's own conversion: the bf16 checkpoint quantized by onepath
/// gives the logits of the 4-bit checkpoint mlx-lm's `convert` made from it, bit for bit.
#[test]
fn quantizing_at_load_gives_the_bits_of_mlx_lms_conversion() {
    let Some(gpu) = common::gpu() else { return };
    let q = onepath_weights::QuantParams::new(64, 4, "test").unwrap();
    let opts = onepath_model::LoadOptions {
        quantize: Some(q),
        ..Default::default()
    };
    let mut ours = load_with(gpu, "a-bf16", 1, opts);
    let mut theirs = load(gpu, "a-q4", 1);
    let toks = prompt(5, 40, ours.config.vocab);
    let a = in_chunks(gpu, &mut ours, 1, &toks, 40);
    let b = in_chunks(gpu, &mut theirs, 1, &toks, 40);
    assert_same_bits(&a, &b, "a-bf16 quantized at load vs a-q4 from mlx-lm");
}

/// A KV pool larger than one binding spreads over several buffers, each sequence in one:
/// the same busy steps give the bits of one big buffer.
#[test]
fn a_pool_over_several_buffers_gives_the_bits_of_one() {
    let Some(gpu) = common::gpu() else { return };
    let (cfg, ckpt) = open_checkpoint(&fixture("a-bf16")).unwrap();
    let mut run = RunOptions::for_sequences(&cfg, 4, 128);
    let one = pollster::block_on(onepath_model::Model::load(
        gpu,
        cfg.clone(),
        ckpt,
        &Default::default(),
        run,
        &mut |_, _| {},
    ));
    let mut one = one.unwrap();
    // Two full-attention pages (32 KiB each here) per buffer: the sequences need four buffers.
    run.kv_max_binding = Some(64 << 10);
    let (_, ckpt) = open_checkpoint(&fixture("a-bf16")).unwrap();
    let mut many = pollster::block_on(onepath_model::Model::load(
        gpu,
        cfg,
        ckpt,
        &Default::default(),
        run,
        &mut |_, _| {},
    ))
    .unwrap();
    assert!(many.kv.full.buffers.len() >= 4 && one.kv.full.buffers.len() == 1);
    let v = one.config.vocab;
    let prompts: Vec<Vec<u32>> = (0..4)
        .map(|s| prompt(20 + s, 60 + 15 * s as usize, v))
        .collect();
    let mut fed = [0usize; 4];
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for step in 0..12 {
        let mut inputs = Vec::new();
        for s in 0..4 {
            if fed[s] >= prompts[s].len() || step < s {
                continue;
            }
            let n = if step == s { 30 } else { 7 }.min(prompts[s].len() - fed[s]);
            inputs.push(SeqInput {
                seq: s as u64,
                pos: fed[s] as u32,
                tokens: prompts[s][fed[s]..fed[s] + n].to_vec(),
                logits: Logits::All,
            });
            fed[s] += n;
        }
        if inputs.is_empty() {
            break;
        }
        for (m, out) in [(&mut one, &mut a), (&mut many, &mut b)] {
            let r = pollster::block_on(m.step(gpu, &inputs, true)).unwrap();
            out.extend(r.rows.into_iter().flat_map(|r| r.logits.unwrap()));
        }
    }
    let bufs: std::collections::BTreeSet<u32> = many.kv.seqs.values().map(|s| s.buffer.0).collect();
    assert!(
        bufs.len() > 1,
        "the sequences landed in one buffer: {bufs:?}"
    );
    assert_same_bits(&b, &a, "a pool over several buffers vs one");
}
