//! [`MaskError`]: everything [`crate::canonicalize`] rejects.

use crate::desc::{MaskDType, MaskShape};

/// Why a mask description could not be canonicalised.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MaskError {
    /// `B`, `H`, `Tq` or `Tkv` is zero.
    #[error(
        "empty attention: shape {shape} has a zero-size dimension \
         (batch, heads, q_len and kv_len must all be >= 1)"
    )]
    EmptyAttention {
        /// The offending shape.
        shape: MaskShape,
    },
    /// `Tkv` does not fit the u32 key indices, or the `B * H * Tq` rows exceed `u32::MAX`.
    #[error("attention shape {shape} is too large: {reason}")]
    TooLarge {
        /// The offending shape.
        shape: MaskShape,
        /// What overflowed.
        reason: &'static str,
    },
    /// The mask's shape does not broadcast to `[B, H, Tq, Tkv]`.
    #[error("mask shape {mask_shape:?} does not broadcast to {shape}: {reason}")]
    Shape {
        /// The mask's shape as given.
        mask_shape: Vec<usize>,
        /// The attention shape.
        shape: MaskShape,
        /// Which rule was broken.
        reason: String,
    },
    /// The mask's data length is not the product of its shape.
    #[error("mask data has {actual} elements but mask shape {mask_shape:?} needs {expected}")]
    DataLength {
        /// The mask's shape as given.
        mask_shape: Vec<usize>,
        /// Product of the shape.
        expected: usize,
        /// `data.len()`.
        actual: usize,
    },
    /// A finite additive value other than 0 and the dtype's most negative finite value.
    #[error(
        "additive mask value {value} at index {index} (position {position:?}) is a bias, not a \
         mask: only 0 (attend), -inf or {masked} (the most negative finite {dtype:?}) are \
         accepted; biases are not supported"
    )]
    BiasNotSupported {
        /// The value found.
        value: f32,
        /// Flat (row-major) index into `data`.
        index: usize,
        /// Multi-dimensional index into the mask's shape.
        position: Vec<usize>,
        /// The mask's dtype.
        dtype: MaskDType,
        /// The dtype's most negative finite value.
        masked: f32,
    },
    /// NaN or `+inf` in an additive mask.
    #[error(
        "additive mask value {value} at index {index} (position {position:?}) is invalid: \
         NaN and +inf are neither attend (0) nor masked (-inf)"
    )]
    InvalidValue {
        /// The value found.
        value: f32,
        /// Flat (row-major) index into `data`.
        index: usize,
        /// Multi-dimensional index into the mask's shape.
        position: Vec<usize>,
    },
    /// `key_lo` or `key_hi` does not have one entry per batch entry.
    #[error("{name} has {len} entries but the batch has {batch} (one per batch entry needed)")]
    KeyRangeLength {
        /// `"key_lo"` or `"key_hi"`.
        name: &'static str,
        /// Entries given.
        len: usize,
        /// `B`.
        batch: usize,
    },
    /// A per-batch key range breaks `lo <= hi <= Tkv`.
    #[error(
        "key range of batch entry {batch_index} is [{lo}, {hi}) but it must satisfy \
         key_lo <= key_hi <= kv_len = {kv_len}"
    )]
    KeyRange {
        /// The batch entry.
        batch_index: usize,
        /// Its `key_lo` (0 when not given).
        lo: u32,
        /// Its `key_hi` (`Tkv` when not given).
        hi: u32,
        /// `Tkv`.
        kv_len: usize,
    },
    /// Lower-right aligned causal masking with more queries than keys.
    #[error(
        "causal mask with q_len {q_len} > kv_len {kv_len}: with lower-right alignment query i \
         sits at position i + kv_len - q_len, so the first {} queries would sit before the \
         first key and attend nothing; pass an explicit mask if that is intended",
        q_len - kv_len
    )]
    CausalQueryLongerThanKeys {
        /// `Tq`.
        q_len: usize,
        /// `Tkv`.
        kv_len: usize,
    },
    /// A hand-made [`crate::KeySet`] that breaks its invariants (see [`crate::KeySet::check`]).
    #[error("key set {keys} is invalid: {reason}")]
    InvalidKeySet {
        /// The set, summarised (a dense set's words are counted, not printed).
        keys: String,
        /// Which invariant it breaks, with the offending values.
        reason: String,
    },
    /// A sliding window of zero keys (a query must at least see itself).
    #[error("causal window must be >= 1 (the query's own position is inside the window), got 0")]
    ZeroWindow,
}
