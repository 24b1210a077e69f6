//! Input side: the mask forms callers pass, and the attention shape they apply to.

use std::fmt;

/// The attention problem a mask applies to: conceptually `[B, H, Tq, Tkv]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaskShape {
    /// Batch entries `B` (>= 1).
    pub batch: usize,
    /// Attention heads `H` (>= 1).
    pub heads: usize,
    /// Query rows per batch entry `Tq` (>= 1).
    pub q_len: usize,
    /// Keys per batch entry `Tkv` (>= 1, at most `u32::MAX`).
    pub kv_len: usize,
}

impl MaskShape {
    /// The shape as the 4-d array `[B, H, Tq, Tkv]` that masks broadcast against.
    pub fn dims(&self) -> [usize; 4] {
        [self.batch, self.heads, self.q_len, self.kv_len]
    }
}

impl fmt::Display for MaskShape {
    /// Formats as `[B=1, H=8, Tq=3, Tkv=7]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[B={}, H={}, Tq={}, Tkv={}]",
            self.batch, self.heads, self.q_len, self.kv_len
        )
    }
}

/// The mask itself, in one of the forms callers use.
#[derive(Clone, Copy, Debug)]
pub enum MaskKind<'a> {
    /// Every key.
    None,
    /// Causal with LOWER-RIGHT alignment (as MLX / mlx-lm): query `i` (0-based, of `Tq`) has
    /// absolute position `p = i + (Tkv - Tq)` and selects keys `j <= p`; with
    /// `window: Some(w)` additionally `p - j < w` (the query's own position included, `w >= 1`).
    ///
    /// `Tq > Tkv` is an error: the first `Tq - Tkv` queries would sit at negative positions.
    Causal {
        /// Sliding-window length in keys, or `None` for unbounded.
        window: Option<u32>,
    },
    /// Boolean mask, `true` = attend.
    Bool(BoolMask<'a>),
    /// Additive mask: `0` = attend; `-inf` or the dtype's most negative finite value = masked.
    Additive(AdditiveMask<'a>),
}

/// A boolean mask, row-major, broadcastable (numpy rules) to `[B, H, Tq, Tkv]`.
#[derive(Clone, Copy, Debug)]
pub struct BoolMask<'a> {
    /// 1 to 4 dimensions, right-aligned against `[B, H, Tq, Tkv]`.
    pub shape: &'a [usize],
    /// `shape.iter().product()` values, `true` = attend.
    pub data: &'a [bool],
}

/// The element type an additive mask was stored in; it decides which "most negative finite"
/// value counts as masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MaskDType {
    /// `f32`: masked values are `-inf` or `f32::MIN`.
    F32,
    /// IEEE half: masked values are `-inf` or `-65504.0`.
    F16,
    /// bfloat16: masked values are `-inf` or `half::bf16::MIN` (as f32).
    BF16,
}

impl MaskDType {
    /// The dtype's most negative finite value, as f32 (exact).
    pub fn most_negative_finite(self) -> f32 {
        match self {
            MaskDType::F32 => f32::MIN,
            MaskDType::F16 => half::f16::MIN.to_f32(),
            MaskDType::BF16 => half::bf16::MIN.to_f32(),
        }
    }
}

/// An additive mask, row-major, broadcastable (numpy rules) to `[B, H, Tq, Tkv]`.
///
/// Only two kinds of value are accepted, compared exactly: `0.0` (either sign) = attend, and
/// `-inf` or [`MaskDType::most_negative_finite`] = masked. Any other finite value is a bias,
/// which this crate does not support; NaN and `+inf` are errors too.
#[derive(Clone, Copy, Debug)]
pub struct AdditiveMask<'a> {
    /// 1 to 4 dimensions, right-aligned against `[B, H, Tq, Tkv]`.
    pub shape: &'a [usize],
    /// `shape.iter().product()` values, widened to f32.
    pub data: &'a [f32],
    /// The dtype the values came from.
    pub dtype: MaskDType,
}

/// A mask plus optional per-batch-entry valid key ranges.
#[derive(Clone, Copy, Debug)]
pub struct MaskDesc<'a> {
    /// The mask.
    pub kind: MaskKind<'a>,
    /// Optional per-batch-entry first usable key (left padding): key `j` of batch entry `b` is
    /// usable only if `key_lo[b] <= j`. `None` means 0. Length must equal `B`.
    pub key_lo: Option<&'a [u32]>,
    /// Optional per-batch-entry end of the usable keys (per-sequence lengths): key `j` is usable
    /// only if `j < key_hi[b]`. `None` means `Tkv`. Length must equal `B`; `lo <= hi <= Tkv`.
    pub key_hi: Option<&'a [u32]>,
}

impl<'a> MaskDesc<'a> {
    /// A description with the given mask and no key ranges.
    pub fn new(kind: MaskKind<'a>) -> Self {
        MaskDesc {
            kind,
            key_lo: None,
            key_hi: None,
        }
    }

    /// Sets `key_lo`.
    pub fn with_key_lo(mut self, key_lo: &'a [u32]) -> Self {
        self.key_lo = Some(key_lo);
        self
    }

    /// Sets `key_hi`.
    pub fn with_key_hi(mut self, key_hi: &'a [u32]) -> Self {
        self.key_hi = Some(key_hi);
        self
    }
}
