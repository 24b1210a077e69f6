use onepath_gpu::{Gpu, GpuTimer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::time::Instant;

pub fn adapter_json(gpu: &Gpu) -> Value {
    json!({
        "name": gpu.info.name,
        "backend": format!("{:?}", gpu.info.backend),
        "device_type": format!("{:?}", gpu.info.device_type),
        "driver": format!("{} {}", gpu.info.driver, gpu.info.driver_info),
        "shader_f16": gpu.features.shader_f16,
        "subgroups": gpu.features.subgroups,
        "timestamps": gpu.features.timestamps,
    })
}

/// Rows of `d` values with RMS 1, as Gemma 4's q/k/v norms produce (seeded, reproducible).
pub fn rms_rows(seed: u64, n: usize, d: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x: Vec<f32> = (0..n)
        .map(|_| (0..4).map(|_| rng.random::<f32>() - 0.5).sum::<f32>())
        .collect();
    for row in x.chunks_mut(d) {
        let rms = (row.iter().map(|v| v * v).sum::<f32>() / d as f32).sqrt();
        row.iter_mut().for_each(|v| *v /= rms);
    }
    x
}

pub fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

/// Times `n_sets` prepared calls, rotating among them: warms the GPU up for 0.3 s of
/// back-to-back work (with idle gaps it stays at low clocks), then submits `iters` calls back to
/// back. `encode(enc, set, timing)` records call `set`; each call writes `passes` timer slots
/// from the slot it is given. Returns (GPU ns per call from the first to the last timestamp,
/// where the device has timestamps; wall-clock ns per call).
pub fn time_calls(
    gpu: &Gpu,
    n_sets: usize,
    passes: u32,
    iters: u32,
    encode: impl Fn(&mut onepath_gpu::wgpu::CommandEncoder, usize, Option<(&GpuTimer, u32)>),
) -> Result<(Option<f64>, f64), onepath_gpu::GpuError> {
    let warm = Instant::now();
    while warm.elapsed().as_millis() < 300 {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for set in 0..n_sets {
            encode(&mut enc, set, None);
        }
        gpu.queue.submit([enc.finish()]);
        gpu.wait_idle()?;
    }
    let timer = GpuTimer::new(gpu, passes * iters);
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    for it in 0..iters {
        encode(
            &mut enc,
            it as usize % n_sets,
            timer.as_ref().map(|t| (t, it * passes)),
        );
    }
    if let Some(t) = &timer {
        t.resolve(&mut enc);
    }
    let t0 = Instant::now();
    gpu.queue.submit([enc.finish()]);
    gpu.wait_idle()?;
    let wall = t0.elapsed().as_nanos() as f64 / f64::from(iters);
    let gpu_ns = match &timer {
        Some(t) => Some(pollster::block_on(t.read_total_ns(gpu))? / f64::from(iters)),
        None => None,
    };
    Ok((gpu_ns, wall))
}
