//! `y = x W^T` with W dense (f32, f16 or bf16): two kernels under the dense numerical contract
//! (stated in `wgsl/matmul_dense_gemv.wgsl`), so a row's bits do not depend on which one ran
//! ([`DKernel`], picked per call by [`dkernel`]).

use super::{
    Launch, MT, PreparedMatmul, QKernel, QPlan, TILE_M, TILE_N, check_call, check_splits,
    lanes_dense, prepare_call, qkernel, run_batched, weights,
};
use crate::{OpError, kernels};
use onepath_gpu::Gpu;
use std::sync::Arc;

use super::DenseWeights;

/// Workgroup shape of the dense GEMV kernel (`wgsl/matmul_dense_gemv.wgsl`) for an `m`-row
/// call of an `[n, k]` matrix (any M; from [`MT`] rows on, the plan of [`MT`]): 4 slots (`wg` =
/// 4 x lanes, at least 64); rows of W per invocation 1, 2 or 4 as the quantized decode plan
/// takes them (by invocations at 1 row: up to 2^17, 2^20, beyond), and 4 from 5 rows of x on;
/// 2 rows of x per workgroup (`xrows` = `mt`), the rest of the rows spread over more
/// workgroups, except 1 for M = 1 when a lane has at most 8 units. None of it reaches the
/// arithmetic.
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

/// The two dense kernels. They reach the same bits for every output element (the dense
/// numerical contract), so which one runs a call is a matter of speed only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DKernel {
    /// `wgsl/matmul_dense_gemv.wgsl`: lanes of a workgroup split K; 1 or 2 rows of x per
    /// workgroup, more rows spread over more workgroups (decode, several sequences).
    Gemv,
    /// `wgsl/matmul_dense_tiled.wgsl`: a [`TILE_M`] x [`TILE_N`] tile per workgroup, each
    /// output's fold tree split over this many workgroups (as [`QKernel::Tiled`]); prefill.
    Tiled(u32),
}

/// The dense kernel for an `m`-row call of an `n`-row matrix with `lanes` lanes per output:
/// the choice [`qkernel`] makes for a quantized call (GEMV up to 16 rows, tiled from there with
/// its splits, GEMV for the LM head at 17 to 23 rows).
///
/// (Measured on an H100, bf16, one pass, us, GEMV / tiled (splits): 6144 x 1536 at M = 9 29.4
/// / 47.3 (4), 16 43.0 / 50.4 (4), 24 60.9 / 53.7 (4), 32 78.7 / 57.2 (4); 1536 x 6144 at
/// M = 9 24.5 / 42.0 (16), 16 41.9 / 43.9 (16), 24 56.7 / 45.8 (16), 32 63.0 / 48.8 (16); the
/// LM head at M = 9 940 / 2267, 16 1533 / 2367, 24 2307 / 2427, 32 3079 / 2455. The kernel
/// this pair replaced (8 rows of x per workgroup sharing each W load) was slower than one of
/// them everywhere: 41.8, 50.8 and 1300 at M = 9; 1516, 1291 and 70594 at M = 512, against
/// the tiled kernel's 600, 529 and 23471.)
pub fn dkernel(m: usize, n: usize, lanes: u32) -> DKernel {
    match qkernel(m, n, lanes) {
        QKernel::Tiled(s) => DKernel::Tiled(s),
        QKernel::Gemv => DKernel::Gemv,
    }
}

/// `y = x W^T` with W dense (f32, f16 or bf16), by the kernel [`dkernel`] picks.
pub struct DenseMatmul {
    pub weights: Arc<DenseWeights>,
    /// The GEMV kernel's pipelines for 1 row, 2 to 4 and 5 or more, with their shapes.
    gemv: [(Arc<wgpu::ComputePipeline>, QPlan); 3],
    /// The tiled kernel and the step that adds split trees (`wgsl/qmatmul_combine.wgsl`).
    tiled: Arc<wgpu::ComputePipeline>,
    combine: Arc<wgpu::ComputePipeline>,
    lanes: u32,
}

impl DenseMatmul {
    /// Compiles (or fetches) the pipelines for `weights` (see [`DenseWeights::upload`]).
    pub async fn new(gpu: &Gpu, weights: Arc<DenseWeights>) -> Result<DenseMatmul, OpError> {
        let lanes = lanes_dense(weights.cols / 8);
        let dt = weights::dtype_code(weights.dtype);
        let contract = [("DT", dt), ("LANES", f64::from(lanes))];
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
        let tiled = gpu
            .pipeline(&kernels::MATMUL_DENSE_TILED, &contract)
            .await?;
        let combine = gpu.pipeline(&kernels::QMATMUL_COMBINE, &[]).await?;
        Ok(DenseMatmul {
            weights,
            gemv,
            tiled,
            combine,
            lanes,
        })
    }

    /// Lanes per output element (a function of K only).
    pub fn lanes(&self) -> u32 {
        self.lanes
    }

    /// The kernel [`prepare`](Self::prepare) uses for an `m`-row call (see [`dkernel`]).
    pub fn kernel_for(&self, m: usize) -> DKernel {
        dkernel(m, self.weights.rows, self.lanes)
    }

    /// Binds an `m`-row call: `x` holds `[m, K]` f32, `y` receives `[m, N]` f32.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        m: usize,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Result<PreparedMatmul, OpError> {
        self.prepare_with(gpu, m, x, y, self.kernel_for(m))
    }

    /// [`prepare`](Self::prepare) with the kernel chosen by the caller (same bits either way;
    /// for tests and benchmarks).
    pub fn prepare_with(
        &self,
        gpu: &Gpu,
        m: usize,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        kernel: DKernel,
    ) -> Result<PreparedMatmul, OpError> {
        let (k, n) = (self.weights.cols, self.weights.rows);
        check_call(gpu, m, k, n, x, y)?;
        let (pipeline, tile, splits) = match kernel {
            DKernel::Gemv => {
                let (p, plan) = &self.gemv[usize::from(m > 1) + usize::from(m > 4)];
                let rw = (plan.wg / self.lanes) as usize * plan.rows as usize;
                (p, (plan.mt as usize, rw), 1)
            }
            DKernel::Tiled(splits) => {
                check_splits(splits, self.lanes)?;
                (&self.tiled, (TILE_M, TILE_N), splits)
            }
        };
        let launch = Launch {
            pipeline,
            tile,
            splits,
        };
        let bindings = self.weights.splits.iter().map(|s| (&s.rows, vec![&s.w]));
        prepare_call(gpu, launch, &self.combine, (m, k, n), (x, y), bindings)
    }

    /// Host convenience, as [`QMatmul::run_host`](super::QMatmul::run_host).
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
        kernel: DKernel,
    ) -> Result<Vec<f32>, OpError> {
        let (k, n) = (self.weights.cols, self.weights.rows);
        run_batched(gpu, x, m, k, n, |rows, xb, yb| {
            self.prepare_with(gpu, rows, xb, yb, kernel)
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
