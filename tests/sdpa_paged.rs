//! A paged KV cache gives the bits of contiguous storage: the same rows read through per-
//! sequence page tables (pages scattered over a pool in shuffled order) equal the rows read
//! from one contiguous `[B, H_kv, T, D]` cache, for both chunk kernels, f16 and f32 K/V, causal
//! and sliding-window masks, decode and prefill. A table too short for a row's keys is an error.

mod common;
use common::*;
use onepath::gpu::read_buffer_as;
use onepath::mask::{MaskDesc, MaskKind};
use onepath::ops::sdpa::{
    KvDType, PAGE_KEYS, RowSpec, Schedule, SdpaBuffers, key_blocks, rect_rows,
};
use rand::seq::SliceRandom;
use std::sync::Arc;

/// Moves `[B, H, T, D]` rows into a pool `[H, P * PAGE_KEYS, D]` (P = all pages of all
/// sequences, in shuffled order) and returns the pool and each sequence's page table.
fn scatter<T: Copy + Default>(
    x: &[T],
    (b, h, t, d): (usize, usize, usize, usize),
    tables: &[Vec<u32>],
    pages: usize,
) -> Vec<T> {
    let page = PAGE_KEYS as usize;
    let slots = pages * page;
    let mut pool = vec![T::default(); h * slots * d];
    for (s, table) in tables.iter().enumerate().take(b) {
        for hh in 0..h {
            for j in 0..t {
                let slot = table[j / page] as usize * page + j % page;
                let src = ((s * h + hh) * t + j) * d;
                let dst = (hh * slots + slot) * d;
                pool[dst..dst + d].copy_from_slice(&x[src..src + d]);
            }
        }
    }
    pool
}

#[test]
fn paged_rows_equal_contiguous_rows() {
    let Some(gpu) = gpu() else { return };
    let (b, hq, hkv, t) = (3usize, 4usize, 2usize, 320usize);
    let per_seq = t.div_ceil(PAGE_KEYS as usize);
    let pages = b * per_seq + 3; // a few pages nobody uses
    for (d, dt) in [
        (64usize, KvDType::F16),
        (128, KvDType::F32),
        (256, KvDType::F16),
    ] {
        let s = sdpa(gpu, d, dt, 1.0, None);
        let cache = rect(b, hq, hkv, 1, t, d);
        let x = Inputs::gemma(7 + d as u64, &cache, dt);
        let mut ids: Vec<u32> = (0..pages as u32).collect();
        ids.shuffle(&mut rng(d as u64));
        let tables: Vec<Vec<u32>> = (0..b)
            .map(|s| ids[s * per_seq..(s + 1) * per_seq].to_vec())
            .collect();
        let shape = (b, hkv, t, d);
        let (kc, vc, kp, vp) = match dt {
            KvDType::F16 => {
                let (kp, vp) = (
                    scatter(&x.k.f16, shape, &tables, pages),
                    scatter(&x.v.f16, shape, &tables, pages),
                );
                let bytes = |v: &[half::f16]| bytemuck::cast_slice::<_, u8>(v).to_vec();
                (
                    bytes(&key_blocks(&x.k.f16, d)),
                    bytes(&x.v.f16),
                    bytes(&key_blocks(&kp, d)),
                    bytes(&vp),
                )
            }
            KvDType::F32 => {
                let (kp, vp) = (
                    scatter(&x.k.f32, shape, &tables, pages),
                    scatter(&x.v.f32, shape, &tables, pages),
                );
                let bytes = |v: &[f32]| bytemuck::cast_slice::<_, u8>(v).to_vec();
                (
                    bytes(&key_blocks(&x.k.f32, d)),
                    bytes(&x.v.f32),
                    bytes(&key_blocks(&kp, d)),
                    bytes(&vp),
                )
            }
        };
        let buf = |name, bytes: &[u8]| gpu.storage_from(name, bytes).unwrap();
        let (kc, vc, kp, vp) = (buf("k", &kc), buf("v", &vc), buf("kp", &kp), buf("vp", &vp));
        let arcs: Vec<Arc<[u32]>> = tables.iter().map(|t| Arc::from(t.as_slice())).collect();
        for (tq, window, his) in [
            (1usize, None, [1u32, 300, 64]),
            (1, Some(70), [320, 129, 65]),
            (7, None, [7, 257, 320]),
            (5, Some(33), [300, 40, 100]),
        ] {
            let r = rect(b, hq, hkv, tq, t, d);
            let m = mask(
                &r,
                &MaskDesc::new(MaskKind::Causal { window }).with_key_hi(&his),
            );
            let rows = rect_rows(&r, &m).unwrap();
            // The same rows, paged: row (seq, head) of the rectangle reads head `head` of the
            // pool through its sequence's table.
            let paged: Vec<RowSpec> = rows
                .iter()
                .map(|row| {
                    let seq_head = row.kv_base as usize / (t * d);
                    let (seq, head) = (seq_head / hkv, seq_head % hkv);
                    RowSpec {
                        kv_base: (head * pages * PAGE_KEYS as usize * d) as u32,
                        pages: Some(arcs[seq].clone()),
                        ..row.clone()
                    }
                })
                .collect();
            let q = rms_rows(&mut rng(tq as u64), r.q_elems(), d);
            let qb = gpu.storage_from("q", bytemuck::cast_slice(&q)).unwrap();
            for schedule in [Schedule::Groups, Schedule::Rows] {
                let call = |rows: &[RowSpec], k, v| {
                    let out = gpu.storage("out", (r.q_elems() * 4) as u64).unwrap();
                    let bufs = SdpaBuffers {
                        q: &qb,
                        k,
                        v,
                        out: &out,
                    };
                    s.prepare_with(gpu, rows, d as u32, bufs, schedule)
                        .unwrap()
                        .run(gpu)
                        .unwrap();
                    pollster::block_on(read_buffer_as::<f32>(gpu, &out)).unwrap()
                };
                let want = call(&rows, &kc, &vc);
                let got = call(&paged, &kp, &vp);
                assert!(want.iter().any(|v| *v != 0.0));
                assert_same_bits(
                    &got,
                    &want,
                    &format!(
                        "paged vs contiguous, D {d}, tq {tq}, window {window:?}, {schedule:?}"
                    ),
                );
            }
        }
        // A table that stops before a row's last key is an error, not a read past the pool.
        let r = rect(1, hq, hkv, 1, t, d);
        let m = mask(
            &r,
            &MaskDesc::new(MaskKind::Causal { window: None }).with_key_hi(&[200]),
        );
        let short: Vec<RowSpec> = rect_rows(&r, &m)
            .unwrap()
            .into_iter()
            .map(|row| RowSpec {
                kv_base: 0,
                pages: Some(Arc::from(&tables[0][..2])),
                ..row
            })
            .collect();
        let q = gpu.storage("q", (r.q_elems() * 4) as u64).unwrap();
        let out = gpu.storage("out", (r.q_elems() * 4) as u64).unwrap();
        let bufs = SdpaBuffers {
            q: &q,
            k: &kp,
            v: &vp,
            out: &out,
        };
        let err = s
            .prepare(gpu, &short, d as u32, bufs)
            .err()
            .expect("short table");
        assert!(err.to_string().contains("page table"), "{err}");
    }
}
