//! Tests of the reference kernels. Expected values are derived by hand (or by
//! an independent, simpler construction such as "compact the selected keys" or
//! "repeat the kv heads"), never copied from the output of the code under test.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn all(_: usize, _: usize, _: usize, _: usize) -> bool {
    true
}

fn random_vec(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn dims(
    batch: usize,
    q_heads: usize,
    kv_heads: usize,
    q_len: usize,
    kv_len: usize,
    head_dim: usize,
) -> SdpaDims {
    SdpaDims {
        batch,
        q_heads,
        kv_heads,
        q_len,
        kv_len,
        head_dim,
    }
}

/// Random q, k, v for `d`.
fn random_qkv(rng: &mut StdRng, d: &SdpaDims) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let q = random_vec(rng, d.batch * d.q_heads * d.q_len * d.head_dim);
    let kv_n = d.batch * d.kv_heads * d.kv_len * d.head_dim;
    let k = random_vec(rng, kv_n);
    let v = random_vec(rng, kv_n);
    (q, k, v)
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}: element {i}: got {g}, want {w} (|diff| = {:e} > {tol:e})",
            (g - w).abs()
        );
    }
}

/// Row `j` of a `[.., rows, head_dim]` buffer for (batch `b`, head `h`).
fn row(buf: &[f32], heads: usize, rows: usize, dim: usize, b: usize, h: usize, j: usize) -> &[f32] {
    let off = ((b * heads + h) * rows + j) * dim;
    &buf[off..off + dim]
}

// ---------------------------------------------------------------- sdpa

#[test]
fn sdpa_one_key_outputs_v_exactly() {
    // With a single key the softmax weight is exp(0) / exp(0) = 1 exactly, so
    // the output must be v bit for bit, whatever q, k, scale and softcap are.
    let mut rng = StdRng::seed_from_u64(1);
    let d = dims(2, 3, 3, 4, 1, 6);
    let (q, k, v) = random_qkv(&mut rng, &d);
    for softcap in [None, Some(0.7)] {
        let out = sdpa(&d, &q, &k, &v, 3.7, softcap, all).unwrap();
        for b in 0..2 {
            for h in 0..3 {
                for i in 0..4 {
                    let o = row_f64(&out, 3, 4, 6, b, h, i);
                    let want: Vec<f64> = row(&v, 3, 1, 6, b, h, 0)
                        .iter()
                        .map(|&x| f64::from(x))
                        .collect();
                    assert_eq!(o, &want[..], "b={b} h={h} i={i} softcap={softcap:?}");
                }
            }
        }
    }
}

#[test]
fn sdpa_one_selected_key_outputs_that_v_exactly() {
    // Many keys, but the mask leaves only key 2: the output is v[2] exactly.
    let mut rng = StdRng::seed_from_u64(2);
    let d = dims(1, 2, 1, 3, 5, 4);
    let (q, k, v) = random_qkv(&mut rng, &d);
    let out = sdpa(&d, &q, &k, &v, 10.0, None, |_, _, _, j| j == 2).unwrap();
    let want: Vec<f64> = row(&v, 1, 5, 4, 0, 0, 2)
        .iter()
        .map(|&x| f64::from(x))
        .collect();
    for h in 0..2 {
        for i in 0..3 {
            assert_eq!(row_f64(&out, 2, 3, 4, 0, h, i), &want[..]);
        }
    }
}

fn row_f64(
    buf: &[f64],
    heads: usize,
    rows: usize,
    dim: usize,
    b: usize,
    h: usize,
    j: usize,
) -> &[f64] {
    let off = ((b * heads + h) * rows + j) * dim;
    &buf[off..off + dim]
}

#[test]
fn sdpa_two_keys_equal_scores_give_mean_of_v() {
    // q = [2, 0]; k0 = [1, 5], k1 = [1, -3]: both dots are 2, so both weights
    // are 1/2 and the output is (v0 + v1) / 2 = ([1, 2] + [3, -6]) / 2 = [2, -2].
    let d = dims(1, 1, 1, 1, 2, 2);
    let q = [2.0f32, 0.0];
    let k = [1.0f32, 5.0, 1.0, -3.0];
    let v = [1.0f32, 2.0, 3.0, -6.0];
    let out = sdpa(&d, &q, &k, &v, 0.5, None, all).unwrap();
    assert_eq!(out, vec![2.0, -2.0]);
}

#[test]
fn sdpa_hand_computed_weights_two_thirds_one_third() {
    // scale = ln 2, q.k0 = 1, q.k1 = 0: scores ln 2 and 0, weights 2/3 and 1/3.
    // v0 = [3, 0, -3], v1 = [0, 6, 3] → [2, 2, -1].
    let d = dims(1, 1, 1, 1, 2, 3);
    let q = [1.0f32, 0.0, 0.0];
    let k = [1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0];
    let v = [3.0f32, 0.0, -3.0, 0.0, 6.0, 3.0];
    let out = sdpa(&d, &q, &k, &v, std::f64::consts::LN_2, None, all).unwrap();
    assert_close(&out, &[2.0, 2.0, -1.0], 1e-14, "ln2 weights");
}

#[test]
fn sdpa_large_scores_do_not_overflow() {
    // Scores 1000 and 999: exp(1000) overflows f64, so this only works with max
    // subtraction. Weights are 1 / (1 + e^-1) and e^-1 / (1 + e^-1).
    let d = dims(1, 1, 1, 1, 2, 1);
    let q = [1.0f32];
    let k = [1.0f32, 0.999];
    let v = [1.0f32, 0.0];
    let scale = 1000.0;
    let out = sdpa(&d, &q, &k, &v, scale, None, all).unwrap();
    // score difference is 1000 * (1 - f64(0.999f32)); use that exact difference.
    let delta = scale * (1.0 - f64::from(0.999f32));
    let want = 1.0 / (1.0 + (-delta).exp());
    assert!(out[0].is_finite());
    assert!((out[0] - want).abs() < 1e-12, "got {}, want {want}", out[0]);
}

#[test]
fn sdpa_zero_scale_gives_mean_of_selected_v() {
    // scale 0: every selected score is 0, so the output is the plain mean of
    // the selected v rows (keys 0, 2, 4 of 5 for even rows, 1 and 3 for odd).
    let mut rng = StdRng::seed_from_u64(3);
    let d = dims(2, 2, 1, 2, 5, 3);
    let (q, k, v) = random_qkv(&mut rng, &d);
    let mask = |_: usize, _: usize, i: usize, j: usize| j % 2 == i % 2;
    let out = sdpa(&d, &q, &k, &v, 0.0, None, mask).unwrap();
    for b in 0..2 {
        for h in 0..2 {
            for i in 0..2 {
                let keys: Vec<usize> = (0..5).filter(|&j| j % 2 == i % 2).collect();
                let mut mean = [0.0f64; 3];
                for &j in &keys {
                    for (m, &x) in mean.iter_mut().zip(row(&v, 1, 5, 3, b, 0, j)) {
                        *m += f64::from(x);
                    }
                }
                for m in &mut mean {
                    *m /= keys.len() as f64;
                }
                assert_close(row_f64(&out, 2, 2, 3, b, h, i), &mean, 1e-15, "mean");
            }
        }
    }
}

/// Deterministic pseudo-random mask depending on all four indices, with
/// row (b=1, h=3, i=2) left empty.
fn scattered_mask(b: usize, h: usize, i: usize, j: usize) -> bool {
    if (b, h, i) == (1, 3, 2) {
        return false;
    }
    !(b * 7 + h * 5 + i * 3 + j * 11 + (j * j) % 5).is_multiple_of(3)
}

#[test]
fn sdpa_masked_equals_sdpa_on_selected_keys_only() {
    // For every query row, compact the keys the mask selects into a smaller
    // k/v and run unmasked attention on that single row: the results must
    // match. An empty row must give zeros.
    let mut rng = StdRng::seed_from_u64(4);
    let d = dims(2, 4, 2, 3, 7, 5);
    let (q, k, v) = random_qkv(&mut rng, &d);
    let scale = 0.9;
    for softcap in [None, Some(1.5)] {
        let out = sdpa(&d, &q, &k, &v, scale, softcap, scattered_mask).unwrap();
        for b in 0..2 {
            for h in 0..4 {
                let kvh = h / 2;
                for i in 0..3 {
                    let keys: Vec<usize> = (0..7).filter(|&j| scattered_mask(b, h, i, j)).collect();
                    let got = row_f64(&out, 4, 3, 5, b, h, i);
                    if keys.is_empty() {
                        assert_eq!(got, &[0.0; 5], "empty row b={b} h={h} i={i}");
                        continue;
                    }
                    let sub_k: Vec<f32> = keys
                        .iter()
                        .flat_map(|&j| row(&k, 2, 7, 5, b, kvh, j).to_vec())
                        .collect();
                    let sub_v: Vec<f32> = keys
                        .iter()
                        .flat_map(|&j| row(&v, 2, 7, 5, b, kvh, j).to_vec())
                        .collect();
                    let sub_q = row(&q, 4, 3, 5, b, h, i);
                    let sd = dims(1, 1, 1, 1, keys.len(), 5);
                    let want = sdpa(&sd, sub_q, &sub_k, &sub_v, scale, softcap, all).unwrap();
                    assert_close(got, &want, 1e-14, "masked vs compacted");
                }
            }
        }
    }
    // The scattered mask really does leave something out in most rows.
    let excluded = (0..7).filter(|&j| !scattered_mask(0, 0, 0, j)).count();
    assert!(excluded > 0 && excluded < 7);
}

#[test]
fn sdpa_empty_rows_are_zero_not_nan() {
    let mut rng = StdRng::seed_from_u64(5);
    let d = dims(1, 2, 2, 3, 4, 3);
    let (q, k, v) = random_qkv(&mut rng, &d);
    // Everything masked: all zeros.
    let out = sdpa(&d, &q, &k, &v, 1.0, None, |_, _, _, _| false).unwrap();
    assert!(out.iter().all(|&x| x == 0.0));
    // Only row i = 1 of head 0 empty: that row is zero, the others are not.
    let mask = |_: usize, h: usize, i: usize, _: usize| !(h == 0 && i == 1);
    let out = sdpa(&d, &q, &k, &v, 1.0, Some(2.0), mask).unwrap();
    assert!(out.iter().all(|x| x.is_finite()));
    assert_eq!(row_f64(&out, 2, 3, 3, 0, 0, 1), &[0.0; 3]);
    assert!(row_f64(&out, 2, 3, 3, 0, 0, 0).iter().any(|&x| x != 0.0));
    assert!(row_f64(&out, 2, 3, 3, 0, 1, 1).iter().any(|&x| x != 0.0));
}

/// Repeat each kv head `group` times so that head `h` of the result is kv
/// head `h / group` of the input: `[B, Hkv, T, D]` → `[B, Hkv * group, T, D]`.
fn repeat_kv(
    x: &[f32],
    batch: usize,
    kv_heads: usize,
    group: usize,
    rows: usize,
    dim: usize,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len() * group);
    for b in 0..batch {
        for h in 0..kv_heads * group {
            for j in 0..rows {
                out.extend_from_slice(row(x, kv_heads, rows, dim, b, h / group, j));
            }
        }
    }
    out
}

#[test]
fn sdpa_gqa_matches_mha_with_repeated_kv_heads() {
    // 8:1 and 4:2 (and 6:3) grouped-query attention equals multi-head
    // attention on k/v with each kv head repeated for its query heads.
    let mut rng = StdRng::seed_from_u64(6);
    for (q_heads, kv_heads) in [(8, 1), (4, 2), (6, 3)] {
        let d = dims(2, q_heads, kv_heads, 3, 6, 4);
        let (q, k, v) = random_qkv(&mut rng, &d);
        let group = q_heads / kv_heads;
        let k_rep = repeat_kv(&k, 2, kv_heads, group, 6, 4);
        let v_rep = repeat_kv(&v, 2, kv_heads, group, 6, 4);
        let mha = dims(2, q_heads, q_heads, 3, 6, 4);
        // A mask that depends on (b, h, i, j), causal-ish with an offset.
        let mask = |b: usize, h: usize, i: usize, j: usize| j <= i + 2 + (b + h) % 3;
        for softcap in [None, Some(3.0)] {
            let gqa_out = sdpa(&d, &q, &k, &v, 0.8, softcap, mask).unwrap();
            let mha_out = sdpa(&mha, &q, &k_rep, &v_rep, 0.8, softcap, mask).unwrap();
            assert_close(
                &gqa_out,
                &mha_out,
                0.0,
                &format!("GQA {q_heads}:{kv_heads}"),
            );
        }
    }
}

#[test]
fn sdpa_gqa_uses_head_div_group() {
    // 4 query heads, 2 kv heads; v of kv head 0 is all 1, of kv head 1 all 2.
    // Query heads 0 and 1 must read kv head 0, heads 2 and 3 kv head 1.
    let d = dims(1, 4, 2, 1, 3, 2);
    let q = vec![0.5f32; 4 * 2];
    let k = vec![0.25f32; 2 * 3 * 2];
    let mut v = vec![1.0f32; 3 * 2];
    v.extend(vec![2.0f32; 3 * 2]);
    let out = sdpa(&d, &q, &k, &v, 1.0, None, all).unwrap();
    assert_close(
        &out,
        &[1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0],
        1e-15,
        "head mapping",
    );
}

#[test]
fn sdpa_softcap_with_large_cap_is_no_cap() {
    // c tanh(s / c) = s - s^3 / (3 c^2) + ...: with c = 1e6 and |s| < 10 the
    // change is below 1e-9 relative.
    let mut rng = StdRng::seed_from_u64(7);
    let d = dims(1, 2, 1, 3, 9, 8);
    let (q, k, v) = random_qkv(&mut rng, &d);
    let plain = sdpa(&d, &q, &k, &v, 1.3, None, all).unwrap();
    let capped = sdpa(&d, &q, &k, &v, 1.3, Some(1e6), all).unwrap();
    assert_close(&capped, &plain, 1e-9, "large softcap");
}

#[test]
fn sdpa_softcap_hand_computed() {
    // D = 1, q = 1, k = [1, 0], v = [1, 0], scale 1, cap 1:
    // scores tanh(1) and 0, output = sigmoid(tanh(1)).
    let d = dims(1, 1, 1, 1, 2, 1);
    let out = sdpa(&d, &[1.0], &[1.0, 0.0], &[1.0, 0.0], 1.0, Some(1.0), all).unwrap();
    let want = 1.0 / (1.0 + (-(1.0f64).tanh()).exp());
    assert!((out[0] - want).abs() < 1e-15);
    // The same number evaluated independently (Python: 1/(1+exp(-tanh(1)))).
    assert!((out[0] - 0.6816997421945262).abs() < 1e-15);

    // Scores of ±100 capped at 1: tanh(±100) = ±1 in f64, so the weights are
    // e / (e + 1/e) = 1 / (1 + e^-2) and the rest.
    let out = sdpa(&d, &[1.0], &[1.0, -1.0], &[1.0, 0.0], 100.0, Some(1.0), all).unwrap();
    let want = 1.0 / (1.0 + (-2.0f64).exp());
    assert!((out[0] - want).abs() < 1e-15, "got {}, want {want}", out[0]);
}

#[test]
fn sdpa_large_decode_shape() {
    // The decode shape the GPU tests use: B=1, Hq=8, Tq=1, Tkv=4097, D=512.
    // With scale 0 the output is the mean of v over all keys of the kv head.
    let mut rng = StdRng::seed_from_u64(8);
    let d = dims(1, 8, 2, 1, 4097, 512);
    let (q, k, v) = random_qkv(&mut rng, &d);
    let start = std::time::Instant::now();
    let out = sdpa(&d, &q, &k, &v, 0.0, None, all).unwrap();
    eprintln!("sdpa 1x8x1x4097x512: {:?}", start.elapsed());
    for h in 0..8 {
        let mut mean = vec![0.0f64; 512];
        for j in 0..4097 {
            for (m, &x) in mean.iter_mut().zip(row(&v, 2, 4097, 512, 0, h / 4, j)) {
                *m += f64::from(x);
            }
        }
        for m in &mut mean {
            *m /= 4097.0;
        }
        assert_close(
            row_f64(&out, 8, 1, 512, 0, h, 0),
            &mean,
            1e-14,
            "mean over 4097 keys",
        );
    }
    // And with a real scale it is finite and within the range of v.
    let start = std::time::Instant::now();
    let out = sdpa(&d, &q, &k, &v, 1.0 / 512f64.sqrt(), Some(50.0), all).unwrap();
    eprintln!(
        "sdpa 1x8x1x4097x512 (scaled, softcap): {:?}",
        start.elapsed()
    );
    assert!(out.iter().all(|&x| x.is_finite() && x.abs() <= 1.0));
}

#[test]
fn sdpa_shape_errors() {
    let ok = dims(1, 4, 2, 2, 3, 4);
    let q = vec![0.0f32; 4 * 2 * 4];
    let kv = vec![0.0f32; 2 * 3 * 4];
    assert!(sdpa(&ok, &q, &kv, &kv, 1.0, None, all).is_ok());

    for (name, d) in [
        ("batch", SdpaDims { batch: 0, ..ok }),
        ("q_heads", SdpaDims { q_heads: 0, ..ok }),
        ("kv_heads", SdpaDims { kv_heads: 0, ..ok }),
        ("q_len", SdpaDims { q_len: 0, ..ok }),
        ("kv_len", SdpaDims { kv_len: 0, ..ok }),
        ("head_dim", SdpaDims { head_dim: 0, ..ok }),
    ] {
        let e = sdpa(&d, &q, &kv, &kv, 1.0, None, all).unwrap_err();
        assert_eq!(e, RefError::ZeroDim { name }, "{name}");
        assert!(e.to_string().contains(name));
    }

    let d = SdpaDims { kv_heads: 3, ..ok };
    let e = sdpa(&d, &q, &kv, &kv, 1.0, None, all).unwrap_err();
    assert_eq!(
        e,
        RefError::HeadsNotMultiple {
            q_heads: 4,
            kv_heads: 3
        }
    );
    assert!(e.to_string().contains("multiple"));

    let short_q = &q[..q.len() - 1];
    match sdpa(&ok, short_q, &kv, &kv, 1.0, None, all).unwrap_err() {
        RefError::LenMismatch {
            name: "q",
            expected: 32,
            actual: 31,
            ..
        } => {}
        e => panic!("unexpected error {e:?}"),
    }
    let long_kv = vec![0.0f32; kv.len() + 4];
    let e = sdpa(&ok, &q, &long_kv, &kv, 1.0, None, all).unwrap_err();
    assert!(matches!(
        e,
        RefError::LenMismatch {
            name: "k",
            expected: 24,
            actual: 28,
            ..
        }
    ));
    let msg = e.to_string();
    assert!(
        msg.contains("`k`") && msg.contains("28") && msg.contains("24"),
        "{msg}"
    );
    let e = sdpa(&ok, &q, &kv, &long_kv, 1.0, None, all).unwrap_err();
    assert!(matches!(e, RefError::LenMismatch { name: "v", .. }));

    let huge = SdpaDims {
        batch: usize::MAX / 2,
        q_heads: 4,
        ..ok
    };
    assert_eq!(
        sdpa(&huge, &q, &kv, &kv, 1.0, None, all).unwrap_err(),
        RefError::DimsOverflow { name: "q" }
    );

    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let e = sdpa(&ok, &q, &kv, &kv, 1.0, Some(bad), all).unwrap_err();
        assert!(matches!(
            e,
            RefError::InvalidParam {
                name: "softcap",
                ..
            }
        ));
    }
    for bad in [f64::NAN, f64::NEG_INFINITY] {
        let e = sdpa(&ok, &q, &kv, &kv, bad, None, all).unwrap_err();
        assert!(matches!(e, RefError::InvalidParam { name: "scale", .. }));
    }
}

// ---------------------------------------------------------------- matmul_nt

#[test]
fn matmul_nt_hand_computed() {
    // x = [[1, 2, 3], [4, 5, 6]], w = [[1, 0, -1], [2, 1, 0]]
    // y[0] = [1 - 3, 2 + 2] = [-2, 4]; y[1] = [4 - 6, 8 + 5] = [-2, 13].
    let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let w = [1.0f32, 0.0, -1.0, 2.0, 1.0, 0.0];
    assert_eq!(
        matmul_nt(&x, &w, 2, 3, 2).unwrap(),
        vec![-2.0, 4.0, -2.0, 13.0]
    );
    // A single row times three output features: [1, 2] . [[3, 4], [0.5, 0.25], [-1, 1]]
    let y = matmul_nt(&[1.0, 2.0], &[3.0, 4.0, 0.5, 0.25, -1.0, 1.0], 1, 2, 3).unwrap();
    assert_eq!(y, vec![11.0, 1.0, 1.0]);
}

#[test]
fn matmul_nt_identity() {
    let mut rng = StdRng::seed_from_u64(9);
    let n = 5;
    let mut eye = vec![0.0f32; n * n];
    for i in 0..n {
        eye[i * n + i] = 1.0;
    }
    // x I^T = x.
    let x = random_vec(&mut rng, 3 * n);
    let y = matmul_nt(&x, &eye, 3, n, n).unwrap();
    assert_eq!(y, x.iter().map(|&e| f64::from(e)).collect::<Vec<_>>());
    // I W^T = W^T: y[r][c] = w[c][r].
    let w = random_vec(&mut rng, 4 * n);
    let y = matmul_nt(&eye, &w, n, n, 4).unwrap();
    for r in 0..n {
        for c in 0..4 {
            assert_eq!(y[r * 4 + c], f64::from(w[c * n + r]));
        }
    }
}

#[test]
fn matmul_nt_accumulates_in_f64() {
    // 2^24 + 1 + 1 is not representable step by step in f32 (2^24 + 1 rounds
    // to 2^24), but is exact in f64.
    let x = [16_777_216.0f32, 1.0, 1.0];
    let w = [1.0f32, 1.0, 1.0];
    assert_eq!(matmul_nt(&x, &w, 1, 3, 1).unwrap(), vec![16_777_218.0]);
}

#[test]
fn matmul_nt_shape_errors() {
    let x = [0.0f32; 6];
    let w = [0.0f32; 6];
    assert_eq!(
        matmul_nt(&x, &w, 0, 3, 2),
        Err(RefError::ZeroDim { name: "m" })
    );
    assert_eq!(
        matmul_nt(&x, &w, 2, 0, 2),
        Err(RefError::ZeroDim { name: "k" })
    );
    assert_eq!(
        matmul_nt(&x, &w, 2, 3, 0),
        Err(RefError::ZeroDim { name: "n" })
    );
    assert!(matches!(
        matmul_nt(&x[..5], &w, 2, 3, 2),
        Err(RefError::LenMismatch {
            name: "x",
            expected: 6,
            actual: 5,
            ..
        })
    ));
    let e = matmul_nt(&x, &w, 2, 3, 3).unwrap_err();
    assert!(matches!(
        e,
        RefError::LenMismatch {
            name: "w",
            expected: 9,
            actual: 6,
            ..
        }
    ));
    assert!(e.to_string().contains("[n, k]"), "{e}");
}

// ---------------------------------------------------------------- error measures

#[test]
fn error_measures() {
    let a = [1.0f64, 2.0, 3.0];
    let b = [1.0f32, 2.5, 2.0];
    assert_eq!(max_abs_diff(&a, &b), 1.0);
    // ||a - b|| = sqrt(0 + 0.25 + 1), ||a|| = sqrt(14).
    assert!((rel_l2(&a, &b) - (1.25f64 / 14.0).sqrt()).abs() < 1e-15);
    assert_eq!(max_abs_diff(&a, &[1.0, 2.0, 3.0]), 0.0);
    assert_eq!(rel_l2(&a, &[1.0, 2.0, 3.0]), 0.0);

    // NaN in b: infinitely wrong.
    assert_eq!(max_abs_diff(&a, &[1.0, f32::NAN, 3.0]), f64::INFINITY);
    assert_eq!(rel_l2(&a, &[1.0, f32::NAN, 3.0]), f64::INFINITY);
    // Both zero: 0; zero reference but nonzero b: infinity.
    assert_eq!(rel_l2(&[0.0, 0.0], &[0.0, 0.0]), 0.0);
    assert_eq!(rel_l2(&[0.0, 0.0], &[0.0, 1e-3]), f64::INFINITY);
    // Equal infinities agree, different ones do not.
    assert_eq!(max_abs_diff(&[f64::INFINITY], &[f32::INFINITY]), 0.0);
    assert_eq!(
        max_abs_diff(&[f64::INFINITY], &[f32::NEG_INFINITY]),
        f64::INFINITY
    );
    // Empty inputs.
    assert_eq!(max_abs_diff(&[], &[]), 0.0);
    assert_eq!(rel_l2(&[], &[]), 0.0);
}

#[test]
#[should_panic(expected = "lengths differ")]
fn max_abs_diff_length_mismatch_panics() {
    max_abs_diff(&[1.0, 2.0], &[1.0]);
}

// ---------------------------------------------------------------- Gemma helpers

#[test]
fn rms_norm_hand_computed() {
    // [2, -2, 2, -2]: mean square 4, rms 2 → [1, -1, 1, -1].
    assert_eq!(
        rms_norm(&[2.0, -2.0, 2.0, -2.0], None, 0.0, 4),
        vec![1.0, -1.0, 1.0, -1.0]
    );
    // Two rows of 2 with eps = 3: row [1, 1] → 1/sqrt(1 + 3) = 0.5 each;
    // row [3, 4] → mean square 12.5, 1/sqrt(15.5). Weights [2, 3].
    let y = rms_norm(&[1.0, 1.0, 3.0, 4.0], Some(&[2.0, 3.0]), 3.0, 2);
    let r = 1.0 / 15.5f64.sqrt();
    assert_close(
        &y,
        &[1.0, 1.5, 3.0 * r * 2.0, 4.0 * r * 3.0],
        1e-15,
        "rms_norm",
    );
    // The zero vector stays zero with eps > 0.
    assert_eq!(rms_norm(&[0.0; 3], None, 1e-6, 3), vec![0.0; 3]);
}

#[test]
#[should_panic(expected = "not a multiple of dim")]
fn rms_norm_bad_shape_panics() {
    rms_norm(&[1.0; 5], None, 1e-6, 2);
}

#[test]
fn gelu_tanh_hand_derived() {
    assert_eq!(gelu_tanh(0.0), 0.0);
    // 0.5 (1 + tanh(sqrt(2/pi) * 1.044715)), evaluated independently in Python
    // (matches torch.nn.functional.gelu(1, approximate="tanh") = 0.8411920).
    assert!((gelu_tanh(1.0) - 0.8411919906082768).abs() < 1e-15);
    // gelu(x) - gelu(-x) = 0.5x(1 + t) + 0.5x(1 - t) = x, since tanh is odd.
    for x in [0.3, 1.7, -2.5, 4.0] {
        assert!((gelu_tanh(x) - gelu_tanh(-x) - x).abs() < 1e-14, "x = {x}");
    }
    // Far tails: x and 0.
    assert_eq!(gelu_tanh(20.0), 20.0);
    assert!(gelu_tanh(-20.0).abs() < 1e-300);
}

#[test]
fn softcap_hand_derived() {
    assert_eq!(softcap(0.0, 30.0), 0.0);
    // tanh(atanh(0.5)) = 0.5: the input cap * atanh(0.5) maps to cap / 2.
    assert!((softcap(30.0 * 0.5f64.atanh(), 30.0) - 15.0).abs() < 1e-13);
    // Odd, bounded by cap, ≈ identity for |x| << cap.
    assert_eq!(softcap(-7.0, 30.0), -softcap(7.0, 30.0));
    assert_eq!(softcap(1e6, 30.0), 30.0);
    assert!((softcap(1e-3, 30.0) - 1e-3).abs() < 1e-12);
}

#[test]
fn rope_pos_zero_is_identity() {
    let x0 = vec![0.5, -1.0, 2.0, 3.0, -0.25, 7.0];
    let mut x = x0.clone();
    rope_rotate_half(&mut x, 0, &[1.0, 0.1, 0.01]);
    assert_eq!(x, x0);
}

#[test]
fn rope_quarter_and_half_turns() {
    use std::f64::consts::{FRAC_PI_2, FRAC_PI_4, PI};
    // D = 4: pairs (x0, x2) and (x1, x3). Pair 0 turns by 90°: (a, b) → (-b, a);
    // pair 1 turns by 180°: (a, b) → (-a, -b).
    let mut x = vec![1.0, 2.0, 3.0, 4.0];
    rope_rotate_half(&mut x, 1, &[FRAC_PI_2, PI]);
    assert_close(&x, &[-3.0, -2.0, 1.0, -4.0], 1e-15, "rope pos 1");
    // The angle is pos * inv_freq: pos 2 with pi/4 is also a quarter turn.
    let mut x = vec![1.0, 3.0];
    rope_rotate_half(&mut x, 2, &[FRAC_PI_4]);
    assert_close(&x, &[-3.0, 1.0], 1e-15, "rope pos 2");
    // A zero frequency leaves its pair alone (partial rotary), while pair 0
    // turns by 9 * 90° = two full turns plus a quarter turn.
    let mut x = vec![1.0, 5.0, 3.0, 6.0];
    rope_rotate_half(&mut x, 9, &[FRAC_PI_2, 0.0]);
    assert_close(&x, &[-3.0, 5.0, 1.0, 6.0], 1e-14, "rope zero freq");
}

#[test]
fn rope_preserves_pair_norms_and_composes() {
    // Rotating to pos 3 equals rotating three times to pos 1.
    let inv_freq = [0.7, 0.05, 1.3];
    let x0 = vec![0.4, -1.2, 2.2, 0.9, 1.1, -0.3];
    let mut once = x0.clone();
    rope_rotate_half(&mut once, 3, &inv_freq);
    let mut thrice = x0.clone();
    for _ in 0..3 {
        rope_rotate_half(&mut thrice, 1, &inv_freq);
    }
    assert_close(&once, &thrice, 1e-14, "rope composition");
    for i in 0..3 {
        let n0 = x0[i].hypot(x0[i + 3]);
        let n1 = once[i].hypot(once[i + 3]);
        assert!((n0 - n1).abs() < 1e-14);
    }
}

#[test]
#[should_panic(expected = "inv_freq.len()")]
fn rope_bad_inv_freq_panics() {
    rope_rotate_half(&mut [0.0; 4], 1, &[1.0]);
}

#[test]
fn roundoff_ratio_counts_f32_ulps_of_the_mass_and_nan_as_infinite() {
    // 1 + 2^-23 is one f32 ulp above 1, i.e. two units of roundoff (2^-24) of a mass of 1;
    // against a mass of 4 the same difference is half a unit.
    let got = [1.0f32 + f32::EPSILON, 3.0];
    assert_eq!(roundoff_ratio(&[1.0, 3.0], &got, &[1.0, 1.0]), 2.0);
    assert_eq!(roundoff_ratio(&[1.0, 3.0], &got, &[4.0, 1.0]), 0.5);
    assert_eq!(roundoff_ratio(&[], &[], &[]), 0.0);
    assert_eq!(roundoff_ratio(&[1.0], &[f32::NAN], &[1.0]), f64::INFINITY);
}
