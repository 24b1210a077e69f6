//! `onepath bench ...`: benchmarks that print numbers (never pass/fail).

use crate::util::{SPANS, adapter_json, rms_rows};
use half::f16;
use onepath_gpu::Gpu;
use onepath_mask::{MaskDesc, MaskKind, canonicalize};
use onepath_ops::sdpa::{
    KvDType, Rect, Schedule, Sdpa, SdpaBuffers, SdpaConfig, SdpaWorkspace, key_blocks, rect_rows,
};
use serde_json::json;
use std::process::ExitCode;

type R<T> = Result<T, Box<dyn std::error::Error>>;

/// Inputs are rotated among enough copies that each call reads at least this many bytes that
/// are not in the GPU's last-level cache from the previous call.
const ROTATE_BYTES: u64 = 256 << 20;

/// Which cases `bench sdpa` runs.
pub struct SdpaGrid {
    pub iters: u32,
    pub batch: Vec<usize>,
    pub head_dim: Vec<usize>,
    pub keys: Vec<usize>,
    pub schedule: Schedule,
}

/// Decode attention: one query position per sequence, 8 query heads on 1 KV head, f16 K/V.
pub fn sdpa(gpu: &Gpu, grid: &SdpaGrid, as_json: bool) -> R<ExitCode> {
    let iters = grid.iters.max(1);
    if !as_json {
        println!("adapter: {}", gpu.describe());
        println!(
            "decode SDPA, 8 query heads : 1 KV head, f16 K/V, scale 1.0\n\
             GPU = GPU timestamps, per call: {iters} back-to-back calls (one compute pass each, \
             after a 0.3 s warm-up), first to last timestamp; the median of {SPANS} such spans\n\
             wall = mean wall-clock time per call over the same submission\n\
             chunk+merge = each kernel timed in a pass of its own\n\
             1-pass = per call, with all {iters} calls recorded into one compute pass\n\
             prep = host time to prepare one call (plan, buffers, bind groups); prep-ws = the same \
             in a reused workspace\n"
        );
        println!(
            "{:>5} {:>4} {:>6}  {:>11} {:>11}  {:>9}  {:>15}  {:>11}  {:>8} {:>8}",
            "batch",
            "D",
            "keys",
            "GPU (us)",
            "wall (us)",
            "GB/s",
            "chunk+merge",
            "1-pass (us)",
            "prep us",
            "prep-ws"
        );
    }
    let mut rows = Vec::new();
    for &d in &grid.head_dim {
        let cfg = SdpaConfig {
            head_dim: d,
            kv_dtype: KvDType::F16,
            scale: 1.0,
            softcap: None,
        };
        let sdpa = pollster::block_on(Sdpa::new(gpu, cfg))?;
        for &keys in &grid.keys {
            for &batch in &grid.batch {
                let rect = Rect {
                    batch,
                    q_heads: 8,
                    kv_heads: 1,
                    q_len: 1,
                    kv_len: keys,
                    head_dim: d,
                };
                let res = sdpa_case(gpu, &sdpa, &rect, iters, grid.schedule);
                let kv_bytes = 4.0 * rect.kv_elems() as f64;
                match res {
                    Ok((tm, [prep_ns, prep_ws_ns])) => {
                        let (gpu_ns, wall_ns) = (tm.gpu_ns, tm.wall_ns);
                        let t = gpu_ns.unwrap_or(wall_ns);
                        let gbs = kv_bytes / t;
                        let pass_us: Vec<f64> = tm.pass_ns.iter().map(|x| x / 1e3).collect();
                        if !as_json {
                            let g = gpu_ns.map_or("-".into(), |x| format!("{:.1}", x / 1e3));
                            let p = pass_us
                                .iter()
                                .map(|x| format!("{x:.1}"))
                                .collect::<Vec<_>>()
                                .join("+");
                            let one = tm
                                .one_pass_ns
                                .map_or("-".into(), |x| format!("{:.1}", x / 1e3));
                            println!(
                                "{batch:>5} {d:>4} {keys:>6}  {g:>11} {:>11.1}  {gbs:>9.0}  {p:>15}  {one:>11}  {:>8.1} {:>8.1}",
                                wall_ns / 1e3,
                                prep_ns / 1e3,
                                prep_ws_ns / 1e3
                            );
                        }
                        rows.push(json!({"batch": batch, "head_dim": d, "keys": keys,
                            "gpu_us": gpu_ns.map(|x| x / 1e3), "gpu_runs_us": tm.gpu_runs_ns.iter().map(|x| x / 1e3).collect::<Vec<_>>(), "wall_us": wall_ns / 1e3,
                            "pass_us": pass_us,
                            "one_pass_us": tm.one_pass_ns.map(|x| x / 1e3), "prepare_us": prep_ns / 1e3, "prepare_in_workspace_us": prep_ws_ns / 1e3, "kv_bytes": kv_bytes, "effective_gb_s": gbs}));
                    }
                    Err(e) => {
                        if !as_json {
                            println!("{batch:>5} {d:>4} {keys:>6}  skipped: {e}");
                        }
                        rows.push(json!({"batch": batch, "head_dim": d, "keys": keys,
                            "skipped": e.to_string()}));
                    }
                }
            }
        }
    }
    if as_json {
        let out = json!({"adapter": adapter_json(gpu), "bench": "sdpa_decode", "q_heads": 8,
            "schedule": format!("{:?}", grid.schedule),
            "kv_heads": 1, "kv_dtype": "f16", "results": rows});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("\nGB/s = bytes of K and V read / time.");
    }
    Ok(ExitCode::SUCCESS)
}

/// GPU time (if timestamps exist), wall time and per-pass time per call, and the host's time
/// to prepare one call (plan, buffers, bind groups) with fresh buffers (`Sdpa::prepare_with`)
/// and in a reused workspace (`Sdpa::prepare_in`), in ns.
fn sdpa_case(
    gpu: &Gpu,
    sdpa: &Sdpa,
    rect: &Rect,
    iters: u32,
    schedule: Schedule,
) -> R<(crate::util::Timing, [f64; 2])> {
    let d = rect.head_dim;
    let kv_bytes = (rect.kv_elems() * 2) as u64;
    let copies = (ROTATE_BYTES / (2 * kv_bytes)).clamp(1, 8) as usize;
    let mask = canonicalize(&rect.mask_shape(), &MaskDesc::new(MaskKind::None))?;
    let rows = rect_rows(rect, &mask)?;
    let q = gpu.storage_from("q", bytemuck::cast_slice(&rms_rows(1, rect.q_elems(), d)))?;
    let out = gpu.storage("out", (rect.q_elems() * 4) as u64)?;
    // Random K/V (never zeros): one f16 tensor per copy, rows of RMS 1.
    let kv: Vec<f16> = rms_rows(2, rect.kv_elems(), d)
        .iter()
        .map(|&x| f16::from_f32(x))
        .collect();
    let kblocks = key_blocks(&kv, d);
    let mut sets = Vec::new();
    let mut prep_ns = 0.0;
    for c in 0..copies {
        let k = gpu.storage_from("k", bytemuck::cast_slice(&kblocks))?;
        let v = gpu.storage_from("v", bytemuck::cast_slice(&kv))?;
        let bufs = SdpaBuffers {
            q: &q,
            k: &k,
            v: &v,
            out: &out,
        };
        let t0 = std::time::Instant::now();
        let p = sdpa.prepare_with(gpu, &rows, d as u32, bufs, schedule)?;
        prep_ns += t0.elapsed().as_nanos() as f64;
        sets.push((p, k, v, c));
    }
    let prep_ns = prep_ns / sets.len() as f64;
    // The same call prepared in a reused workspace, as a decode loop does (after one call has
    // sized it).
    let mut ws = SdpaWorkspace::new();
    let (_, k0, v0, _) = &sets[0];
    let bufs = SdpaBuffers {
        q: &q,
        k: k0,
        v: v0,
        out: &out,
    };
    drop(sdpa.prepare_in(gpu, &mut ws, &rows, d as u32, bufs, schedule)?);
    let t0 = std::time::Instant::now();
    for _ in 0..iters {
        drop(sdpa.prepare_in(gpu, &mut ws, &rows, d as u32, bufs, schedule)?);
    }
    let prep_ws_ns = t0.elapsed().as_nanos() as f64 / f64::from(iters);
    let per = sets[0].0.n_passes();
    let mut t = crate::util::time_calls(gpu, sets.len(), per, iters, |enc, i, timing| {
        sets[i].0.encode(enc, timing)
    })?;
    // The breakdown times the chunk and merge kernels each in a pass of its own.
    let split = sets[0].0.n_split_passes();
    t.pass_ns = crate::util::time_passes(gpu, sets.len(), split, iters, |enc, i, timing| {
        sets[i].0.encode_split(enc, timing)
    })?;
    t.one_pass_ns =
        crate::util::time_one_pass(gpu, sets.len(), iters, |pass, i| sets[i].0.dispatch(pass))?;
    Ok((t, [prep_ns, prep_ws_ns]))
}
