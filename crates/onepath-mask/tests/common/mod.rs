//! Brute-force reference shared by the integration tests: every expected value is computed
//! from first principles (numpy broadcasting, the causal formula, key ranges), element by
//! element, independently of the crate's scanning code.
#![allow(dead_code)]

use onepath_mask::{CanonicalMask, KeySet, MaskShape};

/// Shorthand constructor.
pub fn shape(batch: usize, heads: usize, q_len: usize, kv_len: usize) -> MaskShape {
    MaskShape {
        batch,
        heads,
        q_len,
        kv_len,
    }
}

/// Numpy broadcasting: flat index of `[b, h, i, j]` in a row-major array of `mask_shape`
/// (right-aligned; size-1 dims always read index 0).
pub fn bcast_index(mask_shape: &[usize], coords: [usize; 4]) -> usize {
    let offset = 4 - mask_shape.len();
    let mut flat = 0;
    for (k, &d) in mask_shape.iter().enumerate() {
        let c = if d == 1 { 0 } else { coords[offset + k] };
        flat = flat * d + c;
    }
    flat
}

/// Lower-right aligned causal predicate, in i64 so nothing wraps.
pub fn causal(q_len: usize, kv_len: usize, window: Option<u32>, i: usize, j: usize) -> bool {
    let p = i as i64 + kv_len as i64 - q_len as i64;
    let j = j as i64;
    j <= p && window.is_none_or(|w| p - j < w as i64)
}

/// Key-range predicate for batch entry `b`.
pub fn in_range(
    key_lo: Option<&[u32]>,
    key_hi: Option<&[u32]>,
    kv_len: usize,
    b: usize,
    j: usize,
) -> bool {
    let lo = key_lo.map_or(0, |v| v[b] as usize);
    let hi = key_hi.map_or(kv_len, |v| v[b] as usize);
    lo <= j && j < hi
}

/// Builds a full `[B, H, Tq, Tkv]` bool array from a predicate.
pub fn materialize(s: &MaskShape, f: impl Fn(usize, usize, usize, usize) -> bool) -> Vec<bool> {
    let mut out = Vec::with_capacity(s.batch * s.heads * s.q_len * s.kv_len);
    for b in 0..s.batch {
        for h in 0..s.heads {
            for i in 0..s.q_len {
                for j in 0..s.kv_len {
                    out.push(f(b, h, i, j));
                }
            }
        }
    }
    out
}

/// Asserts that every row of `m` selects exactly the keys of `f`, is canonical, equals the
/// `from_predicate` result, and that `empty_rows` and `varies_by_head` match `f`.
pub fn assert_matches(m: &CanonicalMask, f: impl Fn(usize, usize, usize, usize) -> bool) {
    let s = m.shape();
    let mut empties = Vec::new();
    let mut varies = false;
    for b in 0..s.batch {
        for i in 0..s.q_len {
            for h in 0..s.heads {
                let row = m.row(b, h, i);
                assert!(
                    row.is_canonical(),
                    "row ({b},{h},{i}) not canonical: {row:?}"
                );
                let mut count = 0;
                for j in 0..s.kv_len {
                    let want = f(b, h, i, j);
                    assert_eq!(
                        row.contains(j as u32),
                        want,
                        "({b},{h},{i},{j}) row {row:?}"
                    );
                    count += want as u32;
                    if h > 0 && want != f(b, 0, i, j) {
                        varies = true;
                    }
                }
                assert!(!row.contains(s.kv_len as u32));
                assert_eq!(row.count(), count);
                assert_eq!(row.is_empty(), count == 0);
                if count == 0 {
                    empties.push((b, h, i));
                }
                let pred = KeySet::from_predicate(s.kv_len as u32, |j| f(b, h, i, j as usize));
                assert_eq!(row, &pred, "from_predicate disagrees at ({b},{h},{i})");
            }
        }
    }
    empties.sort();
    assert_eq!(m.empty_rows(), empties);
    assert_eq!(m.varies_by_head(), varies);
}
