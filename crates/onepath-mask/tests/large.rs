//! Large masks: decode batches and long causal prefills canonicalise to the right spans without
//! materialising `[Tq, Tkv]`. (How fast is a benchmark question, not a test: no timing here.)

mod common;

use common::shape;
use onepath_mask::{BoolMask, KeySet, MaskDesc, MaskKind, canonicalize};

/// A padded decode batch: `[32, 1, 1, 32768]`, each row a contiguous span of its own length.
#[test]
fn decode_batch_mask_gives_one_span_per_sequence() {
    let (b, kv) = (32, 32768);
    let s = shape(b, 8, 1, kv);
    let starts: Vec<usize> = (0..b).map(|k| (k * 977) % kv).collect();
    let mut data = vec![false; b * kv];
    for (k, &st) in starts.iter().enumerate() {
        data[k * kv + st..(k + 1) * kv].fill(true);
    }
    let mshape = [b, 1, 1, kv];
    let desc = MaskDesc::new(MaskKind::Bool(BoolMask {
        shape: &mshape,
        data: &data,
    }));
    let m = canonicalize(&s, &desc).unwrap();
    assert!(!m.varies_by_head());
    for (k, &st) in starts.iter().enumerate() {
        for h in [0, 5, 7] {
            assert_eq!(m.row(k, h, 0), &KeySet::span(st as u32, kv as u32));
        }
    }
}

/// Causal prefill of 32k tokens with a window: one span per row, stored once for all heads.
#[test]
fn long_causal_window_gives_window_spans() {
    let n = 32768;
    let s = shape(4, 32, n, n);
    let desc = MaskDesc::new(MaskKind::Causal { window: Some(4096) });
    let m = canonicalize(&s, &desc).unwrap();
    assert_eq!(m.stored_rows().len(), 4 * n);
    for i in [0, 1, 4095, 4096, 4097, n - 1] {
        let lo = (i + 1).saturating_sub(4096) as u32;
        assert_eq!(m.row(3, 31, i), &KeySet::span(lo, i as u32 + 1));
    }
}
