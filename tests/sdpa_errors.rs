//! Bad input is a clear error, never a panic or a wrong answer: every case below returns `Err`
//! whose message names the problem (the offending value or both shapes). Mask problems are
//! reported by `canonicalize`, shape and parameter problems by `Sdpa::new` / `run_rect_host`.

mod common;
use common::*;
use onepath::mask::{AdditiveMask, BoolMask, MaskDType, MaskDesc, MaskKind, canonicalize};
use onepath::ops::OpError;
use onepath::ops::sdpa::{KvDType, KvData, Sdpa, SdpaConfig};

/// Asserts that `r` is an error whose message contains every one of `needles`.
fn assert_err<T, E: std::fmt::Display>(r: Result<T, E>, needles: &[&str], what: &str) {
    match r {
        Ok(_) => panic!("{what}: expected an error"),
        Err(e) => {
            let msg = e.to_string();
            eprintln!("{what}: {msg}");
            for n in needles {
                assert!(
                    msg.contains(n),
                    "{what}: message {msg:?} does not mention {n:?}"
                );
            }
        }
    }
}

fn config(head_dim: usize, kv_dtype: KvDType, scale: f32, softcap: Option<f32>) -> SdpaConfig {
    SdpaConfig {
        head_dim,
        kv_dtype,
        scale,
        softcap,
    }
}

#[test]
fn unsupported_head_dim() {
    let Some(gpu) = gpu() else { return };
    for d in [96, 100, 0, 1024] {
        let r = pollster::block_on(Sdpa::new(gpu, config(d, KvDType::F16, 1.0, None)));
        assert!(matches!(r, Err(OpError::HeadDim(x)) if x == d));
        assert_err(
            r,
            &[
                &format!("head_dim {d}"),
                "not supported",
                "64, 128, 256 or 512",
            ],
            "D",
        );
    }
    // A call whose head_dim differs from the one the pipelines were built for.
    let s = sdpa(gpu, 64, KvDType::F32, 1.0, None);
    let r = rect(1, 2, 1, 1, 4, 128);
    let x = Inputs::random(1, &r, KvDType::F32);
    let out = try_run(&s, gpu, &r, &x.q, x.k.data(), x.v.data(), &no_mask(&r));
    assert_err(out, &["head_dim", "128"], "call head_dim");
}

#[test]
fn bad_softcap_and_scale() {
    let Some(gpu) = gpu() else { return };
    for c in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let r = pollster::block_on(Sdpa::new(gpu, config(64, KvDType::F16, 1.0, Some(c))));
        assert_err(r, &["softcap", &c.to_string()], &format!("softcap {c}"));
    }
    for sc in [f32::NAN, f32::INFINITY] {
        let r = pollster::block_on(Sdpa::new(gpu, config(64, KvDType::F16, sc, None)));
        assert_err(r, &["scale", "finite"], &format!("scale {sc}"));
    }
}

#[test]
fn head_counts_that_do_not_group() {
    let Some(gpu) = gpu() else { return };
    let s = sdpa(gpu, 64, KvDType::F32, 1.0, None);
    for (hq, hkv) in [(6, 4), (3, 2), (2, 4)] {
        let r = rect(1, hq, hkv, 1, 8, 64);
        let x = Inputs::random(1, &r, KvDType::F32);
        let m = no_mask(&r);
        let out = try_run(&s, gpu, &r, &x.q, x.k.data(), x.v.data(), &m);
        let (a, b) = (hq.to_string(), hkv.to_string());
        assert_err(
            out,
            &[&a, &b, "not a multiple"],
            &format!("{hq}:{hkv} heads"),
        );
    }
    let r = rect(1, 4, 0, 1, 8, 64);
    let out = try_run(
        &s,
        gpu,
        &r,
        &[],
        KvData::F32(&[]),
        KvData::F32(&[]),
        &no_mask(&rect(1, 4, 1, 1, 8, 64)),
    );
    assert_err(out, &["zero", "key/value head"], "zero kv heads");
}

#[test]
fn wrong_tensor_lengths() {
    let Some(gpu) = gpu() else { return };
    let s = sdpa(gpu, 64, KvDType::F32, 1.0, None);
    let r = rect(2, 4, 2, 3, 10, 64);
    let x = Inputs::random(1, &r, KvDType::F32);
    let m = no_mask(&r);
    let short = &x.k.f32[..x.k.f32.len() - 64];
    let need_q = r.q_elems().to_string();
    let need_kv = r.kv_elems().to_string();
    let cases: [(&str, &[f32], KvData, KvData, &str); 3] = [
        ("q", &x.q[1..], x.k.data(), x.v.data(), &need_q),
        ("k", &x.q, KvData::F32(short), x.v.data(), &need_kv),
        ("v", &x.q, x.k.data(), KvData::F32(short), &need_kv),
    ];
    for (name, q, k, v, need) in cases {
        let out = try_run(&s, gpu, &r, q, k, v, &m);
        assert_err(out, &[&format!("`{name}`"), need], &format!("short {name}"));
    }
}

#[test]
fn kv_dtype_differs_from_config() {
    let Some(gpu) = gpu() else { return };
    let r = rect(1, 2, 1, 1, 8, 64);
    let m = no_mask(&r);
    let s16 = sdpa(gpu, 64, KvDType::F16, 1.0, None);
    let x = Inputs::random(1, &r, KvDType::F32);
    let out = try_run(&s16, gpu, &r, &x.q, x.k.data(), x.v.data(), &m);
    assert_err(out, &["k", "F32", "kv_dtype"], "f32 K/V into an f16 Sdpa");
    let s32 = sdpa(gpu, 64, KvDType::F32, 1.0, None);
    let y = Inputs::random(1, &r, KvDType::F16);
    let out = try_run(&s32, gpu, &r, &x.q, x.k.data(), y.v.data(), &m);
    assert_err(out, &["v", "F16", "kv_dtype"], "f16 V into an f32 Sdpa");
}

#[test]
fn mask_for_another_shape() {
    let Some(gpu) = gpu() else { return };
    let s = sdpa(gpu, 64, KvDType::F32, 1.0, None);
    let r = rect(2, 4, 2, 3, 10, 64);
    let x = Inputs::random(1, &r, KvDType::F32);
    for other in [
        rect(2, 4, 2, 3, 11, 64),
        rect(1, 4, 2, 3, 10, 64),
        rect(2, 2, 2, 3, 10, 64),
    ] {
        let m = no_mask(&other);
        let out = try_run(&s, gpu, &r, &x.q, x.k.data(), x.v.data(), &m);
        let (ms, cs) = (other.mask_shape().to_string(), r.mask_shape().to_string());
        assert_err(out, &["mask", &ms, &cs], "mask for another shape");
    }
}

/// Mask problems need no GPU: they are caught by `canonicalize`.
#[test]
fn mask_shape_that_does_not_broadcast() {
    let r = rect(2, 4, 2, 3, 10, 64);
    let shape = r.mask_shape();
    let t = [true; 64];
    for ms in [
        &[3usize, 7][..],
        &[10, 3][..],
        &[3, 2, 1, 10][..],
        &[5, 2, 4, 3, 10][..],
    ] {
        let n: usize = ms.iter().product();
        let desc = MaskDesc::new(MaskKind::Bool(BoolMask {
            shape: ms,
            data: &t[..n.min(64)],
        }));
        let out = canonicalize(&shape, &desc);
        assert_err(
            out,
            &[&format!("{ms:?}"), &shape.to_string()],
            "bool mask shape",
        );
    }
    let z = vec![0.0f32; 21];
    let add = AdditiveMask {
        shape: &[3, 7],
        data: &z,
        dtype: MaskDType::F16,
    };
    let out = canonicalize(&shape, &MaskDesc::new(MaskKind::Additive(add)));
    assert_err(
        out,
        &["[3, 7]", &shape.to_string(), "broadcast"],
        "additive mask shape",
    );
    // Data length not matching the mask's own shape.
    let desc = MaskDesc::new(MaskKind::Bool(BoolMask {
        shape: &[3, 10],
        data: &t[..29],
    }));
    assert_err(
        canonicalize(&shape, &desc),
        &["29", "[3, 10]", "30"],
        "mask data length",
    );
}

#[test]
fn bias_valued_additive_masks() {
    let shape = rect(1, 2, 1, 2, 4, 64).mask_shape();
    for (bad, dtype) in [
        (-1e9f32, MaskDType::F32),
        (0.5, MaskDType::F32),
        (-1.0, MaskDType::BF16),
        (-65504.0, MaskDType::F32),
        (f32::MIN, MaskDType::F16),
    ] {
        let mut data = vec![0.0f32; 8];
        data[5] = bad;
        let add = AdditiveMask {
            shape: &[2, 4],
            data: &data,
            dtype,
        };
        let out = canonicalize(&shape, &MaskDesc::new(MaskKind::Additive(add)));
        assert_err(
            out,
            &[&bad.to_string(), "bias", "[1, 1]"],
            &format!("additive {bad} ({dtype:?})"),
        );
    }
    for bad in [f32::NAN, f32::INFINITY] {
        let data = [0.0, bad, 0.0, 0.0];
        let add = AdditiveMask {
            shape: &[4],
            data: &data,
            dtype: MaskDType::F32,
        };
        let out = canonicalize(&shape, &MaskDesc::new(MaskKind::Additive(add)));
        assert_err(
            out,
            &[&bad.to_string(), "invalid"],
            &format!("additive {bad}"),
        );
    }
}

#[test]
fn bad_key_ranges_and_causal_shapes() {
    let shape = rect(2, 2, 1, 4, 8, 64).mask_shape();
    let none = || MaskDesc::new(MaskKind::None);
    assert_err(
        canonicalize(&shape, &none().with_key_lo(&[0])),
        &["key_lo", "1", "2"],
        "key_lo length",
    );
    assert_err(
        canonicalize(&shape, &none().with_key_hi(&[8, 9])),
        &["[0, 9)", "8"],
        "key_hi > Tkv",
    );
    assert_err(
        canonicalize(&shape, &none().with_key_lo(&[5, 0]).with_key_hi(&[4, 8])),
        &["[5, 4)"],
        "key_lo > key_hi",
    );
    let long_q = rect(1, 1, 1, 9, 8, 64).mask_shape();
    let causal = MaskDesc::new(MaskKind::Causal { window: None });
    assert_err(
        canonicalize(&long_q, &causal),
        &["q_len 9", "kv_len 8"],
        "causal Tq > Tkv",
    );
    let zero = MaskDesc::new(MaskKind::Causal { window: Some(0) });
    assert_err(canonicalize(&shape, &zero), &["window", "0"], "zero window");
}

#[test]
fn buffers_too_small_for_the_rows_and_misaligned_offsets() {
    let Some(gpu) = gpu() else { return };
    let (d, dt) = (64, KvDType::F16);
    let r = rect(1, 8, 1, 1, 100, d);
    let x = Inputs::random(1, &r, dt);
    let rows = onepath::ops::sdpa::rect_rows(&r, &no_mask(&r)).unwrap();
    let s = sdpa(gpu, d, dt, 1.0, None);
    let buf = |bytes: &[u8]| gpu.storage_from("t", bytes).unwrap();
    let q = buf(bytemuck::cast_slice(&x.q));
    let out = buf(bytemuck::cast_slice(&x.q));
    let v = buf(bytemuck::cast_slice(&x.v.f16));
    // K uploaded row-major (100 rows) instead of key-blocked (4 blocks of 32 rows).
    let k_rows = buf(bytemuck::cast_slice(&x.k.f16));
    let k = buf(bytemuck::cast_slice(&onepath::ops::sdpa::key_blocks(
        &x.k.f16, d,
    )));
    let short_v = buf(bytemuck::cast_slice(&x.v.f16[..50 * d]));
    let bufs = |k, v| onepath::ops::sdpa::SdpaBuffers {
        q: &q,
        k,
        v,
        out: &out,
    };
    assert_err(
        s.prepare(gpu, &rows, d as u32, bufs(&k_rows, &v)),
        &["K buffer", "key-blocked"],
        "row-major K",
    );
    assert_err(
        s.prepare(gpu, &rows, d as u32, bufs(&k, &short_v)),
        &["V buffer"],
        "V shorter than the keys",
    );
    assert_err(
        s.prepare(gpu, &rows, (d + 8) as u32, bufs(&k, &v)),
        &["stride", "multiples of head_dim"],
        "stride not a whole number of rows",
    );
    assert!(s.prepare(gpu, &rows, d as u32, bufs(&k, &v)).is_ok());
}
