//! Bad input of every kind gives a clear error, never a panic.

mod common;

use common::{f32_bytes, serialize, u32_bytes};
use onepath_weights::{
    Checkpoint, DType, Linear, QuantConfig, QuantParams, WeightsError, dequantize, quantize,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use safetensors::Dtype as D;

/// A small valid MLX-style checkpoint: a q4 g32 linear with f16 scales, plus dense tensors.
fn valid() -> Vec<u8> {
    let q = quantize(
        &(0..4 * 64).map(|i| (i as f32).sin()).collect::<Vec<_>>(),
        4,
        64,
        32,
        4,
        DType::F16,
    )
    .unwrap();
    serialize(&[
        ("l.weight", D::U32, vec![4, 8], q.weight_bytes().to_vec()),
        ("l.scales", D::F16, vec![4, 2], q.scales_bytes().to_vec()),
        ("l.biases", D::F16, vec![4, 2], q.biases_bytes().to_vec()),
        (
            "d.weight",
            D::F32,
            vec![2, 3],
            f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        ),
        ("pos", D::I64, vec![2], vec![0; 16]),
    ])
}

fn config() -> QuantConfig {
    QuantConfig::uniform(QuantParams::new(32, 4, "test").unwrap())
}

/// Loads and touches everything; the point is that nothing panics.
fn exercise(bytes: Vec<u8>) -> Result<(), WeightsError> {
    let ck = Checkpoint::from_bytes(bytes)?.with_quant_config(Some(config()));
    for name in ck.tensor_names() {
        if let Ok(t) = ck.tensor(name) {
            let _ = t.to_f32();
            let _ = t.to_u32();
            let _ = t.check_binding(16);
            let _ = t.row_splits(16, 8);
        }
        if let Some(Ok(Linear::Quantized(q))) = name.strip_suffix(".weight").map(|p| ck.linear(p)) {
            let _ = dequantize(&q);
            let _ = q.row_splits(64, 4);
        }
    }
    Ok(())
}

fn format_err(bytes: Vec<u8>) -> String {
    match Checkpoint::from_bytes(bytes) {
        Err(e @ WeightsError::Format { .. }) => e.to_string(),
        other => panic!("expected a format error, got {other:?}"),
    }
}

#[test]
fn valid_file_loads() {
    exercise(valid()).unwrap();
    let ck = Checkpoint::from_bytes(valid())
        .unwrap()
        .with_quant_config(Some(config()));
    assert!(matches!(ck.linear("l"), Ok(Linear::Quantized(_))));
    let e = ck.tensor("pos").unwrap_err();
    assert!(matches!(e, WeightsError::UnsupportedDtype { .. }), "{e}");
    assert!(e.to_string().contains("I64"), "{e}");
}

#[test]
fn every_truncation_is_an_error() {
    let v = valid();
    for len in 0..v.len() {
        let e = format_err(v[..len].to_vec());
        if len < 8 {
            assert!(e.contains("truncated"), "{e}");
        }
    }
    // Truncating the data section says how much is missing.
    let e = format_err(v[..v.len() - 3].to_vec());
    assert!(e.contains("truncated"), "{e}");
    let mut longer = v.clone();
    longer.push(0);
    assert!(format_err(longer).contains("trailing"));
}

#[test]
fn header_length_beyond_file() {
    let mut v = valid();
    let n = v.len() as u64;
    v[..8].copy_from_slice(&n.to_le_bytes());
    assert!(format_err(v.clone()).contains("past the end"));
    v[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    format_err(v);
}

#[test]
fn offsets_out_of_range() {
    let header = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[16,1000]}}"#;
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(&[0u8; 32]);
    format_err(v);
    // Offsets overlapping / out of order.
    let header = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#;
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(&[0u8; 24]);
    format_err(v);
    // Size not matching shape x dtype.
    let header = r#"{"a":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}}"#;
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(&[0u8; 16]);
    format_err(v);
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(7);
    let v = valid();
    for _ in 0..3000 {
        let mut m = v.clone();
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..m.len());
            m[i] = rng.random();
        }
        let _ = exercise(m);
    }
    for _ in 0..2000 {
        let len = rng.random_range(0..256);
        let mut m: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if len >= 8 && rng.random_bool(0.5) {
            // A plausible header length, so the JSON parser sees garbage too.
            let n = rng.random_range(0..len as u64);
            m[..8].copy_from_slice(&n.to_le_bytes());
        }
        assert!(exercise(m).is_err());
    }
}

#[test]
fn scales_shape_must_match_weight_and_group() {
    let s = vec![0u8; 4 * 3 * 2];
    let bytes = serialize(&[
        ("l.weight", D::U32, vec![4, 8], u32_bytes(&[0; 32])),
        ("l.scales", D::F16, vec![4, 3], s.clone()),
        ("l.biases", D::F16, vec![4, 3], s),
        ("m.weight", D::U32, vec![4, 8], u32_bytes(&[0; 32])),
        ("m.scales", D::F16, vec![4, 2], vec![0; 16]),
        ("m.biases", D::BF16, vec![4, 2], vec![0; 16]),
        ("n.weight", D::U32, vec![4, 8], u32_bytes(&[0; 32])),
        ("n.scales", D::F16, vec![4, 2], vec![0; 16]),
        ("o.weight", D::U32, vec![4, 8], u32_bytes(&[0; 32])),
        ("p.weight", D::F32, vec![4, 64], vec![0; 1024]),
        ("p.scales", D::F32, vec![4, 2], vec![0; 32]),
        ("p.biases", D::F32, vec![4, 2], vec![0; 32]),
    ]);
    let ck = Checkpoint::from_bytes(bytes)
        .unwrap()
        .with_quant_config(Some(config()));
    let e = ck.linear("l").unwrap_err();
    assert!(
        matches!(e, WeightsError::Shape { .. }) && e.to_string().contains("groups"),
        "{e}"
    );
    assert!(matches!(
        ck.linear("m"),
        Err(WeightsError::WrongDtype { .. })
    ));
    assert!(matches!(
        ck.linear("n"),
        Err(WeightsError::UnsupportedMode { .. })
    ));
    assert!(matches!(
        ck.linear("o"),
        Err(WeightsError::WrongDtype { .. })
    ));
    assert!(matches!(
        ck.linear("p"),
        Err(WeightsError::WrongDtype { .. })
    ));
    assert!(matches!(
        ck.linear("zzz"),
        Err(WeightsError::MissingTensor { .. })
    ));
}

#[test]
fn unsupported_bits_mode_group() {
    let cfg = |q: &str| QuantConfig::from_config_json(&format!(r#"{{"quantization": {q}}}"#));
    assert!(matches!(
        cfg(r#"{"group_size": 64, "bits": 1}"#),
        Err(WeightsError::UnsupportedBits { bits: 1, .. })
    ));
    assert!(matches!(
        cfg(r#"{"group_size": 64, "bits": 16}"#),
        Err(WeightsError::UnsupportedBits { .. })
    ));
    assert!(matches!(
        cfg(r#"{"group_size": 16, "bits": 4}"#),
        Err(WeightsError::UnsupportedGroupSize { .. })
    ));
    let e = cfg(r#"{"group_size": 32, "bits": 4, "mode": "mxfp4"}"#).unwrap_err();
    assert!(
        e.to_string().contains("mxfp4") && e.to_string().contains("affine"),
        "{e}"
    );
    assert!(QuantParams::new(64, 7, "x").is_err());
    assert!(QuantParams::new(96, 4, "x").is_err());
}

#[test]
fn quantize_rejects_bad_arguments() {
    let w = vec![0.5f32; 128];
    assert!(matches!(
        quantize(&w, 2, 64, 64, 7, DType::F32),
        Err(WeightsError::UnsupportedBits { .. })
    ));
    assert!(matches!(
        quantize(&w, 2, 64, 48, 4, DType::F32),
        Err(WeightsError::UnsupportedGroupSize { .. })
    ));
    assert!(matches!(
        quantize(&w, 3, 64, 64, 4, DType::F32),
        Err(WeightsError::Invalid { .. })
    ));
    assert!(matches!(
        quantize(&w, 4, 32, 64, 4, DType::F32),
        Err(WeightsError::Invalid { .. })
    ));
    assert!(matches!(
        quantize(&w, 2, 64, 64, 4, DType::U32),
        Err(WeightsError::Invalid { .. })
    ));
    assert!(matches!(
        quantize(&w, usize::MAX, 2, 32, 4, DType::F32),
        Err(WeightsError::Invalid { .. })
    ));
    // Non-finite input does not panic.
    let mut w = vec![1.0f32; 64];
    w[3] = f32::NAN;
    w[5] = f32::INFINITY;
    let q = quantize(&w, 1, 64, 64, 4, DType::BF16).unwrap();
    let _ = dequantize(&q);
}

/// Found by reading the `quant` fuzz target's reach (then fed to it): a quantized tensor of
/// input size 0 needs no bytes for any number of rows, so a 26-byte record claimed 2^48 rows
/// and dequantizing it looped for hours. Input size 0 is now refused.
#[test]
fn quantized_input_size_zero_is_refused() {
    use onepath_weights::{DType, QuantParams, QuantizedTensor, quantize};
    use std::borrow::Cow;
    let p = QuantParams::new(32, 4, "t").unwrap();
    let empty = || Cow::Owned(Vec::new());
    let e = QuantizedTensor::new(
        "t",
        vec![1 << 48, 0],
        p,
        DType::F16,
        empty(),
        empty(),
        empty(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("tensor `t`: shape [281474976710656, 0] has input size 0"),
        "{e}"
    );
    let e = quantize(&[], 1 << 40, 0, 32, 4, DType::F16)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cols 0 is not a positive multiple of group size 32"),
        "{e}"
    );
}
