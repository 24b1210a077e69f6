//! Host-side cost: canonicalisation runs per call, so it must stay linear and cheap.

mod common;

use common::shape;
use onepath_mask::{BoolMask, KeySet, MaskDesc, MaskKind, canonicalize};
use std::time::Instant;

/// A padded decode batch: `[32, 1, 1, 32768]`, each row a contiguous span of random length.
/// Release builds take well under a millisecond; the bound here only catches accidental
/// quadratic work in unoptimised, shared-CPU test runs.
#[test]
fn decode_batch_mask_is_fast() {
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
    let mut best = f64::MAX;
    let mut m = None;
    for _ in 0..5 {
        let t = Instant::now();
        m = Some(canonicalize(&s, &desc).unwrap());
        best = best.min(t.elapsed().as_secs_f64());
    }
    let m = m.unwrap();
    eprintln!("[32,1,1,32768] bool mask: {:.3} ms", best * 1e3);
    for (k, &st) in starts.iter().enumerate() {
        assert_eq!(m.row(k, 5, 0), &KeySet::span(st as u32, kv as u32));
    }
    assert!(best < 0.05, "took {best} s");
}

/// Causal prefill of 32k tokens never materialises `[Tq, Tkv]`.
#[test]
fn long_causal_is_fast() {
    let n = 32768;
    let s = shape(4, 32, n, n);
    let desc = MaskDesc::new(MaskKind::Causal { window: Some(4096) });
    let mut dt = f64::MAX;
    let mut m = None;
    for _ in 0..5 {
        let t = Instant::now();
        m = Some(canonicalize(&s, &desc).unwrap());
        dt = dt.min(t.elapsed().as_secs_f64());
    }
    let m = m.unwrap();
    eprintln!("causal 4 x 32768 rows: {:.3} ms", dt * 1e3);
    assert_eq!(
        m.row(3, 31, n - 1),
        &KeySet::span((n - 4096) as u32, n as u32)
    );
    assert_eq!(m.stored_rows().len(), 4 * n);
    assert!(dt < 0.5, "took {dt} s");
}
