//! The Gemma 4 decoder against transformers and mlx-lm on the fixture models.

mod common;
mod gemma4_common;
use gemma4_common::*;

#[test]
fn probe() {
    let Some(gpu) = common::gpu() else { return };
    for name in ["a-f32", "b-f32", "a-bf16", "b-bf16", "a-q4", "b-q4"] {
        let mut m = load_with(
            gpu,
            name,
            1,
            onepath_model::LoadOptions {
                kv_dtype: Some(onepath::ops::sdpa::KvDType::F32),
                ..Default::default()
            },
        );
        for (i, r) in references(name).iter().enumerate() {
            let toks: Vec<u32> = r.prompt.iter().chain(&r.greedy).copied().collect();
            let got = forward(gpu, &mut m, 1, &toks);
            eprintln!(
                "{name} prompt {i}: max |diff| {}",
                max_abs_diff(&got, &r.logits)
            );
        }
    }
}
