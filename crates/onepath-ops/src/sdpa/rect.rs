//! Rows for the usual rectangular layout: q and out `[B, Hq, Tq, D]`, K and V `[B, Hkv, Tkv, D]`.

use super::RowSpec;
use crate::OpError;
use onepath_mask::{CanonicalMask, MaskShape};

/// The shape of a rectangular attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub batch: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub q_len: usize,
    pub kv_len: usize,
    pub head_dim: usize,
}

impl Rect {
    /// The mask shape this call needs (`heads` = query heads).
    pub fn mask_shape(&self) -> MaskShape {
        MaskShape {
            batch: self.batch,
            heads: self.q_heads,
            q_len: self.q_len,
            kv_len: self.kv_len,
        }
    }

    pub fn q_elems(&self) -> usize {
        self.batch * self.q_heads * self.q_len * self.head_dim
    }

    pub fn kv_elems(&self) -> usize {
        self.batch * self.kv_heads * self.kv_len * self.head_dim
    }

    /// Checks the dimensions: none zero, query heads a multiple of KV heads, 32-bit addressable.
    pub fn check(&self) -> Result<(), OpError> {
        for (name, v) in [
            ("batch", self.batch),
            ("query head", self.q_heads),
            ("key/value head", self.kv_heads),
            ("query", self.q_len),
            ("key", self.kv_len),
            ("head_dim", self.head_dim),
        ] {
            if v == 0 {
                return Err(OpError::ZeroDim {
                    op: "attention",
                    name,
                });
            }
        }
        if !self.q_heads.is_multiple_of(self.kv_heads) {
            return Err(OpError::Heads {
                q_heads: self.q_heads,
                kv_heads: self.kv_heads,
            });
        }
        let elems = |dims: [usize; 4]| {
            dims.iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .filter(|&n| n <= u32::MAX as usize)
        };
        let q = [self.batch, self.q_heads, self.q_len, self.head_dim];
        let kv = [self.batch, self.kv_heads, self.kv_len, self.head_dim];
        if elems(q).is_none() || elems(kv).is_none() {
            return Err(OpError::TooBig(format!("{self:?}")));
        }
        Ok(())
    }
}

/// One [`RowSpec`] per (b, h, i), in that order, with the keys the canonical `mask` gives it.
pub fn rect_rows(rect: &Rect, mask: &CanonicalMask) -> Result<Vec<RowSpec>, OpError> {
    rect.check()?;
    if mask.shape() != rect.mask_shape() {
        return Err(OpError::MaskShape {
            mask: mask.shape().to_string(),
            call: rect.mask_shape().to_string(),
        });
    }
    let d = rect.head_dim;
    let group = rect.q_heads / rect.kv_heads;
    let mut rows = Vec::with_capacity(rect.batch * rect.q_heads * rect.q_len);
    for b in 0..rect.batch {
        for h in 0..rect.q_heads {
            let kv_base = ((b * rect.kv_heads + h / group) * rect.kv_len * d) as u32;
            for i in 0..rect.q_len {
                let off = (((b * rect.q_heads + h) * rect.q_len + i) * d) as u32;
                rows.push(RowSpec {
                    q_off: off,
                    out_off: off,
                    kv_base,
                    keys: mask.row(b, h, i).clone(),
                    pages: None,
                });
            }
        }
    }
    Ok(rows)
}
