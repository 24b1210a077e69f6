//! The cases that need no GPU: files, configs, tokens, masks and the command line.

use super::{Case, Class, case};
use onepath::mask::{
    AdditiveMask, BoolMask, KeySet, MaskDType, MaskDesc, MaskKind, MaskShape, canonicalize,
};
use onepath_model::Config;
use onepath_text::Tokenizer;
use onepath_weights::{Checkpoint, QuantConfig};
use std::path::PathBuf;

/// A safetensors file of `header` and `data`.
fn st(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// A config of the a-f32 fixture with one top-level key set (`null` removes it).
fn config_with(key: &str, value: serde_json::Value) -> String {
    let text = std::fs::read_to_string(fixture("gemma4/a-f32/config.json")).expect("fixture");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
    let obj = v.as_object_mut().expect("object");
    if value.is_null() {
        obj.remove(key);
    } else {
        obj.insert(key.into(), value);
    }
    v.to_string()
}

/// A temporary directory with these files, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(label: &str, files: &[(&str, &[u8])]) -> Dir {
        let d =
            std::env::temp_dir().join(format!("onepath-bad-input-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temporary directory");
        for (name, bytes) in files {
            std::fs::write(d.join(name), bytes).expect("write a file");
        }
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_bytes(onepath_model::shipped::TOKENIZER).expect("the shipped tokenizer")
}

fn shape(batch: usize, heads: usize, q_len: usize, kv_len: usize) -> MaskShape {
    MaskShape {
        batch,
        heads,
        q_len,
        kv_len,
    }
}

pub fn cases() -> Vec<Case> {
    let mut v = files();
    v.extend(configs());
    v.extend(tokens());
    v.extend(masks());
    v
}

fn files() -> Vec<Case> {
    use Class::File;
    let f32x4 = r#"{"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    let shard = |name: &str| {
        st(
            &format!(r#"{{"{name}":{{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}}}"#),
            &[0; 4],
        )
    };
    vec![
        case(
            File,
            "a 3-byte file",
            "safetensors file `model.safetensors`: truncated: 3 bytes",
            || Checkpoint::from_bytes(vec![1, 2, 3]),
        ),
        case(
            File,
            "a header length of 10^12",
            "header length 1000000000000 runs past the end of the file (10 bytes)",
            || {
                let mut b = 1_000_000_000_000u64.to_le_bytes().to_vec();
                b.extend_from_slice(b"{}");
                Checkpoint::from_bytes(b)
            },
        ),
        case(
            File,
            "a header length of 2^63",
            "header length 9223372036854775808 runs past",
            || {
                let mut b = (1u64 << 63).to_le_bytes().to_vec();
                b.extend_from_slice(b"{}");
                Checkpoint::from_bytes(b)
            },
        ),
        case(
            File,
            "a header that is not JSON",
            "safetensors file `model.safetensors`: invalid header",
            || Checkpoint::from_bytes(st("{not json", &[])),
        ),
        case(
            File,
            "tensor data cut short",
            "the header's tensors need 16 data bytes but only 8 follow the header",
            || Checkpoint::from_bytes(st(f32x4, &[0; 8])),
        ),
        case(
            File,
            "trailing bytes after the data",
            "cover 16 data bytes but 20 follow the header",
            || Checkpoint::from_bytes(st(f32x4, &[0; 20])),
        ),
        case(
            File,
            "a shape that contradicts its bytes",
            "tensor `t`: shape [5] of F32 needs 20 bytes, but its data_offsets [0, 16) span 16",
            || {
                Checkpoint::from_bytes(st(
                    r#"{"t":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}}"#,
                    &[0; 16],
                ))
            },
        ),
        case(File, "a shape of 10^24 elements", "tensor `t`", || {
            Checkpoint::from_bytes(st(
                r#"{"t":{"dtype":"F32","shape":[1000000000000,1000000000000],"data_offsets":[0,16]}}"#,
                &[0; 16],
            ))
        }),
        case(
            File,
            "an F64 tensor",
            "tensor `d` in `model.safetensors`: unsupported dtype F64",
            || {
                let c = Checkpoint::from_bytes(st(
                    r#"{"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}"#,
                    &[0; 8],
                ))?;
                c.tensor("d").map(|_| ())
            },
        ),
        case(
            File,
            "a tensor the checkpoint lacks",
            "tensor `nope` not found in checkpoint",
            || {
                Checkpoint::from_bytes(st(f32x4, &[0; 16]))?
                    .tensor("nope")
                    .map(|_| ())
            },
        ),
        case(
            File,
            "one tensor in two shards",
            "tensor `w` appears in both `a.safetensors` and `b.safetensors`",
            move || {
                Checkpoint::from_shards(
                    vec![
                        ("a.safetensors".into(), shard("w")),
                        ("b.safetensors".into(), shard("w")),
                    ],
                    None,
                )
            },
        ),
        case(
            File,
            "an index that is not JSON",
            "checkpoint index `model.safetensors.index.json`: not valid JSON",
            || onepath_weights::index_files("{"),
        ),
        case(
            File,
            "an index without weight_map",
            "no `weight_map` object",
            || onepath_weights::index_files(r#"{"metadata":{}}"#),
        ),
        case(
            File,
            "an index mapping a tensor to a number",
            "`w` maps to a non-string",
            || onepath_weights::index_files(r#"{"weight_map":{"w":3}}"#),
        ),
        case(
            File,
            "an index naming a shard not given",
            "`w` is in shard `c.safetensors`, which was not provided",
            move || {
                Checkpoint::from_shards(
                    vec![("a.safetensors".into(), shard("w"))],
                    Some(r#"{"weight_map":{"w":"c.safetensors"}}"#),
                )
            },
        ),
        case(
            File,
            "an index placing a tensor in the wrong shard",
            "`w` is listed in `b.safetensors` but found in `a.safetensors`",
            move || {
                let shards = vec![
                    ("a.safetensors".into(), shard("w")),
                    ("b.safetensors".into(), shard("x")),
                ];
                Checkpoint::from_shards(
                    shards,
                    Some(r#"{"weight_map":{"w":"b.safetensors","x":"b.safetensors"}}"#),
                )
            },
        ),
        case(
            File,
            "an index naming a shard outside the directory",
            "shard name `../evil.safetensors` is not a plain file name",
            || {
                let d = Dir::new(
                    "escape",
                    &[(
                        "model.safetensors.index.json",
                        br#"{"weight_map":{"w":"../evil.safetensors"}}"#,
                    )],
                );
                Checkpoint::open(&d.0)
            },
        ),
        case(
            File,
            "a directory with no checkpoint",
            "no model.safetensors or model.safetensors.index.json found",
            || {
                let d = Dir::new("empty", &[]);
                Checkpoint::open(&d.0)
            },
        ),
        case(
            File,
            "a linear with .scales but no .biases",
            "non-affine (.scales without .biases",
            || {
                let h = r#"{"l.weight":{"dtype":"U32","shape":[1,8],"data_offsets":[0,32]},"l.scales":{"dtype":"F16","shape":[1,1],"data_offsets":[32,34]}}"#;
                Checkpoint::from_bytes(st(h, &[0; 34]))?
                    .linear("l")
                    .map(|_| ())
            },
        ),
        case(
            File,
            "a quantized linear and no quantization config",
            "`l` is quantized (has .scales/.biases) but no quantization config covers it",
            || {
                let h = r#"{"l.weight":{"dtype":"U32","shape":[1,8],"data_offsets":[0,32]},"l.scales":{"dtype":"F16","shape":[1,1],"data_offsets":[32,34]},"l.biases":{"dtype":"F16","shape":[1,1],"data_offsets":[34,36]}}"#;
                Checkpoint::from_bytes(st(h, &[0; 36]))?
                    .linear("l")
                    .map(|_| ())
            },
        ),
        case(
            File,
            "quantized groups that contradict the config",
            "scales/biases have 2 groups per row, but weight [1, 8] with 4 bits holds 64 inputs per row",
            || {
                let h = r#"{"l.weight":{"dtype":"U32","shape":[1,8],"data_offsets":[0,32]},"l.scales":{"dtype":"F16","shape":[1,2],"data_offsets":[32,36]},"l.biases":{"dtype":"F16","shape":[1,2],"data_offsets":[36,40]}}"#;
                Checkpoint::from_bytes(st(h, &[0; 40]))?
                    .with_config_json(r#"{"quantization":{"group_size":64,"bits":4}}"#)?
                    .linear("l")
                    .map(|_| ())
            },
        ),
        case(
            File,
            "2^40 quantized rows of input size 0",
            "tensor `l`: shape [1099511627776, 0] has input size 0",
            || {
                let h = r#"{"l.weight":{"dtype":"U32","shape":[1099511627776,0],"data_offsets":[0,0]},"l.scales":{"dtype":"F16","shape":[1099511627776,0],"data_offsets":[0,0]},"l.biases":{"dtype":"F16","shape":[1099511627776,0],"data_offsets":[0,0]}}"#;
                Checkpoint::from_bytes(st(h, &[]))?
                    .with_config_json(r#"{"quantization":{"group_size":32,"bits":4}}"#)?
                    .linear("l")
                    .map(|_| ())
            },
        ),
    ]
}

fn configs() -> Vec<Case> {
    use Class::Config as C;
    use serde_json::json;
    let q = |text: &'static str| move || QuantConfig::from_config_json(text);
    vec![
        case(
            C,
            "config.json that is not JSON",
            "config: config.json is not valid JSON",
            || Config::from_json("{"),
        ),
        case(
            C,
            "model_type llama",
            "unsupported model: model_type `llama`",
            || Config::from_json(&config_with("model_type", json!("llama"))),
        ),
        case(
            C,
            "a mixture-of-experts Gemma 4",
            "mixture-of-experts block (26B-A4B): not supported yet",
            || Config::from_json(&config_with("enable_moe_block", json!(true))),
        ),
        case(
            C,
            "no num_key_value_heads (the references default it differently)",
            "config.json has no `num_key_value_heads` (required: transformers and mlx-lm default it differently)",
            || Config::from_json(&config_with("num_key_value_heads", json!(null))),
        ),
        case(
            C,
            "hidden_size as a string",
            "config.json `hidden_size` is \"1536\", expected a non-negative integer",
            || Config::from_json(&config_with("hidden_size", json!("1536"))),
        ),
        case(
            C,
            "an unknown layer type",
            "config.json `layer_types[0]` is \"dense\", expected sliding_attention or full_attention",
            || {
                let text =
                    std::fs::read_to_string(fixture("gemma4/a-f32/config.json")).expect("fixture");
                let mut v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
                v["layer_types"][0] = json!("dense");
                Config::from_json(&v.to_string())
            },
        ),
        case(
            C,
            "every layer KV-shared",
            "num_kv_shared_layers 6 leaves no layer computing K/V of 6 layers",
            || Config::from_json(&config_with("num_kv_shared_layers", json!(6))),
        ),
        case(
            C,
            "an intermediate_size of 2^63 (found by the config fuzz target)",
            "config: intermediate_size 9223372036854775808 is too large: sizes must fit 32 bits",
            || Config::from_json(&config_with("intermediate_size", json!(1u64 << 63))),
        ),
        case(
            C,
            "an eos_token_id past 32 bits",
            "config: config.json `eos_token_id` 1099511627776 is not a 32-bit token id",
            || Config::from_json(&config_with("eos_token_id", json!(1u64 << 40))),
        ),
        case(
            C,
            "a negative rms_norm_eps",
            "config: rms_norm_eps -1 must be finite and positive",
            || Config::from_json(&config_with("rms_norm_eps", json!(-1.0))),
        ),
        case(
            C,
            "quantization bits 7",
            "config `quantization`: unsupported bits 7 (supported: 2, 3, 4, 5, 6, 8)",
            q(r#"{"quantization":{"group_size":64,"bits":7}}"#),
        ),
        case(
            C,
            "quantization group size 48",
            "config `quantization`: unsupported group size 48",
            q(r#"{"quantization":{"group_size":48,"bits":4}}"#),
        ),
        case(
            C,
            "quantization mode mxfp4",
            "unsupported quantization mode `mxfp4`",
            q(r#"{"quantization":{"group_size":32,"bits":4,"mode":"mxfp4"}}"#),
        ),
        case(
            C,
            "a per-path override with mode nvfp4",
            "config `quantization.x`: unsupported quantization mode `nvfp4`",
            q(r#"{"quantization":{"group_size":64,"bits":4,"x":{"mode":"nvfp4"}}}"#),
        ),
        case(
            C,
            "a GPTQ quantization_config",
            "unsupported quantization mode `quant_method \"gptq\"`",
            q(r#"{"quantization_config":{"quant_method":"gptq"}}"#),
        ),
        case(
            C,
            "group_size as a string",
            "`group_size` should be a non-negative integer, found \"64\"",
            q(r#"{"quantization":{"group_size":"64","bits":4}}"#),
        ),
        case(
            C,
            "a quantization entry without bits",
            "`quantization` has no `bits`",
            q(r#"{"quantization":{"group_size":64}}"#),
        ),
    ]
}

fn tokens() -> Vec<Case> {
    use Class::Token;
    let vocab = tokenizer().vocab_size();
    let past = vocab as u32 + 5;
    vec![
        case(
            Token,
            "text that is not UTF-8",
            "input is not valid UTF-8: invalid byte sequence at byte offset 3",
            || tokenizer().encode_bytes(b"abc\xff\xfe", true),
        ),
        case(
            Token,
            "a lone surrogate's bytes",
            "invalid byte sequence at byte offset 1",
            || tokenizer().encode_bytes(b"a\xed\xa0\x80", false),
        ),
        case(
            Token,
            "decoding an id past the vocabulary",
            format!("token id {past} is out of range: the vocabulary has {vocab} entries"),
            move || tokenizer().decode(&[2, past]),
        ),
        case(
            Token,
            "decoding u32::MAX",
            "token id 4294967295 is out of range",
            || tokenizer().decode(&[u32::MAX]),
        ),
        case(
            Token,
            "streaming an id past the vocabulary",
            format!("token id {past} is out of range"),
            move || tokenizer().stream_decoder(false).step(past),
        ),
        case(
            Token,
            "a tokenizer.json that is not one",
            "malformed tokenizer JSON",
            || Tokenizer::from_bytes(b"{\"model\": 3}"),
        ),
        case(
            Token,
            "an empty stop string",
            "invalid stop string: stop string 0 is empty",
            || onepath_text::StopChecker::new(&tokenizer(), &[1], &[""]),
        ),
    ]
}

fn masks() -> Vec<Case> {
    use Class::Mask;
    let none = || MaskDesc::new(MaskKind::None);
    vec![
        case(
            Mask,
            "a zero-size attention",
            "empty attention: shape [B=1, H=0, Tq=1, Tkv=4]",
            move || canonicalize(&shape(1, 0, 1, 4), &none()),
        ),
        case(
            Mask,
            "2^33 keys",
            "kv_len exceeds u32::MAX keys",
            move || canonicalize(&shape(1, 1, 1, 1 << 33), &none()),
        ),
        case(
            Mask,
            "10^18 query rows",
            "batch * heads * q_len exceeds u32::MAX query rows",
            move || canonicalize(&shape(1_000_000, 1_000_000, 1_000_000, 4), &none()),
        ),
        case(
            Mask,
            "a bool mask that does not broadcast",
            "mask shape [3, 7] does not broadcast to [B=1, H=1, Tq=3, Tkv=10]",
            || {
                let data = vec![true; 21];
                canonicalize(
                    &shape(1, 1, 3, 10),
                    &MaskDesc::new(MaskKind::Bool(BoolMask {
                        shape: &[3, 7],
                        data: &data,
                    })),
                )
            },
        ),
        case(
            Mask,
            "mask data of the wrong length",
            "mask data has 29 elements but mask shape [3, 10] needs 30",
            || {
                let data = vec![true; 29];
                canonicalize(
                    &shape(1, 1, 3, 10),
                    &MaskDesc::new(MaskKind::Bool(BoolMask {
                        shape: &[3, 10],
                        data: &data,
                    })),
                )
            },
        ),
        case(
            Mask,
            "an additive bias value",
            "additive mask value -2 at index 1 (position [0, 1]) is a bias, not a mask",
            || {
                let data = [0.0, -2.0, 0.0, 0.0];
                let m = AdditiveMask {
                    shape: &[2, 2],
                    data: &data,
                    dtype: MaskDType::F32,
                };
                canonicalize(&shape(1, 1, 2, 2), &MaskDesc::new(MaskKind::Additive(m)))
            },
        ),
        case(
            Mask,
            "NaN in an additive mask",
            "additive mask value NaN at index 0",
            || {
                let data = [f32::NAN, 0.0];
                let m = AdditiveMask {
                    shape: &[1, 2],
                    data: &data,
                    dtype: MaskDType::BF16,
                };
                canonicalize(&shape(1, 1, 1, 2), &MaskDesc::new(MaskKind::Additive(m)))
            },
        ),
        case(
            Mask,
            "key_lo for the wrong batch",
            "key_lo has 1 entries but the batch has 2",
            move || canonicalize(&shape(2, 1, 1, 8), &none().with_key_lo(&[0])),
        ),
        case(
            Mask,
            "key_lo > key_hi",
            "key range of batch entry 0 is [5, 4)",
            move || {
                canonicalize(
                    &shape(1, 1, 1, 8),
                    &none().with_key_lo(&[5]).with_key_hi(&[4]),
                )
            },
        ),
        case(
            Mask,
            "key_hi past the keys",
            "key range of batch entry 0 is [0, 9)",
            move || canonicalize(&shape(1, 1, 1, 8), &none().with_key_hi(&[9])),
        ),
        case(
            Mask,
            "causal with more queries than keys",
            "causal mask with q_len 9 > kv_len 8",
            || {
                canonicalize(
                    &shape(1, 1, 9, 8),
                    &MaskDesc::new(MaskKind::Causal { window: None }),
                )
            },
        ),
        case(
            Mask,
            "a sliding window of 0",
            "causal window must be >= 1",
            || {
                canonicalize(
                    &shape(1, 1, 1, 8),
                    &MaskDesc::new(MaskKind::Causal { window: Some(0) }),
                )
            },
        ),
        case(
            Mask,
            "a hand-made span with lo > hi",
            "key set Span { lo: 5, hi: 3 } is invalid: lo 5 > hi 3",
            || KeySet::Span { lo: 5, hi: 3 }.check(),
        ),
        case(
            Mask,
            "a hand-made dense set whose words cover 64 of 290 keys",
            "key set Dense { lo: 0, hi: 290, 1 bit words } is invalid: 1 bit words cover 64 keys, but its span [0, 290) has 290 keys",
            || {
                KeySet::Dense {
                    lo: 0,
                    hi: 290,
                    bits: vec![0b101],
                }
                .check()
            },
        ),
    ]
}

/// `target/debug/onepath`, built by `cargo build -p onepath-cli` (scripts/test.sh builds it
/// before the tests).
fn onepath_bin() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let bin = target
        .join("debug")
        .join(format!("onepath{}", std::env::consts::EXE_SUFFIX));
    if bin.is_file() {
        return Some(bin);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set and {} is missing: run `cargo build -p onepath-cli` first",
        bin.display()
    );
    eprintln!(
        "{} is missing: `cargo build -p onepath-cli` to run the command-line cases",
        bin.display()
    );
    None
}

/// Runs the CLI with raw (possibly non-UTF-8) arguments: `Err("exit N: stderr")` on failure.
#[cfg(unix)]
fn cli(bin: &std::path::Path, args: &[&[u8]]) -> Result<(), String> {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let out = std::process::Command::new(bin)
        .args(args.iter().map(|a| OsStr::from_bytes(a)))
        .output()
        .map_err(|e| format!("could not run {}: {e}", bin.display()))?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if err.contains("panicked") {
        return Err(format!("PANIC: {err}"));
    }
    match out.status.code() {
        Some(0) => Ok(()),
        code => Err(format!("exit {code:?}: {err}")),
    }
}

pub fn cli_cases() -> Vec<Case> {
    let Some(bin) = onepath_bin() else {
        return Vec::new();
    };
    #[cfg(unix)]
    {
        let b = bin.clone();
        let b2 = bin.clone();
        vec![
            case(
                Class::Cli,
                "--prompt bytes that are not UTF-8",
                "exit Some(2): error: invalid UTF-8 was detected in one or more arguments",
                move || {
                    cli(
                        &b,
                        &[
                            b"generate",
                            b"--prompt",
                            b"In the \xff\xfe beginning",
                            b"--max-new-tokens",
                            b"1",
                        ],
                    )
                },
            ),
            case(
                Class::Cli,
                "--tokens that are not numbers",
                "exit Some(2)",
                move || {
                    cli(
                        &b2,
                        &[
                            b"generate",
                            b"--tokens",
                            b"2,x,9",
                            b"--max-new-tokens",
                            b"1",
                        ],
                    )
                },
            ),
        ]
    }
    #[cfg(not(unix))]
    {
        let _ = bin;
        Vec::new()
    }
}
