//! `onepath crosscheck` against independent runs: each backend's greedy tokens against
//! `onepath generate` on that backend alone, and the logit comparison against a logits file
//! written by `onepath logits` (bitwise equal to itself; one changed value found exactly).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURE: &str = "tests/fixtures/gemma4/a-q4";
const PROMPTS: [&str; 2] = ["2,81,213,287,262", "2,424,213,75,50,75,21,475"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn onepath(args: &[&str], backend: Option<&str>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_onepath"));
    c.current_dir(root()).args(args);
    if let Some(b) = backend {
        c.env("ONEPATH_BACKEND", b);
    }
    c.output().expect("run onepath")
}

fn json_of(out: &std::process::Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id"))
        .collect()
}

#[test]
fn every_backend_gives_the_tokens_generate_gives_on_it_alone() {
    let new = "8";
    let mut args = vec![
        "crosscheck",
        "--model",
        FIXTURE,
        "--max-new-tokens",
        new,
        "--json",
    ];
    for p in PROMPTS {
        args.extend(["--tokens", p]);
    }
    let out = onepath(&args, None);
    assert!(
        out.status.success(),
        "crosscheck failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json_of(&out);
    let backends = r["backends"].as_array().expect("backends");
    assert!(!backends.is_empty(), "no backend ran: {r}");
    assert_eq!(r["all_tokens_equal"], true);
    for b in backends {
        let name = b["backend"].as_str().expect("backend name");
        let tokens = b["tokens"].as_array().expect("tokens");
        assert_eq!(tokens.len(), PROMPTS.len());
        let mut gen_args = vec![
            "generate",
            "--model",
            FIXTURE,
            "--max-new-tokens",
            new,
            "--json",
        ];
        for p in PROMPTS {
            gen_args.extend(["--tokens", p]);
        }
        let g = json_of(&onepath(&gen_args, Some(name)));
        for (i, (t, o)) in tokens
            .iter()
            .zip(g["outputs"].as_array().unwrap())
            .enumerate()
        {
            let (cross, alone) = (ids(t), ids(&o["tokens"]));
            assert_eq!(cross.len(), 8, "{name} prompt {i}");
            // `generate` stops at the end-of-sequence id (1 in this fixture) and leaves it out;
            // crosscheck runs every step.
            assert_eq!(cross[..alone.len()], alone[..], "{name} prompt {i}");
            if alone.len() < cross.len() {
                assert_eq!(
                    cross[alone.len()],
                    1,
                    "{name} prompt {i}: generate stopped early"
                );
            }
        }
    }
    // Two backends: their pair is reported, with shares in [0, 1] and the census's five ops.
    if backends.len() >= 2 {
        let p = &r["pairs"][0];
        assert_eq!(p["tokens_equal"], true);
        let share = p["logits"]["position_share"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&share));
        assert_eq!(p["ops"].as_array().unwrap().len(), 5);
        eprintln!("{}", serde_json::to_string_pretty(p).unwrap());
    }
}

/// Writes `onepath logits`' output again with the `tokens` metadata the browser's file has,
/// optionally with value `bump` moved by one ulp.
fn browser_file(dir: &Path, tokens: &str, bump: Option<usize>) -> PathBuf {
    let raw = dir.join("native.safetensors");
    let out = onepath(
        &[
            "logits",
            "--model",
            FIXTURE,
            "--tokens",
            tokens,
            "--out",
            raw.to_str().unwrap(),
        ],
        Some("vulkan"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&raw).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("logits").unwrap();
    let mut v: Vec<f32> = bytemuck::pod_collect_to_vec(t.data());
    if let Some(i) = bump {
        v[i] = f32::from_bits(v[i].to_bits() + 1);
    }
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::F32,
        t.shape().to_vec(),
        bytemuck::cast_slice(&v),
    )
    .unwrap();
    let meta = std::collections::HashMap::from([("tokens".to_string(), tokens.to_string())]);
    let path = dir.join(format!("browser-{bump:?}.safetensors"));
    safetensors::serialize_to_file([("logits", view)], Some(meta), &path).unwrap();
    path
}

#[test]
fn a_logits_file_from_the_same_backend_is_bitwise_equal_and_one_ulp_is_found() {
    let dir = std::env::temp_dir().join(format!("onepath-crosscheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = PROMPTS[1];
    let positions = tokens.split(',').count() as u64;
    for bump in [None, Some(700)] {
        let file = browser_file(&dir, tokens, bump);
        let out = onepath(
            &[
                "crosscheck",
                "--model",
                FIXTURE,
                "--backends",
                "vulkan",
                "--max-new-tokens",
                "2",
                "--tokens",
                PROMPTS[0],
                "--browser-logits",
                file.to_str().unwrap(),
                "--json",
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = json_of(&out);
        let p = r["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["b"] == "browser")
            .expect("a browser pair");
        let l = &p["logits"];
        assert_eq!(l["positions"], positions);
        let equal = l["positions_bitwise_equal"].as_u64().unwrap();
        let diff = l["max_abs_diff"].as_f64().unwrap();
        match bump {
            None => assert_eq!((equal, diff), (positions, 0.0), "{l}"),
            Some(_) => {
                assert_eq!(equal, positions - 1, "{l}");
                assert!(diff > 0.0 && diff < 1e-5, "one ulp of a logit: {diff}");
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_malformed_browser_logits_file_is_a_clear_error() {
    let file = std::env::temp_dir().join(format!(
        "onepath-bad-logits-{}.safetensors",
        std::process::id()
    ));
    std::fs::write(&file, b"not a safetensors file").unwrap();
    let out = onepath(
        &[
            "crosscheck",
            "--model",
            FIXTURE,
            "--browser-logits",
            file.to_str().unwrap(),
        ],
        None,
    );
    std::fs::remove_file(&file).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--browser-logits") && err.contains("not a safetensors file"),
        "{err}"
    );
}
