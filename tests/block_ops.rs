//! The final soft-cap and greedy argmax (`wgsl/softcap_argmax.wgsl`, `wgsl/argmax_merge.wgsl`)
//! over rows longer than one block: the soft-cap within 2 ulp-scale of f64, and the argmax the
//! lowest index of the row's maximum, also when the maximum appears in several blocks.

mod common;
use onepath::gpu::read_buffer_as;
use onepath::ops::block::{ARGMAX_BLOCK, SoftcapArgmax};

#[test]
fn argmax_is_the_first_maximum_across_blocks() {
    let Some(gpu) = common::gpu() else { return };
    let op = pollster::block_on(SoftcapArgmax::new(gpu)).unwrap();
    let vocab = 3 * ARGMAX_BLOCK + 123;
    let rows = 4;
    let mut x = common::randn(&mut common::rng(5), rows * vocab);
    // Row 0: a tie between blocks 2 and 1 (the lower index wins); row 1: the maximum in the
    // last, partial block; row 2: a tie inside one block; row 3: the first element.
    x[2 * ARGMAX_BLOCK + 7] = 50.0;
    x[ARGMAX_BLOCK + 9] = 50.0;
    x[vocab + 3 * ARGMAX_BLOCK + 100] = 60.0;
    x[2 * vocab + 40] = 70.0;
    x[2 * vocab + 41] = 70.0;
    x[3 * vocab] = 80.0;
    let want_ids = [ARGMAX_BLOCK + 9, 3 * ARGMAX_BLOCK + 100, 40, 0];
    let cap = 30.0f32;
    let logits = gpu
        .storage_from("logits", bytemuck::cast_slice(&x))
        .unwrap();
    let ids = gpu.storage("ids", (rows * 4) as u64).unwrap();
    let calls = op
        .prepare(gpu, (rows, vocab), Some(cap), &logits, &ids)
        .unwrap();
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        for c in &calls {
            c.dispatch(&mut pass);
        }
    }
    gpu.queue.submit([enc.finish()]);
    let got: Vec<u32> = pollster::block_on(read_buffer_as(gpu, &ids)).unwrap();
    assert_eq!(got, want_ids.map(|i| i as u32));
    let capped: Vec<f32> = pollster::block_on(read_buffer_as(gpu, &logits)).unwrap();
    for (g, v) in capped.iter().zip(&x) {
        let want = f64::from(cap) * (f64::from(*v) / f64::from(cap)).tanh();
        assert!(
            (f64::from(*g) - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{v}: {g} vs {want}"
        );
    }
}
