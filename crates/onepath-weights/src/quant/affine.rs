//! MLX's affine rule itself: bit-exact `quantize` and `dequantize` (see the parent module).

use std::borrow::Cow;
use std::ops::Range;

use super::{QuantizedTensor, get_code, invalid};
use crate::config::QuantParams;
use crate::{DType, Result, TensorView, WeightsError};

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

/// [`dequantize_f32`] for a range of rows: what an f32 kernel gathers from an embedding.
pub fn dequantize_rows_f32(q: &QuantizedTensor, rows: Range<usize>) -> Result<Vec<f32>> {
    dequant_with(q, rows, |s, c, b| s * c + b)
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
    if cols == 0 || !cols.is_multiple_of(group_size) {
        return Err(invalid(
            "quantize",
            format!("cols {cols} is not a positive multiple of group size {group_size}"),
        ));
    }
    // Groups are independent, so rows are quantized in chunks, one per thread (none spawned
    // where there is one thread, as on wasm), and the chunks' bytes concatenated in order.
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let (packed, scales, biases) = quantize_chunked(w, rows, cols, params, out_dtype, threads);
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

/// [`quantize`]'s bytes (packed codes, scales, biases) with the rows cut into `threads` chunks
/// quantized side by side; the same bytes for every `threads`.
fn quantize_chunked(
    w: &[f32],
    rows: usize,
    cols: usize,
    params: QuantParams,
    out_dtype: DType,
    threads: usize,
) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let per = rows.div_ceil(threads.max(1)).max(1);
    let chunks: Vec<&[f32]> = w.chunks(per * cols).collect();
    let parts: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = if chunks.len() <= 1 {
        chunks
            .iter()
            .map(|c| quantize_rows(c, params, out_dtype))
            .collect()
    } else {
        std::thread::scope(|sc| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|c| sc.spawn(move || quantize_rows(c, params, out_dtype)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for (p, s, b) in parts {
        out.0.extend(p);
        out.1.extend(s);
        out.2.extend(b);
    }
    out
}

/// Quantizes whole rows `w` (a multiple of the group size long): packed codes (rows are whole
/// bytes since the group size is a multiple of 32), scales and biases in `out_dtype`.
fn quantize_rows(w: &[f32], params: QuantParams, out_dtype: DType) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (group_size, bits) = (params.group_size, params.bits);
    let n_bins = ((1u32 << bits) - 1) as f32;
    let groups = w.len() / group_size;
    let mut packed = vec![0u8; w.len() / 8 * bits as usize];
    let mut scales = Vec::with_capacity(groups * out_dtype.size());
    let mut biases = Vec::with_capacity(groups * out_dtype.size());
    let mut buf = vec![0f32; group_size];
    for (gi, chunk) in w.chunks_exact(group_size).enumerate() {
        for (d, &x) in buf.iter_mut().zip(chunk) {
            *d = out_dtype.round(x);
        }
        let (scale, bias) = group_scale_bias(&buf, n_bins);
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
    (packed, scales, biases)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunk boundaries never change a byte: 1 thread and 2, 3 and 7 (a last chunk shorter
    /// than the others, and more threads than rows) give the same packed codes, scales and
    /// biases, for 4 and 8 bits and each group size.
    #[test]
    fn chunked_quantization_is_the_same_bytes() {
        let (rows, cols) = (5, 256);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i % 13) as f32))
            .collect();
        for bits in [4, 8] {
            for group in [32, 64, 128] {
                let params = QuantParams::new(group, bits, "test").unwrap();
                let one = quantize_chunked(&w, rows, cols, params, DType::BF16, 1);
                for threads in [2, 3, 7] {
                    let many = quantize_chunked(&w, rows, cols, params, DType::BF16, threads);
                    assert!(one == many, "{bits} bits, group {group}, {threads} threads");
                }
            }
        }
    }
}
