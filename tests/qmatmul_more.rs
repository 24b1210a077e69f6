//! Dense f32/f16/bf16 matmul, quantized embedding gather, tied LM head, row splits of a W
//! larger than the binding limit, and bad-input errors.

mod common;
mod qmm_common;

use common::bits;
use onepath::ops::OpError;
use onepath::ops::qmm::{
    DKernel, EmbedGather, GatherRounding, QMatmul, QWeights, dkernel, lanes_dense,
};
use onepath::reference::matmul_nt;
use onepath_weights::{
    Checkpoint, DType, QuantParams, QuantizedTensor, dequantize, dequantize_f32,
};
use qmm_common::*;
use std::path::PathBuf;

fn gather(gpu: &onepath::gpu::Gpu, w: std::sync::Arc<QWeights>, r: GatherRounding) -> EmbedGather {
    pollster::block_on(EmbedGather::new(gpu, w, r)).expect("gather pipeline")
}

/// The dense GEMV kernel and the dense tiled kernel give the same bits, on shapes that take
/// every GEMV plan (1, 2 and 4 rows of W per invocation; 1 and 2 rows of x per workgroup, the
/// latter also at M = 1 for a long K; 2 to 32 lanes; a partial last workgroup), for M = 1, 2,
/// 3, 8 and 9; and rows of a 9-row call equal the same rows computed alone.
#[test]
fn dense_kernels_agree_bit_for_bit() {
    use onepath::ops::qmm::dplan;
    let Some(gpu) = common::gpu() else { return };
    let mut plans = std::collections::BTreeSet::new();
    for (i, &(n, k, dt)) in [
        (37, 200, DType::F16),
        (64, 1536, DType::BF16),
        (9, 72, DType::F32),
        (20001, 512, DType::BF16),
        (140_003, 256, DType::F16),
        (40, 4096, DType::BF16), // 16 units a lane: 2 rows of x per workgroup even at M = 1
    ]
    .iter()
    .enumerate()
    {
        let w = common::randn(&mut common::rng(500 + i as u64), n * k);
        let (op, _) = dense(gpu, &w, n, k, dt, None);
        let x = common::randn(&mut common::rng(600 + i as u64), 9 * k);
        for m in [1, 2, 3, 8, 9] {
            plans.insert((dplan(n, k, m).rows, dplan(n, k, m).mt));
            let g =
                pollster::block_on(op.run_host_with(gpu, &x[..m * k], m, DKernel::Gemv)).unwrap();
            let o = pollster::block_on(op.run_host_with(gpu, &x[..m * k], m, DKernel::Tiled(1)))
                .unwrap();
            assert_eq!(
                bits(&g),
                bits(&o),
                "N={n} K={k} {dt} M={m}: GEMV vs tiled kernel"
            );
        }
        let y9 = pollster::block_on(op.run_host(gpu, &x, 9)).unwrap();
        for r in [0, 8] {
            let one = pollster::block_on(op.run_host(gpu, &x[r * k..(r + 1) * k], 1)).unwrap();
            assert_eq!(
                bits(row(&y9, n, r)),
                bits(&one),
                "N={n} {dt}: row {r} of 9 vs alone"
            );
        }
    }
    for want in [(1, 1), (2, 1), (4, 1), (1, 2), (2, 2), (4, 2)] {
        assert!(
            plans.contains(&want),
            "no shape took the GEMV plan {want:?}: {plans:?}"
        );
    }
}

/// The dense tiled kernel (prefill) gives the bits of the dense GEMV kernel with its fold trees
/// whole or split over 2 to 16 workgroups, on shapes that cut its 32 x 64 tiles, take 1 to 32
/// lanes, and steps of 1 to 4 units (a lane's units not a multiple of 4), in f32, f16 and bf16;
/// its rows equal the same rows computed alone; and it is accurate against the f64 oracle.
#[test]
fn dense_tiled_kernel_matches_and_is_invariant() {
    let Some(gpu) = common::gpu() else { return };
    for (i, &(n, k, dt, m)) in [
        (70, 1536, DType::BF16, 40), // 32 lanes of 6 units: steps of 4 and 2
        (37, 200, DType::F16, 33),   // 4 lanes of 7 and 6 units
        (9, 72, DType::F32, 70),     // 2 lanes (9 units: 5 and 4)
        (130, 8, DType::BF16, 9),    // 1 lane of 1 unit
        (65, 4096, DType::F32, 64),  // 32 lanes of 16 units
    ]
    .iter()
    .enumerate()
    {
        let w = common::randn(&mut common::rng(700 + i as u64), n * k);
        let (op, stored) = dense(gpu, &w, n, k, dt, None);
        let x = common::randn(&mut common::rng(800 + i as u64), m * k);
        let what = format!("N={n} K={k} {dt} M={m}");
        let want = pollster::block_on(op.run_host_with(gpu, &x, m, DKernel::Gemv)).unwrap();
        let mut splits = 1;
        while splits <= 16.min(op.lanes()) {
            let y =
                pollster::block_on(op.run_host_with(gpu, &x, m, DKernel::Tiled(splits))).unwrap();
            assert_bits(&format!("{what}: tiled/{splits} vs GEMV"), &y, &want);
            splits *= 2;
        }
        for r in [0, m / 2, m - 1] {
            let one = pollster::block_on(op.run_host(gpu, &x[r * k..(r + 1) * k], 1)).unwrap();
            assert_eq!(
                bits(row(&want, n, r)),
                bits(&one),
                "{what}: row {r} vs alone"
            );
        }
        let exact = matmul_nt(&x, &stored, m, k, n).unwrap();
        let mass = dense_mass(&x, &stored, m, k, n);
        let depth = onepath::ops::qmm::dense_error_depth(k, op.lanes());
        let ratio = worst_ratio(&exact, &want, &mass);
        assert!(ratio <= depth, "{what}: ratio {ratio} over {depth}");
    }
    // Which dense kernel a call gets: GEMV up to 16 rows and for the LM head at 20, tiled for
    // prefill, its trees split where the tiles are few.
    assert_eq!(dkernel(16, 6144, 16), DKernel::Gemv);
    assert_eq!(dkernel(20, 262144, 32), DKernel::Gemv);
    assert_eq!(dkernel(24, 6144, 32), DKernel::Tiled(4));
    assert_eq!(dkernel(512, 6144, 32), DKernel::Tiled(1));
}

/// The dense matmul's rows are batch-invariant as the quantized one's (`rows_are_batch_invariant`
/// in tests/qmatmul.rs): row m of an M-row call equals the row computed alone, bit for bit, for
/// M = 1, 2, 7, 64, 300 and for windows that start mid-batch, with both kernels (GEMV, and
/// tiled with its fold trees whole or split over 2 to 16 workgroups); repeated runs are
/// identical.
#[test]
fn dense_rows_are_batch_invariant() {
    let Some(gpu) = common::gpu() else { return };
    let (n, k) = (70, 1536);
    let w = common::randn(&mut common::rng(900), n * k);
    let (op, _) = dense(gpu, &w, n, k, DType::BF16, None);
    let x = common::randn(&mut common::rng(901), 300 * k);
    let alone: Vec<Vec<f32>> = (0..300)
        .map(|r| pollster::block_on(op.run_host(gpu, &x[r * k..(r + 1) * k], 1)).unwrap())
        .collect();
    let kernels = [1, 2, 4, 8, 16]
        .into_iter()
        .filter(|&s| s <= op.lanes())
        .map(DKernel::Tiled)
        .chain([DKernel::Gemv]);
    for kernel in kernels {
        assert_batch_invariant(&format!("{kernel:?}"), &x, (n, k), &alone, |x, m| {
            pollster::block_on(op.run_host_with(gpu, x, m, kernel)).unwrap()
        });
    }
}

/// Dense W in f16/bf16/f32 against the f64 oracle (budget: `depth * u * sum |x w|` with
/// depth = 2 * units per lane + 2 + log2 lanes) and M = 5 rows vs M = 1 bit for bit.
#[test]
fn dense_matmul_accuracy_and_invariance() {
    let Some(gpu) = common::gpu() else { return };
    for (i, &(n, k, dt)) in [
        (37, 200, DType::F16),
        (64, 1536, DType::BF16),
        (9, 72, DType::F32),
    ]
    .iter()
    .enumerate()
    {
        let w = common::randn(&mut common::rng(300 + i as u64), n * k);
        let (op, stored) = dense(gpu, &w, n, k, dt, None);
        let m = 5;
        let x = common::randn(&mut common::rng(400 + i as u64), m * k);
        let y = pollster::block_on(op.run_host(gpu, &x, m)).unwrap();
        let want = matmul_nt(&x, &stored, m, k, n).unwrap();
        let mass = dense_mass(&x, &stored, m, k, n);
        let lanes = lanes_dense(k / 8);
        let depth = onepath::ops::qmm::dense_error_depth(k, lanes);
        let ratio = worst_ratio(&want, &y, &mass);
        eprintln!("dense N={n} K={k} {dt}: lanes {lanes} worst ratio {ratio:.3} (budget {depth})");
        assert!(ratio <= depth, "dense {dt}: ratio {ratio} over {depth}");
        for r in [0, 3] {
            let one = pollster::block_on(op.run_host(gpu, &x[r * k..(r + 1) * k], 1)).unwrap();
            assert_eq!(
                bits(row(&y, n, r)),
                bits(&one),
                "dense {dt}: row {r} vs M = 1"
            );
        }
    }
}

/// Gathered rows equal the dequantised rows bit for bit: `dequantize_f32` (F32 rounding) and
/// MLX's `dequantize` / the fixture's `w_dequant` (model-dtype rounding, f16 and bf16).
#[test]
fn embedding_gather_is_exact() {
    let Some(gpu) = common::gpu() else { return };
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/mlx_qmm_q4_g64.safetensors");
    let ck = Checkpoint::open(&p).unwrap();
    let ids = [3u32, 0, 63, 3, 17];
    for dt in ["f32", "f16", "bf16"] {
        let t = |s: &str| ck.tensor(&format!("{dt}.{s}")).unwrap();
        let params = QuantParams::new(64, 4, "fixture").unwrap();
        let q =
            QuantizedTensor::from_views(dt, &t("wq"), &t("scales"), &t("biases"), params).unwrap();
        let k = q.cols();
        let w = QWeights::upload(gpu, &q).unwrap();
        let pick = |all: &[f32]| -> Vec<f32> {
            ids.iter()
                .flat_map(|&i| all[i as usize * k..(i as usize + 1) * k].to_vec())
                .collect()
        };
        let got =
            pollster::block_on(gather(gpu, w.clone(), GatherRounding::F32).run_host(gpu, &ids))
                .unwrap();
        let f = dequantize_f32(&q);
        if dt == "f32" && bits(&got) != bits(&pick(&f)) {
            assert_bits("f32 gather vs mul_add", &got, &pick(&deq_fma(&q))); // fused-fma device
        } else {
            assert_bits(&format!("{dt} gather vs dequantize_f32"), &got, &pick(&f));
        }
        if dt != "f32" {
            let op = gather(gpu, w, GatherRounding::ModelDtype);
            let got = pollster::block_on(op.run_host(gpu, &ids)).unwrap();
            assert_bits(
                &format!("{dt} gather vs dequantize"),
                &got,
                &pick(&dequantize(&q)),
            );
            assert_bits(
                &format!("{dt} gather vs MLX"),
                &got,
                &pick(&t("w_dequant").to_f32().unwrap()),
            );
        }
    }
}

/// A tied LM head: one uploaded table serves the gather and the head matmul; logits match the
/// f64 oracle on the dequantised table, and the table's row r dotted with e_j is its entry.
#[test]
fn tied_lm_head_uses_the_quantized_table() {
    let Some(gpu) = common::gpu() else { return };
    let (vocab, hidden) = (300, 256);
    let q = qtensor(7, vocab, hidden, 64, 4, DType::BF16);
    let table = QWeights::upload(gpu, &q).unwrap();
    let emb = gather(gpu, table.clone(), GatherRounding::F32);
    let head = pollster::block_on(QMatmul::new(gpu, table)).unwrap();
    let h = pollster::block_on(emb.run_host(gpu, &[5, 299])).unwrap();
    let logits = pollster::block_on(head.run_host(gpu, &h, 2)).unwrap();
    let w = dequantize_f32(&q);
    let want = matmul_nt(&h, &w, 2, hidden, vocab).unwrap();
    let ratio = worst_ratio(&want, &logits, &mass(&q, &h, 2));
    let depth = quant_depth(hidden, 64, head.lanes());
    eprintln!("lm head: worst ratio {ratio:.3} (budget {depth})");
    assert!(ratio <= depth);
    // The largest logit of a row of the table against itself is that row (|w|^2 dominates).
    assert_bits("gathered row 5", &h[..hidden], &w[5 * hidden..6 * hidden]);
}

/// A W larger than the (forced) binding limit is split by rows: the bits equal the unsplit run
/// for the quantized matmul, the gather and the dense matmul.
#[test]
fn oversized_weights_split_by_rows_with_identical_bits() {
    let Some(gpu) = common::gpu() else { return };
    let (n, k) = (203, 320);
    let q = qtensor(21, n, k, 64, 4, DType::BF16);
    let whole = qmm(gpu, &q, None);
    let split = qmm(gpu, &q, Some(8 << 10)); // 8 KiB: 51 rows of 160 bytes per binding
    assert_eq!(whole.weights.splits.len(), 1);
    assert!(
        split.weights.splits.len() >= 4,
        "{} splits",
        split.weights.splits.len()
    );
    let m = 7;
    let x = common::randn(&mut common::rng(22), m * k);
    assert_bits(
        "split quantized matmul",
        &run(gpu, &split, &x, m),
        &run(gpu, &whole, &x, m),
    );
    // Every kernel on a split W: bindings of 51 rows cut the tiled kernel's 64-row tiles, and
    // a split tree's combine runs once over the outputs of all bindings.
    let mp = 40;
    let xp = common::randn(&mut common::rng(24), mp * k);
    let want = run_with(gpu, &whole, &xp, mp, onepath::ops::qmm::QKernel::Gemv);
    for kernel in kernels_for(whole.lanes()) {
        assert_bits(
            &format!("split quantized matmul, {kernel:?}, M = {mp}"),
            &run_with(gpu, &split, &xp, mp, kernel),
            &want,
        );
    }
    let ids: Vec<u32> = vec![0, 50, 51, 52, 202, 101];
    let g1 = pollster::block_on(
        gather(gpu, whole.weights.clone(), GatherRounding::F32).run_host(gpu, &ids),
    )
    .unwrap();
    let g2 = pollster::block_on(
        gather(gpu, split.weights.clone(), GatherRounding::F32).run_host(gpu, &ids),
    )
    .unwrap();
    assert_bits("split gather", &g2, &g1);

    let w = common::randn(&mut common::rng(23), n * k);
    let (d1, _) = dense(gpu, &w, n, k, DType::F16, None);
    let (d2, _) = dense(gpu, &w, n, k, DType::F16, Some(16 << 10));
    assert!(d2.weights.splits.len() >= 4);
    let y1 = pollster::block_on(d1.run_host(gpu, &x, m)).unwrap();
    let y2 = pollster::block_on(d2.run_host(gpu, &x, m)).unwrap();
    assert_bits("split dense matmul", &y2, &y1);
    let want = pollster::block_on(d1.run_host_with(gpu, &xp, mp, DKernel::Gemv)).unwrap();
    for splits in [1, 4] {
        let y = pollster::block_on(d2.run_host_with(gpu, &xp, mp, DKernel::Tiled(splits)));
        assert_bits(
            &format!("split dense matmul, tiled/{splits}, M = {mp}"),
            &y.unwrap(),
            &want,
        );
    }
}

fn err_text(r: Result<impl Sized, OpError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// Bad inputs give errors that name the problem.
#[test]
fn bad_inputs_are_named() {
    let Some(gpu) = common::gpu() else { return };
    let q = qtensor(31, 8, 128, 64, 4, DType::BF16);
    let op = qmm(gpu, &q, None);
    let e = err_text(pollster::block_on(op.run_host(gpu, &[0.0; 100], 1)));
    assert!(e.contains("`x`") && e.contains("128"), "{e}");
    let e = err_text(pollster::block_on(op.run_host(gpu, &[], 0)));
    assert!(e.contains("zero"), "{e}");
    // 128 inputs at 4 bits: 1 lane, so the tiled kernel cannot split its trees; 3 never.
    for splits in [2, 3] {
        let e = err_text(pollster::block_on(op.run_host_with(
            gpu,
            &[0.0; 128],
            1,
            onepath::ops::qmm::QKernel::Tiled(splits),
        )));
        assert!(e.contains("splits") && e.contains("1 lanes"), "{e}");
    }

    let q3 = qtensor(32, 8, 128, 64, 3, DType::BF16);
    let e = err_text(QWeights::upload(gpu, &q3));
    assert!(e.contains("bits") && e.contains('3'), "{e}");
    let wide = qtensor(33, 1, 32 * 513, 32, 4, DType::BF16);
    let e = err_text(QWeights::upload(gpu, &wide));
    assert!(e.contains("513") && e.contains("groups"), "{e}");

    let f32q = qtensor(34, 4, 64, 64, 4, DType::F32);
    let w = QWeights::upload(gpu, &f32q).unwrap();
    let e = err_text(pollster::block_on(EmbedGather::new(
        gpu,
        w.clone(),
        GatherRounding::ModelDtype,
    )));
    assert!(e.contains("rounding"), "{e}");
    let g = gather(gpu, w, GatherRounding::F32);
    let e = err_text(pollster::block_on(g.run_host(gpu, &[4])));
    assert!(e.contains("token id") && e.contains('4'), "{e}");

    let bytes = vec![0u8; 4 * 12 * 2];
    let e = err_text(onepath::ops::qmm::DenseWeights::upload(
        gpu,
        &bytes,
        DType::F16,
        4,
        12,
        None,
    ));
    assert!(e.contains("multiple of 8"), "{e}");
    let e = err_text(onepath::ops::qmm::DenseWeights::upload(
        gpu,
        &bytes,
        DType::F16,
        4,
        16,
        None,
    ));
    assert!(e.contains("W bytes"), "{e}");

    // A dense GEMV call whose rows of x (2 per workgroup) need more workgroups than a grid
    // dimension holds: named, with the limit and the way out; the tiled kernel runs it.
    let w = common::randn(&mut common::rng(40), 16 * 16);
    let (op, _) = dense(gpu, &w, 16, 16, DType::BF16, None);
    let m = 140_000;
    let x = vec![0.5f32; m * 16];
    let e = err_text(pollster::block_on(op.run_host_with(
        gpu,
        &x,
        m,
        DKernel::Gemv,
    )));
    assert!(
        e.contains("140000-row") && e.contains("65535") && e.contains("tiled"),
        "{e}"
    );
    let y = pollster::block_on(op.run_host(gpu, &x, m)).unwrap();
    assert_eq!(op.kernel_for(m), DKernel::Tiled(1));
    let one = pollster::block_on(op.run_host(gpu, &x[..16], 1)).unwrap();
    assert_bits("last row of 140000 vs alone", row(&y, 16, m - 1), &one);
}

/// The decode shapes' K (6144: 64 lanes, 1536: 16 lanes) at 4 and 8 bits: accurate against the
/// f64 oracle, and rows of an M = 11 call (two tiles of x) equal M = 1 bit for bit.
#[test]
fn decode_shapes_are_accurate_and_invariant() {
    let Some(gpu) = common::gpu() else { return };
    for (i, &(n, k, g, b)) in [(45, 6144, 64, 4), (70, 1536, 64, 4), (33, 6144, 128, 8)]
        .iter()
        .enumerate()
    {
        let what = format!("N={n} K={k} group={g} bits={b}");
        let q = qtensor(500 + i as u64, n, k, g, b, DType::BF16);
        check_accurate_and_invariant(gpu, &what, &q, 11, 600 + i as u64, &[0, 7, 10]);
    }
}

/// Matrices large enough for the decode plan to take 2 rows per invocation (8999 x 1536) and 4
/// (65573 x 1536, LM-head-sized), 4-bit, group 64: the plans for 2 to 8 rows (M = 5) and for
/// more (M = 9) take other rows and workgroups, two rows of x at a time (`qplan`). Rows of the
/// M = 5 and M = 9 calls equal the same rows computed alone, bit for bit, the tiled kernel's
/// M = 9 call equals the GEMV kernel's, and a sample of outputs (the first rows of W and the
/// partial last workgroup) is accurate against the f64 oracle. Codes, scales and biases are
/// random bytes (quantizing 100 M weights would dominate the test).
#[test]
fn large_decode_plans_are_invariant_and_accurate() {
    let Some(gpu) = common::gpu() else { return };
    for (n, rows) in [(8999, 2), (65536 + 37, 4)] {
        check_decode_plan(gpu, n, rows);
    }
}

fn check_decode_plan(gpu: &onepath::gpu::Gpu, n: usize, rows: u32) {
    use onepath::ops::qmm::{lanes_quant, qplan};
    use rand::RngCore;
    let (k, group) = (1536, 64);
    let lanes = lanes_quant(k, 4);
    let (decode, batch) = (qplan(n, 1, lanes), qplan(n, 9, lanes));
    assert_eq!(decode.rows, rows, "N = {n}: the case this test is for");
    assert_ne!(decode, batch, "N = {n}: the case this test is for");

    let mut rng = common::rng(41);
    let mut codes = vec![0u8; n * k / 2];
    rng.fill_bytes(&mut codes);
    let groups = n * k / group;
    let bf16 = |rng: &mut rand::rngs::StdRng, scale: f32| -> Vec<u8> {
        let mut out = Vec::with_capacity(2 * groups);
        for v in common::randn(rng, groups) {
            DType::BF16.encode(v * scale, &mut out);
        }
        out
    };
    let (scales, biases) = (bf16(&mut rng, 0.01), bf16(&mut rng, 0.1));
    let params = QuantParams::new(group, 4, "large").unwrap();
    let q = QuantizedTensor::new(
        "large",
        vec![n, k],
        params,
        DType::BF16,
        codes.into(),
        scales.into(),
        biases.into(),
    )
    .unwrap();
    let op = qmm(gpu, &q, None);
    let m = 9;
    let x = common::randn(&mut common::rng(42), m * k);
    let y = run(gpu, &op, &x, m);
    let y5 = run(gpu, &op, &x[..5 * k], 5); // the plan for 2 to 8 rows
    // The tiled kernel (prefill) on the same call: every output equals the GEMV kernel's.
    for kernel in kernels_for(op.lanes()).skip(1) {
        let yt = run_with(gpu, &op, &x, m, kernel);
        assert_bits(&format!("N = {n}: {kernel:?} vs GEMV, M = 9"), &yt, &y);
    }
    for r in [0, 4, 5, 8] {
        let one = run(gpu, &op, &x[r * k..(r + 1) * k], 1);
        assert_bits(
            &format!("N = {n}: row {r} of M = 9 vs M = 1"),
            row(&y, n, r),
            &one,
        );
        if r < 5 {
            assert_bits(
                &format!("N = {n}: row {r} of M = 5 vs M = 1"),
                row(&y5, n, r),
                &one,
            );
        }
    }

    let sample: Vec<usize> = (0..40).chain(n - 45..n).collect();
    let (s, b) = (q.scales_f32(), q.biases_f32());
    let depth = quant_depth(k, group, lanes);
    let mut worst = 0.0f64;
    for &c in &sample {
        let codes = q.unpack_rows(c..c + 1).unwrap();
        for r in 0..m {
            let (mut want, mut mass) = (0.0f64, 0.0f64);
            for t in 0..k {
                let gi = c * (k / group) + t / group;
                let (sv, bv, qv) = (f64::from(s[gi]), f64::from(b[gi]), f64::from(codes[t]));
                let xv = f64::from(x[r * k + t]);
                want += xv * (sv * qv + bv);
                mass += xv.abs() * (sv.abs() * qv + bv.abs());
            }
            let got = f64::from(y[r * n + c]);
            worst = worst.max((want - got).abs() / (U * mass));
        }
    }
    eprintln!("N = {n}: worst ratio {worst:.3} (budget {depth})");
    assert!(worst <= depth, "N = {n}: error ratio {worst} over {depth}");
}
