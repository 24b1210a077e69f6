//! Helpers for the matmul tests (`qmatmul*.rs`): quantized weights, runs, error measures.
#![allow(dead_code)]

use crate::common::bits;
use onepath::gpu::Gpu;
use onepath::ops::qmm::{DenseMatmul, DenseWeights, QKernel, QMatmul, QWeights};
use onepath_weights::{DType, QuantizedTensor, quantize};
use std::sync::Arc;

/// f32 unit roundoff.
pub const U: f64 = 1.0 / 16_777_216.0;

/// Random `[rows, cols]` weights quantized like MLX.
pub fn qtensor(
    seed: u64,
    rows: usize,
    cols: usize,
    group: usize,
    bits: u32,
    dt: DType,
) -> QuantizedTensor<'static> {
    let w = crate::common::randn(&mut crate::common::rng(seed), rows * cols);
    quantize(&w, rows, cols, group, bits, dt).expect("quantize")
}

pub fn qmm(gpu: &Gpu, q: &QuantizedTensor, max_binding: Option<u64>) -> QMatmul {
    let w = QWeights::upload_with(gpu, q, max_binding).expect("upload");
    pollster::block_on(QMatmul::new(gpu, w)).expect("pipeline")
}

pub fn run(gpu: &Gpu, op: &QMatmul, x: &[f32], m: usize) -> Vec<f32> {
    pollster::block_on(op.run_host(gpu, x, m)).expect("qmatmul run")
}

/// Both quantized kernels, the tiled one with every split, for tests that check each.
pub const KERNELS: [QKernel; 6] = [
    QKernel::Gemv,
    QKernel::Tiled(1),
    QKernel::Tiled(2),
    QKernel::Tiled(4),
    QKernel::Tiled(8),
    QKernel::Tiled(16),
];

/// [`KERNELS`] that a matrix with `lanes` lanes allows (splits up to the lanes).
pub fn kernels_for(lanes: u32) -> impl Iterator<Item = QKernel> {
    KERNELS
        .into_iter()
        .filter(move |k| !matches!(k, QKernel::Tiled(s) if *s > lanes))
}

pub fn run_with(gpu: &Gpu, op: &QMatmul, x: &[f32], m: usize, kernel: QKernel) -> Vec<f32> {
    pollster::block_on(op.run_host_with(gpu, x, m, kernel)).expect("qmatmul run")
}

pub fn dense(
    gpu: &Gpu,
    w: &[f32],
    rows: usize,
    cols: usize,
    dt: DType,
    max: Option<u64>,
) -> (DenseMatmul, Vec<f32>) {
    let mut bytes = Vec::new();
    for &v in w {
        dt.encode(v, &mut bytes);
    }
    let stored: Vec<f32> = w.iter().map(|&v| dt.round(v)).collect();
    let dw: Arc<DenseWeights> =
        DenseWeights::upload(gpu, &bytes, dt, rows, cols, max).expect("upload");
    (
        pollster::block_on(DenseMatmul::new(gpu, dw)).expect("pipeline"),
        stored,
    )
}

/// The dequantized W an f32 kernel sees: `scale.mul_add(q, bias)` per element (one rounding;
/// equal to `dequantize_f32` whenever `scale * q` is exact, i.e. for f16/bf16 scales).
pub fn deq_fma(q: &QuantizedTensor) -> Vec<f32> {
    let codes = q.unpack_rows(0..q.rows()).unwrap();
    let (s, b) = (q.scales_f32(), q.biases_f32());
    let (k, g) = (q.cols(), q.group_size());
    codes
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let gi = (i / k) * (k / g) + (i % k) / g;
            s[gi].mul_add(f32::from(c), b[gi])
        })
        .collect()
}

/// Per output element, `sum_k |x_k| (|s| q_k + |b|)`: the magnitude the factored kernel
/// accumulates at (it forms `s * sum(x q) + b * sum(x)` per group).
pub fn mass(q: &QuantizedTensor, x: &[f32], m: usize) -> Vec<f64> {
    let codes = q.unpack_rows(0..q.rows()).unwrap();
    let (s, b) = (q.scales_f32(), q.biases_f32());
    let (k, n, g) = (q.cols(), q.rows(), q.group_size());
    let mut out = vec![0.0; m * n];
    for r in 0..m {
        for c in 0..n {
            let mut acc = 0.0f64;
            for t in 0..k {
                let gi = c * (k / g) + t / g;
                let xa = f64::from(x[r * k + t]).abs();
                acc += xa
                    * (f64::from(s[gi]).abs() * f64::from(codes[c * k + t])
                        + f64::from(b[gi]).abs());
            }
            out[r * n + c] = acc;
        }
    }
    out
}

/// The worst-case number of roundings on any product's path through the quantized kernel
/// (`onepath::ops::qmm::quant_error_depth`, which documents it).
pub fn quant_depth(k: usize, group: usize, lanes: u32) -> f64 {
    onepath::ops::qmm::quant_error_depth(k, group, lanes)
}

/// Largest `|got - want| / (U * mass)` (the error in units of the f32 roundoff times the
/// accumulated magnitude; `onepath::reference::roundoff_ratio`).
pub fn worst_ratio(want: &[f64], got: &[f32], mass: &[f64]) -> f64 {
    onepath::reference::roundoff_ratio(want, got, mass)
}

/// `sum_k |x_k w_k|` per output of `x W^T` (`x` `[m, k]`, `w` `[n, k]`): the magnitude the dense
/// kernel accumulates, which scales its error budget.
pub fn dense_mass(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    (0..m * n)
        .map(|e| {
            let (r, c) = (e / n, e % n);
            (0..k)
                .map(|t| (f64::from(x[r * k + t]) * f64::from(w[c * k + t])).abs())
                .sum()
        })
        .collect()
}

/// Batch invariance of one kernel: `run(x, m)` is an m-row call (output `[m, n]`) and
/// `alone[r]` row r of `x` computed alone. Every row of calls of M = 1, 2, 7, 64 and 300 rows,
/// some starting mid-batch, equals its row alone bit for bit, and a repeated call is identical.
pub fn assert_batch_invariant(
    what: &str,
    x: &[f32],
    (n, k): (usize, usize),
    alone: &[Vec<f32>],
    run: impl Fn(&[f32], usize) -> Vec<f32>,
) {
    for (start, m) in [(0, 1), (0, 2), (0, 7), (5, 7), (0, 64), (3, 64), (0, 300)] {
        let y = run(&x[start * k..(start + m) * k], m);
        for r in 0..m {
            assert_eq!(
                bits(row(&y, n, r)),
                bits(&alone[start + r]),
                "{what}: row {} of an M = {m} call starting at {start}",
                start + r
            );
        }
    }
    let a = run(&x[..64 * k], 64);
    assert_eq!(
        bits(&a),
        bits(&run(&x[..64 * k], 64)),
        "{what}: repeated runs"
    );
}

/// Row `m` of a `[rows, n]` output.
pub fn row(y: &[f32], n: usize, m: usize) -> &[f32] {
    &y[m * n..(m + 1) * n]
}

/// Asserts `a == b` bit for bit, naming the count and the first differing index.
pub fn assert_bits(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let diff: Vec<usize> = (0..a.len())
        .filter(|&i| a[i].to_bits() != b[i].to_bits())
        .collect();
    if let Some(&i) = diff.first() {
        panic!(
            "{what}: {} of {} elements differ; first at {i}: {:e} vs {:e}",
            diff.len(),
            a.len(),
            a[i],
            b[i]
        );
    }
}

/// Runs an `m`-row call of `q` on seeded random x with each kernel, asserts its error is within
/// the f32 budget against the f64 oracle, and asserts that each row in `rows` equals its own
/// M = 1 call (the GEMV kernel, as decode runs it) bit for bit.
pub fn check_accurate_and_invariant(
    gpu: &Gpu,
    what: &str,
    q: &QuantizedTensor,
    m: usize,
    seed: u64,
    rows: &[usize],
) {
    let (n, k) = (q.rows(), q.cols());
    let op = qmm(gpu, q, None);
    let x = crate::common::randn(&mut crate::common::rng(seed), m * k);
    let want =
        onepath::reference::matmul_nt(&x, &onepath_weights::dequantize_f32(q), m, k, n).unwrap();
    let alone: Vec<Vec<f32>> = rows
        .iter()
        .map(|&r| run(gpu, &op, &x[r * k..(r + 1) * k], 1))
        .collect();
    for kernel in kernels_for(op.lanes()) {
        let y = run_with(gpu, &op, &x, m, kernel);
        let ratio = worst_ratio(&want, &y, &mass(q, &x, m));
        let depth = quant_depth(k, q.group_size(), op.lanes());
        eprintln!(
            "{what} {kernel:?}: lanes {} worst ratio {ratio:.3} (budget {depth})",
            op.lanes()
        );
        assert!(
            ratio <= depth,
            "{what} {kernel:?}: error ratio {ratio} over {depth}"
        );
        for (&r, one) in rows.iter().zip(&alone) {
            assert_eq!(
                crate::common::bits(row(&y, n, r)),
                crate::common::bits(one),
                "{what} {kernel:?}: row {r} vs M = 1"
            );
        }
    }
}
