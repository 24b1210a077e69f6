//! Quantized matmul on the GPU: MLX fixture (dequantisation exact, accuracy against the f64
//! oracle and MLX), bitwise batch invariance, odd shapes, groups 32/64/128, bits 4 and 8,
//! f32/f16/bf16 scales.

mod common;
mod qmm_common;

use common::bits;
use onepath::reference::matmul_nt;
use onepath_weights::{Checkpoint, DType, QuantParams, QuantizedTensor, dequantize_f32};
use qmm_common::*;
use std::path::PathBuf;

fn fixture() -> Checkpoint {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/mlx_qmm_q4_g64.safetensors");
    Checkpoint::open(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

fn fixture_q<'a>(ck: &'a Checkpoint, p: &str) -> QuantizedTensor<'a> {
    let t = |s: &str| ck.tensor(&format!("{p}.{s}")).unwrap();
    let params = QuantParams::new(64, 4, "fixture").unwrap();
    QuantizedTensor::from_views(p, &t("wq"), &t("scales"), &t("biases"), params).unwrap()
}

/// x = I (K rows) makes row j of y the column j of W: the kernel's dequantisation, read back
/// exactly. Expected: `dequantize_f32` (for f32 scales, or `scale.mul_add(q, bias)` where the
/// device fuses fma).
#[test]
fn fixture_dequantises_exactly() {
    let Some(gpu) = common::gpu() else { return };
    let ck = fixture();
    for p in ["f32", "f16", "bf16"] {
        let q = fixture_q(&ck, p);
        let (n, k) = (q.rows(), q.cols());
        let mut eye = vec![0.0f32; k * k];
        (0..k).for_each(|j| eye[j * k + j] = 1.0);
        let y = run(gpu, &qmm(gpu, &q, None), &eye, k);
        let wt: Vec<f32> = (0..k * n).map(|i| y[(i % k) * n + i / k]).collect();
        let f = dequantize_f32(&q);
        if p == "f32" {
            // `scale * q` is inexact in f32: a device whose WGSL fma is fused (NVIDIA) gives
            // `mul_add`, one that splits it (lavapipe) gives `dequantize_f32`; either way every
            // element must be the same one of the two.
            let fused = deq_fma(&q);
            if bits(&wt) != bits(&f) {
                assert_bits("f32: GPU dequantisation vs mul_add", &wt, &fused);
            }
        } else {
            assert_bits(
                &format!("{p}: GPU dequantisation vs dequantize_f32"),
                &wt,
                &f,
            );
        }
    }
}

/// GPU y against the f64 oracle on the dequantised W, and against MLX's `y_deq_mm`.
///
/// Oracle budget: `|err| <= depth * u * mass` per element, `mass = sum |x| (|s| q + |b|)` (the
/// kernel forms `s * sum(x q) + b * sum(x)` per group) and `depth` = [`quant_depth`], a
/// worst-case count of roundings on any path (42 here); measured worst ratio is printed
/// (about 1 on lavapipe).
///
/// MLX budget: MLX multiplies by W rounded to the model dtype and rounds y to it, so the two
/// differ by up to `eps_T * (sum |x w| + |y|)` with eps_T = 2^-8 (bf16), 2^-11 (f16), 2^-20
/// (f32: W and the summation order differ by a few f32 ulps).
#[test]
fn fixture_accuracy_vs_f64_and_mlx() {
    let Some(gpu) = common::gpu() else { return };
    let ck = fixture();
    for (p, eps) in [
        ("f32", 2f64.powi(-20)),
        ("f16", 2f64.powi(-11)),
        ("bf16", 2f64.powi(-8)),
    ] {
        let q = fixture_q(&ck, p);
        let (n, k) = (q.rows(), q.cols());
        let x = ck.tensor(&format!("{p}.x")).unwrap().to_f32().unwrap();
        let m = x.len() / k;
        let op = qmm(gpu, &q, None);
        let y = run(gpu, &op, &x, m);
        let w = dequantize_f32(&q);
        let want = matmul_nt(&x, &w, m, k, n).unwrap();
        let ratio = worst_ratio(&want, &y, &mass(&q, &x, m));
        let depth = quant_depth(k, 64, op.lanes());
        eprintln!("{p}: worst |err| / (u * mass) = {ratio:.3} (budget {depth})");
        assert!(ratio <= depth, "{p}: error ratio {ratio} over {depth}");

        let mlx = ck
            .tensor(&format!("{p}.y_deq_mm"))
            .unwrap()
            .to_f32()
            .unwrap();
        let mut worst = 0.0f64;
        for r in 0..m {
            for c in 0..n {
                let xw: f64 = (0..k)
                    .map(|t| (f64::from(x[r * k + t]) * f64::from(w[c * k + t])).abs())
                    .sum();
                let d = (f64::from(y[r * n + c]) - f64::from(mlx[r * n + c])).abs();
                let budget = eps * (xw + f64::from(mlx[r * n + c]).abs());
                worst = worst.max(d / budget);
            }
        }
        eprintln!("{p}: worst |gpu - mlx| / budget = {worst:.3}");
        assert!(
            worst <= 1.0,
            "{p}: GPU differs from MLX y_deq_mm by {worst} budgets"
        );
    }
}

/// Row m of an M-row call equals the row computed alone, bit for bit, for M = 1, 2, 7, 64, 300
/// and for windows that start mid-batch, with either kernel (GEMV, and tiled with its fold trees
/// split over 1, 2, 4, 8 and 16 workgroups); repeated runs are identical.
#[test]
fn rows_are_batch_invariant() {
    let Some(gpu) = common::gpu() else { return };
    let (n, k) = (70, 1536);
    let q = qtensor(11, n, k, 64, 4, DType::BF16);
    let op = qmm(gpu, &q, None);
    let x = common::randn(&mut common::rng(12), 300 * k);
    let alone: Vec<Vec<f32>> = (0..300)
        .map(|r| run(gpu, &op, &x[r * k..(r + 1) * k], 1))
        .collect();
    for kernel in kernels_for(op.lanes()) {
        assert_batch_invariant(&format!("{kernel:?}"), &x, (n, k), &alone, |x, m| {
            run_with(gpu, &op, x, m, kernel)
        });
    }
}

/// Shapes that are not multiples of any tile, every group size, bits 4 and 8, every scale
/// dtype: accurate against the f64 oracle, and M = 9 rows match M = 1 bit for bit.
#[test]
fn odd_shapes_groups_bits_dtypes() {
    let Some(gpu) = common::gpu() else { return };
    let cases = [
        (37, 192, 32, 4, DType::BF16),
        (37, 320, 64, 4, DType::F16),
        (37, 320, 64, 8, DType::BF16),
        (5, 384, 128, 4, DType::F32),
        (129, 256, 32, 8, DType::F16),
        (1, 64, 64, 4, DType::F32),
        (300, 1024, 128, 8, DType::BF16),
        (17, 4096, 32, 4, DType::BF16),
    ];
    for (i, &(n, k, g, b, dt)) in cases.iter().enumerate() {
        let what = format!("N={n} K={k} group={g} bits={b} {dt}");
        let q = qtensor(100 + i as u64, n, k, g, b, dt);
        check_accurate_and_invariant(gpu, &what, &q, 9, 200 + i as u64, &[0, 4, 8]);
    }
}
