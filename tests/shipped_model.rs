//! The model that ships with onepath (`models/kjv-tiny/`): its greedy tokens for the pinned
//! prompts equal those transformers computed on the HF weights and mlx-lm on the 4-bit copy
//! (`models/kjv-tiny/reference.json`, made by `reference.py` there), each on its own copy:
//! 4-bit and f32 greedy paths of a trained model part after a few tokens, so the two are never
//! compared with each other. K/V in f32, as the references keep them; a step is compared while
//! every earlier reference margin (top-1 minus top-2 logit) exceeds 0.01, ten times the
//! decoder's measured logit error on the fixtures.

mod common;
use onepath::ops::sdpa::KvDType;
use onepath_model::{LoadOptions, Logits, Model, RunOptions, SeqInput, open_checkpoint, shipped};
use serde_json::Value;
use std::path::Path;

fn greedy(gpu: &onepath::gpu::Gpu, m: &mut Model, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut next = SeqInput {
        seq: 1,
        pos: 0,
        tokens: prompt.to_vec(),
        logits: Logits::Last,
    };
    let mut out = Vec::new();
    while out.len() < n {
        let r = pollster::block_on(m.step(gpu, &[next.clone()], false)).unwrap();
        let t = r.rows[0].greedy;
        out.push(t);
        next.pos += next.tokens.len() as u32;
        next.tokens = vec![t];
    }
    m.free(1);
    out
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn check(gpu: &onepath::gpu::Gpu, m: &mut Model, which: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/kjv-tiny/reference.json");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(root).unwrap()).unwrap();
    for p in r["prompts"].as_array().unwrap() {
        let prompt = ids(&p["prompt_ids"]);
        let want = ids(&p[which]["ids"]);
        let margins: Vec<f64> = p[which]["margins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let sure = margins.iter().take_while(|&&x| x > 0.01).count();
        let got = greedy(gpu, m, &prompt, want.len());
        eprintln!(
            "{which} {}: {} of {} tokens compared",
            p["name"],
            sure,
            want.len()
        );
        assert!(sure >= 8, "too few steps clear of near-ties to compare");
        assert_eq!(got[..sure], want[..sure], "{which} {}", p["name"]);
    }
}

fn opts() -> LoadOptions {
    LoadOptions {
        kv_dtype: Some(KvDType::F32),
        ..Default::default()
    }
}

#[test]
fn the_shipped_4bit_model_reproduces_mlx_lm() {
    let Some(gpu) = common::gpu() else { return };
    let (cfg, ckpt) = shipped::checkpoint().unwrap();
    let run = RunOptions::for_sequences(&cfg, 1, 256);
    let mut m =
        pollster::block_on(Model::load(gpu, cfg, ckpt, &opts(), run, &mut |_, _| {})).unwrap();
    check(gpu, &mut m, "mlx_q4");
}

#[test]
fn the_shipped_hf_weights_reproduce_transformers() {
    let Some(gpu) = common::gpu() else { return };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/kjv-tiny/hf");
    let (cfg, ckpt) = open_checkpoint(&dir).unwrap();
    let run = RunOptions::for_sequences(&cfg, 1, 256);
    let mut m =
        pollster::block_on(Model::load(gpu, cfg, ckpt, &opts(), run, &mut |_, _| {})).unwrap();
    check(gpu, &mut m, "transformers_f32");
}
