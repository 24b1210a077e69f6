//! `onepath load` end to end: the sharded MLX fixture checkpoint (made by MLX, see
//! `tests/fixtures/mlx/make_fixtures.py`) loads as stored and with `--quantize`, every linear
//! passes its checks on the GPU, and bad input is one clear error.

use serde_json::Value;
use std::path::{Path, PathBuf};
mod common;
use common::{no_adapter, onepath};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/mlx/tiny_ckpt")
}

/// `onepath --json load ARGS`: the exit code and the JSON object (None if no adapter).
fn load_json(args: &[&str]) -> Option<(i32, Value)> {
    let out = onepath(&[&["--json", "load"], args].concat());
    if no_adapter(&out) {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Some((out.status.code().expect("exit code"), v))
}

fn linear<'a>(v: &'a Value, path: &str) -> &'a Value {
    v["linears"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["path"] == path)
        .unwrap_or_else(|| panic!("{path} not listed in {v}"))
}

/// Every linear of the checkpoint is found with the format the checkpoint stores, computes
/// within its error budget and gives a row of a batch the bits of that row alone.
#[test]
fn loads_the_mlx_checkpoint_as_stored() {
    let dir = fixture();
    let Some((code, v)) = load_json(&[dir.to_str().unwrap()]) else {
        return;
    };
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["all_ok"], true);
    assert_eq!(v["files"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["linears"].as_array().unwrap().len(),
        4,
        "norms are not linears"
    );
    for (path, shape, stored) in [
        ("model.layers.0.self_attn.q_proj", [16, 128], "q4 g64 BF16"),
        ("model.layers.0.mlp.down_proj", [8, 64], "q8 g32 BF16"),
        ("model.embed_tokens", [32, 64], "BF16"),
        ("model.layers.0.odd_proj", [4, 80], "BF16"),
    ] {
        let l = linear(&v, path);
        assert_eq!(l["shape"], serde_json::json!(shape), "{path}");
        assert_eq!(l["stored"], stored, "{path}");
        assert_eq!(l["on_gpu"], stored, "{path}");
        assert_eq!(l["rows_equal_alone"], true, "{path}");
        let (err, budget) = (
            l["worst_error_ratio"].as_f64().unwrap(),
            l["error_budget"].as_f64().unwrap(),
        );
        assert!(err <= budget && budget > 0.0, "{path}: {err} over {budget}");
    }
    let kernels = &linear(&v, "model.layers.0.self_attn.q_proj")["kernels"];
    assert_eq!(kernels, &serde_json::json!(["gemv", "tiled"]));
    let kernels = &linear(&v, "model.embed_tokens")["kernels"];
    assert_eq!(kernels, &serde_json::json!(["dgemv", "dtiled"]));
}

/// `--quantize 4` quantizes the float linears whose input size is a multiple of the group size
/// (as mlx-lm does) and leaves the stored quantized ones as they are.
#[test]
fn quantizes_float_linears_at_load() {
    let dir = fixture();
    let Some((code, v)) = load_json(&[dir.to_str().unwrap(), "--quantize", "4"]) else {
        return;
    };
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        linear(&v, "model.embed_tokens")["on_gpu"],
        "q4 g64 BF16 (at load)"
    );
    assert_eq!(linear(&v, "model.layers.0.odd_proj")["on_gpu"], "BF16");
    assert_eq!(
        linear(&v, "model.layers.0.mlp.down_proj")["on_gpu"],
        "q8 g32 BF16"
    );
    let Some((_, v)) = load_json(&[
        dir.to_str().unwrap(),
        "--quantize",
        "8",
        "--group-size",
        "32",
        "--prefix",
        "model.embed",
    ]) else {
        return;
    };
    assert_eq!(v["linears"].as_array().unwrap().len(), 1);
    assert_eq!(
        linear(&v, "model.embed_tokens")["on_gpu"],
        "q8 g32 BF16 (at load)"
    );
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("onepath-load-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Bad input is one error that names the problem (exit 2); a linear the kernels cannot take is
/// reported by name and fails the run (exit 1).
#[test]
fn bad_input_is_named() {
    let shard = fixture().join("model-00001-of-00002.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    let trunc = temp("truncated.safetensors");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    let out = onepath(&["load", trunc.to_str().unwrap()]);
    if no_adapter(&out) {
        return;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("truncated.safetensors") && err.contains("truncated"),
        "{err}"
    );

    let out = onepath(&["load", fixture().to_str().unwrap(), "--quantize", "3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--quantize 3"), "{err}");

    // K = 12 is not a multiple of 8, which the dense kernel needs.
    let odd = temp("odd.safetensors");
    let data = vec![0u8; 4 * 12 * 4];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4, 12], &data).unwrap();
    safetensors::serialize_to_file([("odd.weight", view)], None, &odd).unwrap();
    let Some((code, v)) = load_json(&[odd.to_str().unwrap()]) else {
        return;
    };
    assert_eq!(code, 1, "{v}");
    let l = linear(&v, "odd");
    assert_eq!(l["ok"], false);
    assert!(
        l["error"].as_str().unwrap().contains("multiple of 8"),
        "{l}"
    );
    std::fs::remove_dir_all(trunc.parent().unwrap()).unwrap();
}

/// A tiny random Gemma 4 made, quantized and saved by mlx-lm's own functions
/// (`tests/fixtures/mlx/make_gemma4_ckpt.py`): every linear loads and passes its checks, with
/// the shapes its config implies and in the format mlx-lm stored it (4-bit group 64 unless the
/// input size is not a multiple of 64; KV-shared layers have no K/V projections).
#[test]
fn loads_an_mlx_lm_gemma4_conversion() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/mlx/tiny_gemma4_q4");
    let Some((code, v)) = load_json(&[dir.to_str().unwrap()]) else {
        return;
    };
    assert_eq!(code, 0, "{v}");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let t = &config["text_config"];
    let u = |key: &str| t[key].as_u64().unwrap_or_else(|| panic!("{key}")) as usize;
    let (hidden, layers, shared) = (
        u("hidden_size"),
        u("num_hidden_layers"),
        u("num_kv_shared_layers"),
    );
    let (heads, kv_heads, ple) = (
        u("num_attention_heads"),
        u("num_key_value_heads"),
        u("hidden_size_per_layer_input"),
    );
    let (vocab, inter) = (u("vocab_size"), u("intermediate_size"));
    let full: Vec<bool> = t["layer_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s == "full_attention")
        .collect();
    let q4 = |k: usize| {
        if k.is_multiple_of(64) {
            "q4 g64 BF16"
        } else {
            "BF16"
        }
    };
    let mut want: Vec<(String, [usize; 2])> = vec![
        ("embed_tokens".into(), [vocab, hidden]),
        ("embed_tokens_per_layer".into(), [vocab, layers * ple]),
        ("per_layer_model_projection".into(), [layers * ple, hidden]),
    ];
    for (l, &is_full) in full.iter().enumerate() {
        let hd = u(if is_full {
            "global_head_dim"
        } else {
            "head_dim"
        });
        let mlp = if l >= layers - shared && t["use_double_wide_mlp"] == true {
            2 * inter
        } else {
            inter
        };
        let p = |s: &str| format!("layers.{l}.{s}");
        want.push((p("self_attn.q_proj"), [heads * hd, hidden]));
        want.push((p("self_attn.o_proj"), [hidden, heads * hd]));
        if l < layers - shared {
            want.push((p("self_attn.k_proj"), [kv_heads * hd, hidden]));
            want.push((p("self_attn.v_proj"), [kv_heads * hd, hidden]));
        }
        want.push((p("mlp.gate_proj"), [mlp, hidden]));
        want.push((p("mlp.up_proj"), [mlp, hidden]));
        want.push((p("mlp.down_proj"), [hidden, mlp]));
        want.push((p("per_layer_input_gate"), [ple, hidden]));
        want.push((p("per_layer_projection"), [hidden, ple]));
    }
    assert_eq!(v["linears"].as_array().unwrap().len(), want.len());
    for (path, shape) in want {
        let l = linear(&v, &format!("language_model.model.{path}"));
        assert_eq!(l["shape"], serde_json::json!(shape), "{path}");
        assert_eq!(l["stored"], q4(shape[1]), "{path}");
        assert_eq!(l["ok"], true, "{path}");
    }
}

/// `--max-binding` plans bindings as a browser must (WebGPU gives 128 MiB; here 4 KiB, so the
/// fixture's tables split): each table spans several bindings and still passes every check; a
/// limit below one row is a named error for that linear.
#[test]
fn splits_tables_over_small_bindings() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/mlx/tiny_gemma4_q4");
    let prefix = "language_model.model.embed";
    let Some((code, v)) = load_json(&[
        dir.to_str().unwrap(),
        "--prefix",
        prefix,
        "--max-binding",
        "4096",
    ]) else {
        return;
    };
    assert_eq!(code, 0, "{v}");
    for path in ["embed_tokens", "embed_tokens_per_layer"] {
        let l = linear(&v, &format!("language_model.model.{path}"));
        assert!(l["bindings"].as_u64().unwrap() > 1, "{l}");
        assert_eq!(l["ok"], true, "{l}");
    }
    let Some((code, v)) = load_json(&[
        dir.to_str().unwrap(),
        "--prefix",
        prefix,
        "--max-binding",
        "100",
    ]) else {
        return;
    };
    assert_eq!(code, 1, "{v}");
    let l = linear(&v, "language_model.model.embed_tokens_per_layer");
    assert!(
        l["error"].as_str().unwrap().contains("binding limit"),
        "{l}"
    );
}
