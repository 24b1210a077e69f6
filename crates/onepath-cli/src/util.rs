use onepath_gpu::Gpu;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

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
