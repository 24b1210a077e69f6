//! Attention-mask canonicalisation for onepath (pure Rust, no GPU, wasm32-compatible).
//!
//! Callers express attention masks in many forms: `None`, `"causal"` (optionally with a sliding
//! window), boolean masks, additive masks in f32 / f16 / bf16, plus per-sequence key ranges for
//! left padding and ragged lengths. Two inputs that select the same keys must drive the GPU
//! through the same computation, so [`canonicalize`] turns every form into a
//! [`CanonicalMask`]: one [`KeySet`] per query row (`(b, h, i)` of `[B, H, Tq, Tkv]`), either a
//! contiguous span or, for irregular masks, a dense bit set. Equal selections give equal values
//! (`==`), whatever the input form; the head dimension is stored collapsed whenever the content
//! does not depend on it.
//!
//! Additive masks are masks, not biases: only `0`, `-inf` and the dtype's most negative finite
//! value are accepted; anything else is rejected with [`MaskError::BiasNotSupported`].
//!
//! ```
//! use onepath_mask::{canonicalize, BoolMask, KeySet, MaskDesc, MaskKind, MaskShape};
//!
//! let shape = MaskShape { batch: 1, heads: 4, q_len: 2, kv_len: 3 };
//! let causal = canonicalize(&shape, &MaskDesc::new(MaskKind::Causal { window: None })).unwrap();
//! let data = [true, true, false, true, true, true];
//! let explicit = MaskKind::Bool(BoolMask { shape: &[2, 3], data: &data });
//! assert_eq!(causal, canonicalize(&shape, &MaskDesc::new(explicit)).unwrap());
//! assert_eq!(causal.row(0, 3, 0), &KeySet::Span { lo: 0, hi: 2 });
//! assert!(!causal.varies_by_head());
//! ```

mod broadcast;
mod canonical;
mod desc;
mod error;
mod keyset;

pub use broadcast::Broadcast;
pub use canonical::{CanonicalMask, canonicalize};
pub use desc::{AdditiveMask, BoolMask, MaskDType, MaskDesc, MaskKind, MaskShape};
pub use error::MaskError;
pub use keyset::KeySet;
