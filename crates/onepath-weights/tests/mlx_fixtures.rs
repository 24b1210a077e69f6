//! Bit-exact agreement with MLX's own quantize / dequantize outputs.

mod common;

use common::{bits, mlx_fixture, shared_fixture};
use onepath_weights::{
    Checkpoint, DType, QuantParams, QuantizedTensor, dequantize, dequantize_f32, dequantize_rows,
    quantize,
};

/// Checks one MLX case `<p>.{w,wq,scales,biases,w_dequant}` held in `ck`.
/// Returns (groups with a negative scale, groups, f32-path mismatches after rounding).
fn check_case(ck: &Checkpoint, p: &str, params: QuantParams) -> (usize, usize, usize) {
    let t = |s: &str| ck.tensor(&format!("{p}.{s}")).unwrap();
    let (w, wq, scales, biases, w_hat) =
        (t("w"), t("wq"), t("scales"), t("biases"), t("w_dequant"));
    let dtype = w.dtype();
    let (rows, cols) = w.dims2().unwrap();

    // Unpacking + dequantizing MLX's triple gives MLX's w_dequant bit for bit.
    let q = QuantizedTensor::from_views(p, &wq, &scales, &biases, params).unwrap();
    assert_eq!(
        (q.rows(), q.cols(), q.scale_dtype()),
        (rows, cols, dtype),
        "{p}"
    );
    let deq = dequantize(&q);
    let want = w_hat.to_f32().unwrap();
    assert_eq!(
        bits(&deq),
        bits(&want),
        "{p}: dequantize differs from MLX w_dequant"
    );
    let some = dequantize_rows(&q, 1..rows.min(3)).unwrap();
    assert_eq!(
        bits(&some),
        bits(&want[cols..rows.min(3) * cols]),
        "{p}: dequantize_rows"
    );

    // The f32 path (what an f32 GPU kernel computes), rounded to the model dtype.
    let f = dequantize_f32(&q);
    let f32_mismatch = f
        .iter()
        .zip(&want)
        .filter(|(a, b)| dtype.round(**a).to_bits() != b.to_bits())
        .count();
    if dtype == DType::F32 {
        assert_eq!(
            f32_mismatch, 0,
            "{p}: f32 dequantize path must be exact for f32 scales"
        );
    }

    // The Rust quantizer reproduces MLX's wq, scales and biases bit for bit.
    let mine = quantize(
        &w.to_f32().unwrap(),
        rows,
        cols,
        params.group_size,
        params.bits,
        dtype,
    )
    .unwrap();
    assert_eq!(
        mine.weight_words(),
        wq.to_u32().unwrap(),
        "{p}: packed weight differs from MLX wq"
    );
    assert_eq!(
        mine.scales_bytes(),
        scales.data(),
        "{p}: scales differ from MLX"
    );
    assert_eq!(
        mine.biases_bytes(),
        biases.data(),
        "{p}: biases differ from MLX"
    );

    let s = scales.to_f32().unwrap();
    (
        s.iter().filter(|x| x.is_sign_negative()).count(),
        s.len(),
        f32_mismatch,
    )
}

#[test]
fn shared_q4_g64_fixture_bit_exact() {
    let ck = Checkpoint::open(shared_fixture("mlx_qmm_q4_g64.safetensors")).unwrap();
    let params = QuantParams::new(64, 4, "fixture").unwrap();
    let (mut neg, mut total) = (0, 0);
    for p in ["f32", "f16", "bf16"] {
        let (n, t, m) = check_case(&ck, p, params);
        eprintln!(
            "{p}: {n}/{t} negative scales; f32 dequant path differs after rounding in {m} elements"
        );
        neg += n;
        total += t;
    }
    // MLX puts the larger-magnitude extreme in the bias: about half the scales are negative.
    assert!(
        neg * 4 > total && neg * 4 < total * 3,
        "{neg} of {total} negative"
    );
}

#[test]
fn generated_cases_bit_exact() {
    let ck = Checkpoint::open(mlx_fixture("quant_cases.safetensors")).unwrap();
    let meta = ck.file_metadata("quant_cases.safetensors").unwrap();
    let cases: serde_json::Value = serde_json::from_str(&meta["cases"]).unwrap();
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 12);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let params = QuantParams::new(
            c["group_size"].as_u64().unwrap() as usize,
            c["bits"].as_u64().unwrap() as u32,
            name,
        )
        .unwrap();
        let (n, t, m) = check_case(&ck, name, params);
        eprintln!(
            "{name}: {n}/{t} negative scales; f32 path differs after rounding in {m} elements"
        );
    }
}

#[test]
fn quantize_rounds_f32_input_to_model_dtype() {
    // quantize() of f32 values equals quantize() of the same values pre-rounded to bf16.
    let w: Vec<f32> = (0..256)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.0123)
        .collect();
    let pre: Vec<f32> = w.iter().map(|&x| DType::BF16.round(x)).collect();
    let a = quantize(&w, 2, 128, 64, 4, DType::BF16).unwrap();
    let b = quantize(&pre, 2, 128, 64, 4, DType::BF16).unwrap();
    assert_eq!(a.weight_bytes(), b.weight_bytes());
    assert_eq!(a.scales_bytes(), b.scales_bytes());
}
