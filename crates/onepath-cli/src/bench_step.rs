//! `onepath bench step`: the matmuls of one Gemma 4 E2B decode step, chained as a decode step
//! records them, so that what a served token costs in weights is measured rather than
//! estimated from single matmuls.
//!
//! Every linear of the step with its real shape, 4-bit group 64 with bf16 scales and biases
//! (or unquantized bf16 / f16 with `--weights`), random and distinct per layer (1.28 GB of
//! weights at 4 bits, 4.56 GB in bf16, so nothing stays in L2 from one step to the next), in forward order with the real data dependencies among the matmuls: q, k and v
//! read the layer's input; o reads q; gate and up read o; down reads gate; the per-layer-input
//! gate reads down and its projection gives the next layer's input; the LM head reads the last.
//! What lies between them in the model (norms, RoPE, attention, GELU, residual adds) is left
//! out, so no op waits for anything but a matmul, and independent matmuls (q, k, v; gate, up)
//! need no barrier between them. All of it is one compute pass, timed at its two ends.
//! `bench/peers/torch_step.py` builds the same chain for PyTorch (tinygemm).

use crate::bench_qmm::{KernelArg, Op, Src, WeightsArg};
use crate::util::{adapter_json, rms_rows, yes};
use onepath_gpu::{Gpu, read_buffer_as, wgpu};
use onepath_ops::qmm::PreparedMatmul;
use serde_json::json;
use std::process::ExitCode;

type R<T> = Result<T, Box<dyn std::error::Error>>;

const HIDDEN: usize = 1536;
const LAYERS: usize = 35;
/// Layers from this one on share the K/V of earlier ones (no k, v) and have the double-wide MLP.
const FIRST_SHARED: usize = 15;
const VOCAB: usize = 262144;
/// Width of the per-layer input.
const PLE: usize = 256;

/// One linear of the step: `[n, k]`, reading the output of op `input` (`None`: the step's x).
struct Link {
    what: String,
    n: usize,
    k: usize,
    input: Option<usize>,
}

/// Gemma 4 E2B's decode-step linears in forward order (the first `layers` layers), with the
/// matmul-to-matmul data dependencies (see the module doc).
fn e2b_step(layers: usize) -> Vec<Link> {
    let mut ops = Vec::new();
    let mut push = |what: String, n: usize, k: usize, input: Option<usize>| {
        ops.push(Link { what, n, k, input });
        ops.len() - 1
    };
    // The per-layer-input projection of the token's embedding, once per step.
    push(
        "per_layer_model_projection".into(),
        LAYERS * PLE,
        HIDDEN,
        None,
    );
    let mut h = None;
    for l in 0..layers {
        let full = l % 5 == 4;
        let head = if full { 512 } else { 256 };
        let q = push(format!("{l}.q_proj"), 8 * head, HIDDEN, h);
        if l < FIRST_SHARED {
            push(format!("{l}.k_proj"), head, HIDDEN, h);
            push(format!("{l}.v_proj"), head, HIDDEN, h);
        }
        let o = push(format!("{l}.o_proj"), HIDDEN, 8 * head, Some(q));
        let inter = if l < FIRST_SHARED { 6144 } else { 12288 };
        let gate = push(format!("{l}.gate_proj"), inter, HIDDEN, Some(o));
        push(format!("{l}.up_proj"), inter, HIDDEN, Some(o));
        let down = push(format!("{l}.down_proj"), HIDDEN, inter, Some(gate));
        let pg = push(format!("{l}.per_layer_input_gate"), PLE, HIDDEN, Some(down));
        h = Some(push(
            format!("{l}.per_layer_projection"),
            HIDDEN,
            PLE,
            Some(pg),
        ));
    }
    push("lm_head".into(), VOCAB, HIDDEN, h);
    ops
}

/// What `onepath bench step` runs.
pub struct StepGrid {
    pub iters: u32,
    pub ms: Vec<usize>,
    pub layers: usize,
    pub weights: WeightsArg,
}

/// The chain on the GPU: every linear uploaded once.
struct Chain {
    links: Vec<Link>,
    ops: Vec<Op>,
    bytes: u64,
}

impl Chain {
    fn upload(gpu: &Gpu, layers: usize, weights: WeightsArg) -> R<Chain> {
        let links = e2b_step(layers);
        let mut ops = Vec::with_capacity(links.len());
        let mut bytes = 0;
        for l in &links {
            let src = Src::new(weights, l.n, l.k)?;
            bytes += src.bytes() as u64;
            ops.push(src.upload(gpu).map_err(|e| format!("{}: {e}", l.what))?);
        }
        Ok(Chain { links, ops, bytes })
    }

    /// The step for `m` rows of x: its input buffer, each op's output, and the bound calls.
    fn prepare(
        &self,
        gpu: &Gpu,
        x: &[f32],
        m: usize,
    ) -> R<(Vec<wgpu::Buffer>, Vec<PreparedMatmul>, wgpu::Buffer)> {
        let x0 = gpu.storage_from("step x", bytemuck::cast_slice(x))?;
        let mut outs: Vec<wgpu::Buffer> = Vec::with_capacity(self.links.len());
        let mut calls = Vec::with_capacity(self.links.len());
        for (l, op) in self.links.iter().zip(&self.ops) {
            let y = gpu.storage(&l.what, (m * l.n * 4) as u64)?;
            let input = l.input.map_or(&x0, |i| &outs[i]);
            calls.push(op.prepare(gpu, m, input, &y, op.kernel(m, KernelArg::Auto)?)?);
            outs.push(y);
        }
        Ok((outs, calls, x0))
    }
}

/// GPU time of one step of `m` rows (one pass, median of spans), and the logits of its rows 0
/// and m - 1 as bits.
fn time_step(gpu: &Gpu, chain: &Chain, m: usize, iters: u32) -> R<(Option<f64>, [Vec<u32>; 2])> {
    let x = rms_rows(7, m * HIDDEN, HIDDEN);
    let (outs, calls, _x0) = chain.prepare(gpu, &x, m)?;
    let record = |pass: &mut wgpu::ComputePass<'_>, _| {
        for c in &calls {
            c.dispatch(pass);
        }
    };
    // Warm-up: 1 s of back-to-back steps, so the GPU's clocks are up. On an H100 left idle
    // while the host made the weights, the first timed case ran 2.8 times slow without one,
    // and still with 0.3 s after the bf16 weights' 10 s or so.
    let warm = std::time::Instant::now();
    while warm.elapsed().as_millis() < 1000 {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        record(&mut enc.begin_compute_pass(&Default::default()), 0);
        gpu.queue.submit([enc.finish()]);
        gpu.wait_idle()?;
    }
    let ns = crate::util::time_one_pass(gpu, 1, iters, record)?;
    let logits = pollster::block_on(read_buffer_as::<u32>(gpu, outs.last().expect("lm_head")))?;
    let n = chain.links.last().expect("lm_head").n;
    let row = |r: usize| logits[r * n..(r + 1) * n].to_vec();
    Ok((ns, [row(0), row(m - 1)]))
}

/// Logits of rows 0 and m - 1 of an m-row step computed alone (a 1-row step each), as bits.
fn alone(gpu: &Gpu, chain: &Chain, m: usize) -> R<[Vec<u32>; 2]> {
    let x = rms_rows(7, m * HIDDEN, HIDDEN);
    let mut rows = [Vec::new(), Vec::new()];
    for (slot, r) in [0, m - 1].into_iter().enumerate() {
        let (outs, calls, _x0) = chain.prepare(gpu, &x[r * HIDDEN..(r + 1) * HIDDEN], 1)?;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for c in &calls {
                c.dispatch(&mut pass);
            }
        }
        gpu.queue.submit([enc.finish()]);
        gpu.wait_idle()?;
        rows[slot] = pollster::block_on(read_buffer_as::<u32>(gpu, outs.last().expect("lm_head")))?;
    }
    Ok(rows)
}

pub fn run(gpu: &Gpu, grid: &StepGrid, as_json: bool) -> R<ExitCode> {
    if !(1..=LAYERS).contains(&grid.layers) {
        return Err(format!("--layers {}: Gemma 4 E2B has 1 to {LAYERS}", grid.layers).into());
    }
    let chain = Chain::upload(gpu, grid.layers, grid.weights)?;
    let format = match grid.weights {
        WeightsArg::Q4 => "4-bit group 64",
        WeightsArg::Bf16 => "bf16",
        WeightsArg::F16 => "f16",
    };
    let n_ops = chain.links.len();
    if !as_json {
        println!("adapter: {}", gpu.describe());
        println!(
            "Gemma 4 E2B decode step, matmuls only ({} layers + the per-layer-input projection \
             and the LM head: {n_ops} linears, {format}, {:.0} MB of weights), chained \
             with the model's dependencies in one compute pass; time = GPU timestamps, median \
             of spans\n",
            grid.layers,
            chain.bytes as f64 / 1e6
        );
        println!(
            "{:>5} {:>12} {:>10} {:>14} {:>5}",
            "M", "step (us)", "GB/s", "us / linear", "=M1"
        );
    }
    let mut rows = Vec::new();
    let mut all_equal = true;
    for &m in &grid.ms {
        if m == 0 {
            return Err("--m: rows of x start at 1".into());
        }
        let (ns, got) = time_step(gpu, &chain, m, grid.iters.max(1))?;
        let equal = got == alone(gpu, &chain, m)?;
        all_equal &= equal;
        let us = ns.map(|v| v / 1e3);
        let gbs = ns.map(|v| chain.bytes as f64 / v);
        if !as_json {
            let f = |v: Option<f64>, d: usize| v.map_or("-".into(), |v| format!("{v:.d$}"));
            println!(
                "{m:>5} {:>12} {:>10} {:>14} {:>5}",
                f(us, 1),
                f(gbs, 0),
                f(us.map(|u| u / n_ops as f64), 2),
                yes(equal)
            );
        }
        rows.push(json!({"m": m, "step_us": us, "effective_gb_s": gbs, "rows_equal_m1": equal}));
    }
    if as_json {
        let out = json!({"adapter": adapter_json(gpu), "bench": "step", "model": "gemma4-e2b",
            "weights": format, "layers": grid.layers, "linears": n_ops, "weight_bytes": chain.bytes,
            "iters": grid.iters, "all_rows_equal_m1": all_equal, "results": rows});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "\nGB/s = bytes of weights (at 4 bits: codes + scales + biases) / step time. =M1: \
             the logits of rows 0 and M-1 equal those rows' 1-row steps, bit for bit. Peer: \
             bench/peers/torch_step.py (BENCHMARKS.md)."
        );
    }
    Ok(if all_equal {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain has Gemma 4 E2B's linears: 15 layers with k and v, 20 shared without, full
    /// layers' wider heads, double-wide MLPs from layer 15, and each op's input of the right size.
    #[test]
    fn e2b_chain_shapes() {
        let ops = e2b_step(LAYERS);
        assert_eq!(ops.len(), 1 + 15 * 9 + 20 * 7 + 1);
        // 2.28 G weights (the LM head 403 M, 15 layers of 36 to 43 M, 20 of 64 to 70 M); the
        // chain bench/peers/torch_step.py builds for PyTorch has the same count.
        let params: usize = ops.iter().map(|l| l.n * l.k).sum();
        assert_eq!(params, 2_279_473_152);
        for l in &ops {
            let width = l.input.map_or(HIDDEN, |i| ops[i].n);
            assert_eq!(
                width, l.k,
                "{}: reads {width} values, takes {}",
                l.what, l.k
            );
        }
        let find = |w: &str| ops.iter().find(|l| l.what == w).unwrap();
        assert_eq!((find("4.q_proj").n, find("4.o_proj").k), (4096, 4096));
        assert_eq!(find("14.v_proj").n, 512);
        assert!(ops.iter().all(|l| l.what != "15.k_proj"));
        assert_eq!(find("15.gate_proj").n, 12288);
        assert_eq!(find("34.down_proj").k, 12288);
    }
}
