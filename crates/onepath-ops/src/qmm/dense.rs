//! `y = x W^T` with W dense (f32, f16 or bf16): the GEMV kernel for 1 to [`MT`] rows of x
//! (`wgsl/matmul_dense_gemv.wgsl`) and `wgsl/matmul_dense.wgsl` for more, both under the dense
//! numerical contract (see `wgsl/matmul_dense.wgsl`), so a row's bits do not depend on which
//! one ran.

use super::{
    MT, PreparedMatmul, QPlan, Step, WG, check_call, lanes_dense, params, run_batched, weights,
};
use crate::{OpError, kernels};
use onepath_gpu::Gpu;
use std::sync::Arc;

use super::DenseWeights;

/// Workgroup shape of the dense GEMV kernel (`wgsl/matmul_dense_gemv.wgsl`) for an `m`-row
/// call (1 to [`MT`]) of an `[n, k]` matrix: 4 slots (`wg` = 4 x lanes, at least 64); rows of
/// W per invocation 1, 2 or 4 as the quantized decode plan takes them (by invocations at 1 row:
/// up to 2^17, 2^20, beyond), and 4 from 5 rows of x on; 2 rows of x per workgroup (`xrows` =
/// `mt`), the rest of the rows spread over more workgroups, except 1 for M = 1 when a lane has
/// at most 8 units. None of it reaches the arithmetic.
///
/// (Measured on an H100, bf16, one pass, M = 1 at 1 / 2 rows of x per workgroup: 6144 x 1536
/// 10.3 / 11.4 us, 12288 x 1536 16.3 / 19.3, 2048 x 1536 6.8 / 7.0 (6 to 8 units a lane);
/// 1536 x 6144 16.5 / 14.1, 1536 x 12288 29.7 / 25.6 (24 and 48 units a lane). Rows of W at
/// M = 8, as above / 4: 1536 x 6144 33.1 / 21.3, 2048 x 1536 13.1 / 10.7, 6144 x 1536 26.0 /
/// 24.8, the LM head 760 either way; at M = 4, 4 rows were slower (6144 x 1536 16.3 / 17.2,
/// 1536 x 6144 16.4 / 17.1).)
pub fn dplan(n: usize, k: usize, m: usize) -> QPlan {
    let lanes = lanes_dense(k / 8);
    let threads = n * lanes as usize;
    let rows = match threads {
        _ if m > 4 => 4,
        t if t > 1 << 20 => 4,
        t if t > 1 << 17 => 2,
        _ => 1,
    };
    let mt = if m == 1 && k / 8 <= 8 * lanes as usize {
        1
    } else {
        2
    };
    QPlan {
        wg: (4 * lanes).max(64),
        rows,
        xrows: mt,
        mt,
    }
}

/// `y = x W^T` with W dense (f32, f16 or bf16): a GEMV kernel for 1 to [`MT`] rows of x
/// (`wgsl/matmul_dense_gemv.wgsl`) and `wgsl/matmul_dense.wgsl` for more, both under the same
/// numerical contract, so a row's bits do not depend on which one ran.
pub struct DenseMatmul {
    pub weights: Arc<DenseWeights>,
    pipeline: Arc<wgpu::ComputePipeline>,
    /// The GEMV kernel's pipelines for 1 row, 2 to 4 and 5 to [`MT`], with their shapes.
    gemv: [(Arc<wgpu::ComputePipeline>, QPlan); 3],
    lanes: u32,
}

impl DenseMatmul {
    /// Compiles (or fetches) the pipelines for `weights` (see [`DenseWeights::upload`]).
    pub async fn new(gpu: &Gpu, weights: Arc<DenseWeights>) -> Result<DenseMatmul, OpError> {
        let lanes = lanes_dense(weights.cols / 8);
        let dt = weights::dtype_code(weights.dtype);
        let contract = [("DT", dt), ("LANES", f64::from(lanes))];
        let pipeline = gpu.pipeline(&kernels::MATMUL_DENSE, &contract).await?;
        let build = async |m: usize| -> Result<_, OpError> {
            let plan = dplan(weights.rows, weights.cols, m);
            let shape = [
                ("WG", f64::from(plan.wg)),
                ("R", f64::from(plan.rows)),
                ("MT", f64::from(plan.mt)),
            ];
            let p = gpu
                .pipeline(
                    &kernels::MATMUL_DENSE_GEMV,
                    &[&contract[..], &shape].concat(),
                )
                .await?;
            Ok((p, plan))
        };
        let gemv = [build(1).await?, build(2).await?, build(MT).await?];
        Ok(DenseMatmul {
            weights,
            pipeline,
            gemv,
            lanes,
        })
    }

    /// Binds an `m`-row call: `x` holds `[m, K]` f32, `y` receives `[m, N]` f32.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        m: usize,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Result<PreparedMatmul, OpError> {
        self.prepare_with(gpu, m, x, y, m <= MT)
    }

    /// [`prepare`](Self::prepare) with the kernel chosen by the caller: the GEMV kernel
    /// (`gemv`, for at most [`MT`] rows) or the other (same bits; for tests and benchmarks).
    pub fn prepare_with(
        &self,
        gpu: &Gpu,
        m: usize,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        gemv: bool,
    ) -> Result<PreparedMatmul, OpError> {
        let (k, n) = (self.weights.cols, self.weights.rows);
        check_call(gpu, m, k, n, x, y)?;
        if gemv && m > MT {
            return Err(OpError::Param {
                what: "rows of x of a dense GEMV call",
                value: m.to_string(),
                why: "the dense GEMV kernel takes at most 8 rows of x",
            });
        }
        let (pipeline, tile) = if gemv {
            let (p, plan) = &self.gemv[usize::from(m > 1) + usize::from(m > 4)];
            let rw = (plan.wg / self.lanes) as usize * plan.rows as usize;
            (p, (plan.mt as usize, rw))
        } else {
            (&self.pipeline, (MT, WG / self.lanes as usize))
        };
        let mut steps = Vec::new();
        let mut keep = Vec::new();
        for s in &self.weights.splits {
            let (u, grid) = params(gpu, m, k, n, &s.rows, tile, 1);
            steps.push(Step {
                pipeline: pipeline.clone(),
                bind: gpu.bind(pipeline, &[&u, x, &s.w, y]),
                grid,
            });
            keep.push(u);
        }
        Ok(PreparedMatmul { steps, _keep: keep })
    }

    /// Host convenience, as [`QMatmul::run_host`].
    pub async fn run_host(&self, gpu: &Gpu, x: &[f32], m: usize) -> Result<Vec<f32>, OpError> {
        let (k, n) = (self.weights.cols, self.weights.rows);
        run_batched(gpu, x, m, k, n, |rows, xb, yb| {
            self.prepare(gpu, rows, xb, yb)
        })
        .await
    }

    /// [`run_host`](Self::run_host) with the kernel chosen by the caller (see
    /// [`prepare_with`](Self::prepare_with)).
    pub async fn run_host_with(
        &self,
        gpu: &Gpu,
        x: &[f32],
        m: usize,
        gemv: bool,
    ) -> Result<Vec<f32>, OpError> {
        let (k, n) = (self.weights.cols, self.weights.rows);
        run_batched(gpu, x, m, k, n, |rows, xb, yb| {
            self.prepare_with(gpu, rows, xb, yb, gemv)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense GEMV plans: rows of W by invocations up to 4 rows of x, 4 beyond; 1 row of x per
    /// workgroup only at M = 1 with at most 8 units a lane.
    #[test]
    fn dense_workgroup_shapes() {
        for (n, k, m, rows, mt) in [
            (6144, 1536, 1, 2, 1),
            (1536, 6144, 1, 1, 2),
            (262144, 1536, 1, 4, 1),
            (2048, 1536, 4, 1, 2),
            (2048, 1536, 5, 4, 2),
            (1536, 6144, 8, 4, 2),
        ] {
            let p = dplan(n, k, m);
            assert_eq!((p.rows, p.mt), (rows, mt), "N = {n}, K = {k}, M = {m}");
        }
    }
}
