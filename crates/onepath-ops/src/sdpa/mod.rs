//! One-path scaled dot-product attention.
//!
//! Every (sequence, query position, head) row is computed one way only: keys are cut into
//! [`CHUNK`]-key chunks counted from the row's first key, each chunk is reduced in a fixed order
//! (`wgsl/sdpa_chunk.wgsl`), and the chunk partials are folded left to right
//! (`wgsl/sdpa_merge.wgsl`). Nothing about the rest of the call (batch, padding, mask form,
//! prefill or decode, how rows are grouped into workgroups) reaches a row's arithmetic.
//!
//! Layouts: q and the output are f32 rows of `head_dim`; K and V are f16 (two per u32, no
//! shader-f16 needed) or f32. Key `j` of a row is the key row at row-major element offset
//! `kv_base + j * kv_stride` (both multiples of `head_dim`):
//! - V is stored row-major: that offset is where the row is;
//! - K is stored key-blocked ([`key_blocks`]): key row `r` (= offset / head_dim) sits in block
//!   `r / 32`, and each block holds its 32 rows column-major in 16-byte words, so that 32
//!   consecutive keys read by 32 invocations are contiguous (as vLLM blocks its key cache). A
//!   cache writer puts each new key there; [`key_blocks`] converts row-major keys.
//!
//! [`rect_rows`] builds rows for the usual `[B, H, T, D]` tensors; a token-major cache
//! `[tokens, H_kv, D]` only needs other `kv_base`/`kv_stride` values.
//!
//! A call is prepared (planned, given its buffers, bound) and then encoded:
//! [`Sdpa::prepare`] creates its plan and partials buffers; [`Sdpa::prepare_in`] takes them
//! from an [`SdpaWorkspace`], which a decode loop keeps from step to step
//! (`examples/decode_loop.rs`).

mod host;
mod plan;
mod rect;
mod workspace;

pub use host::{KvData, key_blocks, key_blocks_len};
pub use plan::{
    CHUNK, GROUP_ROWS, GROUP_WORDS, PAGE_KEYS, RowSpec, Wave, check_rows, n_chunks, plan_rows,
};
pub use rect::{Rect, rect_rows};
pub use workspace::{PreparedIn, SdpaWorkspace};
// SdpaPlan and SdpaBinding are defined below.

use crate::{OpError, kernels};
use bytemuck::Zeroable;
use onepath_gpu::{Gpu, GpuTimer};
use std::sync::Arc;

/// How K and V are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvDType {
    /// IEEE half, packed two per u32 (low half first).
    F16,
    F32,
}

impl KvDType {
    pub fn bytes(self) -> usize {
        match self {
            KvDType::F16 => 2,
            KvDType::F32 => 4,
        }
    }
}

/// What one SDPA call computes, per row: `softmax(scale * q.k [soft-capped]) . v`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SdpaConfig {
    pub head_dim: usize,
    pub kv_dtype: KvDType,
    /// Multiplies q.k (Gemma 4 uses 1.0).
    pub scale: f32,
    /// `Some(c)`: scores become `c * tanh(s / c)`.
    pub softcap: Option<f32>,
}

/// How a call's chunk work is spread over workgroups. It never changes a row's bits: both
/// kernels perform the same operations on a row in the same order (the tests compare them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// [`Schedule::Rows`] for waves with fewer than [`ROWS_BELOW_ITEMS`] work items, where
    /// a workgroup's latency bounds the time; else [`Schedule::Groups`].
    #[default]
    Auto,
    /// One workgroup per (group of up to 8 rows, chunk): K and V read once per group.
    Groups,
    /// One workgroup per (row, chunk) (`wgsl/sdpa_chunk_row.wgsl`): 8 times the workgroups,
    /// each with an eighth of the arithmetic.
    Rows,
}

/// [`Schedule::Auto`] picks the row kernel below this many (group, chunk) items in a wave.
/// Measured on an H100 (per call, and all calls in one pass), decode with 8 query heads on 1
/// KV head, 16 chunks per sequence:
///
/// | items (batch) | head_dim 256: rows / groups (us) | head_dim 512: rows / groups (us) |
/// | --- | --- | --- |
/// | 16 (1) | 23.2 / 36.8 (14.0 / 26.0) | 35.3 / 51.8 (25.6 / 41.5) |
/// | 32 (2) | 27.4 / 42.6 (18.3 / 29.4) | 38.2 / 52.4 (28.5 / 42.4) |
/// | 64 (4) | 34.3 / 44.0 (25.1 / 30.6) | 51.9 / 56.0 (40.9 / 43.7) |
/// | 128 (8) | 50.8 / 57.1 (39.4 / 33.1) | 79.9 / 61.7 (69.7 / 46.8) |
///
/// At 128 items the group kernel wins in one pass at both head dims, so it starts there.
pub const ROWS_BELOW_ITEMS: u32 = 128;

/// Head dims the kernel is written for (its P.V split needs `512 / head_dim` to be whole).
pub const HEAD_DIMS: [usize; 4] = [64, 128, 256, 512];

/// Dims of a row one merge workgroup writes (`wgsl/sdpa_merge.wgsl`: 32 invocations x vec4).
const MERGE_DIMS: u32 = 128;

/// The compiled pipelines for one [`SdpaConfig`] on one device: the chunk kernel twice (for
/// groups whose rows share one span, and for the rest; the first needs far fewer registers,
/// the arithmetic is the same) and the merge.
pub struct Sdpa {
    pub config: SdpaConfig,
    chunk_same: Arc<wgpu::ComputePipeline>,
    chunk_mixed: Arc<wgpu::ComputePipeline>,
    row_same: Arc<wgpu::ComputePipeline>,
    row_mixed: Arc<wgpu::ComputePipeline>,
    merge: Arc<wgpu::ComputePipeline>,
}

impl Sdpa {
    /// Checks the configuration and compiles (or fetches from the cache) its two pipelines.
    pub async fn new(gpu: &Gpu, config: SdpaConfig) -> Result<Sdpa, OpError> {
        if !HEAD_DIMS.contains(&config.head_dim) {
            return Err(OpError::HeadDim(config.head_dim));
        }
        if !config.scale.is_finite() {
            return Err(OpError::Param {
                what: "scale",
                value: config.scale.to_string(),
                why: "it must be finite",
            });
        }
        if let Some(c) = config.softcap
            && !(c.is_finite() && c > 0.0)
        {
            return Err(OpError::Param {
                what: "softcap",
                value: c.to_string(),
                why: "it must be finite and positive",
            });
        }
        let d = config.head_dim as f64;
        let f16 = if config.kv_dtype == KvDType::F16 {
            1.0
        } else {
            0.0
        };
        let kernel = &kernels::SDPA_CHUNK;
        let same = [("D", d), ("KV_F16", f16), ("MIXED", 0.0)];
        let mixed = [("D", d), ("KV_F16", f16), ("MIXED", 1.0)];
        let chunk_same = gpu.pipeline(kernel, &same).await?;
        let chunk_mixed = gpu.pipeline(kernel, &mixed).await?;
        let row_same = gpu.pipeline(&kernels::SDPA_CHUNK_ROW, &same).await?;
        let row_mixed = gpu.pipeline(&kernels::SDPA_CHUNK_ROW, &mixed).await?;
        let merge = gpu.pipeline(&kernels::SDPA_MERGE, &[("D", d)]).await?;
        Ok(Sdpa {
            config,
            chunk_same,
            chunk_mixed,
            row_same,
            row_mixed,
            merge,
        })
    }

    /// Uploads the plan for `rows` and binds everything: the returned value can be encoded any
    /// number of times (benchmarks reuse it; a decode step makes a new one).
    pub fn prepare(
        &self,
        gpu: &Gpu,
        rows: &[RowSpec],
        kv_stride: u32,
        bufs: SdpaBuffers<'_>,
    ) -> Result<PreparedSdpa, OpError> {
        self.prepare_with(gpu, rows, kv_stride, bufs, Schedule::Auto)
    }

    /// [`prepare`](Self::prepare) with the chunk work spread as `schedule` says (the result's
    /// bits are the same for every schedule).
    pub fn prepare_with(
        &self,
        gpu: &Gpu,
        rows: &[RowSpec],
        kv_stride: u32,
        bufs: SdpaBuffers<'_>,
        schedule: Schedule,
    ) -> Result<PreparedSdpa, OpError> {
        self.build(gpu, None, rows, kv_stride, bufs, schedule)
    }

    /// [`prepare_with`](Self::prepare_with) with the plan, partials and parameter buffers taken
    /// from `ws` (grown when too small) instead of created: what a decode loop calls each step.
    /// Same bits as `prepare_with`. Submit the returned call's work before preparing the next
    /// call in `ws` (see [`SdpaWorkspace`]).
    pub fn prepare_in<'w>(
        &self,
        gpu: &Gpu,
        ws: &'w mut SdpaWorkspace,
        rows: &[RowSpec],
        kv_stride: u32,
        bufs: SdpaBuffers<'_>,
        schedule: Schedule,
    ) -> Result<PreparedIn<'w>, OpError> {
        Ok(PreparedIn {
            call: self.build(gpu, Some(ws), rows, kv_stride, bufs, schedule)?,
            _workspace: std::marker::PhantomData,
        })
    }

    fn build(
        &self,
        gpu: &Gpu,
        ws: Option<&mut SdpaWorkspace>,
        rows: &[RowSpec],
        kv_stride: u32,
        bufs: SdpaBuffers<'_>,
        schedule: Schedule,
    ) -> Result<PreparedSdpa, OpError> {
        self.check_layout(rows, kv_stride)?;
        self.check_buffers(rows, kv_stride, &bufs)?;
        let mut own = SdpaWorkspace::new();
        let ws = ws.unwrap_or(&mut own);
        let plan = self.plan_checked(gpu, ws, rows, kv_stride, schedule)?;
        self.bind(gpu, ws, &plan, bufs)
    }

    /// Plans `rows` into `ws` (plan, partials and parameter buffers, grown when too small):
    /// the part of a call that depends on the step's sequences only. Every layer of one
    /// attention kind then [`bind`](Self::bind)s its own q, K, V and output to the same plan,
    /// so a model step plans once per kind. Submit the work recorded from one plan before
    /// planning the next one in the same workspace.
    pub fn plan(
        &self,
        gpu: &Gpu,
        ws: &mut SdpaWorkspace,
        rows: &[RowSpec],
        kv_stride: u32,
        schedule: Schedule,
    ) -> Result<SdpaPlan, OpError> {
        self.check_layout(rows, kv_stride)?;
        self.plan_checked(gpu, ws, rows, kv_stride, schedule)
    }

    /// [`plan`](Self::plan) of rows that passed [`check_layout`](Self::check_layout).
    fn plan_checked(
        &self,
        gpu: &Gpu,
        ws: &mut SdpaWorkspace,
        rows: &[RowSpec],
        kv_stride: u32,
        schedule: Schedule,
    ) -> Result<SdpaPlan, OpError> {
        let d = self.config.head_dim as u32;
        let needs = self.needs(rows, kv_stride)?;
        let record = u64::from(d + 4) * 4;
        let waves = plan::plan_checked(rows, d, gpu.max_binding().min(256 << 20).max(record))?;
        let mut planned = Vec::with_capacity(waves.len());
        for (wi, w) in waves.iter().enumerate() {
            // Items 0..n_same_items run through the `same` kernel, the rest through the
            // `mixed` one: two dispatches in the chunk pass, each with its own item range.
            let by_row = match schedule {
                Schedule::Auto => w.n_items < ROWS_BELOW_ITEMS,
                Schedule::Groups => false,
                Schedule::Rows => true,
            };
            let per_item = if by_row { GROUP_ROWS as u32 } else { 1 };
            let mut chunk = [(0u32, (0u32, 0u32)); 2];
            let mut params = [ChunkParams::zeroed(); 2];
            for (i, (first, count)) in [
                (0, w.n_same_items),
                (w.n_same_items, w.n_items - w.n_same_items),
            ]
            .into_iter()
            .enumerate()
            {
                let workgroups = count
                    .checked_mul(per_item)
                    .ok_or_else(|| OpError::TooBig("the number of workgroups".into()))?;
                let (gx, gy) = grid(workgroups);
                params[i] = ChunkParams {
                    kv_stride,
                    n_items: count,
                    rows_off: w.rows_off,
                    items_off: w.items_off + 2 * first,
                    bits_off: w.bits_off,
                    grid_x: gx,
                    scale: self.config.scale,
                    softcap: self.config.softcap.unwrap_or(0.0),
                };
                chunk[i] = (count, (gx, gy));
            }
            let (my, mz) = grid(w.n_rows);
            let mp = MergeParams {
                n_rows: w.n_rows,
                rows_off: w.rows_off,
                grid_y: my,
                pad: 0,
            };
            let plan_bytes: &[u8] = bytemuck::cast_slice(&w.plan);
            let partial_bytes = u64::from(w.n_partials.max(1)) * record;
            ws.wave(
                gpu,
                wi,
                plan_bytes,
                partial_bytes,
                [
                    bytemuck::bytes_of(&params[0]),
                    bytemuck::bytes_of(&params[1]),
                ],
                bytemuck::bytes_of(&mp),
            )?;
            planned.push(PlannedWave {
                by_row,
                chunk,
                merge_grid: (d.div_ceil(MERGE_DIMS), my, mz),
            });
        }
        Ok(SdpaPlan {
            waves: planned,
            needs,
            generation: ws.generation(),
        })
    }

    /// Binds q, K, V and the output of one layer to a plan made by [`plan`](Self::plan) in
    /// `ws`, checking that every row's keys, q and output lie inside these buffers.
    pub fn bind(
        &self,
        gpu: &Gpu,
        ws: &SdpaWorkspace,
        plan: &SdpaPlan,
        bufs: SdpaBuffers<'_>,
    ) -> Result<PreparedSdpa, OpError> {
        let mut slot = None;
        self.bind_kept(gpu, ws, plan, bufs, &mut slot)?;
        let binding = slot.expect("bind_kept fills the slot");
        let mut passes = Vec::with_capacity(plan.waves.len());
        for (wi, (w, b)) in plan.waves.iter().zip(binding.waves).enumerate() {
            let chunks = b
                .chunk
                .into_iter()
                .zip(w.chunk)
                .filter_map(|(c, (_, grid))| {
                    c.map(|(pipeline, bind)| ChunkDispatch {
                        pipeline,
                        bind,
                        grid,
                    })
                })
                .collect();
            let keep = ws.wave_buffers(wi).expect("bound above");
            passes.push(WavePass {
                chunks,
                merge_bg: b.merge,
                merge_grid: w.merge_grid,
                _keep: [
                    keep.plan.clone(),
                    keep.partials.clone(),
                    keep.merge_params.clone(),
                ],
            });
        }
        Ok(PreparedSdpa {
            merge: self.merge.clone(),
            passes,
        })
    }

    /// Makes `slot` hold bind groups of `bufs` for `plan`, reusing the ones it holds when
    /// they were made for a plan of the same shape in the same workspace buffers (the caller
    /// keeps one slot per set of buffers, e.g. per layer, and empties it when it replaces one
    /// of `bufs`). Record with [`record`](Self::record).
    pub fn bind_kept(
        &self,
        gpu: &Gpu,
        ws: &SdpaWorkspace,
        plan: &SdpaPlan,
        bufs: SdpaBuffers<'_>,
        slot: &mut Option<SdpaBinding>,
    ) -> Result<(), OpError> {
        plan.needs.check(&bufs)?;
        let key = plan.key();
        if slot.as_ref().is_some_and(|b| b.key == key) {
            return Ok(());
        }
        let mut waves = Vec::with_capacity(plan.waves.len());
        for (wi, w) in plan.waves.iter().enumerate() {
            let b = ws.wave_buffers(wi).ok_or_else(|| OpError::Param {
                what: "SDPA plan",
                value: format!("wave {wi}"),
                why: "the workspace was not planned with this plan",
            })?;
            let (same, mixed) = if w.by_row {
                (&self.row_same, &self.row_mixed)
            } else {
                (&self.chunk_same, &self.chunk_mixed)
            };
            let mut chunk = [None, None];
            for (i, p) in [same, mixed].into_iter().enumerate() {
                if w.chunk[i].0 > 0 {
                    let cu = &b.chunk_params[i];
                    let bg = gpu.bind(p, &[cu, bufs.q, bufs.k, bufs.v, &b.plan, &b.partials]);
                    chunk[i] = Some((p.clone(), bg));
                }
            }
            let merge = gpu.bind(
                &self.merge,
                &[&b.merge_params, &b.plan, &b.partials, bufs.out],
            );
            waves.push(BoundWave { chunk, merge });
        }
        *slot = Some(SdpaBinding { key, waves });
        Ok(())
    }

    /// Records `plan`'s dispatches with a binding made for it by [`bind_kept`](Self::bind_kept).
    pub fn record(&self, plan: &SdpaPlan, binding: &SdpaBinding, pass: &mut wgpu::ComputePass<'_>) {
        for (w, b) in plan.waves.iter().zip(&binding.waves) {
            for (i, c) in b.chunk.iter().enumerate() {
                if let Some((p, bg)) = c {
                    let (gx, gy) = w.chunk[i].1;
                    pass.set_pipeline(p);
                    pass.set_bind_group(0, bg, &[]);
                    pass.dispatch_workgroups(gx, gy, 1);
                }
            }
            let (x, y, z) = w.merge_grid;
            if y > 0 {
                pass.set_pipeline(&self.merge);
                pass.set_bind_group(0, &b.merge, &[]);
                pass.dispatch_workgroups(x, y, z);
            }
        }
    }

    /// Every check of `rows` that needs no buffer: keys are whole rows of head_dim values (the
    /// stride and every row's base are multiples of head_dim), every key set is one the
    /// kernels can take ([`check_rows`]), and no two rows write overlapping outputs.
    fn check_layout(&self, rows: &[RowSpec], kv_stride: u32) -> Result<(), OpError> {
        let d = self.config.head_dim as u32;
        if !kv_stride.is_multiple_of(d) {
            return Err(OpError::Param {
                what: "attention K/V stride",
                value: format!("{kv_stride} (head_dim {d})"),
                why: "keys are whole rows of head_dim values: the stride and every row's base \
                      must be multiples of head_dim",
            });
        }
        check_rows(rows, d)
    }

    /// Bytes of q, K, V and output that `rows` reach (see [`SdpaPlan`]).
    fn needs(&self, rows: &[RowSpec], kv_stride: u32) -> Result<Needs, OpError> {
        let d = self.config.head_dim as u64;
        let eb = self.config.kv_dtype.bytes() as u64;
        let mut n = Needs::default();
        for r in rows {
            n.q = n.q.max((u64::from(r.q_off) + d) * 4);
            n.out = n.out.max((u64::from(r.out_off) + d) * 4);
            if r.keys.is_empty() {
                continue;
            }
            let last = last_key_elem(r, kv_stride)?;
            n.v = n.v.max((last + d) * eb);
            n.k =
                n.k.max(key_blocks_len(last / d + 1, d as usize) as u64 * eb);
        }
        Ok(n)
    }

    /// Every key a row attends must lie inside the K and V buffers (K in its key-blocked
    /// layout, see [`key_blocks`]), and every row's q and output inside theirs: the kernels run
    /// without bounds checks, so this is where a wrong offset becomes an error.
    fn check_buffers(
        &self,
        rows: &[RowSpec],
        kv_stride: u32,
        bufs: &SdpaBuffers<'_>,
    ) -> Result<(), OpError> {
        self.needs(rows, kv_stride)?.check(bufs)
    }

    /// Plans, encodes, submits and waits: `out` holds the result when this returns.
    pub fn run(
        &self,
        gpu: &Gpu,
        rows: &[RowSpec],
        kv_stride: u32,
        bufs: SdpaBuffers<'_>,
    ) -> Result<(), OpError> {
        self.prepare(gpu, rows, kv_stride, bufs)?.run(gpu)
    }
}

/// The largest row-major element offset of a key `r` attends (through its page table when
/// paged: every slot of every page its keys touch, since a cache holds whole pages).
fn last_key_elem(r: &RowSpec, kv_stride: u32) -> Result<u64, OpError> {
    let (lo, hi) = (r.keys.lo(), r.keys.hi());
    let Some(table) = &r.pages else {
        return Ok(u64::from(r.kv_base) + u64::from(hi - 1) * u64::from(kv_stride));
    };
    let pages = table
        .get((lo / PAGE_KEYS) as usize..=((hi - 1) / PAGE_KEYS) as usize)
        .ok_or_else(|| OpError::Param {
            what: "attention page table",
            value: format!("{} pages for keys up to {}", table.len(), hi - 1),
            why: "a row's keys must lie inside the pages of its table",
        })?;
    let top = pages.iter().max().copied().unwrap_or(0);
    let slot = u64::from(top) * u64::from(PAGE_KEYS) + u64::from(PAGE_KEYS - 1);
    Ok(u64::from(r.kv_base) + slot * u64::from(kv_stride))
}

/// Bytes of each buffer the rows of a plan reach.
#[derive(Clone, Copy, Debug, Default)]
struct Needs {
    q: u64,
    k: u64,
    v: u64,
    out: u64,
}

impl Needs {
    fn check(&self, bufs: &SdpaBuffers<'_>) -> Result<(), OpError> {
        for (what, need, have) in [
            ("attention q buffer", self.q, bufs.q.size()),
            ("attention K buffer", self.k, bufs.k.size()),
            ("attention V buffer", self.v, bufs.v.size()),
            ("attention output buffer", self.out, bufs.out.size()),
        ] {
            if need > have {
                return Err(OpError::Param {
                    what,
                    value: format!("{have} bytes"),
                    why: "a row reaches past its end (K is key-blocked: whole blocks of 32 rows)",
                });
            }
        }
        Ok(())
    }
}

/// A step's rows planned into an [`SdpaWorkspace`] by [`Sdpa::plan`]: which chunk kernels
/// run with how many workgroups, wave by wave. Layers bind their buffers to it with
/// [`Sdpa::bind`].
#[derive(Clone, Debug)]
pub struct SdpaPlan {
    waves: Vec<PlannedWave>,
    needs: Needs,
    generation: u64,
}

impl SdpaPlan {
    /// What a binding to this plan depends on: the workspace's buffers and, per wave, which
    /// chunk kernels run. Plans with equal keys take the same bind groups.
    fn key(&self) -> (u64, Vec<(bool, bool, bool)>) {
        let waves = self
            .waves
            .iter()
            .map(|w| (w.by_row, w.chunk[0].0 > 0, w.chunk[1].0 > 0))
            .collect();
        (self.generation, waves)
    }
}

/// A layer's bind groups for plans of one shape ([`Sdpa::bind_kept`]): kept from step to step
/// while the plan's shape and the workspace's buffers stay the same, so a steady decode step
/// creates none. Only the plan's contents and grids change between such steps.
pub struct SdpaBinding {
    key: (u64, Vec<(bool, bool, bool)>),
    waves: Vec<BoundWave>,
}

struct BoundWave {
    chunk: [Option<(Arc<wgpu::ComputePipeline>, wgpu::BindGroup)>; 2],
    merge: wgpu::BindGroup,
}

#[derive(Clone, Debug)]
struct PlannedWave {
    by_row: bool,
    /// (items, grid) of the `same` and the `mixed` chunk dispatch.
    chunk: [(u32, (u32, u32)); 2],
    merge_grid: (u32, u32, u32),
}

/// The buffers one call reads and writes (the plan and partials are made by [`Sdpa::prepare`]).
#[derive(Clone, Copy)]
pub struct SdpaBuffers<'a> {
    pub q: &'a wgpu::Buffer,
    pub k: &'a wgpu::Buffer,
    pub v: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
}

/// A planned, bound call, ready to encode.
pub struct PreparedSdpa {
    merge: Arc<wgpu::ComputePipeline>,
    passes: Vec<WavePass>,
}

struct ChunkDispatch {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind: wgpu::BindGroup,
    grid: (u32, u32),
}

impl ChunkDispatch {
    fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        pass.dispatch_workgroups(self.grid.0, self.grid.1, 1);
    }
}

struct WavePass {
    chunks: Vec<ChunkDispatch>,
    merge_bg: wgpu::BindGroup,
    merge_grid: (u32, u32, u32),
    _keep: [wgpu::Buffer; 3],
}

impl PreparedSdpa {
    /// Number of compute passes [`encode`](Self::encode) records (one per wave).
    pub fn n_passes(&self) -> u32 {
        self.passes.len() as u32
    }

    /// Encodes, submits and waits: the output buffer holds the result when this returns.
    pub fn run(&self, gpu: &Gpu) -> Result<(), OpError> {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        self.encode(&mut enc, None);
        gpu.queue.submit([enc.finish()]);
        gpu.wait_idle()?;
        Ok(())
    }

    /// Records one compute pass per wave, holding its chunk and merge dispatches (wgpu puts a
    /// barrier between them). A pass boundary costs some drivers several microseconds, so a
    /// call is one pass, not two. With `Some((timer, first))`, pass `i` writes its timestamps
    /// to timer slot `first + i`.
    pub fn encode(&self, enc: &mut wgpu::CommandEncoder, timing: Option<(&GpuTimer, u32)>) {
        let timer = timing.map(|t| t.0);
        let first = timing.map_or(0, |t| t.1);
        for (i, w) in self.passes.iter().enumerate() {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("sdpa"),
                timestamp_writes: timer.map(|t| t.writes(first + i as u32)),
            });
            self.record_wave(w, &mut pass);
        }
    }

    /// Number of compute passes [`encode_split`](Self::encode_split) records (two per wave).
    pub fn n_split_passes(&self) -> u32 {
        2 * self.passes.len() as u32
    }

    /// As [`encode`](Self::encode), but the chunk and merge dispatches of each wave in passes
    /// of their own (timer slots `first + 2i` and `first + 2i + 1`): for timing each kernel.
    pub fn encode_split(&self, enc: &mut wgpu::CommandEncoder, timing: Option<(&GpuTimer, u32)>) {
        let timer = timing.map(|t| t.0);
        let first = timing.map_or(0, |t| t.1);
        for (i, w) in self.passes.iter().enumerate() {
            let i = first + 2 * i as u32;
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("sdpa chunk"),
                    timestamp_writes: timer.map(|t| t.writes(i)),
                });
                for c in &w.chunks {
                    c.record(&mut pass);
                }
            }
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("sdpa merge"),
                timestamp_writes: timer.map(|t| t.writes(i + 1)),
            });
            self.record_merge(w, &mut pass);
        }
    }

    /// Records every wave's chunk and merge dispatches into an open compute pass (several ops
    /// in one pass cost less than a pass each; wgpu orders the merge after its chunk pass).
    pub fn dispatch(&self, pass: &mut wgpu::ComputePass<'_>) {
        for w in &self.passes {
            self.record_wave(w, pass);
        }
    }

    fn record_wave(&self, w: &WavePass, pass: &mut wgpu::ComputePass<'_>) {
        for c in &w.chunks {
            c.record(pass);
        }
        self.record_merge(w, pass);
    }

    fn record_merge(&self, w: &WavePass, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.merge);
        pass.set_bind_group(0, &w.merge_bg, &[]);
        let (x, y, z) = w.merge_grid;
        if y > 0 {
            pass.dispatch_workgroups(x, y, z);
        }
    }
}

/// Splits `n` workgroups into a 2-D grid within WebGPU's 65535-per-dimension limit.
fn grid(n: u32) -> (u32, u32) {
    const MAX: u32 = 65535;
    if n <= MAX {
        (n, u32::from(n > 0))
    } else {
        (MAX, n.div_ceil(MAX))
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct ChunkParams {
    kv_stride: u32,
    n_items: u32,
    rows_off: u32,
    items_off: u32,
    bits_off: u32,
    grid_x: u32,
    scale: f32,
    softcap: f32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MergeParams {
    n_rows: u32,
    rows_off: u32,
    grid_y: u32,
    pad: u32,
}
