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
