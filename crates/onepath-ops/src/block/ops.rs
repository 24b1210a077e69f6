//! One struct per block op: `new` compiles its pipeline, `prepare` checks one call's shapes
//! and buffers and returns its [`Dispatch`].

use super::{Dispatch, need};
use crate::{OpError, kernels};
use onepath_gpu::Gpu;
use std::sync::Arc;

fn positive(what: &'static str, v: f32) -> Result<(), OpError> {
    if v.is_finite() && v > 0.0 {
        return Ok(());
    }
    Err(OpError::Param {
        what,
        value: v.to_string(),
        why: "it must be finite and positive",
    })
}

fn head_dim(d: usize) -> Result<(), OpError> {
    if d.is_multiple_of(2) && (2..=512).contains(&d) {
        return Ok(());
    }
    Err(OpError::HeadDim(d))
}

fn count(op: &'static str, a: usize, b: usize) -> Result<u32, OpError> {
    a.checked_mul(b)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| OpError::TooBig(format!("{op}: {a} x {b} work items")))
}

/// `out[j] = rmsnorm(x[idx[j]]) * w` over rows of `n` (`wgsl/rms_norm.wgsl`).
pub struct RmsNorm {
    pipeline: Arc<wgpu::ComputePipeline>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NormParams {
    n: u32,
    rows: u32,
    eps: f32,
    grid_x: u32,
}

impl RmsNorm {
    pub async fn new(gpu: &Gpu) -> Result<RmsNorm, OpError> {
        let pipeline = gpu.pipeline(&kernels::RMS_NORM, &[]).await?;
        Ok(RmsNorm { pipeline })
    }

    /// `rows` output rows of `n`; `idx` holds `rows` u32 row numbers of `x`, each checked by
    /// the caller to be below `x_rows`.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        &self,
        gpu: &Gpu,
        (n, rows, x_rows): (usize, usize, usize),
        eps: f32,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        idx: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<Dispatch, OpError> {
        positive("rms_norm eps", eps)?;
        need("rms_norm", "x", x, n.saturating_mul(x_rows))?;
        need("rms_norm", "w", w, n)?;
        need("rms_norm", "idx", idx, rows)?;
        need("rms_norm", "out", out, n.saturating_mul(rows))?;
        let wgs = count("rms_norm", rows, 1)?;
        let p = NormParams {
            n: n as u32,
            rows: rows as u32,
            eps,
            grid_x: Dispatch::grid_x(wgs),
        };
        Dispatch::new(
            gpu,
            &self.pipeline,
            bytemuck::bytes_of(&p),
            &[x, w, idx, out],
            wgs,
        )
    }
}

/// `h = (h + rmsnorm(y) * wa) * scalar`, then optionally `out = rmsnorm(h) * wb`
/// (`wgsl/add_norm.wgsl`).
pub struct AddNorm {
    pipeline: Arc<wgpu::ComputePipeline>,
    /// Bound in place of the next norm's weight and output when there is none (never read or
    /// written then; two, since one buffer may not be bound read-only and writable at once).
    unused: [wgpu::Buffer; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AddNormParams {
    n: u32,
    rows: u32,
    eps: f32,
    grid_x: u32,
    scalar: f32,
    write_out: u32,
    pad: [u32; 2],
}

impl AddNorm {
    pub async fn new(gpu: &Gpu) -> Result<AddNorm, OpError> {
        let pipeline = gpu.pipeline(&kernels::ADD_NORM, &[]).await?;
        let unused = [gpu.storage("unused", 4)?, gpu.storage("unused", 4)?];
        Ok(AddNorm { pipeline, unused })
    }

    /// `next`: the next norm's weight and output, or `None` to update `h` only.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        &self,
        gpu: &Gpu,
        (n, rows): (usize, usize),
        (eps, scalar): (f32, f32),
        y: &wgpu::Buffer,
        h: &wgpu::Buffer,
        wa: &wgpu::Buffer,
        next: Option<(&wgpu::Buffer, &wgpu::Buffer)>,
    ) -> Result<Dispatch, OpError> {
        positive("add_norm eps", eps)?;
        if !scalar.is_finite() {
            return Err(OpError::Param {
                what: "layer scalar",
                value: scalar.to_string(),
                why: "it must be finite",
            });
        }
        for (name, b, e) in [("y", y, n * rows), ("h", h, n * rows), ("wa", wa, n)] {
            need("add_norm", name, b, e)?;
        }
        let (wb, out) = next.unwrap_or((&self.unused[0], &self.unused[1]));
        if next.is_some() {
            need("add_norm", "wb", wb, n)?;
            need("add_norm", "out", out, n.saturating_mul(rows))?;
        }
        let wgs = count("add_norm", rows, 1)?;
        let p = AddNormParams {
            n: n as u32,
            rows: rows as u32,
            eps,
            grid_x: Dispatch::grid_x(wgs),
            scalar,
            write_out: u32::from(next.is_some()),
            pad: [0; 2],
        };
        Dispatch::new(
            gpu,
            &self.pipeline,
            bytemuck::bytes_of(&p),
            &[y, h, wa, wb, out],
            wgs,
        )
    }
}

/// A buffer read as token rows: (buffer, values between rows, offset of the part read).
pub type View<'a> = (&'a wgpu::Buffer, usize, usize);

/// Checks that `tokens` rows of `width` values at `off` in rows of `stride` fit `buf`.
fn view(
    op: &'static str,
    name: &'static str,
    v: View<'_>,
    tokens: usize,
    width: usize,
) -> Result<(), OpError> {
    let (buf, stride, off) = v;
    let fits = off.checked_add(width).is_some_and(|end| end <= stride);
    if !fits
        || stride
            .checked_mul(tokens)
            .is_none_or(|n| u32::try_from(n).is_err())
    {
        return Err(OpError::Param {
            what: "row layout",
            value: format!("{op} {name}: {width} values at {off} in rows of {stride}"),
            why: "a row's part must lie inside the row",
        });
    }
    need(
        op,
        name,
        buf,
        tokens.saturating_sub(1) * stride + off + width,
    )
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct QParams {
    tokens: u32,
    heads: u32,
    eps: f32,
    grid_x: u32,
    x_stride: u32,
    x_off: u32,
    pad: [u32; 2],
}

/// Query norm + RoPE (`wgsl/q_prep.wgsl`), for one head dim.
pub struct QPrep {
    pipeline: Arc<wgpu::ComputePipeline>,
    d: usize,
}

impl QPrep {
    pub async fn new(gpu: &Gpu, d: usize) -> Result<QPrep, OpError> {
        head_dim(d)?;
        let pipeline = gpu.pipeline(&kernels::Q_PREP, &[("D", d as f64)]).await?;
        Ok(QPrep { pipeline, d })
    }

    /// `x`: the q projection, token rows of `stride` values with q at `off` (a stacked
    /// q/k/v output, or q alone); `out`: `[tokens, heads, D]`; `rope`: `[tokens, D/2]`
    /// (cos, sin) pairs.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        &self,
        gpu: &Gpu,
        (tokens, heads): (usize, usize),
        eps: f32,
        (x, stride, off): View<'_>,
        w: &wgpu::Buffer,
        rope: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<Dispatch, OpError> {
        positive("q_prep eps", eps)?;
        let d = self.d;
        view(
            "q_prep",
            "x",
            (x, stride, off),
            tokens,
            heads.saturating_mul(d),
        )?;
        need("q_prep", "w", w, d)?;
        need("q_prep", "rope", rope, tokens.saturating_mul(d))?;
        need(
            "q_prep",
            "out",
            out,
            tokens.saturating_mul(heads).saturating_mul(d),
        )?;
        let wgs = count("q_prep", tokens, heads)?;
        let p = QParams {
            tokens: tokens as u32,
            heads: heads as u32,
            eps,
            grid_x: Dispatch::grid_x(wgs),
            x_stride: stride as u32,
            x_off: off as u32,
            pad: [0; 2],
        };
        Dispatch::new(
            gpu,
            &self.pipeline,
            bytemuck::bytes_of(&p),
            &[x, w, rope, out],
            wgs,
        )
    }
}

/// K norm + RoPE and weightless V norm, appended to a paged KV cache
/// (`wgsl/kv_append.wgsl`), for one head dim and K/V format.
pub struct KvAppend {
    pipeline: Arc<wgpu::ComputePipeline>,
    d: usize,
    kv_bytes: usize,
}

/// The buffers of one [`KvAppend`] call.
pub struct KvAppendCall<'a> {
    /// The K and V projections: token rows with `heads * D` values at an offset (one stacked
    /// q/k/v output, or separate buffers; V may be K itself with `attention_k_eq_v`).
    pub k: View<'a>,
    pub v: View<'a>,
    /// The K norm's weight `[D]`.
    pub kw: &'a wgpu::Buffer,
    /// `[tokens, D/2]` (cos, sin).
    pub rope: &'a wgpu::Buffer,
    /// `[tokens]` u32: each token's cache slot (page * PAGE_KEYS + offset), below `slots`.
    pub slot: &'a wgpu::Buffer,
    pub k_cache: &'a wgpu::Buffer,
    pub v_cache: &'a wgpu::Buffer,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct KvParams {
    tokens: u32,
    heads: u32,
    eps: f32,
    grid_x: u32,
    slots: u32,
    k_stride: u32,
    k_off: u32,
    v_stride: u32,
    v_off: u32,
    pad: [u32; 3],
}

impl KvAppend {
    pub async fn new(gpu: &Gpu, d: usize, kv_f16: bool) -> Result<KvAppend, OpError> {
        head_dim(d)?;
        let c = [("D", d as f64), ("KV_F16", f64::from(u8::from(kv_f16)))];
        let pipeline = gpu.pipeline(&kernels::KV_APPEND, &c).await?;
        let kv_bytes = if kv_f16 { 2 } else { 4 };
        Ok(KvAppend {
            pipeline,
            d,
            kv_bytes,
        })
    }

    /// Appends `tokens` tokens of `heads` KV heads into caches of `slots` rows per head (the
    /// caller checked every slot id against `slots`).
    pub fn prepare(
        &self,
        gpu: &Gpu,
        (tokens, heads, slots): (usize, usize, usize),
        eps: f32,
        b: KvAppendCall<'_>,
    ) -> Result<Dispatch, OpError> {
        positive("kv_append eps", eps)?;
        let d = self.d;
        view("kv_append", "k", b.k, tokens, heads.saturating_mul(d))?;
        view("kv_append", "v", b.v, tokens, heads.saturating_mul(d))?;
        need("kv_append", "kw", b.kw, d)?;
        need("kv_append", "rope", b.rope, tokens.saturating_mul(d))?;
        need("kv_append", "slot", b.slot, tokens)?;
        if !slots.is_multiple_of(32) {
            return Err(OpError::Param {
                what: "KV cache slots",
                value: slots.to_string(),
                why: "the key-blocked K layout needs whole 32-row blocks",
            });
        }
        let cache = heads
            .saturating_mul(slots)
            .saturating_mul(d * self.kv_bytes / 4);
        need("kv_append", "K cache", b.k_cache, cache)?;
        need("kv_append", "V cache", b.v_cache, cache)?;
        let wgs = count("kv_append", tokens, heads)?;
        let p = KvParams {
            tokens: tokens as u32,
            heads: heads as u32,
            eps,
            grid_x: Dispatch::grid_x(wgs),
            slots: slots as u32,
            k_stride: b.k.1 as u32,
            k_off: b.k.2 as u32,
            v_stride: b.v.1 as u32,
            v_off: b.v.2 as u32,
            pad: [0; 3],
        };
        let bufs = [b.k.0, b.v.0, b.kw, b.rope, b.slot, b.k_cache, b.v_cache];
        Dispatch::new(gpu, &self.pipeline, bytemuck::bytes_of(&p), &bufs, wgs)
    }
}

/// `out[r, i] = gelu_tanh(a[r * a_stride + i]) * b[r * b_stride + b_off + i]`
/// (`wgsl/gelu_mul.wgsl`).
pub struct GeluMul {
    pipeline: Arc<wgpu::ComputePipeline>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GeluParams {
    n: u32,
    count: u32,
    a_stride: u32,
    b_stride: u32,
    b_off: u32,
    grid_x: u32,
    a_off: u32,
    pad: u32,
}

impl GeluMul {
    pub async fn new(gpu: &Gpu) -> Result<GeluMul, OpError> {
        let pipeline = gpu.pipeline(&kernels::GELU_MUL, &[]).await?;
        Ok(GeluMul { pipeline })
    }

    /// `rows` rows of `n`: `a` and `b` are read as views (`(buf, n, 0)` for plain `[rows,
    /// n]` buffers; a stacked gate/up output is `(buf, 2n, 0)` and `(buf, 2n, n)`).
    pub fn prepare(
        &self,
        gpu: &Gpu,
        (rows, n): (usize, usize),
        a: View<'_>,
        b: View<'_>,
        out: &wgpu::Buffer,
    ) -> Result<Dispatch, OpError> {
        if n == 0 {
            return Err(OpError::ZeroDim {
                op: "gelu_mul",
                name: "column",
            });
        }
        view("gelu_mul", "a", a, rows, n)?;
        view("gelu_mul", "b", b, rows, n)?;
        let ((a, a_stride, a_off), (b, b_stride, b_off)) = (a, b);
        need("gelu_mul", "out", out, rows.saturating_mul(n))?;
        let elems = count("gelu_mul", rows, n)?;
        let wgs = elems.div_ceil(256);
        let p = GeluParams {
            n: n as u32,
            count: elems,
            a_stride: a_stride as u32,
            b_stride: b_stride as u32,
            b_off: b_off as u32,
            grid_x: Dispatch::grid_x(wgs) * 256,
            a_off: a_off as u32,
            pad: 0,
        };
        Dispatch::new(
            gpu,
            &self.pipeline,
            bytemuck::bytes_of(&p),
            &[a, b, out],
            wgs,
        )
    }
}

/// The per-layer-input combine (`wgsl/ple_combine.wgsl`).
pub struct PleCombine {
    pipeline: Arc<wgpu::ComputePipeline>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PleParams {
    p: u32,
    layers: u32,
    tokens: u32,
    eps: f32,
    proj_scale: f32,
    in_scale: f32,
    grid_x: u32,
    pad: u32,
}

impl PleCombine {
    pub async fn new(gpu: &Gpu) -> Result<PleCombine, OpError> {
        let pipeline = gpu.pipeline(&kernels::PLE_COMBINE, &[]).await?;
        Ok(PleCombine { pipeline })
    }

    /// `proj`, `tok` and `out`: `[tokens, layers * p]`; `scales` = (eps, proj_scale, in_scale).
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        &self,
        gpu: &Gpu,
        (tokens, layers, p): (usize, usize, usize),
        (eps, proj_scale, in_scale): (f32, f32, f32),
        proj: &wgpu::Buffer,
        tok: &wgpu::Buffer,
        w: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<Dispatch, OpError> {
        positive("ple eps", eps)?;
        positive("ple projection scale", proj_scale)?;
        positive("ple input scale", in_scale)?;
        let all = tokens.saturating_mul(layers).saturating_mul(p);
        need("ple_combine", "proj", proj, all)?;
        need("ple_combine", "tok", tok, all)?;
        need("ple_combine", "w", w, p)?;
        need("ple_combine", "out", out, all)?;
        let wgs = count("ple_combine", tokens, layers)?;
        let prm = PleParams {
            p: p as u32,
            layers: layers as u32,
            tokens: tokens as u32,
            eps,
            proj_scale,
            in_scale,
            grid_x: Dispatch::grid_x(wgs),
            pad: 0,
        };
        let bufs = [proj, tok, w, out];
        Dispatch::new(gpu, &self.pipeline, bytemuck::bytes_of(&prm), &bufs, wgs)
    }
}

/// Final soft-cap in place and greedy argmax per row: `wgsl/softcap_argmax.wgsl` over blocks
/// of [`ARGMAX_BLOCK`] logits, then `wgsl/argmax_merge.wgsl` per row.
pub struct SoftcapArgmax {
    blocks: Arc<wgpu::ComputePipeline>,
    merge: Arc<wgpu::ComputePipeline>,
}

/// Logits per workgroup of the argmax's first pass (`BLOCK` in `wgsl/softcap_argmax.wgsl`).
pub const ARGMAX_BLOCK: usize = 4096;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ArgmaxParams {
    vocab: u32,
    rows: u32,
    softcap: f32,
    blocks: u32,
}

impl SoftcapArgmax {
    pub async fn new(gpu: &Gpu) -> Result<SoftcapArgmax, OpError> {
        let blocks = gpu.pipeline(&kernels::SOFTCAP_ARGMAX, &[]).await?;
        let merge = gpu.pipeline(&kernels::ARGMAX_MERGE, &[]).await?;
        Ok(SoftcapArgmax { blocks, merge })
    }

    /// `rows` rows of `vocab` logits; `softcap` `None` leaves them as they are. Two
    /// dispatches, recorded in order.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        (rows, vocab): (usize, usize),
        softcap: Option<f32>,
        logits: &wgpu::Buffer,
        ids: &wgpu::Buffer,
    ) -> Result<[Dispatch; 2], OpError> {
        if let Some(c) = softcap {
            positive("final soft-cap", c)?;
        }
        need(
            "softcap_argmax",
            "logits",
            logits,
            rows.saturating_mul(vocab),
        )?;
        need("softcap_argmax", "ids", ids, rows)?;
        let blocks = vocab.div_ceil(ARGMAX_BLOCK);
        let rows32 = count("softcap_argmax", rows, 1)?;
        if blocks > 65535 || rows32 > 65535 {
            return Err(OpError::TooBig(format!(
                "an argmax over {rows} rows of {vocab}"
            )));
        }
        let p = ArgmaxParams {
            vocab: vocab as u32,
            rows: rows32,
            softcap: softcap.unwrap_or(0.0),
            blocks: blocks as u32,
        };
        let cand = gpu.storage("argmax candidates", (rows.max(1) * blocks * 8) as u64)?;
        let bytes = bytemuck::bytes_of(&p);
        let mut first = Dispatch::new(gpu, &self.blocks, bytes, &[logits, &cand], 1)?;
        first.grid = [blocks as u32, rows32, 1];
        let second = Dispatch::new(gpu, &self.merge, bytes, &[&cand, ids], rows32)?;
        Ok([first, second])
    }
}
