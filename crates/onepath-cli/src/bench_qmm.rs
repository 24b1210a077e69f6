//! `onepath bench qmatmul`: the batch-invariant quantized matmul on Gemma 4 E2B's MLP and
//! LM-head shapes (4-bit, group 64, bf16 scales), decode (M = 1) and prefill (M = 512).
//!
//! Time is the GPU timestamp span of back-to-back matmul passes, per call (the median of
//! `util::SPANS` spans), where the device has timestamps, else wall clock. Weights are random (never zeros) and rotated among enough copies that every
//! call reads at least 256 MiB that the previous calls did not, so M = 1 times are DRAM times.
//!
//! Besides the headline (a pass per call), each case is timed with every call in one compute
//! pass (`one_pass_us`: calls write the same y, so each waits for the one before, as a model's
//! chain of ops does) and, at M <= 8, with calls that write different y in one pass
//! (`one_pass_independent_us`: no barrier between them, as independent projections of one step
//! could run; what a call costs the GPU when it need not wait).
//!
//! Each case also checks, on the device, that the first and last rows of the timed call equal
//! the same rows computed alone (M = 1, the decode kernel) bit for bit (`rows_equal_m1`).

use crate::util::{SPANS, adapter_json};
use onepath_gpu::{Gpu, read_buffer_as, wgpu};
use onepath_ops::qmm::{
    DKernel, DenseMatmul, DenseWeights, PreparedMatmul, QKernel, QMatmul, QWeights,
};
use onepath_weights::{DType, QuantParams, QuantizedTensor};
use serde_json::json;
use std::borrow::Cow;
use std::process::ExitCode;

type R<T> = Result<T, Box<dyn std::error::Error>>;

const ROTATE_BYTES: u64 = 256 << 20;
const MAX_COPIES: u64 = 64;
const BITS: u32 = 4;
const GROUP: usize = 64;

/// `--kernel`: which kernel runs the timed calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelArg {
    /// The kernel the op's `prepare` picks for the call (`qmm::qkernel`, `qmm::dkernel`).
    Auto,
    /// The GEMV kernel (the decode kernel, whose workgroups take 2 or 8 rows of x each).
    Gemv,
    /// The tiled kernel, its trees split as `qmm::tiled_splits` says.
    Tiled,
}

/// The kernel a timed call runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chosen {
    Q(QKernel),
    D(DKernel),
}

impl Chosen {
    /// Its name in the table and the JSON.
    fn name(self) -> String {
        let tiled = |pre: &str, s: u32| match s {
            1 => format!("{pre}tiled"),
            s => format!("{pre}tiled/{s}"),
        };
        match self {
            Chosen::Q(QKernel::Gemv) => "gemv".into(),
            Chosen::Q(QKernel::Tiled(s)) => tiled("", s),
            Chosen::D(DKernel::Gemv) => "dgemv".into(),
            Chosen::D(DKernel::Tiled(s)) => tiled("d", s),
        }
    }
}

/// `--weights`: the weight format, and so the kernel family, the bench times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightsArg {
    /// MLX affine 4-bit, group 64, bf16 scales and biases (the quantized kernels).
    Q4,
    /// Unquantized bf16 (the dense kernel, as for a Hugging Face checkpoint loaded as is).
    Bf16,
    /// Unquantized f16 (the dense kernel).
    F16,
}

/// What `onepath bench qmatmul` runs.
pub struct QmmGrid {
    pub iters: u32,
    pub ms: Vec<usize>,
    pub shapes: Vec<String>,
    pub kernel: KernelArg,
    pub weights: WeightsArg,
}

/// A matrix the bench times: quantized, or dense bytes of `dtype`.
pub(crate) enum Src {
    Q(QuantizedTensor<'static>),
    Dense {
        bytes: Vec<u8>,
        dtype: DType,
        n: usize,
        k: usize,
    },
}

impl Src {
    pub(crate) fn new(w: WeightsArg, n: usize, k: usize) -> R<Src> {
        let dtype = match w {
            WeightsArg::Q4 => return Ok(Src::Q(random_weights(n, k)?)),
            WeightsArg::Bf16 => DType::BF16,
            WeightsArg::F16 => DType::F16,
        };
        let mut bytes = Vec::with_capacity(n * k * 2);
        for c in random_bytes(4, n * k * 2).chunks_exact(2) {
            let v = (f32::from(u16::from_le_bytes([c[0], c[1]])) / 65535.0 - 0.5) * 0.1;
            dtype.encode(v, &mut bytes);
        }
        Ok(Src::Dense { bytes, dtype, n, k })
    }

    fn shape(&self) -> (usize, usize) {
        match self {
            Src::Q(q) => (q.rows(), q.cols()),
            Src::Dense { n, k, .. } => (*n, *k),
        }
    }

    /// Bytes one M = 1 call must read.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Src::Q(q) => q.weight_bytes().len() + q.scales_bytes().len() + q.biases_bytes().len(),
            Src::Dense { bytes, .. } => bytes.len(),
        }
    }

    /// One copy on the GPU, its pipelines compiled.
    pub(crate) fn upload(&self, gpu: &Gpu) -> R<Op> {
        Ok(match self {
            Src::Q(q) => Op::Q(pollster::block_on(QMatmul::new(
                gpu,
                QWeights::upload(gpu, q)?,
            ))?),
            Src::Dense { bytes, dtype, n, k } => {
                let w = DenseWeights::upload(gpu, bytes, *dtype, *n, *k, None)?;
                Op::Dense(pollster::block_on(DenseMatmul::new(gpu, w))?)
            }
        })
    }
}

/// An uploaded matrix with its op.
pub(crate) enum Op {
    Q(QMatmul),
    Dense(DenseMatmul),
}

impl Op {
    /// The kernel a call of `m` rows runs under `--kernel`.
    pub(crate) fn kernel(&self, m: usize, arg: KernelArg) -> R<Chosen> {
        use onepath_ops::qmm::tiled_splits;
        Ok(match (self, arg) {
            (Op::Q(op), KernelArg::Auto) => Chosen::Q(op.kernel_for(m)),
            (Op::Q(_), KernelArg::Gemv) => Chosen::Q(QKernel::Gemv),
            (Op::Q(op), KernelArg::Tiled) => {
                Chosen::Q(QKernel::Tiled(tiled_splits(m, op.weights.rows, op.lanes())))
            }
            (Op::Dense(op), KernelArg::Auto) => Chosen::D(op.kernel_for(m)),
            (Op::Dense(_), KernelArg::Gemv) => Chosen::D(DKernel::Gemv),
            (Op::Dense(op), KernelArg::Tiled) => {
                Chosen::D(DKernel::Tiled(tiled_splits(m, op.weights.rows, op.lanes())))
            }
        })
    }

    /// The kernel of a one-row call (decode).
    fn decode_kernel(&self) -> Chosen {
        match self {
            Op::Q(_) => Chosen::Q(QKernel::Gemv),
            Op::Dense(_) => Chosen::D(DKernel::Gemv),
        }
    }

    pub(crate) fn prepare(
        &self,
        gpu: &Gpu,
        m: usize,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        kernel: Chosen,
    ) -> R<PreparedMatmul> {
        Ok(match (self, kernel) {
            (Op::Q(op), Chosen::Q(k)) => op.prepare_with(gpu, m, x, y, k)?,
            (Op::Dense(op), Chosen::D(k)) => op.prepare_with(gpu, m, x, y, k)?,
            _ => return Err(format!("kernel {kernel:?} does not fit these weights").into()),
        })
    }
}

/// Parses `"NxK"`.
fn parse_shape(s: &str) -> R<(usize, usize)> {
    let (n, k) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("shape `{s}`: expected NxK, e.g. 6144x1536"))?;
    Ok((n.trim().parse()?, k.trim().parse()?))
}

/// Bytes from a fixed xorshift stream (reproducible, fast enough for 200 MB).
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// A random `[n, k]` 4-bit quantized matrix with bf16 scales/biases of realistic size.
fn random_weights(n: usize, k: usize) -> R<QuantizedTensor<'static>> {
    let groups = n * (k / GROUP);
    let bf = |seed: u64, mag: f32| -> Vec<u8> {
        random_bytes(seed, groups * 2)
            .chunks_exact(2)
            .flat_map(|c| {
                let u = f32::from(u16::from_le_bytes([c[0], c[1]])) / 65535.0 - 0.5;
                half::bf16::from_f32(u * mag).to_bits().to_le_bytes()
            })
            .collect()
    };
    let scales = bf(2, 0.01);
    let biases = bf(3, 0.1);
    let params = QuantParams::new(GROUP, BITS, "bench")?;
    Ok(QuantizedTensor::new(
        "bench",
        vec![n, k],
        params,
        DType::BF16,
        Cow::Owned(random_bytes(1, n * k * BITS as usize / 8)),
        Cow::Owned(scales),
        Cow::Owned(biases),
    )?)
}

struct Timing {
    gpu_ns: Option<f64>,
    /// The spans behind `gpu_ns` (their median), per call.
    gpu_runs_ns: Vec<f64>,
    wall_ns: f64,
    /// GPU ns inside the pass (begin to end), gaps between calls excluded.
    pass_ns: Option<f64>,
    /// GPU ns per call with all calls in one compute pass.
    one_pass_ns: Option<f64>,
    /// As `one_pass_ns` with every call writing its own y (no barriers); decode cases only.
    independent_ns: Option<f64>,
    copies: usize,
    kernel: Chosen,
    /// The first and last rows of the timed call equal the same rows computed alone.
    rows_equal_m1: bool,
}

/// Row `r` of the `[_, n]` f32 buffer `y`, as bits.
fn row_bits(gpu: &Gpu, y: &wgpu::Buffer, r: usize, n: usize) -> R<Vec<u32>> {
    let dst = gpu.storage("row", (n * 4) as u64)?;
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(y, (r * n * 4) as u64, &dst, 0, (n * 4) as u64);
    gpu.queue.submit([enc.finish()]);
    Ok(pollster::block_on(read_buffer_as::<u32>(gpu, &dst))?)
}

/// Whether rows 0 and m - 1 of `y` (an m-row call on `xs`) equal those rows computed alone
/// (the decode kernel).
fn rows_equal_m1(
    gpu: &Gpu,
    op: &Op,
    (n, k): (usize, usize),
    xs: &[f32],
    y: &wgpu::Buffer,
    m: usize,
) -> R<bool> {
    let y1 = gpu.storage("y1", (n * 4) as u64)?;
    for r in [0, m - 1] {
        let x1 = gpu.storage_from("x1", bytemuck::cast_slice(&xs[r * k..(r + 1) * k]))?;
        op.prepare(gpu, 1, &x1, &y1, op.decode_kernel())?.run(gpu)?;
        if row_bits(gpu, y, r, n)? != pollster::block_on(read_buffer_as::<u32>(gpu, &y1))? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Time of one `m`-row call (see `util::time_calls`), rotating among weight copies.
fn time_case(gpu: &Gpu, src: &Src, m: usize, iters: u32, kernel: KernelArg) -> R<Timing> {
    let (n, k) = src.shape();
    let y_bytes = (m * n * 4) as u64;
    if y_bytes > gpu.max_binding() {
        return Err(format!(
            "y ({y_bytes} bytes) exceeds this device's binding limit of {} bytes",
            gpu.max_binding()
        )
        .into());
    }
    let copies = (ROTATE_BYTES.div_ceil(src.bytes() as u64)).clamp(1, MAX_COPIES) as usize;
    let ops = (0..copies)
        .map(|_| src.upload(gpu))
        .collect::<R<Vec<Op>>>()?;
    let xs = crate::util::rms_rows(5, m * k, k);
    let x = gpu.storage_from("x", bytemuck::cast_slice(&xs))?;
    let y = gpu.storage("y", y_bytes)?;
    let chosen = ops[0].kernel(m, kernel)?;
    let prepared = ops
        .iter()
        .map(|op| op.prepare(gpu, m, &x, &y, chosen))
        .collect::<R<Vec<_>>>()?;
    let t = crate::util::time_calls(gpu, copies, 1, iters, |enc, i, timing| {
        prepared[i].encode(enc, timing)
    })?;
    let pass_ns = crate::util::time_passes(gpu, copies, 1, iters, |enc, i, timing| {
        prepared[i].encode(enc, timing)
    })?;
    let one_pass_ns =
        crate::util::time_one_pass(gpu, copies, iters, |pass, i| prepared[i].dispatch(pass))?;
    // Independent calls: one y per call of the pass (decode only: M = 512 outputs are large).
    let independent_ns = if m <= onepath_ops::qmm::MT {
        let calls = (iters as usize).max(copies);
        let mut ind = Vec::with_capacity(calls);
        for (i, w) in (0..calls).zip(ops.iter().cycle()) {
            let yi = gpu.storage(&format!("y{i}"), y_bytes)?;
            ind.push(w.prepare(gpu, m, &x, &yi, chosen)?);
        }
        crate::util::time_one_pass(gpu, calls, iters, |pass, i| ind[i].dispatch(pass))?
    } else {
        None
    };
    // y now holds the last timed call's output (every copy holds the same weights).
    let rows_equal_m1 = rows_equal_m1(gpu, &ops[0], (n, k), &xs, &y, m)?;
    Ok(Timing {
        kernel: chosen,
        rows_equal_m1,
        one_pass_ns,
        independent_ns,
        gpu_ns: t.gpu_ns,
        gpu_runs_ns: t.gpu_runs_ns,
        wall_ns: t.wall_ns,
        pass_ns: t.gpu_ns.and(pass_ns.first().copied()),
        copies,
    })
}

/// Runs the grid `shapes x ms` and prints a table (or one JSON object).
pub fn run(gpu: &Gpu, grid: &QmmGrid, as_json: bool) -> R<ExitCode> {
    let iters = grid.iters.max(1);
    let mut all_equal = true;
    if !as_json {
        println!("adapter: {}", gpu.describe());
        let what = match grid.weights {
            WeightsArg::Q4 => format!("{BITS}-bit group {GROUP}, bf16 scales/biases"),
            WeightsArg::Bf16 => "dense bf16 W".into(),
            WeightsArg::F16 => "dense f16 W".into(),
        };
        println!(
            "matmul y = x W^T, {what}; time = GPU \
             timestamps (first to last of {iters} back-to-back calls after a 0.3 s warm-up, per call;\nmedian of {SPANS} such spans) where available, else wall clock\n"
        );
        println!(
            "{:>14} {:>5} {:>8} {:>11} {:>11} {:>9} {:>9} {:>10} {:>11} {:>11} {:>5}",
            "N x K",
            "M",
            "kernel",
            "time (us)",
            "wall (us)",
            "GB/s",
            "TFLOP/s",
            "in-pass us",
            "1-pass (us)",
            "1-pass ind.",
            "=M1"
        );
    }
    let mut rows = Vec::new();
    for s in &grid.shapes {
        let (n, k) = parse_shape(s)?;
        let q = match Src::new(grid.weights, n, k) {
            Ok(q) => q,
            Err(e) => {
                rows.push(json!({"n": n, "k": k, "skipped": e.to_string()}));
                if !as_json {
                    println!("{:>14} skipped: {e}", format!("{n}x{k}"));
                }
                continue;
            }
        };
        let wbytes = q.bytes() as f64;
        for &m in &grid.ms {
            let shape = format!("{n}x{k}");
            match time_case(gpu, &q, m, iters, grid.kernel) {
                Ok(t) => {
                    all_equal &= t.rows_equal_m1;
                    let kname = t.kernel.name();
                    let ns = t.gpu_ns.unwrap_or(t.wall_ns);
                    let gbs = wbytes / ns;
                    let tflops = 2.0 * (m * n * k) as f64 / ns / 1e3;
                    if !as_json {
                        let g = t.gpu_ns.map_or("-".into(), |x| format!("{:.1}", x / 1e3));
                        println!(
                            "{shape:>14} {m:>5} {kname:>8} {g:>11} {:>11.1} {:>9} {:>9} {:>10} {:>11} {:>11} {:>5}",
                            t.wall_ns / 1e3,
                            sig3(gbs),
                            sig3(tflops),
                            t.pass_ns.map_or("-".into(), |x| format!("{:.1}", x / 1e3)),
                            t.one_pass_ns
                                .map_or("-".into(), |x| format!("{:.1}", x / 1e3)),
                            t.independent_ns
                                .map_or("-".into(), |x| format!("{:.1}", x / 1e3)),
                            crate::util::yes(t.rows_equal_m1)
                        );
                    }
                    rows.push(json!({"n": n, "k": k, "m": m, "kernel": kname,
                        "rows_equal_m1": t.rows_equal_m1,
                        "gpu_us": t.gpu_ns.map(|x| x / 1e3), "gpu_runs_us": t.gpu_runs_ns.iter().map(|x| x / 1e3).collect::<Vec<_>>(), "wall_us": t.wall_ns / 1e3,
                        "pass_us": t.pass_ns.map(|x| x / 1e3),
                        "one_pass_us": t.one_pass_ns.map(|x| x / 1e3),
                        "one_pass_independent_us": t.independent_ns.map(|x| x / 1e3), "weight_bytes": wbytes, "effective_gb_s": gbs, "tflop_s": tflops,
                        "weight_copies": t.copies}));
                }
                Err(e) => {
                    if !as_json {
                        println!("{shape:>14} {m:>5} skipped: {e}");
                    }
                    rows.push(json!({"n": n, "k": k, "m": m, "skipped": e.to_string()}));
                }
            }
        }
    }
    if as_json {
        let format = match grid.weights {
            WeightsArg::Q4 => json!({"bits": BITS, "group_size": GROUP, "scale_dtype": "bf16"}),
            WeightsArg::Bf16 => json!({"dense": "bf16"}),
            WeightsArg::F16 => json!({"dense": "f16"}),
        };
        let out = json!({"adapter": adapter_json(gpu), "bench": "qmatmul", "weights": format,
            "bits": (grid.weights == WeightsArg::Q4).then_some(BITS),
            "group_size": (grid.weights == WeightsArg::Q4).then_some(GROUP), "scale_dtype": "bf16", "iters": iters,
            "all_rows_equal_m1": all_equal, "results": rows});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "\nGB/s = bytes of packed weights + scales + biases / time. Peer figure: \
             bench/peers/torch_int4.py, measured in the same session (BENCHMARKS.md).\n\
             in-pass: one call alone in its pass; 1-pass: calls in one pass, each waiting for the \
             one before; 1-pass ind.: calls in one pass writing different outputs (M <= 8).\n\
             kernel: gemv (K split over a workgroup's lanes) or tiled (/s: each output's fold \
             tree split over s workgroups); dgemv / dtiled: the dense kernels; =M1: rows 0 and M-1 of the \
             timed call equal the same rows computed alone (M = 1), bit for bit."
        );
    }
    Ok(if all_equal {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: a row of a batched call differs from the same row computed alone");
        ExitCode::FAILURE
    })
}

/// Three significant digits (slow software adapters give tiny numbers).
fn sig3(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        let d = (2 - v.abs().log10().floor() as i32).clamp(0, 9) as usize;
        format!("{v:.d$}")
    }
}
