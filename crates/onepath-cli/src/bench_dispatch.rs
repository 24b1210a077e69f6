//! `onepath bench dispatch`: what a dispatch costs on this device and driver, apart from any
//! kernel's own work. `calls` dispatches of a near-empty kernel (`wgsl/dispatch_probe.wgsl`) are
//! recorded four ways and timed from the first to the last GPU timestamp:
//! - one compute pass, every dispatch writing the same buffer (wgpu puts a barrier between
//!   them): what a model's chain of dependent ops pays per op;
//! - one compute pass, each dispatch writing its own buffer (no barrier);
//! - a compute pass per dispatch, the same buffer;
//! - a compute pass per dispatch, a buffer each.
//!
//! Each figure is the fastest of 7 submissions (cost floors, unlike the other benches' medians),
//! per dispatch, for 1, 132 and 1056 workgroups of 64 invocations.

use crate::util::adapter_json;
use onepath_gpu::wgpu::{ComputePass, ComputePassDescriptor};
use onepath_gpu::{Gpu, GpuTimer};
use onepath_ops::kernels;
use serde_json::json;
use std::process::ExitCode;

type R<T> = Result<T, Box<dyn std::error::Error>>;

const REPEATS: usize = 7;

pub fn run(gpu: &Gpu, calls: usize, as_json: bool) -> R<ExitCode> {
    let calls = calls.max(2);
    let pipeline = pollster::block_on(gpu.pipeline(&kernels::DISPATCH_PROBE, &[]))?;
    let mut rows = Vec::new();
    if !as_json {
        println!("adapter: {}", gpu.describe());
        println!(
            "{calls} dispatches of a near-empty kernel, GPU time per dispatch (us), fastest of \
             {REPEATS}:\n"
        );
        println!(
            "{:>10}  {:>17} {:>17}  {:>17} {:>17}",
            "workgroups", "1 pass, dep.", "1 pass, indep.", "pass each, dep.", "pass each, indep."
        );
    }
    for workgroups in [1u32, 132, 1056] {
        let bufs = (0..calls)
            .map(|_| gpu.storage("dispatch probe", u64::from(workgroups) * 64 * 4))
            .collect::<Result<Vec<_>, _>>()?;
        let binds: Vec<_> = bufs.iter().map(|b| gpu.bind(&pipeline, &[b])).collect();
        let record = |pass: &mut ComputePass<'_>, i: usize| {
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &binds[i], &[]);
            pass.dispatch_workgroups(workgroups, 1, 1);
        };
        let mut us = [0.0; 4];
        for (slot, (same, pass_each)) in
            [(true, false), (false, false), (true, true), (false, true)]
                .into_iter()
                .enumerate()
        {
            let pick = |i: usize| if same { 0 } else { i };
            let mut best = f64::INFINITY;
            for _ in 0..REPEATS {
                let Some(timer) = GpuTimer::new(gpu, if pass_each { 2 } else { 1 }) else {
                    return Err("this adapter has no timestamp queries: nothing to time".into());
                };
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                if pass_each {
                    for i in 0..calls {
                        let writes = match i {
                            0 => Some(timer.writes(0)),
                            i if i == calls - 1 => Some(timer.writes(1)),
                            _ => None,
                        };
                        let mut pass = enc.begin_compute_pass(&ComputePassDescriptor {
                            label: Some("dispatch probe"),
                            timestamp_writes: writes,
                        });
                        record(&mut pass, pick(i));
                    }
                } else {
                    let mut pass = enc.begin_compute_pass(&ComputePassDescriptor {
                        label: Some("dispatch probe"),
                        timestamp_writes: Some(timer.writes(0)),
                    });
                    for i in 0..calls {
                        record(&mut pass, pick(i));
                    }
                }
                timer.resolve(&mut enc);
                gpu.queue.submit([enc.finish()]);
                gpu.wait_idle()?;
                let total = pollster::block_on(timer.read_total_ns(gpu))?;
                best = best.min(total / calls as f64);
            }
            us[slot] = best / 1e3;
        }
        if !as_json {
            println!(
                "{workgroups:>10}  {:>17.2} {:>17.2}  {:>17.2} {:>17.2}",
                us[0], us[1], us[2], us[3]
            );
        }
        rows.push(json!({"workgroups": workgroups,
            "one_pass_dependent_us": us[0], "one_pass_independent_us": us[1],
            "pass_each_dependent_us": us[2], "pass_each_independent_us": us[3]}));
    }
    if as_json {
        let out = json!({"adapter": adapter_json(gpu), "bench": "dispatch", "calls": calls,
            "repeats": REPEATS, "results": rows});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "\ndep. = every dispatch writes one buffer (a barrier between each); indep. = each \
             its own buffer"
        );
    }
    Ok(ExitCode::SUCCESS)
}
