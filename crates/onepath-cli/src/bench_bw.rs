//! `onepath bench bandwidth`: how fast this device streams a buffer it only reads, timed the
//! same two ways as the other benchmarks. The ceiling the SDPA and matmul GB/s figures are
//! measured against.

use crate::util::{SPANS, adapter_json, time_calls, time_one_pass};
use onepath_gpu::Gpu;
use onepath_ops::kernels;
use serde_json::json;
use std::process::ExitCode;

type R<T> = Result<T, Box<dyn std::error::Error>>;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    threads: u32,
    grid_x: u32,
    pad: u32,
}

pub fn run(gpu: &Gpu, mib: u64, iters: u32, as_json: bool) -> R<ExitCode> {
    let iters = iters.max(2);
    let bytes = mib.saturating_mul(1 << 20).min(gpu.max_binding()) / 16 * 16;
    if bytes == 0 {
        return Err("--mib must be at least 1".into());
    }
    let n = u32::try_from(bytes / 16)?;
    // Random-looking words (never zeros), written once.
    let words: Vec<u32> = (0..bytes / 4)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761) | 1)
        .collect();
    // Two buffers, alternated, so back-to-back calls never re-read what the last one left in L2.
    let srcs = [
        gpu.storage_from("bandwidth src a", bytemuck::cast_slice(&words))?,
        gpu.storage_from("bandwidth src b", bytemuck::cast_slice(&words))?,
    ];
    drop(words);
    let workgroups: u32 = 4096;
    let threads = workgroups * 256;
    let dst = gpu.storage("bandwidth dst", u64::from(threads) * 4)?;
    let pipeline = pollster::block_on(gpu.pipeline(&kernels::READ_BANDWIDTH, &[]))?;
    let prm = Params {
        n,
        threads,
        grid_x: workgroups,
        pad: 0,
    };
    let u = gpu.uniform_from("bandwidth params", bytemuck::bytes_of(&prm));
    let binds: Vec<_> = srcs
        .iter()
        .map(|s| gpu.bind(&pipeline, &[&u, s, &dst]))
        .collect();
    let dispatch = |pass: &mut onepath_gpu::wgpu::ComputePass<'_>, i: usize| {
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &binds[i], &[]);
        pass.dispatch_workgroups(workgroups, 1, 1);
    };
    let t = time_calls(gpu, binds.len(), 1, iters, |enc, i, timing| {
        let mut pass = enc.begin_compute_pass(&onepath_gpu::wgpu::ComputePassDescriptor {
            label: Some("read bandwidth"),
            timestamp_writes: timing.map(|(t, slot)| t.writes(slot)),
        });
        dispatch(&mut pass, i);
    })?;
    let one = time_one_pass(gpu, binds.len(), iters, dispatch)?;
    let gbs = |ns: Option<f64>| ns.map(|ns| bytes as f64 / ns);
    let own = gbs(t.gpu_ns.or(Some(t.wall_ns)));
    if as_json {
        let out = json!({"adapter": adapter_json(gpu), "bench": "read_bandwidth", "bytes": bytes,
            "gpu_us": t.gpu_ns.map(|x| x / 1e3), "gpu_runs_us": t.gpu_runs_ns.iter().map(|x| x / 1e3).collect::<Vec<_>>(), "wall_us": t.wall_ns / 1e3,
            "one_pass_us": one.map(|x| x / 1e3), "effective_gb_s": own,
            "one_pass_gb_s": gbs(one)});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("adapter: {}", gpu.describe());
        println!(
            "read ceiling: one pass over {} MiB per call, {iters} calls back to back \
             (median of {SPANS} spans)",
            bytes >> 20
        );
        let show = |ns: Option<f64>| {
            ns.map_or("-".to_string(), |ns| {
                format!("{:.1} us, {:.0} GB/s", ns / 1e3, bytes as f64 / ns)
            })
        };
        println!(
            "  own pass per call: {}",
            show(t.gpu_ns.or(Some(t.wall_ns)))
        );
        println!("  all in one pass:   {}", show(one));
    }
    Ok(ExitCode::SUCCESS)
}
