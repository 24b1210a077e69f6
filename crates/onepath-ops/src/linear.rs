//! [`Linear`]: one layer's `y = x W^T` on the GPU, quantized (MLX affine, 4 or 8 bits) or
//! dense (f32 / f16 / bf16), each picking its kernel per call from the number of rows. Every
//! kernel of a format gives an output element the same bits, so the choice is speed only.

use crate::OpError;
use crate::qmm::{DenseMatmul, DenseWeights, PreparedMatmul, QMatmul, QWeights};
use onepath_gpu::Gpu;
use onepath_weights::{Linear as Stored, QuantParams, quantize_view};
use std::sync::Arc;

/// A linear layer on the GPU.
pub enum Linear {
    Quant(QMatmul),
    Dense(DenseMatmul),
}

impl Linear {
    /// Uploads a stored linear as it is, or quantized now with MLX's rule when `quantize` is
    /// given and the weight is dense with a whole number of groups per row (others stay dense,
    /// as mlx-lm leaves them). `max_binding` forces a smaller binding limit (browsers).
    pub async fn upload(
        gpu: &Gpu,
        stored: &Stored<'_>,
        quantize: Option<QuantParams>,
        max_binding: Option<u64>,
    ) -> Result<Linear, OpError> {
        match stored {
            Stored::Quantized(q) => {
                let w = QWeights::upload_with(gpu, q, max_binding)?;
                Ok(Linear::Quant(QMatmul::new(gpu, w).await?))
            }
            Stored::Dense(w) => {
                let (rows, cols) = w.dims2()?;
                if let Some(p) = quantize.filter(|p| cols.is_multiple_of(p.group_size)) {
                    let q = quantize_view(w, p)?;
                    let w = QWeights::upload_with(gpu, &q, max_binding)?;
                    return Ok(Linear::Quant(QMatmul::new(gpu, w).await?));
                }
                let w = DenseWeights::upload(gpu, w.data(), w.dtype(), rows, cols, max_binding)?;
                Ok(Linear::Dense(DenseMatmul::new(gpu, w).await?))
            }
        }
    }

    /// Output features (rows of W).
    pub fn rows(&self) -> usize {
        match self {
            Linear::Quant(q) => q.weights.rows,
            Linear::Dense(d) => d.weights.rows,
        }
    }

    /// Input features (columns of W).
    pub fn cols(&self) -> usize {
        match self {
            Linear::Quant(q) => q.weights.cols,
            Linear::Dense(d) => d.weights.cols,
        }
    }

    /// Bytes of W on the GPU.
    pub fn bytes(&self) -> u64 {
        match self {
            Linear::Quant(q) => q.weights.bytes(),
            Linear::Dense(d) => d.weights.bytes(),
        }
    }

    /// The quantized weights, when quantized (a tied LM head shares them with the embedding).
    pub fn qweights(&self) -> Option<&Arc<QWeights>> {
        match self {
            Linear::Quant(q) => Some(&q.weights),
            Linear::Dense(_) => None,
        }
    }

    /// Prepares an `m`-row call: `x` is `[m, cols]` f32, `y` `[m, rows]` f32, both from
    /// offset 0.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        m: usize,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Result<PreparedMatmul, OpError> {
        match self {
            Linear::Quant(q) => q.prepare(gpu, m, x, y),
            Linear::Dense(d) => d.prepare(gpu, m, x, y),
        }
    }
}

impl Linear {
    /// One linear that computes `parts` stacked by rows (its output row is the parts' output
    /// rows side by side), when they share a format (quantized with the same bits, group and
    /// scale dtype, or dense of one dtype), have the same columns, are one binding each and
    /// fit one binding together; `None` otherwise. The weights are copied on the GPU. Every
    /// output element is reduced exactly as in its own part (the reduction depends on K alone),
    /// so stacking changes no bits; it saves dispatches.
    pub async fn stack(gpu: &Gpu, parts: &[&Linear]) -> Result<Option<Linear>, OpError> {
        let first = match parts.first() {
            Some(p) => p,
            None => return Ok(None),
        };
        let copy = |label: &str, bufs: &[&wgpu::Buffer]| -> Result<Option<wgpu::Buffer>, OpError> {
            let total: u64 = bufs.iter().map(|b| b.size()).sum();
            if total > gpu.max_binding() {
                return Ok(None);
            }
            let out = gpu.storage(label, total)?;
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            let mut at = 0;
            for b in bufs {
                enc.copy_buffer_to_buffer(b, 0, &out, at, b.size());
                at += b.size();
            }
            gpu.queue.submit([enc.finish()]);
            Ok(Some(out))
        };
        let rows: usize = parts.iter().map(|p| p.rows()).sum();
        match first {
            Linear::Quant(q0) => {
                let w0 = &q0.weights;
                let mut ws = Vec::with_capacity(parts.len());
                for p in parts {
                    match p {
                        Linear::Quant(q)
                            if q.weights.cols == w0.cols
                                && q.weights.bits == w0.bits
                                && q.weights.group == w0.group
                                && q.weights.scale_dtype == w0.scale_dtype
                                && q.weights.splits.len() == 1 =>
                        {
                            ws.push(&q.weights.splits[0])
                        }
                        _ => return Ok(None),
                    }
                }
                let w: Vec<&wgpu::Buffer> = ws.iter().map(|s| &s.w).collect();
                let sb: Vec<&wgpu::Buffer> = ws.iter().map(|s| &s.sb).collect();
                let (Some(w), Some(sb)) =
                    (copy("stacked weight", &w)?, copy("stacked scales", &sb)?)
                else {
                    return Ok(None);
                };
                let weights = Arc::new(QWeights {
                    rows,
                    cols: w0.cols,
                    bits: w0.bits,
                    group: w0.group,
                    scale_dtype: w0.scale_dtype,
                    splits: vec![crate::qmm::QSplit {
                        rows: 0..rows,
                        w,
                        sb,
                    }],
                });
                Ok(Some(Linear::Quant(QMatmul::new(gpu, weights).await?)))
            }
            Linear::Dense(d0) => {
                let w0 = &d0.weights;
                let mut ws = Vec::with_capacity(parts.len());
                for p in parts {
                    match p {
                        Linear::Dense(d)
                            if d.weights.cols == w0.cols
                                && d.weights.dtype == w0.dtype
                                && d.weights.splits.len() == 1 =>
                        {
                            ws.push(&d.weights.splits[0].w)
                        }
                        _ => return Ok(None),
                    }
                }
                let Some(w) = copy("stacked weight", &ws)? else {
                    return Ok(None);
                };
                let weights = Arc::new(DenseWeights {
                    rows,
                    cols: w0.cols,
                    dtype: w0.dtype,
                    splits: vec![crate::qmm::DenseSplit { rows: 0..rows, w }],
                });
                Ok(Some(Linear::Dense(DenseMatmul::new(gpu, weights).await?)))
            }
        }
    }
}
