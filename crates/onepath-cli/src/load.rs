//! `onepath load`: opens a checkpoint the way a model will (a `.safetensors` file or a
//! directory, single-file or sharded, MLX-quantized or float), optionally quantizes its float
//! linears at load time with MLX's rule (`--quantize 4`), puts every linear layer on the GPU
//! and checks one call of each:
//! - against an f64 reference computed on the CPU from the stored values (the kernel's error
//!   budget: `qmm::quant_error_depth` / `qmm::dense_error_depth` f32 roundings of the
//!   magnitude it accumulates);
//! - bit for bit, rows 0 and 2 of a 3-row call against the same rows computed alone, with
//!   every kernel (GEMV and tiled, for quantized and for dense weights).
//!
//! A linear is any 2-D `<path>.weight` (an MLX triple's packed u32 weight included). Linears
//! are uploaded and checked one at a time, so the GPU holds one at once. A lone `.safetensors`
//! file takes its quantization config from a `config.json` beside it, as a directory does.

use crate::util::{adapter_json, rms_rows};
use onepath_gpu::Gpu;
use onepath_ops::qmm::{
    DKernel, DenseMatmul, DenseWeights, QKernel, QMatmul, QWeights, dense_error_depth,
    quant_error_depth,
};
use onepath_ref::roundoff_ratio;
use onepath_weights::{Checkpoint, DType, Linear, QuantParams, QuantizedTensor, TensorView};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

type R<T> = Result<T, Box<dyn std::error::Error>>;

/// What `onepath load` does.
pub struct LoadArgs {
    pub path: PathBuf,
    /// Quantize float linears at load time to this many bits (4 or 8).
    pub quantize: Option<u32>,
    /// Group size for `quantize`.
    pub group_size: usize,
    /// Only linears whose path starts with this.
    pub prefix: Option<String>,
    /// Plan storage bindings of at most this many bytes (e.g. 128 MiB, as browsers give),
    /// splitting larger matrices by rows; the device's own limit if smaller.
    pub max_binding: Option<u64>,
}

/// Rows of x of each check call.
const ROWS: usize = 3;
/// Weights per block of the CPU reference (bounds its memory on large tables: 16 MiB a
/// thread).
const REF_BLOCK: usize = 1 << 20;

/// One linear's outcome.
struct Report {
    path: String,
    shape: [usize; 2],
    stored: String,
    on_gpu: String,
    gpu_bytes: u64,
    bindings: usize,
    check: Result<Check, String>,
}

struct Check {
    /// Largest `|y - y_ref| / (U * mass)` over the call's outputs and kernels.
    worst_ratio: f64,
    budget: f64,
    /// Rows 0 and ROWS - 1 of every kernel's call equal those rows computed alone.
    rows_equal_alone: bool,
    kernels: Vec<&'static str>,
}

impl Check {
    fn new(budget: f64) -> Check {
        Check {
            worst_ratio: 0.0,
            budget,
            rows_equal_alone: true,
            kernels: Vec::new(),
        }
    }

    /// Adds kernel `name`'s call `y` (ROWS rows of `n`): its error against the reference
    /// (`want`, `mass`) and whether its first and last rows equal those rows `alone`.
    fn add(
        &mut self,
        name: &'static str,
        y: &[f32],
        (want, mass): (&[f64], &[f64]),
        alone: &[Vec<f32>; 2],
        n: usize,
    ) {
        self.worst_ratio = self.worst_ratio.max(roundoff_ratio(want, y, mass));
        self.rows_equal_alone &= rows_equal(y, alone, n);
        self.kernels.push(name);
    }

    fn ok(&self) -> bool {
        self.worst_ratio <= self.budget && self.rows_equal_alone
    }
}

fn quant_name(bits: u32, group: usize, scales: DType) -> String {
    format!("q{bits} g{group} {scales}")
}

/// The paths (`<path>.weight` minus `.weight`) of every 2-D weight, sorted.
fn linear_paths(ckpt: &Checkpoint, prefix: Option<&str>) -> Vec<String> {
    ckpt.tensor_names()
        .into_iter()
        .filter(|n| prefix.is_none_or(|p| n.starts_with(p)))
        .filter_map(|n| n.strip_suffix(".weight"))
        .filter(|p| {
            ckpt.tensor(&format!("{p}.weight"))
                .map_or(true, |t| t.shape().len() == 2)
        })
        .map(str::to_string)
        .collect()
}

/// `rows` rows of a float tensor from row `r0`, as f32.
fn float_rows(w: &TensorView, k: usize, r0: usize, rows: usize) -> Vec<f32> {
    let dt = w.dtype();
    w.data()[r0 * k * dt.size()..(r0 + rows) * k * dt.size()]
        .chunks_exact(dt.size())
        .map(|c| dt.decode(c).unwrap_or(f32::NAN))
        .collect()
}

/// A block of W for the reference: per (row, input), the weight and the magnitude weight the
/// kernel accumulates at, both as f64.
type RefBlock = Result<(Vec<f64>, Vec<f64>), String>;

/// One thread's share of the reference: per block, its first row and its outputs and
/// magnitudes (`[ROWS, rows]`, row-major).
type RefPart = Result<Vec<(usize, Vec<f64>, Vec<f64>)>, String>;

/// Reference outputs and magnitudes (`[ROWS, n]`, f64) from a source of W rows (`block(r0,
/// rows)`), in blocks of about REF_BLOCK weights spread over the CPU's threads.
fn reference(
    x: &[f32],
    n: usize,
    k: usize,
    block: impl Fn(usize, usize) -> RefBlock + Sync,
) -> R<(Vec<f64>, Vec<f64>)> {
    let per = (REF_BLOCK / k).max(1);
    let starts: Vec<usize> = (0..n).step_by(per).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(starts.len());
    let one = |t: usize| -> RefPart {
        let mut out = Vec::new();
        for &r0 in starts.iter().skip(t).step_by(threads) {
            let rows = per.min(n - r0);
            let (w, wa) = block(r0, rows)?;
            let (mut s_out, mut a_out) = (vec![0.0; ROWS * rows], vec![0.0; ROWS * rows]);
            for r in 0..ROWS {
                let xr = &x[r * k..(r + 1) * k];
                for c in 0..rows {
                    let (wr, war) = (&w[c * k..(c + 1) * k], &wa[c * k..(c + 1) * k]);
                    let (mut s, mut a) = (0.0, 0.0);
                    for i in 0..k {
                        let xv = f64::from(xr[i]);
                        s += xv * wr[i];
                        a += xv.abs() * war[i];
                    }
                    s_out[r * rows + c] = s;
                    a_out[r * rows + c] = a;
                }
            }
            out.push((r0, s_out, a_out));
        }
        Ok(out)
    };
    let parts = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads).map(|t| sc.spawn(move || one(t))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a reference thread panicked".into()))
            })
            .collect::<Vec<_>>()
    });
    let (mut want, mut mass) = (vec![0.0; ROWS * n], vec![0.0; ROWS * n]);
    for part in parts {
        for (r0, s, a) in part? {
            let rows = s.len() / ROWS;
            for r in 0..ROWS {
                want[r * n + r0..][..rows].copy_from_slice(&s[r * rows..][..rows]);
                mass[r * n + r0..][..rows].copy_from_slice(&a[r * rows..][..rows]);
            }
        }
    }
    Ok((want, mass))
}

/// Whether rows 0 and ROWS - 1 of `y` equal `alone` (those rows computed alone), bit for bit.
fn rows_equal(y: &[f32], alone: &[Vec<f32>; 2], n: usize) -> bool {
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    bits(&y[..n]) == bits(&alone[0]) && bits(&y[(ROWS - 1) * n..]) == bits(&alone[1])
}

fn check_quant(
    gpu: &Gpu,
    q: &QuantizedTensor,
    seed: u64,
    max_binding: Option<u64>,
) -> R<(Check, u64, usize)> {
    let (n, k) = (q.rows(), q.cols());
    let w = QWeights::upload_with(gpu, q, max_binding)?;
    let (bytes, bindings) = (w.bytes(), w.splits.len());
    let op = pollster::block_on(QMatmul::new(gpu, w))?;
    let x = rms_rows(seed, ROWS * k, k);
    let alone = [0, ROWS - 1].map(|r| pollster::block_on(op.run_host(gpu, &x[r * k..][..k], 1)));
    let [a0, a1] = alone;
    let alone = [a0?, a1?];
    let (s, b) = (q.scales_f32(), q.biases_f32());
    let g = q.group_size();
    let (want, mass) = reference(&x, n, k, |r0, rows| {
        let codes = q.unpack_rows(r0..r0 + rows).map_err(|e| e.to_string())?;
        let mut w = Vec::with_capacity(rows * k);
        let mut wa = Vec::with_capacity(rows * k);
        for c in r0..r0 + rows {
            for t in 0..k {
                let gi = c * (k / g) + t / g;
                let (sv, bv) = (f64::from(s[gi]), f64::from(b[gi]));
                let qv = f64::from(codes[(c - r0) * k + t]);
                w.push(sv * qv + bv);
                wa.push(sv.abs() * qv + bv.abs());
            }
        }
        Ok((w, wa))
    })?;
    let mut check = Check::new(quant_error_depth(k, g, op.lanes()));
    for (name, kernel) in [("gemv", QKernel::Gemv), ("tiled", QKernel::Tiled(1))] {
        let y = pollster::block_on(op.run_host_with(gpu, &x, ROWS, kernel))?;
        check.add(name, &y, (&want, &mass), &alone, n);
    }
    Ok((check, bytes, bindings))
}

fn check_dense(
    gpu: &Gpu,
    w: &TensorView,
    seed: u64,
    max_binding: Option<u64>,
) -> R<(Check, u64, usize)> {
    let (n, k) = w.dims2()?;
    let dw = DenseWeights::upload(gpu, w.data(), w.dtype(), n, k, max_binding)?;
    let (bytes, bindings) = (dw.bytes(), dw.splits.len());
    let op = pollster::block_on(DenseMatmul::new(gpu, dw))?;
    let x = rms_rows(seed, ROWS * k, k);
    let alone = [0, ROWS - 1].map(|r| pollster::block_on(op.run_host(gpu, &x[r * k..][..k], 1)));
    let [a0, a1] = alone;
    let alone = [a0?, a1?];
    let (want, mass) = reference(&x, n, k, |r0, rows| {
        let v: Vec<f64> = float_rows(w, k, r0, rows)
            .into_iter()
            .map(f64::from)
            .collect();
        let a = v.iter().map(|x| x.abs()).collect();
        Ok((v, a))
    })?;
    let mut check = Check::new(dense_error_depth(k, op.lanes()));
    for (name, kernel) in [("dgemv", DKernel::Gemv), ("dtiled", DKernel::Tiled(1))] {
        let y = pollster::block_on(op.run_host_with(gpu, &x, ROWS, kernel))?;
        check.add(name, &y, (&want, &mass), &alone, n);
    }
    Ok((check, bytes, bindings))
}

/// Loads, quantizes if asked, uploads and checks the linear at `path`.
fn load_one(gpu: &Gpu, ckpt: &Checkpoint, path: &str, args: &LoadArgs, seed: u64) -> Report {
    let mut report = Report {
        path: path.to_string(),
        shape: [0, 0],
        stored: "-".into(),
        on_gpu: "-".into(),
        gpu_bytes: 0,
        bindings: 0,
        check: Err(String::new()),
    };
    let run = |report: &mut Report| -> R<(Check, u64, usize)> {
        match ckpt.linear(path)? {
            Linear::Quantized(q) => {
                report.shape = [q.rows(), q.cols()];
                report.stored = quant_name(q.bits(), q.group_size(), q.scale_dtype());
                report.on_gpu = report.stored.clone();
                check_quant(gpu, &q, seed, args.max_binding)
            }
            Linear::Dense(w) => {
                let (n, k) = w.dims2()?;
                report.shape = [n, k];
                report.stored = w.dtype().to_string();
                match args.quantize {
                    // mlx-lm leaves a linear dense when its input size is not a multiple of
                    // the group size; so does this.
                    Some(bits) if k.is_multiple_of(args.group_size) => {
                        let params = QuantParams::new(args.group_size, bits, "--quantize")?;
                        let q = onepath_weights::quantize_view(&w, params)?;
                        report.on_gpu = format!(
                            "{} (at load)",
                            quant_name(bits, args.group_size, q.scale_dtype())
                        );
                        check_quant(gpu, &q, seed, args.max_binding)
                    }
                    _ => {
                        report.on_gpu = report.stored.clone();
                        check_dense(gpu, &w, seed, args.max_binding)
                    }
                }
            }
        }
    };
    report.check = match run(&mut report) {
        Ok((check, bytes, bindings)) => {
            report.gpu_bytes = bytes;
            report.bindings = bindings;
            Ok(check)
        }
        Err(e) => Err(e.to_string()),
    };
    report
}

/// Runs `onepath load` and prints a table (or one JSON object); exit 1 if any linear failed.
pub fn run(gpu: &Gpu, args: &LoadArgs, as_json: bool) -> R<ExitCode> {
    if let Some(bits) = args.quantize {
        // Checked up front so a bad flag is one error, not one per linear.
        if !onepath_ops::qmm::BITS.contains(&bits) {
            return Err(format!("--quantize {bits}: the GPU kernels take 4 or 8 bits").into());
        }
        if !onepath_ops::qmm::GROUPS.contains(&args.group_size) {
            return Err(format!(
                "--group-size {}: the GPU kernels take 32, 64 or 128",
                args.group_size
            )
            .into());
        }
    }
    let mut ckpt = Checkpoint::open(&args.path)?;
    // A lone .safetensors file takes the quantization config from a config.json beside it.
    if !args.path.is_dir() {
        let config = args.path.with_file_name("config.json");
        if config.is_file() {
            let text = std::fs::read_to_string(&config)
                .map_err(|e| format!("{}: {e}", config.display()))?;
            ckpt = ckpt.with_config_json(&text)?;
        }
    }
    let paths = linear_paths(&ckpt, args.prefix.as_deref());
    if paths.is_empty() {
        return Err(format!(
            "{}: no 2-D `.weight` tensors{}",
            args.path.display(),
            args.prefix
                .as_ref()
                .map_or(String::new(), |p| format!(" under `{p}`"))
        )
        .into());
    }
    let files: Vec<&str> = ckpt.files().collect();
    let quant = ckpt.quant_config().map(|q| {
        format!(
            "q{} g{}, {} per-path override{}",
            q.default.bits,
            q.default.group_size,
            q.overrides.len(),
            if q.overrides.len() == 1 { "" } else { "s" }
        )
    });
    if !as_json {
        println!("adapter: {}", gpu.describe());
        println!(
            "checkpoint: {} ({} file{}: {}); quantization config: {}",
            args.path.display(),
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            files.join(", "),
            quant.as_deref().unwrap_or("none")
        );
        println!(
            "\n{:<48} {:>15} {:>12} {:>22} {:>10} {:>4} {:>13} {:>7}",
            "linear", "N x K", "stored", "on GPU", "MB", "bind", "error/budget", "=alone"
        );
    }
    let mut reports = Vec::with_capacity(paths.len());
    for (i, p) in paths.iter().enumerate() {
        let r = load_one(gpu, &ckpt, p, args, 1000 + i as u64);
        if !as_json {
            print_row(&r);
        }
        reports.push(r);
    }
    let failed = reports
        .iter()
        .filter(|r| !r.check.as_ref().is_ok_and(Check::ok))
        .count();
    let total: u64 = reports.iter().map(|r| r.gpu_bytes).sum();
    if as_json {
        let linears: Vec<_> = reports.iter().map(report_json).collect();
        let out = json!({"adapter": adapter_json(gpu), "checkpoint": args.path.display().to_string(),
            "files": files, "quantization_config": quant, "quantize": args.quantize,
            "group_size": args.quantize.map(|_| args.group_size), "linears": linears,
            "gpu_bytes": total, "failed": failed, "all_ok": failed == 0});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "\n{} linears, {:.1} MB on the GPU in all (uploaded and checked one at a time); {}.",
            reports.len(),
            total as f64 / 1e6,
            if failed == 0 {
                "every check passed".to_string()
            } else {
                format!("{failed} FAILED")
            }
        );
        println!(
            "error/budget: worst |y - y_f64| over f32 roundoff x accumulated magnitude, against \
             the kernel's rounding depth;\n=alone: rows 0 and 2 of a 3-row call equal those rows \
             computed alone, bit for bit, with every kernel (gemv, tiled; dense)."
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_row(r: &Report) {
    let shape = format!("{} x {}", r.shape[0], r.shape[1]);
    let (err, eq) = match &r.check {
        Ok(c) => (
            format!("{:.2}/{:.0}", c.worst_ratio, c.budget),
            crate::util::yes(c.rows_equal_alone).to_string(),
        ),
        Err(_) => ("-".into(), "-".into()),
    };
    println!(
        "{:<48} {shape:>15} {:>12} {:>22} {:>10.3} {:>4} {err:>13} {eq:>7}",
        r.path,
        r.stored,
        r.on_gpu,
        r.gpu_bytes as f64 / 1e6,
        r.bindings
    );
    if let Err(e) = &r.check {
        println!("  error: {e}");
    }
}

fn report_json(r: &Report) -> serde_json::Value {
    let mut v = json!({"path": r.path, "shape": r.shape, "stored": r.stored, "on_gpu": r.on_gpu,
        "gpu_bytes": r.gpu_bytes, "bindings": r.bindings});
    match &r.check {
        Ok(c) => {
            v["worst_error_ratio"] = json!(c.worst_ratio);
            v["error_budget"] = json!(c.budget);
            v["rows_equal_alone"] = json!(c.rows_equal_alone);
            v["kernels"] = json!(c.kernels);
            v["ok"] = json!(c.ok());
        }
        Err(e) => {
            v["error"] = json!(e);
            v["ok"] = json!(false);
        }
    }
    v
}
