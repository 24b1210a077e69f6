//! The Gemma 4 decoder against the reference libraries on the fixture models
//! (`tests/fixtures/gemma4/`): transformers on the HF f32 and bf16 checkpoints, mlx-lm on the
//! MLX 4-bit ones, every reference computed in f32.
//!
//! Tolerances (absolute, on the soft-capped logits, whose magnitudes reach about 24):
//! - K/V in f32: 1e-3 (measured at most 3.3e-4 on lavapipe);
//! - the default f16 K/V for bf16 and 4-bit checkpoints: 0.1 (measured at most 0.045; the
//!   difference is f16's rounding of K and V, nothing else: with f32 K/V the same runs agree
//!   to 1e-4).
//!
//! Greedy tokens: teacher-forced, the argmax equals the reference's wherever the reference's
//! top-1 margin exceeds twice the tolerance; free-running with f32 K/V, all 32 greedy tokens of
//! every prompt equal the reference's (its smallest margin along those paths is 0.003,
//! ten times the measured error).

mod common;
mod gemma4_common;
use gemma4_common::*;
use onepath::ops::sdpa::KvDType;
use onepath_model::{LoadOptions, Logits, SeqInput};

const NAMES: [&str; 6] = ["a-f32", "a-bf16", "a-q4", "b-f32", "b-bf16", "b-q4"];

fn f32_kv() -> LoadOptions {
    LoadOptions {
        kv_dtype: Some(KvDType::F32),
        ..Default::default()
    }
}

/// Index of the largest value and its margin over the second largest.
fn top1(row: &[f32]) -> (usize, f32) {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    (idx[0], row[idx[0]] - row[idx[1]])
}

fn check_teacher_forced(name: &str, opts: LoadOptions, tol: f32) {
    let gpu = common::gpu().expect("checked by the caller");
    let mut m = load_with(gpu, name, 1, opts);
    let v = m.config.vocab;
    for (i, r) in references(name).iter().enumerate() {
        let toks: Vec<u32> = r.prompt.iter().chain(&r.greedy).copied().collect();
        let got = forward(gpu, &mut m, 1, &toks);
        let err = max_abs_diff(&got, &r.logits);
        eprintln!("{name} prompt {i}: max |logit - reference| = {err:.2e}");
        assert!(err <= tol, "{name} prompt {i}: {err} > {tol}");
        for (t, (g, w)) in got.chunks(v).zip(r.logits.chunks(v)).enumerate() {
            let (want, margin) = top1(w);
            if margin > 2.0 * tol {
                assert_eq!(top1(g).0, want, "{name} prompt {i} position {t}");
            }
        }
    }
}

#[test]
fn logits_match_the_references_with_f32_kv() {
    if common::gpu().is_none() {
        return;
    }
    for name in NAMES {
        check_teacher_forced(name, f32_kv(), 1e-3);
    }
}

#[test]
fn logits_match_the_references_with_the_default_f16_kv() {
    if common::gpu().is_none() {
        return;
    }
    for name in ["a-bf16", "a-q4", "b-bf16", "b-q4"] {
        check_teacher_forced(name, LoadOptions::default(), 0.1);
    }
}

#[test]
fn free_running_greedy_tokens_equal_the_references() {
    let Some(gpu) = common::gpu() else { return };
    for name in NAMES {
        let mut m = load_with(gpu, name, 1, f32_kv());
        for (i, r) in references(name).iter().enumerate() {
            let mut next = SeqInput {
                seq: 7,
                pos: 0,
                tokens: r.prompt.clone(),
                logits: Logits::Last,
            };
            let mut out = Vec::new();
            while out.len() < r.greedy.len() {
                let step = pollster::block_on(m.step(gpu, &[next.clone()], false)).unwrap();
                let tok = step.rows[0].greedy;
                out.push(tok);
                next.pos += next.tokens.len() as u32;
                next.tokens = vec![tok];
            }
            m.free(7);
            assert_eq!(out, r.greedy, "{name} prompt {i}");
        }
    }
}
