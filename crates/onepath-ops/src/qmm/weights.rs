//! Weights on the GPU: a quantized or dense `[rows, cols]` matrix uploaded once, split by rows
//! into several bindings when it exceeds the device's largest storage binding.
//!
//! A split never changes any output element's arithmetic: every kernel reduces an output
//! element over K inside one row of W, and the split only decides which binding holds the row.

use crate::OpError;
use onepath_gpu::Gpu;
use onepath_weights::{DType, QuantizedTensor, row_splits_multi};
use std::ops::Range;
use std::sync::Arc;

/// Bits per code the quantized kernels take.
pub const BITS: [u32; 2] = [4, 8];
/// Group sizes the quantized kernels take.
pub const GROUPS: [usize; 3] = [32, 64, 128];
/// Largest number of groups per row (`K / group_size`) the quantized kernel is planned and
/// tested for.
pub const MAX_GROUPS: usize = 512;

/// One binding's worth of rows of a quantized matrix.
pub struct QSplit {
    /// Rows of W held here.
    pub rows: Range<usize>,
    pub(crate) w: wgpu::Buffer,
    /// Scales and biases interleaved per group ([`interleave`]).
    pub(crate) sb: wgpu::Buffer,
}

/// An MLX affine-quantized matrix on the GPU (packed weight, scales, biases).
pub struct QWeights {
    pub rows: usize,
    pub cols: usize,
    pub bits: u32,
    pub group: usize,
    pub scale_dtype: DType,
    pub splits: Vec<QSplit>,
}

/// The largest binding to plan for: the device's, or a smaller forced one (tests, browsers).
fn limit(gpu: &Gpu, max_binding_override: Option<u64>) -> u64 {
    let dev = gpu.max_binding();
    max_binding_override.map_or(dev, |o| o.min(dev))
}

impl QWeights {
    /// Uploads `q`, split by rows if it exceeds the device's largest binding.
    pub fn upload(gpu: &Gpu, q: &QuantizedTensor) -> Result<Arc<QWeights>, OpError> {
        Self::upload_with(gpu, q, None)
    }

    /// [`upload`](Self::upload) with the binding limit forced down to `max_binding_override`
    /// bytes (e.g. 128 MiB to plan like a browser, or a few KiB to test splitting).
    pub fn upload_with(
        gpu: &Gpu,
        q: &QuantizedTensor,
        max_binding_override: Option<u64>,
    ) -> Result<Arc<QWeights>, OpError> {
        let (bits, group) = (q.bits(), q.group_size());
        if !BITS.contains(&bits) {
            return Err(OpError::Param {
                what: "bits",
                value: bits.to_string(),
                why: "the quantized kernels take 4 or 8 bits",
            });
        }
        if !GROUPS.contains(&group) {
            return Err(OpError::Param {
                what: "group_size",
                value: group.to_string(),
                why: "the quantized kernels take group sizes 32, 64 or 128",
            });
        }
        if q.groups() > MAX_GROUPS {
            return Err(OpError::Param {
                what: "K / group_size",
                value: q.groups().to_string(),
                why: "the quantized kernel takes at most 512 groups per row",
            });
        }
        if q.rows() == 0 || q.cols() == 0 {
            return Err(OpError::ZeroDim {
                op: "quantized matmul weights",
                name: if q.rows() == 0 { "row" } else { "column" },
            });
        }
        let wrb = q.cols() * bits as usize / 8;
        let srb = q.groups() * q.scale_dtype().size();
        let lim = limit(gpu, max_binding_override);
        let ranges = row_splits_multi(q.rows(), &[wrb, 2 * srb], lim, 4)?;
        let mut splits = Vec::with_capacity(ranges.len());
        for r in ranges {
            let w = &q.weight_bytes()[r.start * wrb..r.end * wrb];
            let s = &q.scales_bytes()[r.start * srb..r.end * srb];
            let b = &q.biases_bytes()[r.start * srb..r.end * srb];
            splits.push(QSplit {
                w: gpu.storage_from("qweight", w)?,
                sb: gpu
                    .storage_from("qscales+biases", &interleave(s, b, q.scale_dtype().size()))?,
                rows: r,
            });
        }
        Ok(Arc::new(QWeights {
            rows: q.rows(),
            cols: q.cols(),
            bits,
            group,
            scale_dtype: q.scale_dtype(),
            splits,
        }))
    }

    /// Bytes of packed weight + scales + biases (what one M = 1 matmul must read).
    pub fn bytes(&self) -> u64 {
        let wrb = (self.cols * self.bits as usize / 8) as u64;
        let srb = (self.cols / self.group * self.scale_dtype.size()) as u64;
        self.rows as u64 * (wrb + 2 * srb)
    }

    /// Override value of the scale dtype (0 = f32, 1 = f16, 2 = bf16).
    pub(crate) fn scale_code(&self) -> f64 {
        dtype_code(self.scale_dtype)
    }
}

/// Scales and biases (`size` bytes each) interleaved per group, as the quantized kernels read
/// them: one load fetches both. For f16/bf16 a group is one little-endian u32 with the scale in
/// its low half and the bias in its high half; for f32, two words (scale, then bias).
fn interleave(scales: &[u8], biases: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 * scales.len());
    for (s, b) in scales.chunks_exact(size).zip(biases.chunks_exact(size)) {
        out.extend_from_slice(s);
        out.extend_from_slice(b);
    }
    out
}

pub(crate) fn dtype_code(d: DType) -> f64 {
    match d {
        DType::F16 => 1.0,
        DType::BF16 => 2.0,
        _ => 0.0,
    }
}

/// One binding's worth of rows of a dense matrix.
pub struct DenseSplit {
    pub rows: Range<usize>,
    pub(crate) w: wgpu::Buffer,
}

/// An unquantized f32 / f16 / bf16 matrix on the GPU.
pub struct DenseWeights {
    pub rows: usize,
    pub cols: usize,
    pub dtype: DType,
    pub splits: Vec<DenseSplit>,
}

impl DenseWeights {
    /// Uploads a row-major `[rows, cols]` matrix given as little-endian bytes of `dtype`
    /// (f32, f16 or bf16; `cols` a multiple of 8), split by rows to fit the binding limit
    /// (the device's, or `max_binding_override` if smaller).
    pub fn upload(
        gpu: &Gpu,
        bytes: &[u8],
        dtype: DType,
        rows: usize,
        cols: usize,
        max_binding_override: Option<u64>,
    ) -> Result<Arc<DenseWeights>, OpError> {
        if !dtype.is_float() {
            return Err(OpError::Param {
                what: "dtype",
                value: dtype.to_string(),
                why: "dense weights must be F32, F16 or BF16",
            });
        }
        if rows == 0 || cols == 0 {
            return Err(OpError::ZeroDim {
                op: "dense matmul weights",
                name: if rows == 0 { "row" } else { "column" },
            });
        }
        if !cols.is_multiple_of(8) {
            return Err(OpError::Param {
                what: "K (columns of W)",
                value: cols.to_string(),
                why: "the dense kernel needs K to be a multiple of 8",
            });
        }
        let rb = cols * dtype.size();
        let need = rows.checked_mul(rb);
        if need != Some(bytes.len()) {
            return Err(OpError::Len {
                name: "W bytes",
                shape: format!("[{rows}, {cols}] {dtype}"),
                expected: need.unwrap_or(usize::MAX),
                actual: bytes.len(),
            });
        }
        let ranges = row_splits_multi(rows, &[rb], limit(gpu, max_binding_override), 4)?;
        let mut splits = Vec::with_capacity(ranges.len());
        for r in ranges {
            let w = gpu.storage_from("dense weight", &bytes[r.start * rb..r.end * rb])?;
            splits.push(DenseSplit { rows: r, w });
        }
        Ok(Arc::new(DenseWeights {
            rows,
            cols,
            dtype,
            splits,
        }))
    }

    /// Bytes of W.
    pub fn bytes(&self) -> u64 {
        (self.rows * self.cols * self.dtype.size()) as u64
    }
}
