//! The small ops of a transformer block, each under the one-path rule (a row's arithmetic
//! depends on that row alone; every reduction has one order fixed by the row length): RMSNorm
//! of selected rows, the residual add fused with the next norm, q and K/V preparation (norms,
//! RoPE, and the KV-cache append), the gated GELU, the per-layer-input combine, and the final
//! soft-cap with the greedy argmax.
//!
//! The op protocol: an op is built once ([`Kernels::new`] compiles every pipeline), a call is
//! *prepared* into a [`Dispatch`] (its parameters and bind group, checked against the buffer
//! sizes), and a prepared call is recorded into a compute pass the caller supplies, any number
//! of times. A model keeps its prepared calls from step to step (keyed by the step's row
//! count), so a steady decode step creates nothing.

mod ops;

pub use ops::{
    ARGMAX_BLOCK, AddNorm, GeluMul, KvAppend, KvAppendCall, PleCombine, QPrep, RmsNorm,
    SoftcapArgmax, View,
};

use crate::OpError;
use std::sync::Arc;

/// One prepared dispatch: pipeline, bind group, grid, and the parameter buffer it reads.
pub struct Dispatch {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind: wgpu::BindGroup,
    pub(crate) grid: [u32; 3],
    _params: wgpu::Buffer,
}

impl Dispatch {
    /// Records the dispatch into an open compute pass.
    pub fn dispatch(&self, pass: &mut wgpu::ComputePass<'_>) {
        if self.grid.contains(&0) {
            return;
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        let [x, y, z] = self.grid;
        pass.dispatch_workgroups(x, y, z);
    }

    /// Workgroups along x of a grid of `n` workgroups (WebGPU allows 65535 per dimension).
    pub(crate) fn grid_x(n: u32) -> u32 {
        n.min(65535)
    }

    pub(crate) fn new(
        gpu: &onepath_gpu::Gpu,
        pipeline: &Arc<wgpu::ComputePipeline>,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        workgroups: u32,
    ) -> Result<Dispatch, OpError> {
        let gx = Self::grid_x(workgroups);
        let gy = workgroups.div_ceil(gx.max(1));
        if gy > 65535 {
            return Err(OpError::TooBig(format!(
                "a dispatch of {workgroups} workgroups"
            )));
        }
        let u = gpu.uniform_from("op params", params);
        let mut entries = vec![&u];
        entries.extend_from_slice(buffers);
        Ok(Dispatch {
            pipeline: pipeline.clone(),
            bind: gpu.bind(pipeline, &entries),
            grid: [gx, gy, 1],
            _params: u,
        })
    }
}

/// Checks that `buf` holds at least `elems` 4-byte values; the error names the op and buffer.
pub(crate) fn need(
    op: &'static str,
    name: &'static str,
    buf: &wgpu::Buffer,
    elems: usize,
) -> Result<(), OpError> {
    if u128::from(buf.size()) < elems as u128 * 4 {
        return Err(OpError::Len {
            name,
            shape: format!("{op}: {elems} values"),
            expected: elems,
            actual: (buf.size() / 4) as usize,
        });
    }
    Ok(())
}

/// Every block op's pipelines, compiled once per device (and per head dim / K/V format for
/// the attention preparation).
pub struct Kernels {
    pub rms_norm: RmsNorm,
    pub add_norm: AddNorm,
    pub gelu_mul: GeluMul,
    pub ple: PleCombine,
    pub softcap_argmax: SoftcapArgmax,
}

impl Kernels {
    pub async fn new(gpu: &onepath_gpu::Gpu) -> Result<Kernels, OpError> {
        Ok(Kernels {
            rms_norm: RmsNorm::new(gpu).await?,
            add_norm: AddNorm::new(gpu).await?,
            gelu_mul: GeluMul::new(gpu).await?,
            ple: PleCombine::new(gpu).await?,
            softcap_argmax: SoftcapArgmax::new(gpu).await?,
        })
    }
}
