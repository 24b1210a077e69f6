//! Everything `canonicalize` must reject, with messages that name the problem.

mod common;

use common::shape;
use onepath_mask::{
    AdditiveMask, BoolMask, MaskDType, MaskDesc, MaskError, MaskKind, MaskShape, canonicalize,
};

fn err(s: &MaskShape, desc: MaskDesc) -> MaskError {
    canonicalize(s, &desc).expect_err("expected an error")
}

fn additive_err(data: &[f32], dtype: MaskDType) -> MaskError {
    let s = shape(1, 1, 2, 3);
    let kind = MaskKind::Additive(AdditiveMask {
        shape: &[2, 3],
        data,
        dtype,
    });
    err(&s, MaskDesc::new(kind))
}

#[test]
fn non_broadcasting_shapes_name_both_shapes() {
    let s = shape(1, 8, 3, 7);
    let data = vec![true; 10];
    let e = err(
        &s,
        MaskDesc::new(MaskKind::Bool(BoolMask {
            shape: &[2, 5],
            data: &data,
        })),
    );
    assert!(matches!(e, MaskError::Shape { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("mask shape [2, 5] does not broadcast to [B=1, H=8, Tq=3, Tkv=7]"),
        "{msg}"
    );

    // Wrong batch / head dims, too many dims, no dims, zero-size mask dims.
    for bad in [
        vec![2, 8, 3, 7],
        vec![1, 4, 3, 7],
        vec![1, 1, 1, 3, 7],
        vec![],
        vec![0],
    ] {
        let n: usize = bad.iter().product();
        let data = vec![true; n];
        let e = err(
            &s,
            MaskDesc::new(MaskKind::Bool(BoolMask {
                shape: &bad,
                data: &data,
            })),
        );
        let msg = e.to_string();
        assert!(matches!(e, MaskError::Shape { .. }), "{bad:?}: {e:?}");
        assert!(
            msg.contains(&format!("{bad:?}")) && msg.contains("[B=1, H=8, Tq=3, Tkv=7]"),
            "{msg}"
        );
    }
    // Additive masks are checked the same way.
    let data = vec![0.0; 5];
    let kind = MaskKind::Additive(AdditiveMask {
        shape: &[5],
        data: &data,
        dtype: MaskDType::F32,
    });
    assert!(matches!(
        err(&s, MaskDesc::new(kind)),
        MaskError::Shape { .. }
    ));
}

#[test]
fn wrong_data_length() {
    let s = shape(1, 1, 3, 7);
    let data = vec![true; 20];
    let e = err(
        &s,
        MaskDesc::new(MaskKind::Bool(BoolMask {
            shape: &[3, 7],
            data: &data,
        })),
    );
    assert!(
        matches!(
            e,
            MaskError::DataLength {
                expected: 21,
                actual: 20,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("20") && e.to_string().contains("21"));
    let data = vec![0.0f32; 22];
    let kind = MaskKind::Additive(AdditiveMask {
        shape: &[3, 7],
        data: &data,
        dtype: MaskDType::F16,
    });
    assert!(matches!(
        err(&s, MaskDesc::new(kind)),
        MaskError::DataLength {
            expected: 21,
            actual: 22,
            ..
        }
    ));
}

#[test]
fn bias_values_are_rejected_with_value_and_index() {
    for (value, dtype) in [
        (-1e9f32, MaskDType::F32),
        (0.5, MaskDType::F16),
        (-3.0, MaskDType::BF16),
        // Another dtype's "most negative finite" is a bias for this dtype (exact comparison).
        (f32::MIN, MaskDType::F16),
        (-65504.0, MaskDType::F32),
        (-65504.0, MaskDType::BF16),
        (half::bf16::MIN.to_f32(), MaskDType::F32),
        // The next value above the dtype minimum is not the minimum.
        (f32::MIN.next_up(), MaskDType::F32),
    ] {
        let data = [0.0, f32::NEG_INFINITY, 0.0, 0.0, value, 0.0];
        let e = additive_err(&data, dtype);
        match &e {
            MaskError::BiasNotSupported {
                value: v,
                index,
                position,
                dtype: d,
                ..
            } => {
                assert_eq!(
                    (*v, *index, position.as_slice(), *d),
                    (value, 4, &[1usize, 1][..], dtype)
                );
            }
            other => panic!("{value} {dtype:?}: expected BiasNotSupported, got {other:?}"),
        }
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("{value}")) && msg.contains("index 4"),
            "{msg}"
        );
        assert!(msg.contains("bias"), "{msg}");
    }
    // Each dtype's own minimum and -inf are accepted.
    for dtype in [MaskDType::F32, MaskDType::F16, MaskDType::BF16] {
        let data = [
            0.0,
            dtype.most_negative_finite(),
            -0.0,
            f32::NEG_INFINITY,
            0.0,
            0.0,
        ];
        let s = shape(1, 1, 2, 3);
        let kind = MaskKind::Additive(AdditiveMask {
            shape: &[2, 3],
            data: &data,
            dtype,
        });
        assert!(canonicalize(&s, &MaskDesc::new(kind)).is_ok());
    }
}

#[test]
fn nan_and_positive_infinity_are_rejected() {
    for value in [f32::NAN, f32::INFINITY] {
        let data = [0.0, 0.0, value, 0.0, 0.0, 0.0];
        let e = additive_err(&data, MaskDType::F32);
        assert!(
            matches!(e, MaskError::InvalidValue { index: 2, .. }),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("{value}")) && msg.contains("index 2"),
            "{msg}"
        );
    }
}

#[test]
fn bad_key_ranges() {
    let s = shape(2, 1, 2, 5);
    let e = err(
        &s,
        MaskDesc::new(MaskKind::None)
            .with_key_lo(&[0, 4])
            .with_key_hi(&[5, 3]),
    );
    assert!(
        matches!(
            e,
            MaskError::KeyRange {
                batch_index: 1,
                lo: 4,
                hi: 3,
                kv_len: 5
            }
        ),
        "{e:?}"
    );
    // key_lo past Tkv with no key_hi, and key_hi past Tkv.
    let e = err(&s, MaskDesc::new(MaskKind::None).with_key_lo(&[6, 0]));
    assert!(
        matches!(
            e,
            MaskError::KeyRange {
                batch_index: 0,
                lo: 6,
                hi: 5,
                ..
            }
        ),
        "{e:?}"
    );
    let e = err(&s, MaskDesc::new(MaskKind::None).with_key_hi(&[5, 6]));
    assert!(
        matches!(
            e,
            MaskError::KeyRange {
                batch_index: 1,
                hi: 6,
                ..
            }
        ),
        "{e:?}"
    );
    // Wrong lengths.
    for (lo, hi) in [(Some(&[0u32][..]), None), (None, Some(&[5u32, 5, 5][..]))] {
        let d = MaskDesc {
            kind: MaskKind::None,
            key_lo: lo,
            key_hi: hi,
        };
        let e = err(&s, d);
        assert!(
            matches!(e, MaskError::KeyRangeLength { batch: 2, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("batch has 2"));
    }
}

#[test]
fn causal_with_more_queries_than_keys() {
    let s = shape(1, 1, 5, 3);
    let e = err(&s, MaskDesc::new(MaskKind::Causal { window: None }));
    assert!(
        matches!(
            e,
            MaskError::CausalQueryLongerThanKeys {
                q_len: 5,
                kv_len: 3
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("first 2 queries"), "{e}");
    // The same shape is fine without causal masking.
    assert!(canonicalize(&s, &MaskDesc::new(MaskKind::None)).is_ok());
    let e = err(
        &shape(1, 1, 3, 3),
        MaskDesc::new(MaskKind::Causal { window: Some(0) }),
    );
    assert!(matches!(e, MaskError::ZeroWindow));
}

#[test]
fn empty_attention() {
    for s in [
        shape(0, 1, 1, 1),
        shape(1, 0, 1, 1),
        shape(1, 1, 0, 1),
        shape(1, 1, 1, 0),
    ] {
        let e = err(&s, MaskDesc::new(MaskKind::None));
        assert!(matches!(e, MaskError::EmptyAttention { .. }), "{e:?}");
        assert!(e.to_string().contains("empty attention"));
    }
}

/// A shape of more than u32::MAX query rows is refused before anything is allocated (it used
/// to reserve one key set per row: a huge allocation from a four-number input).
#[test]
fn more_rows_than_32_bits_is_too_large() {
    for s in [
        shape(1 << 40, 1, 1, 8),
        shape(1, 1 << 20, 1 << 20, 8),
        shape(1_000_000, 1_000_000, 1_000_000, 8),
    ] {
        for kind in [MaskKind::None, MaskKind::Causal { window: None }] {
            let e = err(&s, MaskDesc::new(kind));
            assert!(matches!(e, MaskError::TooLarge { .. }), "{e:?}");
            assert!(
                e.to_string()
                    .contains("batch * heads * q_len exceeds u32::MAX query rows"),
                "{e}"
            );
        }
    }
}
