//! Batch-invariant matmul `y = x W^T` for quantized (MLX affine, 4 or 8 bits) and dense
//! (f32 / f16 / bf16) weights, plus the quantized embedding gather.
//!
//! Every output element `y[m, n]` is reduced over K in one order that depends on K and the
//! kernel's compile-time constants only (see `wgsl/qmatmul.wgsl` and
//! `wgsl/matmul_dense_gemv.wgsl`): [`lanes_quant`] / [`lanes_dense`] lanes per element, each
//! over a fixed strided set of K slices, folded by a fixed pairwise tree. The number of rows M,
//! which rows share a dispatch, and how W is split across bindings never reach that order, so
//! row `m` of an M-row call has the bits of the same row computed alone.
//!
//! Two kernels compute the quantized matmul to the same bits ([`QKernel`], picked per call by
//! [`qkernel`]): the GEMV kernel below, which splits an output's K over the lanes of a
//! workgroup, and a tiled kernel for many rows of x (`wgsl/qmatmul_tiled.wgsl`), where one
//! invocation runs an output's whole K, visiting the lanes in the fold tree's post-order. A
//! tiled call with few tiles splits every output's tree into 2 to 16 whole subtrees, each in
//! its own workgroup, and `wgsl/qmatmul_combine.wgsl` adds them with the tree's top levels.
//! The dense matmul has the same pair ([`DKernel`]: `wgsl/matmul_dense_gemv.wgsl`,
//! `wgsl/matmul_dense_tiled.wgsl`), chosen the same way.
//!
//! GEMV workgroups: `wg` invocations = `wg / LANES` slots x `LANES` lanes, a slot owning
//! `rows` rows of W (each x load serves all of them) and working on `xrows` rows of x at once
//! (each code decoded once for them), all chosen per shape by [`qplan`] / [`dplan`] (they never
//! reach the arithmetic). Grid x = tiles of rows of x, grid y (+ z) = blocks of output rows. A
//! tied LM head is a [`QMatmul`] on the embedding's [`QWeights`], which an [`EmbedGather`] can
//! share.

mod dense;
mod gather;
mod weights;

pub use dense::{DKernel, DenseMatmul, dkernel, dplan};

pub use gather::{EmbedGather, GatherRounding};
pub use weights::{BITS, DenseSplit, DenseWeights, GROUPS, MAX_GROUPS, QSplit, QWeights};

use crate::{OpError, kernels};
use onepath_gpu::{Gpu, GpuTimer, read_buffer_as};
use std::sync::Arc;

/// Rows of x per workgroup (a weight load is reused for this many rows).
pub const MT: usize = 8;
/// Rows of x of a workgroup of the tiled kernels (`wgsl/qmatmul_tiled.wgsl`,
/// `wgsl/matmul_dense_tiled.wgsl`).
pub const TILE_M: usize = 32;
/// Rows of W of a workgroup of the tiled kernels.
pub const TILE_N: usize = 64;
/// Workgroups a tiled call aims for: [`qkernel`] splits the fold trees of calls with fewer
/// tiles up to this many workgroups (about one wave of an H100: 3 per multiprocessor).
pub const TILED_GROUPS: usize = 384;
/// Most workgroups one output's fold tree is split over (tiled kernel).
pub const MAX_SPLITS: u32 = 16;

/// The two quantized kernels. They reach the same bits for every output element (the
/// numerical contract of `wgsl/qmatmul.wgsl`), so which one runs a call is a matter of speed
/// only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QKernel {
    /// `wgsl/qmatmul.wgsl`: lanes of a workgroup split K, folded in workgroup memory; the
    /// decode kernel, and the faster one for few rows of x.
    Gemv,
    /// `wgsl/qmatmul_tiled.wgsl`: a [`TILE_M`] x [`TILE_N`] tile per workgroup, each output's
    /// fold tree split over this many workgroups (1, 2, 4, 8 or 16, at most the lanes; with more
    /// than 1, `wgsl/qmatmul_combine.wgsl` adds the subtrees); for prefill and many sequences.
    Tiled(u32),
}

/// The kernel for an `m`-row call of an `n`-row matrix with `lanes` lanes per output.
///
/// Up to 16 rows the GEMV kernel is the faster. From there the tiled kernel, which runs each
/// output's fold tree (or a subtree of it) serially in one workgroup and so needs many
/// workgroups: a call whose tiles number at least [`TILED_GROUPS`] runs unsplit, unless under
/// 3/4 of their rows of x are real (the LM head at M = 17 to 23: GEMV); a call with fewer
/// tiles splits its trees over the most workgroups that stay within [`TILED_GROUPS`]
/// ([`tiled_splits`]), and runs tiled if that gives at least half of them.
///
/// (Measured on an H100, us per call, GEMV / tiled (splits): 6144 x 1536 at M = 16 41.3 /
/// 50.2 (4), 24 58.7 / 54.4 (4), 32 63.6 / 58.4 (4), 64 110.0 / 90.3 (2), 96 154.7 / 130.9
/// (1; 157.5 at 2), 128 199.8 / 133.5, 512 735 / 490; 1536 x 6144 at M = 16 48.2 / 49.2 (16),
/// 32 68.1 / 53.3 (16), 64 117.8 / 82.9 (8), 96 168.8 / 137.1 (4; 151.2 at 8), 128 220.5 /
/// 144.3 (4; 189.1 at 2), 192 322.5 / 255.2 (2; 266.1 at 4), 256 424.3 / 264.5 (2; 358.5 at
/// 1), 512 815 / 487; the 262144-row LM head at M = 16 1001 / 1175, 24 1487 / 1211, 512 30879
/// / 18550.)
pub fn qkernel(m: usize, n: usize, lanes: u32) -> QKernel {
    if m <= 2 * MT {
        return QKernel::Gemv;
    }
    let tiles = m.div_ceil(TILE_M);
    let groups = tiles * n.div_ceil(TILE_N);
    let splits = tiled_splits(m, n, lanes);
    let tiled = if groups >= TILED_GROUPS {
        4 * m >= 3 * TILE_M * tiles
    } else {
        2 * groups * splits as usize >= TILED_GROUPS
    };
    if tiled {
        QKernel::Tiled(splits)
    } else {
        QKernel::Gemv
    }
}

/// The most splits (1, 2, 4, ... [`MAX_SPLITS`], at most `lanes`) that keep a tiled call of
/// `m` rows of an `n`-row matrix within [`TILED_GROUPS`] workgroups (1 if its tiles alone
/// reach it).
pub fn tiled_splits(m: usize, n: usize, lanes: u32) -> u32 {
    let groups = m.div_ceil(TILE_M) * n.div_ceil(TILE_N);
    let mut splits = 1;
    while splits < MAX_SPLITS.min(lanes) && groups * (2 * splits as usize) <= TILED_GROUPS {
        splits *= 2;
    }
    splits
}

const MAX_GRID: u32 = 65535;

/// Invocations per workgroup of the quantized kernel below 32 lanes for more than [`MT`] rows
/// (256 from 32 lanes on; decode calls take 4 x lanes, at least 64; see [`qplan`]).
pub const QWG: usize = 128;
/// Most rows of W per invocation of the quantized kernel (not part of the numerical contract;
/// see [`qplan`]).
pub const QROWS: usize = 4;

/// Workgroup shape of the quantized kernel: invocations per workgroup and rows of W per
/// invocation. Neither reaches the arithmetic (every output element is reduced in the order
/// fixed by K alone), so the shape may depend on N and M.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QPlan {
    /// Invocations per workgroup.
    pub wg: u32,
    /// Rows of W per invocation.
    pub rows: u32,
    /// Rows of x an invocation works on at once (1 or 2): with 2, each code is decoded once
    /// for both.
    pub xrows: u32,
    /// Rows of x per workgroup ([`MT`], or 2 for matrices too small to fill the GPU).
    pub mt: u32,
}

/// The quantized kernel's workgroup shape for an `m`-row call of an `n`-row matrix with `lanes`
/// lanes per output element.
///
/// * One row of x (decode of one sequence) is bound by how many loads are in flight and by how
///   long the last invocations take: a workgroup holds 4 slots (`wg` = 4 x `lanes`, at least
///   64), and a slot takes 1 row of W while that gives at most 2^17 invocations, 2 rows up to
///   2^20 and 4 beyond (more rows per invocation means fewer, longer invocations).
/// * From 2 rows of x on the kernel is bound by instructions: invocations take rows of x two
///   at a time (`xrows` = 2, each code decoded once for both) and more rows of W (each x load
///   and unit sum serves them all). Up to [`MT`] rows: workgroups of 8 slots up to 16 lanes
///   (else 4, as above), 2 rows of W up to 2^17 invocations at 1 row, else 4. A matrix that
///   then has at most 2^17 invocations (every Gemma 4 E2B projection; not the LM head) is too
///   small to fill the GPU from one column of workgroups: each workgroup takes 2 rows of x
///   (`mt` = 2, one pass over its W) and the rows of x are spread over more workgroups; larger
///   ones take [`MT`] rows of x per workgroup, a pair at a time, re-reading W from L1. More rows
///   reuse W from L1: [`QROWS`] rows per slot, `wg` = 256 from 32 lanes on (so a workgroup still
///   holds 4 or more rows per pass), else 128.
///
/// (Measured on an H100, one pass, with scales and biases interleaved:
/// * M = 1, rows: 12288 x 1536 took 11.5 us at 1 row, 9.6 at 2, 10.0 at 4; 8960 x 1536 10.8
///   at 1 and 8.6 at 2; 3072 x 6144 (64 lanes) 14.7 at 1 and 10.5 at 2; 6144 x 1536 7.3 at 1
///   and 7.1 at 2 (within its run-to-run spread); 1536 x 12288 (64 lanes) 12.2 at 1 and 13.2 at
///   2; the 262144-row LM head is 4 to 23 % slower at 1 or 2 rows than at 4.
/// * M = 1, invocations: 1536 x 4096 (32 lanes) took 7.6 us at 128 and 8.2 at 256; 1536 x 6144
///   (64 lanes) 7.9 at 256 and 9.2 at 128; the LM head (16 lanes) 96.0 at 64, 102.1 at 128,
///   104.6 at 256 and 118 at 32; 6144 x 1536 7.3 at 64, 7.7 at 128.
/// * M = 2, 4, 8 with 2 rows of x at once, rows of W 1 / 2 / 4: 6144 x 1536 28.1 / 21.3 /
///   24.6 us at M = 8; 12288 x 1536 51.6 / 37.1 / 32.5; the LM head 986 / 615 / 532; 2048 x
///   1536 15.3 / 14.6 / 23.6; 1536 x 6144 28.3 / 28.4 / 27.9. Invocations at 16 lanes, 64 /
///   128 / 256: the LM head 531.5 / 503.4 / 538.3 us at M = 8 (145.3 / 143.2 / 147.0 at
///   M = 2); 6144 x 1536 21.3 / 20.9 at M = 8. More than 8 rows: 128 invocations took 6144 x
///   1536 721 us at M = 512, 64 took 769 and 256 786; the LM head 30979 at 128, 32681 at 64.
/// * Rows of x per workgroup, M = 8, 8 / 2 (with the rows of W above): 6144 x 1536 21.0 /
///   19.2 us, 1536 x 6144 28.4 / 22.2, 12288 x 1536 32.2 / 29.1, 8960 x 1536 31.3 / 23.6, 1536
///   x 12288 48.6 / 36.5, 2048 x 1536 18.0 / 8.6 (11.3 at 1 row of W); the LM head 501 / 494.
///   At 2 rows per workgroup, 1 row of x at a time was slower at M = 8 (6144 x 1536 21.8 us),
///   as was 1 row of W (23.3).)
pub fn qplan(n: usize, m: usize, lanes: u32) -> QPlan {
    if m > MT {
        return QPlan {
            wg: if lanes >= 32 { 256 } else { QWG as u32 },
            rows: QROWS as u32,
            xrows: 2,
            mt: MT as u32,
        };
    }
    let threads = n * lanes as usize;
    let rows: u32 = if m == 1 {
        match threads {
            t if t > 1 << 20 => 4,
            t if t > 1 << 17 => 2,
            _ => 1,
        }
    } else if threads > 1 << 17 {
        4
    } else {
        2
    };
    // 4 slots per workgroup; 8 from 2 rows of x on at up to 16 lanes.
    let slots = if m > 1 && lanes <= 16 { 8 } else { 4 };
    let small = n.div_ceil(rows as usize) * lanes as usize <= 1 << 17;
    QPlan {
        wg: (slots * lanes).max(64),
        rows,
        xrows: if m == 1 { 1 } else { 2 },
        mt: if m > 1 && small { 2 } else { MT as u32 },
    }
}

/// Lanes per output element of the quantized kernel for a row of `k` inputs at `bits` bits: a
/// function of K (and the bit width) only, part of the numerical contract. A row is
/// `units = k * bits / 128` `vec4<u32>`; each lane takes at least 3 of them (a power of two in
/// 1..=64).
pub fn lanes_quant(k: usize, bits: u32) -> u32 {
    prev_pow2(k * bits as usize / 128 / 3).min(64) as u32
}

/// Error budget of the quantized kernels, in units of f32 roundoff (2^-24) times the magnitude
/// they accumulate (`sum_k |x_k| (|s| q_k + |b|)` per output): the most roundings on any
/// product's path. That is the in-group vec4 chain (group / 4) and its combine (2), the lane's
/// fma chain over its groups (2 per group), the lane tree (log2 lanes) and the group sum of x
/// (group / 4 + 2).
pub fn quant_error_depth(k: usize, group: usize, lanes: u32) -> f64 {
    let per_lane = (k / group).div_ceil(lanes as usize);
    (group / 4 + 2 + 2 * per_lane + lanes.trailing_zeros() as usize + group / 4 + 2) as f64
}

/// Error budget of the dense kernel, as [`quant_error_depth`] with the magnitude
/// `sum_k |x_k w_k|`: 2 roundings per 8-element unit of a lane, 2 for the unit's combine and
/// the lane tree (log2 lanes).
pub fn dense_error_depth(k: usize, lanes: u32) -> f64 {
    (2 * (k / 8).div_ceil(lanes as usize) + 2 + lanes.trailing_zeros() as usize) as f64
}

/// Lanes per output element of the dense kernel for `units = K / 8` (power of two, 1..=32).
pub fn lanes_dense(units: usize) -> u32 {
    prev_pow2(units / 4).min(32) as u32
}

fn prev_pow2(v: usize) -> usize {
    if v <= 1 {
        1
    } else {
        1 << (usize::BITS - 1 - v.leading_zeros())
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MmParams {
    m: u32,
    n: u32,
    k: u32,
    y_stride: u32,
    y_col0: u32,
    n_blocks: u32,
    grid_y: u32,
    /// Workgroups per output's fold tree (tiled kernel; the GEMV kernels ignore it).
    splits: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CombineParams {
    /// Outputs (M x N), which is also the length of each split's plane.
    count: u32,
    splits: u32,
    pad: [u32; 2],
}

/// Invocations per workgroup of `wgsl/qmatmul_combine.wgsl`.
pub const COMBINE_WG: usize = 256;
/// Workgroups along x of a combine dispatch before it spills into y.
pub const COMBINE_GRID_X: usize = 32768;

/// One dispatch of a prepared call.
struct Step {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind: wgpu::BindGroup,
    grid: [u32; 3],
}

/// A bound call, ready to encode any number of times (one compute pass: one dispatch per
/// binding of W, plus the combine step of a split tiled call).
pub struct PreparedMatmul {
    steps: Vec<Step>,
    /// Uniform blocks and scratch the bind groups use.
    _keep: Vec<wgpu::Buffer>,
}

impl PreparedMatmul {
    /// Passes [`encode`](Self::encode) records (for [`GpuTimer`] sizing).
    pub fn n_passes(&self) -> u32 {
        1
    }

    /// Records one compute pass; with `Some((timer, slot))` it writes that timer slot.
    pub fn encode(&self, enc: &mut wgpu::CommandEncoder, timing: Option<(&GpuTimer, u32)>) {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("matmul"),
            timestamp_writes: timing.map(|(t, slot)| t.writes(slot)),
        });
        self.dispatch(&mut pass);
    }

    /// Records the call's dispatches into an open compute pass (several ops in one pass cost
    /// less than a pass each; wgpu still orders dependent dispatches).
    pub fn dispatch(&self, pass: &mut wgpu::ComputePass<'_>) {
        for s in &self.steps {
            pass.set_pipeline(&s.pipeline);
            pass.set_bind_group(0, &s.bind, &[]);
            let [x, y, z] = s.grid;
            pass.dispatch_workgroups(x, y, z);
        }
    }

    /// Encodes, submits and waits.
    pub fn run(&self, gpu: &Gpu) -> Result<(), OpError> {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        self.encode(&mut enc, None);
        gpu.queue.submit([enc.finish()]);
        gpu.wait_idle()?;
        Ok(())
    }
}

/// Checks an M-row call of a `[n, k]` matmul against the buffers and the device's limits.
fn check_call(
    gpu: &Gpu,
    m: usize,
    k: usize,
    n: usize,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<(), OpError> {
    if m == 0 {
        return Err(OpError::ZeroDim {
            op: "matmul",
            name: "row of x (M)",
        });
    }
    let too_big = || OpError::TooBig(format!("a {m}-row matmul of a [{n}, {k}] matrix"));
    let x_elems = m.checked_mul(k).ok_or_else(too_big)?;
    let y_elems = m.checked_mul(n).ok_or_else(too_big)?;
    let bufs = [
        ("matmul x", x, x_elems, [m, k]),
        ("matmul y", y, y_elems, [m, n]),
    ];
    for (name, buf, elems, shape) in bufs {
        if (buf.size() as u128) < elems as u128 * 4 {
            return Err(OpError::Len {
                name,
                shape: format!("{shape:?} f32"),
                expected: elems,
                actual: (buf.size() / 4) as usize,
            });
        }
        if buf.size() > gpu.max_binding() {
            return Err(OpError::TooBig(format!(
                "{name} ({} bytes, binding limit {}; call with fewer rows)",
                buf.size(),
                gpu.max_binding()
            )));
        }
    }
    if m.div_ceil(MT) > MAX_GRID as usize || y_elems as u64 > u64::from(u32::MAX) {
        return Err(OpError::TooBig(format!(
            "a {m}-row call of a {n}-row matrix (grid or 32-bit addressing)"
        )));
    }
    Ok(())
}

/// Rows per host batch so x, y and the grid stay within the device's limits.
fn host_batch(gpu: &Gpu, k: usize, n: usize) -> usize {
    let lim = gpu.max_binding() as usize;
    let by_bind = (lim / (4 * k.max(n))).max(1);
    let by_index = (u32::MAX as usize / n.max(k)).max(1);
    by_bind.min(by_index).min(MAX_GRID as usize * MT)
}

/// Runs `f` on batches of rows of `x` and concatenates the outputs (rows never interact).
async fn run_batched(
    gpu: &Gpu,
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    prep: impl Fn(usize, &wgpu::Buffer, &wgpu::Buffer) -> Result<PreparedMatmul, OpError>,
) -> Result<Vec<f32>, OpError> {
    if Some(x.len()) != m.checked_mul(k) {
        return Err(OpError::Len {
            name: "x",
            shape: format!("[{m}, {k}]"),
            expected: m.saturating_mul(k),
            actual: x.len(),
        });
    }
    if m == 0 {
        return Err(OpError::ZeroDim {
            op: "matmul",
            name: "row of x (M)",
        });
    }
    let per = host_batch(gpu, k, n);
    let mut out = Vec::with_capacity(m * n);
    for r0 in (0..m).step_by(per) {
        let rows = per.min(m - r0);
        let xb = gpu.storage_from("x", bytemuck::cast_slice(&x[r0 * k..(r0 + rows) * k]))?;
        let yb = gpu.storage("y", (rows * n * 4) as u64)?;
        prep(rows, &xb, &yb)?.run(gpu)?;
        out.extend(read_buffer_as::<f32>(gpu, &yb).await?);
    }
    Ok(out)
}

/// Grid for `n` rows of W with `rw` rows of W and `mt` rows of x per workgroup, `m` rows of x:
/// (x, y, z, blocks).
fn grid(m: usize, mt: usize, n: usize, rw: usize) -> (u32, u32, u32, u32) {
    let blocks = n.div_ceil(rw) as u32;
    let gy = blocks.min(MAX_GRID);
    (m.div_ceil(mt) as u32, gy, blocks.div_ceil(gy), blocks)
}

/// The uniform block and grid of one dispatch over the rows `r` of W (of `n_total`), with the
/// workgroup tile `(mt, rw)`: rows of x by rows of W, and `splits` workgroups per output. Every
/// kernel's grid is sized here, so this is where a call whose rows of x need more workgroups
/// along x than a grid dimension holds is refused.
fn params(
    gpu: &Gpu,
    m: usize,
    k: usize,
    n_total: usize,
    r: &std::ops::Range<usize>,
    (mt, rw): (usize, usize),
    splits: u32,
) -> Result<(wgpu::Buffer, [u32; 3]), OpError> {
    let gx = m.div_ceil(mt) * splits as usize;
    if gx > MAX_GRID as usize {
        return Err(OpError::TooBig(format!(
            "a {m}-row call in workgroups of {mt} rows of x{} ({gx} workgroups along x, limit \
             {MAX_GRID}; fewer rows, fewer splits or the tiled kernel's 32-row tiles would fit)",
            if splits > 1 {
                format!(" with {splits} splits")
            } else {
                String::new()
            }
        )));
    }
    let (gx, gy, gz, blocks) = grid(m, mt, r.len(), rw);
    let gx = gx * splits;
    let p = MmParams {
        m: m as u32,
        n: r.len() as u32,
        k: k as u32,
        y_stride: n_total as u32,
        y_col0: r.start as u32,
        n_blocks: blocks,
        grid_y: gy,
        splits,
    };
    Ok((
        gpu.uniform_from("matmul params", bytemuck::bytes_of(&p)),
        [gx, gy, gz],
    ))
}

/// Checks a tiled call's splits: a power of two, at most [`MAX_SPLITS`] and the lanes (the
/// grid they make is checked with every grid, in `params`).
fn check_splits(splits: u32, lanes: u32) -> Result<(), OpError> {
    if !splits.is_power_of_two() || splits > MAX_SPLITS.min(lanes) {
        return Err(OpError::Param {
            what: "splits of a tiled call",
            value: format!("{splits} (this matrix has {lanes} lanes)"),
            why: "a power of two, at most 16 and at most the lanes",
        });
    }
    Ok(())
}

/// The scratch a tiled call with `splits` > 1 writes its subtrees to (one `[m, n]` plane per
/// split), which the combine step adds into y; `None` for an unsplit call.
fn tree_planes(
    gpu: &Gpu,
    splits: u32,
    m: usize,
    n: usize,
) -> Result<Option<wgpu::Buffer>, OpError> {
    if splits == 1 {
        return Ok(None);
    }
    Ok(Some(gpu.storage(
        "matmul partial trees",
        (splits as usize * m * n * 4) as u64,
    )?))
}

/// How a call runs: the pipeline, its workgroup tile (rows of x, rows of W) and the workgroups
/// each output's fold tree is split over.
struct Launch<'a> {
    pipeline: &'a Arc<wgpu::ComputePipeline>,
    tile: (usize, usize),
    splits: u32,
}

/// A call's dispatches: one per binding of W (`bindings`: its rows and the weight buffers bound
/// between x and the output), each writing `y`, or, for a split tiled call, the planes that a
/// last step (`combine`, `wgsl/qmatmul_combine.wgsl`) adds into `y`.
fn prepare_call<'b>(
    gpu: &Gpu,
    launch: Launch,
    combine: &Arc<wgpu::ComputePipeline>,
    (m, k, n): (usize, usize, usize),
    (x, y): (&wgpu::Buffer, &wgpu::Buffer),
    bindings: impl Iterator<Item = (&'b std::ops::Range<usize>, Vec<&'b wgpu::Buffer>)>,
) -> Result<PreparedMatmul, OpError> {
    let part = tree_planes(gpu, launch.splits, m, n)?;
    let out = part.as_ref().unwrap_or(y);
    let (mut steps, mut keep) = (Vec::new(), Vec::new());
    for (rows, w) in bindings {
        let (u, grid) = params(gpu, m, k, n, rows, launch.tile, launch.splits)?;
        let bind = {
            let mut entries = vec![&u, x];
            entries.extend(w);
            entries.push(out);
            gpu.bind(launch.pipeline, &entries)
        };
        steps.push(Step {
            pipeline: launch.pipeline.clone(),
            bind,
            grid,
        });
        keep.push(u);
    }
    if let Some(part) = part {
        let count = m * n;
        let p = CombineParams {
            count: count as u32,
            splits: launch.splits,
            pad: [0; 2],
        };
        let u = gpu.uniform_from("combine params", bytemuck::bytes_of(&p));
        let blocks = count.div_ceil(COMBINE_WG);
        let grid = [
            blocks.min(COMBINE_GRID_X) as u32,
            blocks.div_ceil(COMBINE_GRID_X) as u32,
            1,
        ];
        steps.push(Step {
            pipeline: combine.clone(),
            bind: gpu.bind(combine, &[&u, &part, y]),
            grid,
        });
        keep.push(u);
        keep.push(part);
    }
    Ok(PreparedMatmul { steps, _keep: keep })
}

/// `y = x W^T` with W quantized (MLX affine), dequantised inside the kernel.
pub struct QMatmul {
    pub weights: Arc<QWeights>,
    /// Pipelines for calls of 1 row, of up to [`MT`] rows and of more, with their shapes.
    decode: (Arc<wgpu::ComputePipeline>, QPlan),
    few: (Arc<wgpu::ComputePipeline>, QPlan),
    batch: (Arc<wgpu::ComputePipeline>, QPlan),
    /// The tiled kernel (`wgsl/qmatmul_tiled.wgsl`) and the step that adds split trees
    /// (`wgsl/qmatmul_combine.wgsl`).
    tiled: Arc<wgpu::ComputePipeline>,
    combine: Arc<wgpu::ComputePipeline>,
    lanes: u32,
}

impl QMatmul {
    /// Compiles (or fetches) the pipelines for `weights` (see [`QWeights::upload`]): one per
    /// workgroup shape [`qplan`] picks for its N, at M = 1, at 2 to [`MT`] rows and beyond. They
    /// differ only in how rows are spread over invocations, never in the arithmetic.
    pub async fn new(gpu: &Gpu, weights: Arc<QWeights>) -> Result<QMatmul, OpError> {
        let lanes = lanes_quant(weights.cols, weights.bits);
        // The constants both kernels share: the weights' format and the numerical contract.
        let contract = [
            ("BITS", f64::from(weights.bits)),
            ("GROUP", weights.group as f64),
            ("SCALE_DT", weights.scale_code()),
            ("LANES", f64::from(lanes)),
        ];
        let build = async |plan: QPlan| -> Result<_, OpError> {
            let shape = [
                ("WG", f64::from(plan.wg)),
                ("R", f64::from(plan.rows)),
                ("XT", f64::from(plan.xrows)),
                ("MT", f64::from(plan.mt)),
            ];
            let pipeline = gpu
                .pipeline(&kernels::QMATMUL, &[&contract[..], &shape].concat())
                .await?;
            Ok((pipeline, plan))
        };
        let decode = build(qplan(weights.rows, 1, lanes)).await?;
        let few = build(qplan(weights.rows, 2, lanes)).await?;
        let batch = build(qplan(weights.rows, MT + 1, lanes)).await?;
        let tiled = gpu.pipeline(&kernels::QMATMUL_TILED, &contract).await?;
        let combine = gpu.pipeline(&kernels::QMATMUL_COMBINE, &[]).await?;
        Ok(QMatmul {
            weights,
            decode,
            few,
            batch,
            tiled,
            combine,
            lanes,
        })
    }

    /// Lanes per output element (a function of K and the bit width only).
    pub fn lanes(&self) -> u32 {
        self.lanes
    }

    /// The kernel [`prepare`](Self::prepare) uses for an `m`-row call (see [`qkernel`]).
    pub fn kernel_for(&self, m: usize) -> QKernel {
        qkernel(m, self.weights.rows, self.lanes)
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
        kernel: QKernel,
    ) -> Result<PreparedMatmul, OpError> {
        let (k, n) = (self.weights.cols, self.weights.rows);
        check_call(gpu, m, k, n, x, y)?;
        let (pipeline, tile, splits) = match kernel {
            QKernel::Tiled(splits) => {
                check_splits(splits, self.lanes)?;
                (&self.tiled, (TILE_M, TILE_N), splits)
            }
            QKernel::Gemv => {
                let (pipeline, plan) = if m > MT {
                    &self.batch
                } else if m > 1 {
                    &self.few
                } else {
                    &self.decode
                };
                let rw = (plan.wg / self.lanes) as usize * plan.rows as usize;
                (pipeline, (plan.mt as usize, rw), 1)
            }
        };
        let launch = Launch {
            pipeline,
            tile,
            splits,
        };
        let bindings = self
            .weights
            .splits
            .iter()
            .map(|s| (&s.rows, vec![&s.w, &s.sb]));
        prepare_call(gpu, launch, &self.combine, (m, k, n), (x, y), bindings)
    }

    /// Host convenience: uploads `x` (`[m, K]`), runs (in row batches if x or y would exceed a
    /// binding) and returns `y` (`[m, N]`).
    pub async fn run_host(&self, gpu: &Gpu, x: &[f32], m: usize) -> Result<Vec<f32>, OpError> {
        let (k, n) = (self.weights.cols, self.weights.rows);
        run_batched(gpu, x, m, k, n, |rows, xb, yb| {
            self.prepare(gpu, rows, xb, yb)
        })
        .await
    }

    /// [`run_host`](Self::run_host) with the kernel chosen by the caller.
    pub async fn run_host_with(
        &self,
        gpu: &Gpu,
        x: &[f32],
        m: usize,
        kernel: QKernel,
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

    /// Decode plans by invocations; from 2 rows of x on, at least 2 rows of W, and 2 rows of x
    /// per workgroup for every matrix but LM-head-sized ones.
    #[test]
    fn workgroup_shapes() {
        for (n, m, lanes, rows, mt) in [
            (6144, 1, 16, 1, 8),
            (12288, 1, 16, 2, 8),
            (262144, 1, 16, 4, 8),
            (2048, 2, 16, 2, 2),
            (6144, 8, 16, 2, 2),
            (1536, 4, 64, 2, 2),
            (12288, 8, 16, 4, 2),
            (32768, 8, 16, 4, 2),
            (32769, 8, 16, 4, 8),
            (262144, 8, 16, 4, 8),
            (6144, 9, 16, 4, 8),
        ] {
            let p = qplan(n, m, lanes);
            assert_eq!(
                (p.rows, p.mt),
                (rows, mt),
                "N = {n}, M = {m}, {lanes} lanes"
            );
        }
    }

    /// Decode and up to 16 sequences run the GEMV kernel; more rows (prefill, many sequences)
    /// the tiled one, its trees split over workgroups where the tiles alone are too few.
    #[test]
    fn kernel_choice() {
        for (m, n, lanes, want) in [
            (1, 262144, 16, QKernel::Gemv),
            (16, 262144, 16, QKernel::Gemv),
            (16, 6144, 16, QKernel::Gemv),
            (20, 262144, 16, QKernel::Gemv), // 3/8 of each tile would be padding
            (24, 262144, 16, QKernel::Tiled(1)),
            (512, 6144, 16, QKernel::Tiled(1)),
            (512, 1536, 64, QKernel::Tiled(1)),
            (96, 6144, 16, QKernel::Tiled(1)), // 288 tiles; 2 splits would be 576
            (64, 6144, 16, QKernel::Tiled(2)), // 192 tiles
            (24, 6144, 16, QKernel::Tiled(4)), // 96 tiles
            (256, 1536, 64, QKernel::Tiled(2)), // 192 tiles
            (128, 1536, 64, QKernel::Tiled(4)), // 96 tiles
            (32, 1536, 64, QKernel::Tiled(16)), // 24 tiles
            (300, 70, 16, QKernel::Tiled(16)), // 20 tiles
            (300, 70, 2, QKernel::Gemv),       // 20 tiles, at most 2 splits
        ] {
            assert_eq!(
                qkernel(m, n, lanes),
                want,
                "M = {m}, N = {n}, {lanes} lanes"
            );
        }
    }
}
