//! Ops recorded into one compute pass (`PreparedSdpa::dispatch`, `PreparedMatmul::dispatch`),
//! as a model's decode step records them, give the same bits as each op run on its own: the
//! dependent dispatches inside the pass (chunk -> merge, one op's output -> the next op's input)
//! are ordered.

mod common;
mod qmm_common;

use common::*;
use onepath::gpu::{Gpu, read_buffer_as};
use onepath::ops::sdpa::{KvDType, SdpaBuffers, key_blocks, rect_rows};
use onepath_weights::DType;

fn one_pass(gpu: &Gpu, record: impl FnOnce(&mut onepath::gpu::wgpu::ComputePass<'_>)) {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        record(&mut pass);
    }
    gpu.queue.submit([enc.finish()]);
    gpu.wait_idle().expect("wait");
}

#[test]
fn two_chained_sdpa_calls_in_one_pass_match_separate_runs() {
    let Some(gpu) = gpu() else { return };
    let d = 256;
    let r = rect(2, 8, 1, 1, 700, d);
    let x = Inputs::gemma(3, &r, KvDType::F16);
    let m = no_mask(&r);
    let s = sdpa(gpu, d, KvDType::F16, 1.0, None);
    // Separately: out1 = attn(q), out2 = attn(out1).
    let out1 = run_in(&s, gpu, &r, &x, &m);
    let out2 = run(&s, gpu, &r, &out1, &x.k, &x.v, &m);

    let rows = rect_rows(&r, &m).expect("rows");
    let q = gpu.storage_from("q", bytemuck::cast_slice(&x.q)).unwrap();
    // K in the key-blocked layout the kernels read (V stays row-major).
    let k = gpu
        .storage_from("k", bytemuck::cast_slice(&key_blocks(&x.k.f16, d)))
        .unwrap();
    let v = gpu
        .storage_from("v", bytemuck::cast_slice(&x.v.f16))
        .unwrap();
    let o1 = gpu.storage("o1", (x.q.len() * 4) as u64).unwrap();
    let o2 = gpu.storage("o2", (x.q.len() * 4) as u64).unwrap();
    let call = |q, out| {
        s.prepare(
            gpu,
            &rows,
            d as u32,
            SdpaBuffers {
                q,
                k: &k,
                v: &v,
                out,
            },
        )
        .expect("prepare")
    };
    let (a, b) = (call(&q, &o1), call(&o1, &o2));
    one_pass(gpu, |pass| {
        a.dispatch(pass);
        b.dispatch(pass);
    });
    let got1: Vec<f32> = pollster::block_on(read_buffer_as(gpu, &o1)).unwrap();
    let got2: Vec<f32> = pollster::block_on(read_buffer_as(gpu, &o2)).unwrap();
    assert_same_bits(&got1, &out1, "first call, one pass vs alone");
    assert_same_bits(
        &got2,
        &out2,
        "second call (reads the first's output), one pass vs alone",
    );
}

#[test]
fn two_chained_matmuls_in_one_pass_match_separate_runs() {
    let Some(gpu) = gpu() else { return };
    let (n, m) = (320, 3);
    let w1 = qmm_common::qtensor(7, n, n, 64, 4, DType::BF16);
    let w2 = qmm_common::qtensor(8, n, n, 64, 4, DType::BF16);
    let (op1, op2) = (
        qmm_common::qmm(gpu, &w1, None),
        qmm_common::qmm(gpu, &w2, None),
    );
    let x = randn(&mut rng(9), m * n);
    let y1 = qmm_common::run(gpu, &op1, &x, m);
    let y2 = qmm_common::run(gpu, &op2, &y1, m);

    let xb = gpu.storage_from("x", bytemuck::cast_slice(&x)).unwrap();
    let b1 = gpu.storage("y1", (m * n * 4) as u64).unwrap();
    let b2 = gpu.storage("y2", (m * n * 4) as u64).unwrap();
    let p1 = op1.prepare(gpu, m, &xb, &b1).expect("prepare 1");
    let p2 = op2.prepare(gpu, m, &b1, &b2).expect("prepare 2");
    one_pass(gpu, |pass| {
        p1.dispatch(pass);
        p2.dispatch(pass);
    });
    let got1: Vec<f32> = pollster::block_on(read_buffer_as(gpu, &b1)).unwrap();
    let got2: Vec<f32> = pollster::block_on(read_buffer_as(gpu, &b2)).unwrap();
    qmm_common::assert_bits("first matmul, one pass vs alone", &got1, &y1);
    qmm_common::assert_bits(
        "second matmul (reads the first's output), one pass vs alone",
        &got2,
        &y2,
    );
}
