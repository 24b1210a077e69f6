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
        "shader_checks": gpu.shader_checks,
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

/// How many times [`time_calls`] times its back-to-back calls; it reports the median.
pub const SPANS: usize = 5;

/// The median of `x` (the mean of the middle two for an even count); NaN when empty.
pub fn median(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// What [`time_calls`] measured.
pub struct Timing {
    /// GPU ns per call: from the start of the first call to the end of the last of `iters`
    /// back-to-back calls, over `iters`; the median of [`SPANS`] such spans. `None` where the
    /// device has no timestamps.
    pub gpu_ns: Option<f64>,
    /// The per-call GPU ns of each of the SPANS repetitions behind `gpu_ns` (their median).
    pub gpu_runs_ns: Vec<f64>,
    /// Wall-clock ns per call over the same submissions (median).
    pub wall_ns: f64,
    /// Mean GPU ns of each of a call's passes, begin to end of that pass (gaps excluded):
    /// empty from [`time_calls`]; a caller that wants the breakdown fills it with
    /// [`time_passes`] (in whatever pass split it times).
    pub pass_ns: Vec<f64>,
    /// GPU ns per call with every call's dispatches in one compute pass ([`time_one_pass`]),
    /// where the caller measured it.
    pub one_pass_ns: Option<f64>,
}

/// Times `n_sets` prepared calls, rotating among them: warms the GPU up for 0.3 s of
/// back-to-back work with no idle gap (with gaps it stays at low clocks), then submits `iters`
/// calls back to back, timestamped only at the two ends, [`SPANS`] times (each behind a warm
/// batch; the median is the headline). `encode(enc, set, timing)` records call `set`; given
/// `Some((timer, slot))` it timestamps its `passes` passes from `slot`.
pub fn time_calls(
    gpu: &Gpu,
    n_sets: usize,
    passes: u32,
    iters: u32,
    encode: impl Fn(&mut onepath_gpu::wgpu::CommandEncoder, usize, Option<(&GpuTimer, u32)>),
) -> Result<Timing, onepath_gpu::GpuError> {
    // Warm-up: submissions of `iters` calls, the next one queued before waiting for the one
    // before, so the GPU never idles (PyTorch's peer warm-up launches back to back too).
    let submit_batch = || {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for it in 0..(iters as usize).max(n_sets) {
            encode(&mut enc, it % n_sets, None);
        }
        gpu.queue.submit([enc.finish()])
    };
    let warm = Instant::now();
    let mut in_flight = submit_batch();
    while warm.elapsed().as_millis() < 300 {
        let next = submit_batch();
        gpu.wait_for(in_flight)?;
        in_flight = next;
    }

    // Headline: timestamps only on the first and last call (per-pass timestamps add their own
    // gaps), submitted behind a warm batch so the GPU goes straight from one to the other.
    // Repeated SPANS times; the median is reported (a span now and then runs 1.5 to 3 times
    // long on the H100, in the middle of a series of normal ones, so one span is not enough).
    let mut gpu_runs = Vec::with_capacity(SPANS);
    let mut wall_runs = Vec::with_capacity(SPANS);
    for _ in 0..SPANS {
        let span = GpuTimer::new(gpu, 2 * passes);
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for it in 0..iters {
            let slot = if it == 0 {
                Some(0)
            } else if it == iters - 1 {
                Some(passes)
            } else {
                None
            };
            let timing = span.as_ref().zip(slot);
            encode(&mut enc, it as usize % n_sets, timing);
        }
        if let Some(t) = &span {
            t.resolve(&mut enc);
        }
        gpu.wait_for(in_flight)?;
        let t0 = Instant::now();
        gpu.queue.submit([enc.finish()]);
        gpu.wait_idle()?;
        wall_runs.push(t0.elapsed().as_nanos() as f64 / f64::from(iters));
        if let (Some(span), true) = (span, iters > 1) {
            gpu_runs.push(pollster::block_on(span.read_total_ns(gpu))? / f64::from(iters));
        }
        in_flight = submit_batch();
    }
    gpu.wait_for(in_flight)?;
    let wall = median(&wall_runs);
    if gpu_runs.is_empty() {
        return Ok(Timing {
            gpu_ns: None,
            gpu_runs_ns: Vec::new(),
            wall_ns: wall,
            pass_ns: Vec::new(),
            one_pass_ns: None,
        });
    }
    Ok(Timing {
        gpu_ns: Some(median(&gpu_runs)),
        gpu_runs_ns: gpu_runs,
        wall_ns: wall,
        pass_ns: Vec::new(),
        one_pass_ns: None,
    })
}

/// Mean GPU ns of each of a call's `passes` passes, begin to end of that pass (gaps between
/// passes excluded), over `iters` back-to-back calls queued behind a warm batch. `encode` is
/// as for [`time_calls`]; it may split a call into more passes than the headline form does.
pub fn time_passes(
    gpu: &Gpu,
    n_sets: usize,
    passes: u32,
    iters: u32,
    encode: impl Fn(&mut onepath_gpu::wgpu::CommandEncoder, usize, Option<(&GpuTimer, u32)>),
) -> Result<Vec<f64>, onepath_gpu::GpuError> {
    let mut pass_ns = vec![0.0; passes as usize];
    let Some(timer) = GpuTimer::new(gpu, passes * iters) else {
        return Ok(pass_ns);
    };
    let mut warm = gpu.device.create_command_encoder(&Default::default());
    for it in 0..(iters as usize).max(n_sets) {
        encode(&mut warm, it % n_sets, None);
    }
    let in_flight = gpu.queue.submit([warm.finish()]);
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    for it in 0..iters {
        encode(&mut enc, it as usize % n_sets, Some((&timer, it * passes)));
    }
    timer.resolve(&mut enc);
    gpu.queue.submit([enc.finish()]);
    gpu.wait_for(in_flight)?;
    gpu.wait_idle()?;
    let ts = pollster::block_on(timer.read_ns(gpu))?;
    for (i, p) in ts.chunks_exact(2).enumerate() {
        pass_ns[i % passes as usize] += (p[1] - p[0]) / f64::from(iters);
    }
    Ok(pass_ns)
}

/// Per-call GPU ns of `iters` calls recorded into one compute pass, timestamped at the pass's
/// two ends (after a short warm-up in the same form; the median of [`SPANS`] such passes), or
/// `None` without timestamps. This is how a model's decode step encodes its ops: one pass, no
/// per-pass overhead.
pub fn time_one_pass(
    gpu: &Gpu,
    n_sets: usize,
    iters: u32,
    dispatch: impl Fn(&mut onepath_gpu::wgpu::ComputePass<'_>, usize),
) -> Result<Option<f64>, onepath_gpu::GpuError> {
    let Some(timer) = GpuTimer::new(gpu, 1) else {
        return Ok(None);
    };
    let record = |timed: bool| {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&onepath_gpu::wgpu::ComputePassDescriptor {
                label: Some("one pass"),
                timestamp_writes: timed.then(|| timer.writes(0)),
            });
            for it in 0..(iters as usize).max(n_sets) {
                dispatch(&mut pass, it % n_sets);
            }
        }
        if timed {
            timer.resolve(&mut enc);
        }
        enc.finish()
    };
    // The median of SPANS timed submissions, each queued behind an untimed one.
    let calls = (iters as usize).max(n_sets) as f64;
    let mut runs = Vec::with_capacity(SPANS);
    for _ in 0..SPANS {
        let warm = gpu.queue.submit([record(false)]);
        let timed = record(true);
        gpu.wait_for(warm)?;
        gpu.queue.submit([timed]);
        gpu.wait_idle()?;
        runs.push(pollster::block_on(timer.read_total_ns(gpu))? / calls);
    }
    Ok(Some(median(&runs)))
}
