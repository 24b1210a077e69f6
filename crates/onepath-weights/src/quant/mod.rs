//! MLX affine quantization: the quantized tensor type, packing, and bit-exact
//! `quantize` / `dequantize`.
//!
//! MLX's rule (mlx 0.32 `quantize` on the CPU, verified bit for bit against MLX's outputs,
//! including the fixtures under `tests/fixtures/mlx/`). Per group of `group_size` consecutive
//! inputs `w` (values of the model dtype `T`, computed in f32), with `n = 2^bits - 1`:
//!
//! ```text
//! w_max, w_min = max(w), min(w)
//! mask  = |w_min| > |w_max|
//! scale = max((w_max - w_min) / n, 1e-7);  scale = mask ? scale : -scale
//! edge  = mask ? w_min : w_max            // the larger-magnitude extreme
//! q0    = rint(edge / scale)              // round half to even
//! bias  = 0
//! if q0 != 0 { scale = edge / q0; bias = edge }   // so w = 0 maps to the integer -q0
//! q     = clamp(rint((w - bias) / scale), 0, n)   // with the f32 scale, before rounding
//! stored: scales = T(scale), biases = T(bias)     // round to nearest even
//! ```
//!
//! The scale is negative whenever `|w_max| >= |w_min|` (about half of all groups), and the bias
//! is the larger-magnitude extreme. Dequantization is `T(T(scale * q) + bias)`: two roundings to
//! `T`, no fused multiply-add.
//!
//! Packing: the `q` of one row form a little-endian bit stream, element `k` at bit `k * bits`
//! (for 2, 4 and 8 bits this is "element i of a u32 word is `(word >> bits*i) & mask`"; for 3, 5
//! and 6 bits elements straddle bytes and words). A row takes `cols * bits / 32` u32 words.

use std::borrow::Cow;
use std::ops::Range;

use crate::config::{QuantParams, check_bits, check_group_size};
use crate::dtype::decode_all;
use crate::split::{binding_error, row_splits_multi};
use crate::{DType, Result, TensorView, WeightsError};

mod affine;

pub use affine::{
    dequantize, dequantize_f32, dequantize_rows, dequantize_rows_f32, quantize, quantize_view,
};

/// An MLX affine-quantized matrix `[rows, cols]` (`rows` may be the product of several leading
/// dimensions, e.g. experts x out): packed weight `[.., cols*bits/32]` u32, and `scales` /
/// `biases` `[.., cols/group_size]` in `scale_dtype`. Buffers are raw little-endian bytes,
/// borrowed from the checkpoint or owned.
#[derive(Clone, Debug)]
pub struct QuantizedTensor<'a> {
    name: String,
    shape: Vec<usize>,
    rows: usize,
    cols: usize,
    params: QuantParams,
    scale_dtype: DType,
    weight: Cow<'a, [u8]>,
    scales: Cow<'a, [u8]>,
    biases: Cow<'a, [u8]>,
}

fn invalid(context: &str, detail: String) -> WeightsError {
    WeightsError::Invalid {
        context: context.to_string(),
        detail,
    }
}

impl<'a> QuantizedTensor<'a> {
    /// Builds a quantized tensor from raw buffers, checking every length.
    ///
    /// `shape` is the dequantized shape (last dimension = input size `cols`).
    pub fn new(
        name: impl Into<String>,
        shape: Vec<usize>,
        params: QuantParams,
        scale_dtype: DType,
        weight: Cow<'a, [u8]>,
        scales: Cow<'a, [u8]>,
        biases: Cow<'a, [u8]>,
    ) -> Result<Self> {
        let name = name.into();
        check_bits(params.bits as u64, &name)?;
        check_group_size(params.group_size as u64, &name)?;
        if !scale_dtype.is_float() {
            return Err(invalid(
                &name,
                format!("scales dtype must be F32, F16 or BF16, not {scale_dtype}"),
            ));
        }
        let (&cols, lead) = shape.split_last().ok_or_else(|| {
            invalid(
                &name,
                "a quantized tensor needs at least one dimension".into(),
            )
        })?;
        let rows = lead.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let rows = rows.ok_or_else(|| invalid(&name, format!("shape {shape:?} overflows")))?;
        if cols == 0 {
            // Zero inputs per row would let a tiny header claim any number of rows, each
            // free to store and slow to visit.
            return Err(WeightsError::Shape {
                tensor: name,
                detail: format!("shape {shape:?} has input size 0 (at least one group needed)"),
            });
        }
        if !cols.is_multiple_of(params.group_size) {
            return Err(WeightsError::Shape {
                tensor: name,
                detail: format!(
                    "input size {cols} is not a multiple of group size {}",
                    params.group_size
                ),
            });
        }
        let groups = cols / params.group_size;
        let need_w = rows.checked_mul(cols / 8 * params.bits as usize);
        let need_s = rows.checked_mul(groups * scale_dtype.size());
        let check = |what: &str, have: usize, need: Option<usize>| {
            if need == Some(have) {
                Ok(())
            } else {
                Err(invalid(
                    &name,
                    format!(
                        "{what} has {have} bytes, shape {shape:?} with {} bits needs {need:?}",
                        params.bits
                    ),
                ))
            }
        };
        check("weight", weight.len(), need_w)?;
        check("scales", scales.len(), need_s)?;
        check("biases", biases.len(), need_s)?;
        Ok(QuantizedTensor {
            name,
            shape,
            rows,
            cols,
            params,
            scale_dtype,
            weight,
            scales,
            biases,
        })
    }

    /// Builds from checkpoint tensors `<name>.weight` (u32), `.scales` and `.biases`,
    /// validating dtypes and that the shapes agree with `params`.
    pub fn from_views(
        name: &str,
        weight: &TensorView<'a>,
        scales: &TensorView<'a>,
        biases: &TensorView<'a>,
        params: QuantParams,
    ) -> Result<Self> {
        check_bits(params.bits as u64, name)?;
        check_group_size(params.group_size as u64, name)?;
        let shape_err = |detail: String| WeightsError::Shape {
            tensor: name.to_string(),
            detail,
        };
        if weight.dtype() != DType::U32 {
            return Err(WeightsError::WrongDtype {
                tensor: weight.name().to_string(),
                expected: "U32 (packed quantized weight)".into(),
                found: weight.dtype().to_string(),
            });
        }
        if !scales.dtype().is_float() || biases.dtype() != scales.dtype() {
            return Err(WeightsError::WrongDtype {
                tensor: biases.name().to_string(),
                expected: "scales and biases of one float dtype".into(),
                found: format!("scales {}, biases {}", scales.dtype(), biases.dtype()),
            });
        }
        let (ws, ss) = (weight.shape(), scales.shape());
        if ws.len() < 2
            || ss != biases.shape()
            || ss.len() != ws.len()
            || ws[..ws.len() - 1] != ss[..ss.len() - 1]
        {
            return Err(shape_err(format!(
                "weight {ws:?}, scales {ss:?} and biases {:?} do not match (need [.., words] and [.., groups] with equal leading dims)",
                biases.shape()
            )));
        }
        let (words, groups) = (ws[ws.len() - 1], ss[ss.len() - 1]);
        let bits = params.bits as usize;
        let cols = words
            .checked_mul(32)
            .filter(|b| b % bits == 0)
            .map(|b| b / bits);
        let cols = cols.ok_or_else(|| {
            shape_err(format!(
                "{words} u32 words per row do not hold a whole number of {bits}-bit values"
            ))
        })?;
        if groups.checked_mul(params.group_size) != Some(cols) {
            return Err(shape_err(format!(
                "scales/biases have {groups} groups per row, but weight {ws:?} with {bits} bits holds {cols} inputs per row, \
                 which with group size {} needs {} groups (wrong bits or group size in the config?)",
                params.group_size,
                cols as f64 / params.group_size as f64
            )));
        }
        let mut shape = ws.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = cols;
        }
        Self::new(
            name,
            shape,
            params,
            scales.dtype(),
            Cow::Borrowed(weight.data()),
            Cow::Borrowed(scales.data()),
            Cow::Borrowed(biases.data()),
        )
    }

    /// Name (the linear's path, e.g. `model.layers.0.self_attn.q_proj`).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Dequantized shape (last dimension = `cols`).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Rows (output features; product of all leading dimensions).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns (input features).
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Bits and group size.
    pub fn params(&self) -> QuantParams {
        self.params
    }
    /// Bits per element.
    pub fn bits(&self) -> u32 {
        self.params.bits
    }
    /// Group size.
    pub fn group_size(&self) -> usize {
        self.params.group_size
    }
    /// Groups per row (`cols / group_size`).
    pub fn groups(&self) -> usize {
        self.cols / self.params.group_size
    }
    /// Dtype of scales and biases (the model dtype).
    pub fn scale_dtype(&self) -> DType {
        self.scale_dtype
    }
    /// Packed weight bytes (little-endian u32 words, `cols * bits / 32` per row).
    pub fn weight_bytes(&self) -> &[u8] {
        &self.weight
    }
    /// Scale bytes (`groups` per row, `scale_dtype`).
    pub fn scales_bytes(&self) -> &[u8] {
        &self.scales
    }
    /// Bias bytes (`groups` per row, `scale_dtype`).
    pub fn biases_bytes(&self) -> &[u8] {
        &self.biases
    }
    /// Packed weight as u32 words.
    pub fn weight_words(&self) -> Vec<u32> {
        decode_u32(&self.weight)
    }
    /// Scales as f32 (exact).
    pub fn scales_f32(&self) -> Vec<f32> {
        decode_all(self.scale_dtype, &self.scales)
    }
    /// Biases as f32 (exact).
    pub fn biases_f32(&self) -> Vec<f32> {
        decode_all(self.scale_dtype, &self.biases)
    }
    /// Copies borrowed buffers so the tensor outlives the checkpoint.
    pub fn into_owned(self) -> QuantizedTensor<'static> {
        QuantizedTensor {
            weight: Cow::Owned(self.weight.into_owned()),
            scales: Cow::Owned(self.scales.into_owned()),
            biases: Cow::Owned(self.biases.into_owned()),
            name: self.name,
            shape: self.shape,
            rows: self.rows,
            cols: self.cols,
            params: self.params,
            scale_dtype: self.scale_dtype,
        }
    }

    fn row_bytes(&self) -> (usize, usize) {
        (
            self.cols / 8 * self.params.bits as usize,
            self.groups() * self.scale_dtype.size(),
        )
    }

    /// The integer codes (0..2^bits) of `rows`, row-major. Errors if the range is out of bounds.
    pub fn unpack_rows(&self, rows: Range<usize>) -> Result<Vec<u8>> {
        self.check_rows(&rows)?;
        let (wrb, _) = self.row_bytes();
        let mut out = Vec::with_capacity(rows.len() * self.cols);
        for r in rows {
            let row = &self.weight[r * wrb..(r + 1) * wrb];
            out.extend((0..self.cols).map(|k| get_code(row, k, self.params.bits)));
        }
        Ok(out)
    }

    fn check_rows(&self, rows: &Range<usize>) -> Result<()> {
        if rows.start > rows.end || rows.end > self.rows {
            return Err(invalid(
                &self.name,
                format!("row range {rows:?} outside 0..{}", self.rows),
            ));
        }
        Ok(())
    }

    /// Row ranges whose packed weight, scales and biases each fit `max_binding_bytes` with
    /// every range starting at a multiple of `offset_align` bytes in each of the three buffers.
    pub fn row_splits(
        &self,
        max_binding_bytes: u64,
        offset_align: u64,
    ) -> Result<Vec<Range<usize>>> {
        let (wrb, srb) = self.row_bytes();
        row_splits_multi(self.rows, &[wrb, srb], max_binding_bytes, offset_align)
    }

    /// Errors with [`WeightsError::TooLargeForBinding`] (with a split hint) if the packed
    /// weight, scales or biases exceed `max_binding_bytes`.
    pub fn check_binding(&self, max_binding_bytes: u64) -> Result<()> {
        let (wrb, srb) = self.row_bytes();
        for (what, rb) in [("weight", wrb), ("scales", srb), ("biases", srb)] {
            if (self.rows as u64) * (rb as u64) > max_binding_bytes {
                return Err(binding_error(
                    &format!("{}.{what}", self.name),
                    self.rows,
                    rb,
                    max_binding_bytes,
                ));
            }
        }
        Ok(())
    }
}

fn decode_u32(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Code `k` of a row's little-endian bit stream.
#[inline]
fn get_code(row: &[u8], k: usize, bits: u32) -> u8 {
    let bit = k * bits as usize;
    let (byte, sh) = (bit / 8, bit % 8);
    let lo = row[byte] as u32;
    let hi = if sh + bits as usize > 8 {
        row[byte + 1] as u32
    } else {
        0
    };
    (((lo | hi << 8) >> sh) & ((1u32 << bits) - 1)) as u8
}
