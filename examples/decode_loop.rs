//! A decode loop as a server runs it: one reused workspace, a growing cache, a second request
//! joining mid-way, and each request's output checked against the same step run alone.
//!
//! Two sequences share a 1024-slot K/V cache (8 query heads on 1 KV head, head_dim 256, f16).
//! Sequence A decodes from 300 cached keys; sequence B joins at step 3 with 700. Each step
//! attends each sequence's keys `[0, len)` (`with_key_hi`), prepared in one `SdpaWorkspace`
//! (no per-step allocation once it has grown), and A's row is compared with A computed alone.
//!
//! Run: `cargo run --release --example decode_loop`.

use half::f16;
use onepath::gpu::{Gpu, GpuOptions, read_buffer_as};
use onepath::mask::{MaskDesc, MaskKind, canonicalize};
use onepath::ops::sdpa::{
    KvDType, Rect, Schedule, Sdpa, SdpaBuffers, SdpaConfig, SdpaWorkspace, key_blocks, rect_rows,
};

const D: usize = 256;
const CAP: usize = 1024; // cache slots per sequence

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gpu = pollster::block_on(Gpu::new(&GpuOptions::default()))?;
    println!("adapter: {}", gpu.describe());
    let cfg = SdpaConfig {
        head_dim: D,
        kv_dtype: KvDType::F16,
        scale: 1.0,
        softcap: None,
    };
    let sdpa = pollster::block_on(Sdpa::new(&gpu, cfg))?;

    // The cache [2 sequences, 1 KV head, CAP, D], filled up front here (a model writes each new
    // key as it goes). K is stored key-blocked (`key_blocks`), V row-major.
    let val = |i: usize, m: usize| f16::from_f32(((i * m) % 1999) as f32 / 1000.0 - 1.0);
    let k: Vec<f16> = (0..2 * CAP * D).map(|i| val(i, 7919)).collect();
    let v: Vec<f16> = (0..2 * CAP * D).map(|i| val(i, 104729)).collect();
    let kb = gpu.storage_from("k cache", bytemuck::cast_slice(&key_blocks(&k, D)))?;
    let vb = gpu.storage_from("v cache", bytemuck::cast_slice(&v))?;
    let q_buf = gpu.storage("q", (2 * 8 * D * 4) as u64)?;
    let out = gpu.storage("out", (2 * 8 * D * 4) as u64)?;

    // One step: queries for both sequences ([2, 8, 1, D]), keys [0, len) of each.
    let step = |ws: &mut SdpaWorkspace,
                q: &[f32],
                lens: [u32; 2]|
     -> Result<Vec<f32>, Box<dyn std::error::Error>> {
        let rect = Rect {
            batch: 2,
            q_heads: 8,
            kv_heads: 1,
            q_len: 1,
            kv_len: CAP,
            head_dim: D,
        };
        let mask = MaskDesc::new(MaskKind::None).with_key_hi(&lens); // len 0: an idle slot
        let rows = rect_rows(&rect, &canonicalize(&rect.mask_shape(), &mask)?)?;
        gpu.queue.write_buffer(&q_buf, 0, bytemuck::cast_slice(q));
        let bufs = SdpaBuffers {
            q: &q_buf,
            k: &kb,
            v: &vb,
            out: &out,
        };
        let call = sdpa.prepare_in(&gpu, ws, &rows, D as u32, bufs, Schedule::Auto)?;
        call.run(&gpu)?; // submits and waits, so the next step may rewrite the workspace
        Ok(pollster::block_on(read_buffer_as(&gpu, &out))?)
    };

    let mut ws = SdpaWorkspace::new();
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for s in 0..6 {
        let len_a = 300 + s as u32;
        let len_b = if s >= 3 { 700 + s as u32 } else { 0 };
        let q: Vec<f32> = (0..2 * 8 * D)
            .map(|i| (((i + 31 * s) * 2654435761) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let together = step(&mut ws, &q, [len_a, len_b])?;
        // A alone: the same queries, B's slot idle.
        let mut q_alone = q.clone();
        q_alone[8 * D..].fill(0.0);
        let alone = step(&mut ws, &q_alone, [len_a, 0])?;
        let same = bits(&together[..8 * D]) == bits(&alone[..8 * D]);
        println!(
            "step {s}: A attends {len_a} keys, B {len_b}; A's output bitwise equal to A alone: \
             {same}; workspace {} KiB",
            ws.bytes() / 1024
        );
        assert!(same);
    }
    Ok(())
}
