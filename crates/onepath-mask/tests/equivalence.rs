//! Different input forms that select the same keys must canonicalise to equal values.

mod common;

use common::{assert_matches, causal, in_range, materialize, shape};
use onepath_mask::{
    AdditiveMask, BoolMask, CanonicalMask, KeySet, MaskDType, MaskDesc, MaskKind, MaskShape,
    canonicalize,
};

const DTYPES: [MaskDType; 3] = [MaskDType::F32, MaskDType::F16, MaskDType::BF16];

fn canon(s: &MaskShape, kind: MaskKind) -> CanonicalMask {
    canonicalize(s, &MaskDesc::new(kind)).unwrap()
}

fn bool_mask<'a>(shape: &'a [usize], data: &'a [bool]) -> MaskKind<'a> {
    MaskKind::Bool(BoolMask { shape, data })
}

fn additive<'a>(shape: &'a [usize], data: &'a [f32], dtype: MaskDType) -> MaskKind<'a> {
    MaskKind::Additive(AdditiveMask { shape, data, dtype })
}

/// The masked values each dtype accepts, computed from the `half` crate / f32 consts.
fn masked_values(dtype: MaskDType) -> [f32; 2] {
    let min = match dtype {
        MaskDType::F32 => f32::MIN,
        MaskDType::F16 => half::f16::MIN.to_f32(),
        MaskDType::BF16 => half::bf16::MIN.to_f32(),
    };
    [min, f32::NEG_INFINITY]
}

fn to_additive(bools: &[bool], masked: f32) -> Vec<f32> {
    bools
        .iter()
        .map(|&b| if b { 0.0 } else { masked })
        .collect()
}

#[test]
fn none_all_true_all_zero_and_full_ranges_are_equal() {
    let s = shape(3, 4, 5, 9);
    let reference = canon(&s, MaskKind::None);
    assert_matches(&reference, |_, _, _, _| true);
    assert!(reference.all_spans());

    // All-true bool masks in every broadcastable form.
    for mshape in [
        vec![1],
        vec![9],
        vec![5, 9],
        vec![3, 4, 5, 9],
        vec![3, 1, 1, 1],
    ] {
        let n: usize = mshape.iter().product();
        let data = vec![true; n];
        assert_eq!(
            canon(&s, bool_mask(&mshape, &data)),
            reference,
            "{mshape:?}"
        );
        for dtype in DTYPES {
            for zero in [0.0f32, -0.0] {
                let z = vec![zero; n];
                assert_eq!(canon(&s, additive(&mshape, &z, dtype)), reference);
            }
        }
    }

    // Explicit full key ranges, alone and with each mask form.
    let lo = [0u32; 3];
    let hi = [9u32; 3];
    for kind in [MaskKind::None, bool_mask(&[1], &[true])] {
        let d = MaskDesc::new(kind).with_key_lo(&lo).with_key_hi(&hi);
        assert_eq!(canonicalize(&s, &d).unwrap(), reference);
        let d = MaskDesc::new(kind).with_key_hi(&hi);
        assert_eq!(canonicalize(&s, &d).unwrap(), reference);
    }
}

#[test]
fn explicit_causal_equals_causal_kind() {
    for (q, kv) in [(1, 1), (1, 7), (4, 9), (6, 6), (13, 13), (3, 70)] {
        let s = shape(2, 3, q, kv);
        let want = canon(&s, MaskKind::Causal { window: None });
        assert_matches(&want, |_, _, i, j| causal(q, kv, None, i, j));
        assert!(want.all_spans());

        let tri = materialize(&shape(1, 1, q, kv), |_, _, i, j| causal(q, kv, None, i, j));
        assert_eq!(canon(&s, bool_mask(&[q, kv], &tri)), want, "q={q} kv={kv}");
        assert_eq!(canon(&s, bool_mask(&[1, 1, q, kv], &tri)), want);
        for dtype in DTYPES {
            for masked in masked_values(dtype) {
                let add = to_additive(&tri, masked);
                assert_eq!(canon(&s, additive(&[q, kv], &add, dtype)), want);
            }
        }
    }
}

#[test]
fn sliding_window_equals_explicit_and_large_window_is_causal() {
    for (q, kv) in [(5, 5), (3, 12), (16, 16), (1, 40)] {
        let s = shape(2, 2, q, kv);
        let plain = canon(&s, MaskKind::Causal { window: None });
        for w in [1u32, 2, 3, 7] {
            let got = canon(&s, MaskKind::Causal { window: Some(w) });
            assert_matches(&got, |_, _, i, j| causal(q, kv, Some(w), i, j));
            let data = materialize(&shape(1, 1, q, kv), |_, _, i, j| {
                causal(q, kv, Some(w), i, j)
            });
            assert_eq!(canon(&s, bool_mask(&[q, kv], &data)), got, "w={w}");
        }
        // A window covering the whole sequence is plain causal.
        for w in [kv as u32, kv as u32 + 1, u32::MAX] {
            assert_eq!(canon(&s, MaskKind::Causal { window: Some(w) }), plain);
        }
    }
}

#[test]
fn left_padding_with_causal_equals_explicit_mask() {
    let (q, kv) = (4, 10);
    let s = shape(3, 2, q, kv);
    // Entry 1 is padded past every query's position for its first rows; entry 2 fully padded.
    let lo = [0u32, 8, 10];
    let hi = [10u32, 10, 10];
    let d = MaskDesc::new(MaskKind::Causal { window: None }).with_key_lo(&lo);
    let got = canonicalize(&s, &d).unwrap();
    let f = |b: usize, _h: usize, i: usize, j: usize| {
        causal(q, kv, None, i, j) && in_range(Some(&lo), Some(&hi), kv, b, j)
    };
    assert_matches(&got, f);
    let data = materialize(&shape(3, 1, q, kv), f);
    assert_eq!(canon(&s, bool_mask(&[3, 1, q, kv], &data)), got);
    let d2 = MaskDesc::new(MaskKind::Causal { window: None })
        .with_key_lo(&lo)
        .with_key_hi(&hi);
    assert_eq!(canonicalize(&s, &d2).unwrap(), got);

    // Fully padded rows are reported: entry 1 (positions 6, 7 < 8) and all of entry 2.
    let mut want_empty = Vec::new();
    for b in 0..3 {
        for h in 0..2 {
            for i in 0..q {
                if (0..kv).all(|j| !f(b, h, i, j)) {
                    want_empty.push((b, h, i));
                }
            }
        }
    }
    assert!(want_empty.contains(&(1, 1, 0)) && want_empty.contains(&(2, 0, 3)));
    assert_eq!(got.empty_rows(), want_empty);
    assert_eq!(got.row(2, 1, 3), &KeySet::EMPTY);
}

#[test]
fn key_ranges_combine_with_explicit_masks() {
    let (q, kv) = (3, 20);
    let s = shape(2, 1, q, kv);
    let lo = [2u32, 5];
    let hi = [17u32, 11];
    let pattern = |i: usize, j: usize| !(j + i).is_multiple_of(3);
    let data = materialize(&shape(1, 1, q, kv), |_, _, i, j| pattern(i, j));
    let mshape = [q, kv];
    let d = MaskDesc::new(bool_mask(&mshape, &data))
        .with_key_lo(&lo)
        .with_key_hi(&hi);
    let got = canonicalize(&s, &d).unwrap();
    assert_matches(&got, |b, _, i, j| {
        pattern(i, j) && in_range(Some(&lo), Some(&hi), kv, b, j)
    });
}

#[test]
fn head_dependent_masks() {
    let (b, h, q, kv) = (2, 3, 4, 8);
    let s = shape(b, h, q, kv);
    // Each head sees a different-size causal window.
    let f = |_b: usize, h: usize, i: usize, j: usize| causal(q, kv, Some(h as u32 + 1), i, j);
    let data = materialize(&s, f);
    let got = canon(&s, bool_mask(&[b, h, q, kv], &data));
    assert!(got.varies_by_head());
    assert_ne!(got.row(0, 0, 3), got.row(0, 2, 3));
    assert_matches(&got, f);

    // The per-head mask differs only for one (b, i): still varies by head.
    let g = |b: usize, h: usize, i: usize, j: usize| {
        causal(q, kv, None, i, j) && !(b == 1 && h == 2 && i == 0 && j == 4)
    };
    let data = materialize(&s, g);
    let got = canon(&s, bool_mask(&[b, h, q, kv], &data));
    assert!(got.varies_by_head());
    assert_matches(&got, g);

    // Equal heads given as [B, H, ..] equal the [B, 1, ..] form and the Causal kind.
    let data = materialize(&s, |_, _, i, j| causal(q, kv, None, i, j));
    let full = canon(&s, bool_mask(&[b, h, q, kv], &data));
    let one = materialize(&shape(b, 1, q, kv), |_, _, i, j| causal(q, kv, None, i, j));
    assert!(!full.varies_by_head());
    assert_eq!(full.stored_heads(), 1);
    assert_eq!(full, canon(&s, bool_mask(&[b, 1, q, kv], &one)));
    assert_eq!(full, canon(&s, MaskKind::Causal { window: None }));
    let add = to_additive(&data, f32::NEG_INFINITY);
    assert_eq!(
        full,
        canon(&s, additive(&[b, h, q, kv], &add, MaskDType::F32))
    );
}

#[test]
fn non_contiguous_masks_are_dense_and_contiguous_ones_spans() {
    let (q, kv) = (3, 150);
    let s = shape(1, 1, q, kv);
    let f = |i: usize, j: usize| j % (i + 2) == 1 || j == 149;
    let data = materialize(&s, |_, _, i, j| f(i, j));
    let got = canon(&s, bool_mask(&[q, kv], &data));
    for i in 0..q {
        let row = got.row(0, 0, i);
        assert!(matches!(row, KeySet::Dense { .. }), "{row:?}");
        for j in 0..kv {
            assert_eq!(row.contains(j as u32), data[i * kv + j]);
        }
    }
    assert!(!got.all_spans());
    assert_matches(&got, |_, _, i, j| f(i, j));

    // A mask given densely but selecting a contiguous run per row becomes Span.
    let g = |i: usize, j: usize| (10 + i..70 + 3 * i).contains(&j);
    let data = materialize(&s, |_, _, i, j| g(i, j));
    let got = canon(&s, bool_mask(&[q, kv], &data));
    for i in 0..q {
        let want = KeySet::Span {
            lo: 10 + i as u32,
            hi: 70 + 3 * i as u32,
        };
        assert_eq!(got.row(0, 0, i), &want);
    }
    assert!(got.all_spans());
}

#[test]
fn key_broadcast_masks() {
    // A mask of shape [Tq, 1] makes whole rows attend everything or nothing.
    let s = shape(2, 2, 4, 6);
    let rows = [true, false, true, false];
    let got = canon(&s, bool_mask(&[4, 1], &rows));
    assert_matches(&got, |_, _, i, _| rows[i]);
    assert_eq!(got.empty_rows().len(), 2 * 2 * 2);
}
