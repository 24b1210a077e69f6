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

/// Dequantizes like `mx.dequantize`: `T(T(scale * q) + bias)` with `T` the scale dtype,
/// returned as f32 (exactly MLX's values, bit for bit).
pub fn dequantize(q: &QuantizedTensor) -> Vec<f32> {
    dequantize_rows(q, 0..q.rows).unwrap_or_default()
}

/// [`dequantize`] for a range of rows (e.g. gathering embedding rows).
pub fn dequantize_rows(q: &QuantizedTensor, rows: Range<usize>) -> Result<Vec<f32>> {
    let t = q.scale_dtype;
    dequant_with(q, rows, |s, c, b| t.round(t.round(s * c) + b))
}

/// Dequantizes with f32 arithmetic and no rounding to the scale dtype: `scale * q + bias`
/// (an f32 product then an f32 sum). Equal to [`dequantize`] for f32 scales; for f16/bf16 it is
/// what an f32 GPU kernel computes (`scale * q` is exact in f32 there, so an FMA gives the same).
pub fn dequantize_f32(q: &QuantizedTensor) -> Vec<f32> {
    dequant_with(q, 0..q.rows, |s, c, b| s * c + b).unwrap_or_default()
}

fn dequant_with(
    q: &QuantizedTensor,
    rows: Range<usize>,
    f: impl Fn(f32, f32, f32) -> f32,
) -> Result<Vec<f32>> {
    q.check_rows(&rows)?;
    let (wrb, _) = q.row_bytes();
    let (g, gs, bits) = (q.groups(), q.params.group_size, q.params.bits);
    let (sz, t) = (q.scale_dtype.size(), q.scale_dtype);
    let mut out = Vec::with_capacity(rows.len() * q.cols);
    for r in rows {
        let row = &q.weight[r * wrb..(r + 1) * wrb];
        for j in 0..g {
            let at = (r * g + j) * sz;
            let s = t.decode(&q.scales[at..at + sz]).unwrap_or(0.0);
            let b = t.decode(&q.biases[at..at + sz]).unwrap_or(0.0);
            out.extend((j * gs..(j + 1) * gs).map(|k| f(s, get_code(row, k, bits) as f32, b)));
        }
    }
    Ok(out)
}

/// Quantizes `w` (`[rows, cols]` row-major) exactly like
/// `mx.quantize(mx.array(w).astype(out_dtype), group_size, bits)`: the inputs are first rounded
/// to `out_dtype` (a no-op for values that came from a tensor of that dtype), and scales and
/// biases are stored in `out_dtype`.
pub fn quantize(
    w: &[f32],
    rows: usize,
    cols: usize,
    group_size: usize,
    bits: u32,
    out_dtype: DType,
) -> Result<QuantizedTensor<'static>> {
    let params = QuantParams::new(group_size, bits, "quantize")?;
    if !out_dtype.is_float() {
        return Err(invalid(
            "quantize",
            format!("output dtype must be F32, F16 or BF16, not {out_dtype}"),
        ));
    }
    if rows.checked_mul(cols) != Some(w.len()) {
        return Err(invalid(
            "quantize",
            format!("{} values given for a [{rows}, {cols}] matrix", w.len()),
        ));
    }
    if !cols.is_multiple_of(group_size) {
        return Err(invalid(
            "quantize",
            format!("cols {cols} is not a multiple of group size {group_size}"),
        ));
    }
    let n_bins = ((1u32 << bits) - 1) as f32;
    let groups = cols / group_size;
    let mut packed = vec![0u8; rows * cols / 8 * bits as usize];
    let mut scales = Vec::with_capacity(rows * groups * out_dtype.size());
    let mut biases = Vec::with_capacity(rows * groups * out_dtype.size());
    let mut buf = vec![0f32; group_size];
    for (gi, chunk) in w.chunks_exact(group_size).enumerate() {
        for (d, &x) in buf.iter_mut().zip(chunk) {
            *d = out_dtype.round(x);
        }
        let (scale, bias) = group_scale_bias(&buf, n_bins);
        // Global bit offset of this group: rows are whole bytes since cols % 32 == 0.
        let base = gi * group_size * bits as usize;
        for (k, &x) in buf.iter().enumerate() {
            let code = ((x - bias) / scale).round_ties_even().clamp(0.0, n_bins) as u32;
            let bit = base + k * bits as usize;
            let v = code << (bit % 8);
            packed[bit / 8] |= v as u8;
            if v > 0xff {
                packed[bit / 8 + 1] |= (v >> 8) as u8;
            }
        }
        out_dtype.encode(scale, &mut scales);
        out_dtype.encode(bias, &mut biases);
    }
    QuantizedTensor::new(
        "quantized",
        vec![rows, cols],
        params,
        out_dtype,
        Cow::Owned(packed),
        Cow::Owned(scales),
        Cow::Owned(biases),
    )
}

/// MLX's per-group (scale, bias), in f32 before rounding to the model dtype.
fn group_scale_bias(g: &[f32], n_bins: f32) -> (f32, f32) {
    let (mut w_min, mut w_max) = (f32::INFINITY, f32::NEG_INFINITY);
    for &x in g {
        w_max = w_max.max(x);
        w_min = w_min.min(x);
    }
    let mask = w_min.abs() > w_max.abs();
    let mut scale = ((w_max - w_min) / n_bins).max(1e-7);
    if !mask {
        scale = -scale;
    }
    let edge = if mask { w_min } else { w_max };
    let q0 = (edge / scale).round_ties_even();
    if q0 != 0.0 {
        (edge / q0, edge)
    } else {
        (scale, 0.0)
    }
}

/// Quantizes a dense float checkpoint tensor (last dimension = input size) with MLX's rule,
/// keeping its dtype for scales and biases: the load-time path for unquantized checkpoints.
pub fn quantize_view(view: &TensorView, params: QuantParams) -> Result<QuantizedTensor<'static>> {
    let w = view.to_f32()?;
    let shape = view.shape();
    let (&cols, lead) = shape.split_last().ok_or_else(|| WeightsError::Shape {
        tensor: view.name().to_string(),
        detail: "cannot quantize a scalar".into(),
    })?;
    if !cols.is_multiple_of(params.group_size) {
        return Err(WeightsError::Shape {
            tensor: view.name().to_string(),
            detail: format!(
                "input size {cols} is not a multiple of group size {}",
                params.group_size
            ),
        });
    }
    let rows = lead.iter().product();
    let q = quantize(&w, rows, cols, params.group_size, params.bits, view.dtype())?;
    let name = view.name().strip_suffix(".weight").unwrap_or(view.name());
    Ok(QuantizedTensor {
        name: name.to_string(),
        shape: shape.to_vec(),
        ..q
    })
}
