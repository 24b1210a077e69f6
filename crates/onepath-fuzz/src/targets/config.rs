//! config.json as the model reads it (`onepath-model`) and its MLX quantization entry
//! (`onepath-weights`).

use crate::Outcome;
use arbitrary::{Arbitrary, Unstructured};
use onepath_model::{Config, Kind};
use onepath_weights::{DType, QuantConfig, QuantParams, QuantizedTensor};
use std::borrow::Cow;

/// Every config style onepath loads: the Hub's text-only (a: `per_layer_config` style) and
/// multimodal (b: `text_config`) configs in f32 / bf16 / MLX 4-bit, the shipped model's HF and
/// MLX configs, and mlx-lm's own conversion of a tiny Gemma 4.
pub const CONFIGS: [&str; 9] = [
    include_str!("../../../../tests/fixtures/gemma4/a-f32/config.json"),
    include_str!("../../../../tests/fixtures/gemma4/a-bf16/config.json"),
    include_str!("../../../../tests/fixtures/gemma4/a-q4/config.json"),
    include_str!("../../../../tests/fixtures/gemma4/b-f32/config.json"),
    include_str!("../../../../tests/fixtures/gemma4/b-bf16/config.json"),
    include_str!("../../../../tests/fixtures/gemma4/b-q4/config.json"),
    include_str!("../../../../models/kjv-tiny/hf/config.json"),
    include_str!("../../../../models/kjv-tiny/mlx-q4/config.json"),
    include_str!("../../../../tests/fixtures/mlx/tiny_gemma4_q4/config.json"),
];

pub fn config_seeds() -> Vec<Vec<u8>> {
    CONFIGS.iter().map(|c| c.as_bytes().to_vec()).collect()
}

fn text(data: &[u8]) -> Result<&str, String> {
    // The model reads config.json with read_to_string, which refuses invalid UTF-8 itself.
    std::str::from_utf8(data).map_err(|e| format!("not UTF-8: {e}"))
}

/// `Config::from_json`, then every derived value a model load asks of it.
pub fn config(data: &[u8]) -> Outcome {
    let cfg = Config::from_json(text(data)?).map_err(|e| e.to_string())?;
    for kind in [Kind::Sliding, Kind::Full] {
        let _ = (cfg.attn(kind), cfg.kv_source(kind));
    }
    let _ = cfg.first_shared();
    for l in 0..cfg.layers.min(1 << 12) {
        let _ = (cfg.cache_layer(l), cfg.mlp_width(l));
    }
    Ok(())
}

pub fn quant_seeds() -> Vec<Vec<u8>> {
    let mut s: Vec<Vec<u8>> = CONFIGS[6..].iter().map(|c| c.as_bytes().to_vec()).collect();
    s.push(super::weights::CONFIG.as_bytes().to_vec());
    s.push(CONFIGS[2].as_bytes().to_vec());
    s.push(br#"{"quantization_config":{"quant_method":"mlx","group_size":128,"bits":8}}"#.to_vec());
    s
}

/// `QuantConfig::from_config_json`, the parameters of a few paths, and (for inputs made by
/// [`generate_quant`]) a `QuantizedTensor` of arbitrary shape and buffer lengths.
pub fn quant(data: &[u8]) -> Outcome {
    if let Some(rest) = data.strip_prefix(TENSOR_TAG) {
        return tensor(rest);
    }
    let q = QuantConfig::from_config_json(text(data)?).map_err(|e| e.to_string())?;
    if let Some(q) = q {
        for path in [
            "model.embed_tokens",
            "model.layers.0.mlp.down_proj",
            "language_model.model.layers.0.self_attn.q_proj",
        ] {
            let _ = q.params_for(path);
        }
    }
    Ok(())
}

const TENSOR_TAG: &[u8] = b"QTENSOR\0";

/// A quantized tensor's parameters and buffers as `arbitrary` makes them.
#[derive(Arbitrary, Debug)]
struct Tensor {
    group_size: u16,
    bits: u8,
    scale_dtype: u8,
    /// Each dimension: (kind, value): kind 0 gives 0, 1 u32::MAX, 2 65536, else the value.
    shape: Vec<(u8, u32)>,
    weight: u16,
    scales: u16,
    biases: u16,
}

pub fn generate_quant(u: &mut Unstructured) -> arbitrary::Result<Vec<u8>> {
    let t = Tensor::arbitrary(u)?;
    let mut out = TENSOR_TAG.to_vec();
    out.extend_from_slice(&t.group_size.to_le_bytes());
    out.push(t.bits);
    out.push(t.scale_dtype);
    for n in [t.weight, t.scales, t.biases] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    for &(kind, v) in t.shape.iter().take(6) {
        let d = match kind % 8 {
            0 => 0,
            1 => u32::MAX,
            2 => 1 << 16,
            _ => v,
        };
        out.extend_from_slice(&d.to_le_bytes());
    }
    Ok(out)
}

fn tensor(b: &[u8]) -> Outcome {
    if b.len() < 10 {
        return Err("short tensor record".into());
    }
    let group = usize::from(u16::from_le_bytes([b[0], b[1]]));
    let bits = u32::from(b[2]);
    let dt = [DType::F32, DType::F16, DType::BF16, DType::U32][usize::from(b[3]) % 4];
    let len = |i: usize| usize::from(u16::from_le_bytes([b[4 + 2 * i], b[5 + 2 * i]]));
    let shape: Vec<usize> = b[10..]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let params = QuantParams::new(group, bits, "fuzz").map_err(|e| e.to_string())?;
    let buf = |n: usize| Cow::Owned(vec![0u8; n]);
    let q = QuantizedTensor::new(
        "fuzz",
        shape,
        params,
        dt,
        buf(len(0)),
        buf(len(1)),
        buf(len(2)),
    )
    .map_err(|e| e.to_string())?;
    let _ = (q.rows(), q.cols(), q.groups());
    if q.rows().saturating_mul(q.cols()) <= 1 << 16 {
        let _ = onepath_weights::dequantize_f32(&q);
        let _ = onepath_weights::dequantize(&q);
    }
    Ok(())
}
