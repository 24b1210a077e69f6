//! Quantized embedding gather: rows of an MLX affine-quantized table, dequantised to f32.

use super::QWeights;
use crate::{OpError, kernels};
use onepath_gpu::{Gpu, read_buffer_as};
use onepath_weights::DType;
use std::sync::Arc;

/// How a gathered value is rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatherRounding {
    /// `scale * q + bias` in f32 (one fma; for f16/bf16 scales `scale * q` is exact, so this is
    /// `onepath_weights::dequantize_f32` bit for bit).
    F32,
    /// MLX's model-dtype rule `T(T(scale * q) + bias)` (`onepath_weights::dequantize`), for
    /// f16/bf16 scales only.
    ModelDtype,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GatherParams {
    tokens: u32,
    k: u32,
    row0: u32,
    n: u32,
    grid_x: u32,
    pad: [u32; 3],
}

/// Gathers dequantised rows `out[t] = W[ids[t]]` from a (possibly split) quantized table.
pub struct EmbedGather {
    pub weights: Arc<QWeights>,
    pipeline: Arc<wgpu::ComputePipeline>,
}

impl EmbedGather {
    /// Compiles the pipeline for `weights` with the given rounding.
    pub async fn new(
        gpu: &Gpu,
        weights: Arc<QWeights>,
        rounding: GatherRounding,
    ) -> Result<EmbedGather, OpError> {
        if rounding == GatherRounding::ModelDtype && weights.scale_dtype == DType::F32 {
            return Err(OpError::Param {
                what: "rounding",
                value: "ModelDtype".into(),
                why: "model-dtype rounding is for f16/bf16 scales; use F32 for f32 scales",
            });
        }
        let round = f64::from(u8::from(rounding == GatherRounding::ModelDtype));
        let pipeline = gpu
            .pipeline(
                &kernels::EMBED_GATHER,
                &[
                    ("BITS", f64::from(weights.bits)),
                    ("GROUP", weights.group as f64),
                    ("SCALE_DT", weights.scale_code()),
                    ("ROUND", round),
                ],
            )
            .await?;
        Ok(EmbedGather { weights, pipeline })
    }

    /// Records the gather of `tokens` ids (u32 in `ids`) into `out` (`[tokens, K]` f32), one
    /// dispatch per binding of the table. Ids outside the table leave their row untouched.
    pub fn encode(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        tokens: usize,
        ids: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<(), OpError> {
        let k = self.weights.cols;
        if tokens == 0 {
            return Ok(());
        }
        let elems = tokens.saturating_mul(k);
        if (out.size() as u128) < elems as u128 * 4 || (ids.size() as u128) < tokens as u128 * 4 {
            return Err(OpError::Len {
                name: "gather ids / out",
                shape: format!("{tokens} tokens x {k}"),
                expected: elems,
                actual: (out.size() / 4) as usize,
            });
        }
        let vpr = k * self.weights.bits as usize / 128;
        let wgs = (tokens * vpr).div_ceil(64);
        let gx = wgs.min(65535);
        let gy = wgs.div_ceil(gx);
        if gy > 65535 {
            return Err(OpError::TooBig(format!("a gather of {tokens} tokens")));
        }
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("embed gather"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&self.pipeline);
        for s in &self.weights.splits {
            let p = GatherParams {
                tokens: tokens as u32,
                k: k as u32,
                row0: s.rows.start as u32,
                n: s.rows.len() as u32,
                grid_x: gx as u32,
                pad: [0; 3],
            };
            let u = gpu.uniform_from("gather params", bytemuck::bytes_of(&p));
            let bg = gpu.bind(&self.pipeline, &[&u, ids, &s.w, &s.sb, out]);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(gx as u32, gy as u32, 1);
        }
        Ok(())
    }

    /// Host convenience: returns `[ids.len(), K]` f32. Every id must be a row of the table.
    pub async fn run_host(&self, gpu: &Gpu, ids: &[u32]) -> Result<Vec<f32>, OpError> {
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.weights.rows) {
            return Err(OpError::Param {
                what: "token id",
                value: bad.to_string(),
                why: "it is not a row of the embedding table",
            });
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let k = self.weights.cols;
        let idb = gpu.storage_from("ids", bytemuck::cast_slice(ids))?;
        let out = gpu.storage("gathered", (ids.len() * k * 4) as u64)?;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        self.encode(gpu, &mut enc, ids.len(), &idb, &out)?;
        gpu.queue.submit([enc.finish()]);
        gpu.wait_idle()?;
        Ok(read_buffer_as(gpu, &out).await?)
    }
}
