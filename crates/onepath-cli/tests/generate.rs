//! `onepath generate` and `onepath logits` end to end on the fixture models
//! (`tests/fixtures/gemma4/`): the JSON contract, greedy tokens equal to transformers' and
//! mlx-lm's, several prompts in one batch equal to each alone (greedy and seeded sampling),
//! and bad input as one clear error with exit code 2.

use serde_json::Value;
use std::path::{Path, PathBuf};
mod common;
use common::{no_adapter, onepath};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/gemma4")
        .join(name)
}

/// `onepath --json generate ARGS` as JSON (None without an adapter).
fn generate(args: &[&str]) -> Option<Value> {
    let out = onepath(&[&["--json", "generate"], args].concat());
    if no_adapter(&out) {
        return None;
    }
    assert!(
        out.status.success(),
        "generate {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("one JSON object"))
}

fn tokens(v: &Value, i: usize) -> Vec<u32> {
    v["outputs"][i]["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

/// Reference prompt and greedy tokens `i` of a fixture (read from its safetensors file).
fn reference(name: &str, i: usize) -> (Vec<u32>, Vec<u32>) {
    let bytes = std::fs::read(fixture(name).join("reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ints = |k: String| -> Vec<u32> {
        bytemuck::pod_collect_to_vec::<u8, i32>(st.tensor(&k).unwrap().data())
            .into_iter()
            .map(|x| x as u32)
            .collect()
    };
    (ints(format!("prompt.{i}")), ints(format!("greedy.{i}")))
}

fn csv(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

#[test]
fn greedy_generation_reproduces_the_references_and_batches_equal_solo_runs() {
    // f32 checkpoint (f32 K/V): the greedy path equals transformers' for 16 tokens.
    let name = "a-f32";
    let (p1, g1) = reference(name, 1);
    let (p3, g3) = reference(name, 3);
    let model = fixture(name);
    let m = model.to_str().unwrap();
    let (a, b) = (csv(&p1), csv(&p3));
    let Some(batch) = generate(&[
        "--model",
        m,
        "--tokens",
        &a,
        "--tokens",
        &b,
        "--max-new-tokens",
        "16",
    ]) else {
        return;
    };
    assert_eq!(batch["outputs"].as_array().unwrap().len(), 2);
    assert_eq!(tokens(&batch, 0), g1[..16]);
    assert_eq!(tokens(&batch, 1), g3[..16]);
    let solo = generate(&["--model", m, "--tokens", &b, "--max-new-tokens", "16"]).unwrap();
    assert_eq!(tokens(&solo, 0), tokens(&batch, 1));
}

#[test]
fn seeded_sampling_in_a_batch_equals_the_same_request_alone() {
    let model = fixture("b-q4");
    let m = model.to_str().unwrap();
    let args = [
        "--temperature",
        "0.9",
        "--top-k",
        "40",
        "--top-p",
        "0.95",
        "--seed",
        "11",
        "--max-new-tokens",
        "12",
    ];
    let Some(solo) = generate(&[&["--model", m, "--tokens", "2,40,41"], &args[..]].concat()) else {
        return;
    };
    let batch = generate(
        &[
            &[
                "--model",
                m,
                "--tokens",
                "2,7",
                "--tokens",
                "2,40,41",
                "--tokens",
                "2,9,9,9,9",
            ],
            &args[..],
        ]
        .concat(),
    )
    .unwrap();
    assert_eq!(tokens(&batch, 1), tokens(&solo, 0));
    assert_eq!(tokens(&solo, 0).len(), 12);
}

#[test]
fn staggered_arrivals_on_the_engine_equal_solo_runs() {
    let model = fixture("b-q4");
    let m = model.to_str().unwrap();
    let prompts = ["2,7", "2,40,41,42,43,44,45,46,47,48,49,50", "2,9,9,9,9"];
    let max = ["--max-new-tokens", "10"];
    let mut solo = Vec::new();
    for p in prompts {
        let Some(v) = generate(&[&["--model", m, "--tokens", p], &max[..]].concat()) else {
            return;
        };
        solo.push(tokens(&v, 0));
    }
    for k in ["0", "1", "3"] {
        let mut args = vec!["--model", m, "--arrive-every", k];
        for p in prompts {
            args.extend(["--tokens", p]);
        }
        let v = generate(&[&args[..], &max[..]].concat()).unwrap();
        for (i, want) in solo.iter().enumerate() {
            assert_eq!(&tokens(&v, i), want, "--arrive-every {k}: prompt {i}");
        }
    }
}

#[test]
fn logits_writes_every_positions_soft_capped_logits() {
    let (p, _) = reference("a-f32", 2);
    let out =
        std::env::temp_dir().join(format!("onepath-logits-{}.safetensors", std::process::id()));
    let model = fixture("a-f32");
    let o = onepath(&[
        "logits",
        "--model",
        model.to_str().unwrap(),
        "--tokens",
        &csv(&p),
        "--out",
        out.to_str().unwrap(),
    ]);
    if no_adapter(&o) {
        return;
    }
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("logits").unwrap();
    assert_eq!(t.shape(), [p.len(), 512]);
    let got: Vec<f32> = bytemuck::pod_collect_to_vec(t.data());
    // The reference's teacher-forced logits over the prompt are its first rows.
    let rb = std::fs::read(fixture("a-f32").join("reference.safetensors")).unwrap();
    let rs = safetensors::SafeTensors::deserialize(&rb).unwrap();
    let want: Vec<f32> = bytemuck::pod_collect_to_vec(rs.tensor("logits.2").unwrap().data());
    let err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(err < 1e-3, "max |logit - transformers| = {err}");
    assert!(got.iter().all(|v| v.abs() <= 30.0), "soft-capped");
    let _ = std::fs::remove_file(out);
}

#[test]
fn bad_input_is_one_clear_error() {
    let model = fixture("a-f32");
    let m = model.to_str().unwrap();
    for (args, want) in [
        (
            vec!["generate", "--model", m, "--tokens", "2,512"],
            "token id 512 at position 1 is outside the vocabulary",
        ),
        (
            vec![
                "generate",
                "--model",
                m,
                "--tokens",
                "2,3",
                "--max-new-tokens",
                "5000",
            ],
            "beyond the model's context of 4096",
        ),
        (vec!["generate", "--model", m], "give at least one --prompt"),
        (
            vec!["generate", "--model", m, "--prompt", "hello"],
            "needs a tokenizer.json",
        ),
        (
            vec![
                "generate",
                "--model",
                m,
                "--tokens",
                "2",
                "--temperature",
                "-1",
            ],
            "temperature",
        ),
        (
            vec!["generate", "--model", "/nonexistent", "--tokens", "2"],
            "not a directory",
        ),
        (
            vec![
                "logits",
                "--model",
                m,
                "--tokens",
                "2",
                "--out",
                "/nonexistent/x.safetensors",
            ],
            "nonexistent",
        ),
    ] {
        let out = onepath(&args);
        if no_adapter(&out) {
            return;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err:?}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
