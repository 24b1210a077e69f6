//! A decode loop through one reused [`SdpaWorkspace`] gives, at every step, the bits of the same
//! call prepared with fresh buffers (`Sdpa::prepare_with`), while the workspace grows (more
//! rows, longer rows) and is reused by a smaller call after a larger one (stale plan words
//! beyond the new plan). Three sequences of different lengths in a 600-slot cache, 8 query
//! heads on 1 KV head, f16 K/V; steps alternate decode (one position) and a 5-position chunk of
//! causal prefill.

mod common;
use common::*;
use onepath::gpu::read_buffer_as;
use onepath::mask::{MaskDesc, MaskKind};
use onepath::ops::sdpa::{KvDType, Schedule, SdpaBuffers, SdpaWorkspace, key_blocks, rect_rows};

#[test]
fn workspace_calls_equal_fresh_calls() {
    let Some(gpu) = gpu() else { return };
    let dt = KvDType::F16;
    for d in [64usize, 256] {
        let s = sdpa(gpu, d, dt, 1.0, Some(30.0));
        let cap = 600;
        let cache = rect(3, 8, 1, 1, cap, d);
        let x = Inputs::gemma(40 + d as u64, &cache, dt);
        let kb = gpu
            .storage_from("k", bytemuck::cast_slice(&key_blocks(&x.k.f16, d)))
            .unwrap();
        let vb = gpu
            .storage_from("v", bytemuck::cast_slice(&x.v.f16))
            .unwrap();
        let mut ws = SdpaWorkspace::new();
        // (positions in the call, key lengths of the three sequences)
        let steps: [(usize, [u32; 3]); 6] = [
            (1, [3, 100, 40]),
            (5, [260, 300, 45]), // more rows, longer: the workspace grows
            (1, [261, 301, 46]), // smaller call in the grown workspace
            (1, [0, 513, 47]),   // a sequence with no key (zeros), 3 chunks for another
            (5, [520, 600, 60]),
            (1, [1, 2, 3]),
        ];
        let mut last_bytes = 0;
        for (i, (tq, his)) in steps.into_iter().enumerate() {
            let r = rect(3, 8, 1, tq, cap, d);
            let m = mask(
                &r,
                &MaskDesc::new(MaskKind::Causal { window: None }).with_key_hi(&his),
            );
            let rows = rect_rows(&r, &m).unwrap();
            let q = rms_rows(&mut rng(i as u64), r.q_elems(), d);
            let qb = gpu.storage_from("q", bytemuck::cast_slice(&q)).unwrap();
            let out_ws = gpu.storage("out", (r.q_elems() * 4) as u64).unwrap();
            let out_fresh = gpu.storage("out", (r.q_elems() * 4) as u64).unwrap();
            let bufs = |out| SdpaBuffers {
                q: &qb,
                k: &kb,
                v: &vb,
                out,
            };
            let auto = Schedule::Auto;
            s.prepare_in(gpu, &mut ws, &rows, d as u32, bufs(&out_ws), auto)
                .unwrap()
                .run(gpu)
                .unwrap();
            s.prepare_with(gpu, &rows, d as u32, bufs(&out_fresh), auto)
                .unwrap()
                .run(gpu)
                .unwrap();
            let a: Vec<f32> = pollster::block_on(read_buffer_as(gpu, &out_ws)).unwrap();
            let b: Vec<f32> = pollster::block_on(read_buffer_as(gpu, &out_fresh)).unwrap();
            let what = format!("D={d} step {i} (Tq={tq}, lengths {his:?})");
            assert_same_bits(&a, &b, &what);
            assert!(a.iter().any(|&v| v != 0.0), "{what}: all zeros");
            // The workspace only grows.
            assert!(ws.bytes() >= last_bytes, "{what}: the workspace shrank");
            if i == 2 {
                assert_eq!(ws.bytes(), last_bytes, "{what}: a smaller call reallocated");
            }
            last_bytes = ws.bytes();
        }
    }
}
