//! Checkpoint discovery: sharded MLX checkpoint, quantized vs dense linears, config overrides,
//! and the byte-buffer (wasm) path agreeing with the memory-mapped one.

mod common;

use common::{mlx_fixture, serialize};
use onepath_weights::{
    Checkpoint, DType, INDEX_FILE, Linear, QuantConfig, QuantParams, WeightsError, dequantize,
    index_files, quantize,
};

fn tiny_from_bytes() -> Checkpoint {
    let dir = mlx_fixture("tiny_ckpt");
    let index = std::fs::read_to_string(dir.join(INDEX_FILE)).unwrap();
    let shards = index_files(&index)
        .unwrap()
        .into_iter()
        .map(|f| {
            let b = std::fs::read(dir.join(&f)).unwrap();
            (f, b)
        })
        .collect();
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    Checkpoint::from_shards(shards, Some(&index))
        .unwrap()
        .with_config_json(&config)
        .unwrap()
}

fn quantized<'a>(l: Linear<'a>) -> onepath_weights::QuantizedTensor<'a> {
    match l {
        Linear::Quantized(q) => q,
        Linear::Dense(v) => panic!("{} unexpectedly dense", v.name()),
    }
}

#[test]
fn sharded_mlx_checkpoint() {
    let mapped = Checkpoint::open(mlx_fixture("tiny_ckpt")).unwrap();
    let bytes = tiny_from_bytes();
    for ck in [&mapped, &bytes] {
        assert_eq!(ck.files().count(), 2);
        let q = quantized(ck.linear("model.layers.0.self_attn.q_proj").unwrap());
        assert_eq!(
            (q.rows(), q.cols(), q.bits(), q.group_size()),
            (16, 128, 4, 64)
        );
        assert_eq!(q.scale_dtype(), DType::BF16);
        // Per-path override: 8 bits, group 32.
        let d = quantized(ck.linear("model.layers.0.mlp.down_proj").unwrap());
        assert_eq!(
            (d.rows(), d.cols(), d.bits(), d.group_size()),
            (8, 64, 8, 32)
        );
        // Marked `false` in the config: dense.
        match ck.linear("model.embed_tokens").unwrap() {
            Linear::Dense(v) => {
                assert_eq!((v.dtype(), v.shape()), (DType::BF16, &[32usize, 64][..]))
            }
            Linear::Quantized(_) => panic!("embed_tokens should be dense"),
        }
        // Input size 80 is not a multiple of 64: mlx-lm left it dense and unlisted.
        assert!(matches!(
            ck.linear("model.layers.0.odd_proj").unwrap(),
            Linear::Dense(_)
        ));
        let norm = ck.tensor("model.norm.weight").unwrap();
        assert_eq!(norm.to_f32().unwrap(), vec![1.0; 64]);
        let ln = ck.tensor("model.layers.0.input_layernorm.weight").unwrap();
        assert_eq!(
            (ln.dtype(), ln.to_f32().unwrap()),
            (DType::F16, vec![1.0; 64])
        );
        assert!(matches!(
            ck.tensor("nope"),
            Err(WeightsError::MissingTensor { .. })
        ));
    }
    let a = quantized(mapped.linear("model.layers.0.self_attn.q_proj").unwrap());
    let b = quantized(bytes.linear("model.layers.0.self_attn.q_proj").unwrap());
    assert_eq!(a.weight_bytes(), b.weight_bytes());
    assert_eq!(dequantize(&a), dequantize(&b));
}

#[test]
fn quantize_at_load_roundtrips_mlx_triple() {
    // Re-quantizing MLX's dequantized bf16 weights with the same params gives back MLX's triple
    // for these groups, and a dense weight quantizes at load like quantize().
    let ck = Checkpoint::open(mlx_fixture("tiny_ckpt")).unwrap();
    let p = QuantParams::new(64, 4, "test").unwrap();
    let stored = ck
        .quantized_linear("model.layers.0.self_attn.q_proj", p)
        .unwrap();
    assert_eq!(stored.rows(), 16);
    let e = ck.quantized_linear("model.embed_tokens", p).unwrap();
    let w = ck.tensor("model.embed_tokens.weight").unwrap();
    let direct = quantize(&w.to_f32().unwrap(), 32, 64, 64, 4, DType::BF16).unwrap();
    assert_eq!(e.name(), "model.embed_tokens");
    assert_eq!(e.weight_bytes(), direct.weight_bytes());
    assert_eq!(e.scales_bytes(), direct.scales_bytes());
    assert!(matches!(
        ck.quantized_linear("model.layers.0.odd_proj", p),
        Err(WeightsError::Shape { .. })
    ));
}

#[test]
fn config_problems_are_errors() {
    let ck = tiny_from_bytes().with_quant_config(None);
    assert!(matches!(
        ck.linear("model.layers.0.self_attn.q_proj"),
        Err(WeightsError::MissingQuantConfig { .. })
    ));
    // Dense linears need no config.
    assert!(matches!(
        ck.linear("model.embed_tokens"),
        Ok(Linear::Dense(_))
    ));
    // Wrong bits for the stored shapes: scales do not match weight and group size.
    let ck = ck.with_quant_config(Some(QuantConfig::uniform(
        QuantParams::new(64, 8, "t").unwrap(),
    )));
    let err = ck.linear("model.layers.0.self_attn.q_proj").unwrap_err();
    assert!(matches!(err, WeightsError::Shape { .. }), "{err}");
    assert!(err.to_string().contains("group"), "{err}");
    // Marked false while quantized.
    let cfg = r#"{"quantization": {"group_size": 64, "bits": 4, "model.layers.0.self_attn.q_proj": false}}"#;
    let ck = ck.with_config_json(cfg).unwrap();
    assert!(matches!(
        ck.linear("model.layers.0.self_attn.q_proj"),
        Err(WeightsError::Config { .. })
    ));
}

#[test]
fn index_problems_are_errors() {
    let dir = mlx_fixture("tiny_ckpt");
    let index = std::fs::read_to_string(dir.join(INDEX_FILE)).unwrap();
    let files = index_files(&index).unwrap();
    let read = |f: &str| (f.to_string(), std::fs::read(dir.join(f)).unwrap());
    // A shard missing.
    let e = Checkpoint::from_shards(vec![read(&files[0])], Some(&index)).unwrap_err();
    assert!(matches!(e, WeightsError::Index { .. }), "{e}");
    // Shards swapped names: tensors are not where the index says.
    let (mut a, mut b) = (read(&files[0]), read(&files[1]));
    std::mem::swap(&mut a.0, &mut b.0);
    let e = Checkpoint::from_shards(vec![a, b], Some(&index)).unwrap_err();
    assert!(matches!(e, WeightsError::Index { .. }), "{e}");
    // The same shard twice: duplicate tensors.
    let e = Checkpoint::from_shards(
        vec![read(&files[0]), ("copy".into(), read(&files[0]).1)],
        None,
    )
    .unwrap_err();
    assert!(matches!(e, WeightsError::DuplicateTensor { .. }), "{e}");
    assert!(matches!(
        Checkpoint::from_shards(vec![read(&files[0])], Some("{")),
        Err(WeightsError::Index { .. })
    ));
}

#[test]
fn directory_forms() {
    let tmp = std::env::temp_dir().join(format!("onepath-weights-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    assert!(matches!(
        Checkpoint::open(&tmp),
        Err(WeightsError::NoCheckpoint { .. })
    ));
    // A Hugging Face style single file with bf16 weights and no quantization entry.
    let w: Vec<u8> = (0..64u16 * 32)
        .flat_map(|i| {
            half::bf16::from_f32(i as f32 * 0.01)
                .to_bits()
                .to_le_bytes()
        })
        .collect();
    let bytes = serialize(&[(
        "lm.q_proj.weight",
        safetensors::Dtype::BF16,
        vec![32, 64],
        w,
    )]);
    std::fs::write(tmp.join("model.safetensors"), &bytes).unwrap();
    std::fs::write(
        tmp.join("config.json"),
        r#"{"hidden_size": 64, "torch_dtype": "bfloat16"}"#,
    )
    .unwrap();
    let ck = Checkpoint::open(&tmp).unwrap();
    assert!(ck.quant_config().is_none());
    assert!(matches!(ck.linear("lm.q_proj"), Ok(Linear::Dense(_))));
    let q = ck
        .quantized_linear("lm.q_proj", QuantParams::new(32, 4, "t").unwrap())
        .unwrap();
    assert_eq!((q.rows(), q.cols(), q.scale_dtype()), (32, 64, DType::BF16));
    // A broken config.json is an error, not silently ignored.
    std::fs::write(tmp.join("config.json"), "{").unwrap();
    assert!(matches!(
        Checkpoint::open(&tmp),
        Err(WeightsError::Config { .. })
    ));
    assert!(matches!(
        Checkpoint::open(tmp.join("missing.safetensors")),
        Err(WeightsError::Io { .. })
    ));
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn binding_limits_and_row_splits() {
    let ck = Checkpoint::open(mlx_fixture("tiny_ckpt")).unwrap();
    let q = quantized(ck.linear("model.layers.0.self_attn.q_proj").unwrap());
    // weight 16 rows x 64 bytes, scales 16 rows x 4 bytes.
    assert!(q.check_binding(1024).is_ok());
    let e = q.check_binding(512).unwrap_err();
    assert!(
        matches!(
            e,
            WeightsError::TooLargeForBinding {
                rows_per_binding: 8,
                bindings: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("row_splits"), "{e}");
    let s = q.row_splits(512, 1).unwrap();
    assert_eq!(s, vec![0..8, 8..16]);
    // With 256-byte offset alignment the scales (4 bytes/row) need 64-row steps: too few rows fit.
    assert!(q.row_splits(512, 256).is_err());
    let s = q.row_splits(16 * 64, 256).unwrap();
    assert_eq!(s, vec![0..16]);
    let emb = ck.tensor("model.embed_tokens.weight").unwrap();
    assert!(emb.check_binding(4096).is_ok());
    assert!(matches!(
        emb.check_binding(1000),
        Err(WeightsError::TooLargeForBinding { .. })
    ));
    let s = emb.row_splits(1000, 256).unwrap();
    assert!(
        s.iter()
            .all(|r| r.len() * 128 <= 1000 && (r.start * 128) % 256 == 0)
    );
    assert_eq!(s.last().unwrap().end, 32);
}
