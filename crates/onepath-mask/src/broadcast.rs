//! Numpy-style broadcasting of a 1- to 4-d mask against `[B, H, Tq, Tkv]`.

use crate::desc::MaskShape;
use crate::error::MaskError;

/// How a mask's flat data maps onto `[B, H, Tq, Tkv]`: one element stride per target dimension,
/// 0 where the mask broadcasts (size 1 or absent) along it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Broadcast {
    /// Element strides for `[B, H, Tq, Tkv]`.
    pub strides: [usize; 4],
}

impl Broadcast {
    /// Validates `mask_shape` against `shape` and `data_len`, and computes the strides.
    ///
    /// Rules: 1 to 4 dims, right-aligned against `[B, H, Tq, Tkv]`; each mask dim is 1 or equal
    /// to the target dim; `data_len` equals the product of `mask_shape`.
    pub fn new(
        mask_shape: &[usize],
        shape: &MaskShape,
        data_len: usize,
    ) -> Result<Self, MaskError> {
        let fail = |reason: String| MaskError::Shape {
            mask_shape: mask_shape.to_vec(),
            shape: *shape,
            reason,
        };
        let rank = mask_shape.len();
        if rank == 0 || rank > 4 {
            return Err(fail(format!(
                "a mask needs 1 to 4 dimensions, this one has {rank}"
            )));
        }
        let target = shape.dims();
        const NAMES: [&str; 4] = ["B", "H", "Tq", "Tkv"];
        let offset = 4 - rank;
        for (k, &m) in mask_shape.iter().enumerate() {
            let t = target[offset + k];
            if m != 1 && m != t {
                return Err(fail(format!(
                    "mask dim {k} has size {m} but must be 1 or {name}={t}",
                    name = NAMES[offset + k]
                )));
            }
        }
        let expected = mask_shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| fail("the product of the mask shape overflows usize".into()))?;
        if expected != data_len {
            return Err(MaskError::DataLength {
                mask_shape: mask_shape.to_vec(),
                expected,
                actual: data_len,
            });
        }
        let mut strides = [0usize; 4];
        let mut stride = 1usize;
        for k in (0..rank).rev() {
            let m = mask_shape[k];
            strides[offset + k] = if m == 1 { 0 } else { stride };
            stride *= m;
        }
        Ok(Broadcast { strides })
    }

    /// Flat offset of element `(b, h, i, 0)`.
    pub fn row_offset(&self, b: usize, h: usize, i: usize) -> usize {
        b * self.strides[0] + h * self.strides[1] + i * self.strides[2]
    }

    /// True when the mask has a real (non-broadcast) head dimension.
    pub fn has_heads(&self) -> bool {
        self.strides[1] != 0
    }

    /// True when the mask has a real (non-broadcast) key dimension; otherwise one element
    /// stands for the whole row.
    pub fn has_keys(&self) -> bool {
        self.strides[3] != 0
    }
}

/// Multi-dimensional index of flat element `index` in a row-major array of `shape`.
pub fn unravel(shape: &[usize], mut index: usize) -> Vec<usize> {
    let mut pos = vec![0; shape.len()];
    for (p, &d) in pos.iter_mut().zip(shape).rev() {
        if d > 0 {
            *p = index % d;
            index /= d;
        }
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(b: usize, h: usize, q: usize, k: usize) -> MaskShape {
        MaskShape {
            batch: b,
            heads: h,
            q_len: q,
            kv_len: k,
        }
    }

    #[test]
    fn strides_follow_numpy() {
        let s = shape(2, 3, 4, 5);
        assert_eq!(Broadcast::new(&[5], &s, 5).unwrap().strides, [0, 0, 0, 1]);
        assert_eq!(
            Broadcast::new(&[4, 1], &s, 4).unwrap().strides,
            [0, 0, 1, 0]
        );
        assert_eq!(
            Broadcast::new(&[2, 1, 4, 5], &s, 40).unwrap().strides,
            [20, 0, 5, 1]
        );
        assert_eq!(
            Broadcast::new(&[1, 3, 1, 5], &s, 15).unwrap().strides,
            [0, 5, 0, 1]
        );
    }

    #[test]
    fn unravel_row_major() {
        assert_eq!(unravel(&[2, 3, 4], 23), vec![1, 2, 3]);
        assert_eq!(unravel(&[2, 3, 4], 13), vec![1, 0, 1]);
    }
}
