//! Helpers for the Gemma 4 model tests: the committed fixture models
//! (`tests/fixtures/gemma4/`, made by its `make_fixtures.py`) and their reference outputs.
#![allow(dead_code)]

use onepath::gpu::Gpu;
use onepath_model::{LoadOptions, Logits, Model, RunOptions, SeqInput, open_checkpoint};
use std::path::PathBuf;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gemma4")
        .join(name)
}

/// A fixture model with room for `seqs` sequences of 256 positions.
pub fn load(gpu: &Gpu, name: &str, seqs: usize) -> Model {
    load_with(gpu, name, seqs, LoadOptions::default())
}

pub fn load_with(gpu: &Gpu, name: &str, seqs: usize, opts: LoadOptions) -> Model {
    let (cfg, ckpt) = open_checkpoint(&fixture(name)).expect("fixture checkpoint");
    let run = RunOptions::for_sequences(&cfg, seqs, 256);
    pollster::block_on(Model::load(gpu, cfg, ckpt, &opts, run, &mut |_, _| {})).expect("load")
}

/// One prompt's reference: prompt ids, greedy continuation, teacher-forced logits
/// `[prompt + greedy, vocab]`.
pub struct Reference {
    pub prompt: Vec<u32>,
    pub greedy: Vec<u32>,
    pub logits: Vec<f32>,
}

pub fn references(name: &str) -> Vec<Reference> {
    let bytes = std::fs::read(fixture(name).join("reference.safetensors")).expect("reference");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("reference safetensors");
    let ints = |k: &str| -> Vec<u32> {
        let t = st.tensor(k).expect(k);
        bytemuck::pod_collect_to_vec::<u8, i32>(t.data())
            .into_iter()
            .map(|x| x as u32)
            .collect()
    };
    (0..)
        .take_while(|i| st.tensor(&format!("prompt.{i}")).is_ok())
        .map(|i| Reference {
            prompt: ints(&format!("prompt.{i}")),
            greedy: ints(&format!("greedy.{i}")),
            logits: bytemuck::pod_collect_to_vec(
                st.tensor(&format!("logits.{i}")).expect("logits").data(),
            ),
        })
        .collect()
}

/// Teacher-forced logits of `tokens` as sequence `seq` in one step (all rows), `[T, vocab]`.
pub fn forward(gpu: &Gpu, m: &mut Model, seq: u64, tokens: &[u32]) -> Vec<f32> {
    let input = SeqInput {
        seq,
        pos: 0,
        tokens: tokens.to_vec(),
        logits: Logits::All,
    };
    let out = pollster::block_on(m.step(gpu, &[input], true)).expect("step");
    m.free(seq);
    out.rows
        .into_iter()
        .flat_map(|r| r.logits.expect("logits"))
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
