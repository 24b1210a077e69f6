//! [`canonicalize`] and its result, [`CanonicalMask`].

use crate::broadcast::{Broadcast, unravel};
use crate::desc::{AdditiveMask, MaskDesc, MaskKind, MaskShape};
use crate::error::MaskError;
use crate::keyset::{KeySet, scan_slice};

/// Canonical mask: one [`KeySet`] per `(b, h, i)`, where the head index collapses to a single
/// stored entry when no `(b, i)` has key sets that differ across heads.
///
/// Equality does not depend on the form the mask was given in: `None`, an all-`true` bool mask,
/// an all-zero additive mask and full key ranges compare equal, and so do a `[B, H, Tq, Tkv]`
/// mask whose heads agree and the same mask given as `[B, 1, Tq, Tkv]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CanonicalMask {
    shape: MaskShape,
    /// 1 when no row depends on the head, else `shape.heads`.
    head_rows: usize,
    /// Row `(b, h, i)` is at `(b * head_rows + h) * q_len + i`.
    rows: Vec<KeySet>,
}

impl CanonicalMask {
    /// The attention shape `(batch, heads, q_len, kv_len)` this mask applies to.
    pub fn shape(&self) -> MaskShape {
        self.shape
    }

    /// True only if some `(b, i)` has different key sets across heads (decided from content,
    /// not from the input's shape).
    pub fn varies_by_head(&self) -> bool {
        self.head_rows != 1
    }

    /// Number of head entries stored per `(b, i)`: 1 when [`Self::varies_by_head`] is false,
    /// else `heads`.
    pub fn stored_heads(&self) -> usize {
        self.head_rows
    }

    /// The keys query row `i` of head `h` of batch entry `b` attends.
    ///
    /// # Panics
    /// If `b`, `h` or `i` is out of range.
    pub fn row(&self, b: usize, h: usize, i: usize) -> &KeySet {
        let s = &self.shape;
        assert!(
            b < s.batch && h < s.heads && i < s.q_len,
            "row ({b}, {h}, {i}) out of range for {s}"
        );
        let h = if self.head_rows == 1 { 0 } else { h };
        &self.rows[(b * self.head_rows + h) * s.q_len + i]
    }

    /// All stored rows, ordered `(b, stored head, i)`; see [`Self::stored_heads`].
    pub fn stored_rows(&self) -> &[KeySet] {
        &self.rows
    }

    /// True when every row is a contiguous span (no [`KeySet::Dense`] row).
    pub fn all_spans(&self) -> bool {
        self.rows.iter().all(KeySet::is_span)
    }

    /// Every `(b, h, i)` whose key set is empty, in increasing order, listing every head even
    /// when rows are stored collapsed. Such rows are defined (the GPU writes zeros for them) and
    /// reported here so callers can notice them.
    pub fn empty_rows(&self) -> Vec<(usize, usize, usize)> {
        let s = &self.shape;
        let mut out = Vec::new();
        for b in 0..s.batch {
            for h in 0..s.heads {
                for i in 0..s.q_len {
                    if self.row(b, h, i).is_empty() {
                        out.push((b, h, i));
                    }
                }
            }
        }
        out
    }
}

/// Turns any supported mask description into its canonical form.
///
/// Checks, in this order: the attention shape (no zero-size dimension, `Tkv <= u32::MAX`,
/// `B * H * Tq <= u32::MAX` rows), the
/// key ranges (`key_lo` / `key_hi` lengths equal `B`, `lo <= hi <= Tkv`), then the mask
/// (causal needs `Tq <= Tkv` and a window >= 1; explicit masks must broadcast, have the right
/// data length and, for additive masks, hold only 0, -inf or the dtype's most negative finite
/// value). Cost is linear in the mask data plus `B * H * Tq`; causal, `None` and key ranges
/// never materialise a `[Tq, Tkv]` array.
pub fn canonicalize(shape: &MaskShape, desc: &MaskDesc) -> Result<CanonicalMask, MaskError> {
    let s = *shape;
    if s.batch == 0 || s.heads == 0 || s.q_len == 0 || s.kv_len == 0 {
        return Err(MaskError::EmptyAttention { shape: s });
    }
    let kv_len = u32::try_from(s.kv_len).map_err(|_| MaskError::TooLarge {
        shape: s,
        reason: "kv_len exceeds u32::MAX keys",
    })?;
    // Checked before anything is allocated: the rows are stored, one key set each, and an
    // attention call addresses its rows with 32-bit offsets.
    s.batch
        .checked_mul(s.heads)
        .and_then(|n| n.checked_mul(s.q_len))
        .filter(|&n| n <= u32::MAX as usize)
        .ok_or(MaskError::TooLarge {
            shape: s,
            reason: "batch * heads * q_len exceeds u32::MAX query rows",
        })?;
    let ranges = key_ranges(&s, kv_len, desc)?;

    match desc.kind {
        MaskKind::None => Ok(build(s, 1, |b, _, _| {
            let (lo, hi) = ranges[b];
            KeySet::span(lo, hi)
        })),
        MaskKind::Causal { window } => {
            if s.q_len > s.kv_len {
                return Err(MaskError::CausalQueryLongerThanKeys {
                    q_len: s.q_len,
                    kv_len: s.kv_len,
                });
            }
            if window == Some(0) {
                return Err(MaskError::ZeroWindow);
            }
            let offset = kv_len - s.q_len as u32; // q_len <= kv_len <= u32::MAX
            Ok(build(s, 1, |b, _, i| {
                let (lo, hi) = ranges[b];
                let p = i as u32 + offset; // p < kv_len
                let start = match window {
                    Some(w) => (p + 1).saturating_sub(w),
                    None => 0,
                };
                KeySet::span(start.max(lo), (p + 1).min(hi))
            }))
        }
        MaskKind::Bool(m) => {
            let bc = Broadcast::new(m.shape, &s, m.data.len())?;
            Ok(explicit(s, &bc, &ranges, m.data, |&v| v))
        }
        MaskKind::Additive(m) => {
            let bc = Broadcast::new(m.shape, &s, m.data.len())?;
            validate_additive(&m)?;
            Ok(explicit(s, &bc, &ranges, m.data, |&v| v == 0.0))
        }
    }
}

/// Per-batch `(lo, hi)` usable key range, validated.
fn key_ranges(s: &MaskShape, kv_len: u32, desc: &MaskDesc) -> Result<Vec<(u32, u32)>, MaskError> {
    for (name, v) in [("key_lo", desc.key_lo), ("key_hi", desc.key_hi)] {
        if let Some(v) = v
            && v.len() != s.batch
        {
            return Err(MaskError::KeyRangeLength {
                name,
                len: v.len(),
                batch: s.batch,
            });
        }
    }
    (0..s.batch)
        .map(|b| {
            let lo = desc.key_lo.map_or(0, |v| v[b]);
            let hi = desc.key_hi.map_or(kv_len, |v| v[b]);
            if lo <= hi && hi <= kv_len {
                Ok((lo, hi))
            } else {
                Err(MaskError::KeyRange {
                    batch_index: b,
                    lo,
                    hi,
                    kv_len: s.kv_len,
                })
            }
        })
        .collect()
}

/// Rejects any additive value other than 0, -inf and the dtype's most negative finite value.
fn validate_additive(m: &AdditiveMask) -> Result<(), MaskError> {
    let masked = m.dtype.most_negative_finite();
    let ok = |v: f32| v == 0.0 || v == f32::NEG_INFINITY || v == masked;
    let Some(index) = m.data.iter().position(|&v| !ok(v)) else {
        return Ok(());
    };
    let value = m.data[index];
    let position = unravel(m.shape, index);
    if value.is_finite() {
        Err(MaskError::BiasNotSupported {
            value,
            index,
            position,
            dtype: m.dtype,
            masked,
        })
    } else {
        Err(MaskError::InvalidValue {
            value,
            index,
            position,
        })
    }
}

/// Canonical rows of an explicit (bool or validated additive) mask combined with key ranges.
fn explicit<T>(
    s: MaskShape,
    bc: &Broadcast,
    ranges: &[(u32, u32)],
    data: &[T],
    on: impl Fn(&T) -> bool + Copy,
) -> CanonicalMask {
    let row_for = |b: usize, h: usize, i: usize| {
        let (lo, hi) = ranges[b];
        let off = bc.row_offset(b, h, i);
        if bc.has_keys() {
            scan_slice(&data[off..off + s.kv_len], lo, hi, on)
        } else if on(&data[off]) {
            KeySet::span(lo, hi)
        } else {
            KeySet::EMPTY
        }
    };
    if !bc.has_heads() {
        return build(s, 1, row_for);
    }
    let full = build(s, s.heads, row_for);
    collapse_heads(full)
}

/// Builds the rows `(b, h, i)` for `h < head_rows`.
fn build(
    shape: MaskShape,
    head_rows: usize,
    row: impl Fn(usize, usize, usize) -> KeySet,
) -> CanonicalMask {
    let mut rows = Vec::with_capacity(shape.batch * head_rows * shape.q_len);
    for b in 0..shape.batch {
        for h in 0..head_rows {
            for i in 0..shape.q_len {
                rows.push(row(b, h, i));
            }
        }
    }
    CanonicalMask {
        shape,
        head_rows,
        rows,
    }
}

/// Stores a per-head mask collapsed to one head when every `(b, i)` agrees across heads.
fn collapse_heads(m: CanonicalMask) -> CanonicalMask {
    let (heads, q) = (m.head_rows, m.shape.q_len);
    if heads == 1 {
        return m;
    }
    let block = heads * q;
    let agree = m.rows.chunks(block).all(|per_b| {
        let (first, rest) = per_b.split_at(q);
        rest.chunks(q).all(|other| other == first)
    });
    if !agree {
        return m;
    }
    let rows = m
        .rows
        .chunks(block)
        .flat_map(|per_b| per_b[..q].iter().cloned())
        .collect();
    CanonicalMask {
        shape: m.shape,
        head_rows: 1,
        rows,
    }
}
