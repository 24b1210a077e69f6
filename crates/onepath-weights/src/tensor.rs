//! Borrowed views of tensors inside a checkpoint.

use std::ops::Range;

use crate::dtype::decode_all;
use crate::split::{binding_error, row_splits_aligned};
use crate::{DType, Result, WeightsError};

/// A tensor inside a loaded checkpoint: name, dtype, shape and its raw little-endian bytes
/// (borrowed from the memory map or byte buffer; not necessarily aligned).
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    name: &'a str,
    file: &'a str,
    dtype: DType,
    shape: &'a [usize],
    data: &'a [u8],
}

impl<'a> TensorView<'a> {
    pub(crate) fn new(
        name: &'a str,
        file: &'a str,
        dtype: DType,
        shape: &'a [usize],
        data: &'a [u8],
    ) -> Self {
        TensorView {
            name,
            file,
            dtype,
            shape,
            data,
        }
    }

    /// The tensor's name in the checkpoint.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The shard file (or buffer name) holding it.
    pub fn file(&self) -> &'a str {
        self.file
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Shape (row-major).
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    /// Raw little-endian bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Rows (first dimension; 1 for a scalar) and bytes per row, as the GPU side splits it.
    pub fn rows_and_row_bytes(&self) -> (usize, usize) {
        match self.shape.first() {
            Some(&r) if r > 0 => (r, self.data.len() / r),
            Some(_) => (0, 0),
            None => (1, self.data.len()),
        }
    }

    /// Values as f32 (exact for F32/F16/BF16). Errors for `U32` (use [`Self::to_u32`]).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        if !self.dtype.is_float() {
            return Err(self.wrong_dtype("F32, F16 or BF16"));
        }
        Ok(decode_all(self.dtype, self.data))
    }

    /// Values of a `U32` tensor.
    pub fn to_u32(&self) -> Result<Vec<u32>> {
        if self.dtype != DType::U32 {
            return Err(self.wrong_dtype("U32"));
        }
        Ok(self
            .data
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// The shape as `[rows, cols]`, erroring unless the tensor is 2-D.
    pub fn dims2(&self) -> Result<(usize, usize)> {
        match *self.shape {
            [r, c] => Ok((r, c)),
            _ => Err(WeightsError::Shape {
                tensor: self.name.to_string(),
                detail: format!("expected a 2-D tensor, found shape {:?}", self.shape),
            }),
        }
    }

    /// Errors with [`WeightsError::TooLargeForBinding`] (which says how to split by rows)
    /// when the tensor is larger than `max_binding_bytes`.
    pub fn check_binding(&self, max_binding_bytes: u64) -> Result<()> {
        let (rows, row_bytes) = self.rows_and_row_bytes();
        if self.data.len() as u64 <= max_binding_bytes {
            return Ok(());
        }
        Err(binding_error(self.name, rows, row_bytes, max_binding_bytes))
    }

    /// Row ranges of this tensor (split along its first dimension) that each fit
    /// `max_binding_bytes`, with every range starting at a byte offset that is a multiple of
    /// `offset_align` (pass 1 when each range gets its own buffer; WebGPU needs 256 for
    /// bindings at offsets inside one buffer).
    pub fn row_splits(
        &self,
        max_binding_bytes: u64,
        offset_align: u64,
    ) -> Result<Vec<Range<usize>>> {
        let (rows, row_bytes) = self.rows_and_row_bytes();
        row_splits_aligned(rows, row_bytes, max_binding_bytes, offset_align)
    }

    fn wrong_dtype(&self, expected: &str) -> WeightsError {
        WeightsError::WrongDtype {
            tensor: self.name.to_string(),
            expected: expected.to_string(),
            found: self.dtype.to_string(),
        }
    }
}
