//! The two chunk kernels (`Schedule::Groups`: one workgroup per group of rows and chunk;
//! `Schedule::Rows`: one workgroup per row and chunk) perform the same operations on a row in
//! the same order, so the host may pick either per call: every row's bits must be equal.

mod common;

use common::*;
use onepath::mask::{BoolMask, MaskDesc, MaskKind};
use onepath::ops::sdpa::{Rect, Schedule, Sdpa};

fn all_schedules_agree(gpu: &onepath::gpu::Gpu, s: &Sdpa, r: &Rect, x: &Inputs, desc: &MaskDesc) {
    let m = mask(r, desc);
    let run_with = |sch| {
        pollster::block_on(s.run_rect_host_with(gpu, r, &x.q, x.k.data(), x.v.data(), &m, sch))
            .expect("sdpa run")
    };
    let groups = run_with(Schedule::Groups);
    let rows = run_with(Schedule::Rows);
    let auto = run_with(Schedule::Auto);
    let what = format!("{r:?} {:?}", s.config);
    assert_same_bits(&rows, &groups, &format!("{what}: rows vs groups"));
    assert_same_bits(&auto, &groups, &format!("{what}: auto vs groups"));
}

#[test]
fn row_and_group_kernels_give_the_same_bits() {
    let Some(gpu) = gpu() else { return };
    for (d, hq, hkv, dt) in combos() {
        let s = sdpa(gpu, d, dt, 1.0, None);
        // Decode over ragged lengths (shared-span groups) and a causal prefill (mixed groups).
        let dec = rect(3, hq, hkv, 1, 700, d);
        let hi = [700, 301, 513];
        let desc = MaskDesc::new(MaskKind::None).with_key_hi(&hi);
        all_schedules_agree(gpu, &s, &dec, &Inputs::gemma(d as u64, &dec, dt), &desc);
        let pre = rect(2, hq, hkv, 21, 300, d);
        let causal = MaskDesc::new(MaskKind::Causal { window: Some(100) });
        all_schedules_agree(gpu, &s, &pre, &Inputs::random(7, &pre, dt), &causal);
    }
}

#[test]
fn row_and_group_kernels_agree_on_soft_cap_and_irregular_masks() {
    let Some(gpu) = gpu() else { return };
    let (d, dt) = (256, onepath::ops::sdpa::KvDType::F16);
    let r = rect(2, 8, 1, 3, 600, d);
    let x = Inputs::random(3, &r, dt);
    let capped = sdpa(gpu, d, dt, 0.0625, Some(30.0));
    let none = MaskDesc::new(MaskKind::None);
    all_schedules_agree(gpu, &capped, &r, &x, &none);
    // A mask that varies by head and is no span (dense key sets), with a fully masked row.
    let shape = [2, 8, 3, 600];
    let data: Vec<bool> = (0..2 * 8 * 3 * 600)
        .map(|i| {
            let (h, q, j) = (i / 1800 % 8, i / 600 % 3, i % 600);
            !(h == 5 && q == 1) && (j * 7 + h * 3 + q) % 5 != 0
        })
        .collect();
    let dense = MaskDesc::new(MaskKind::Bool(BoolMask {
        shape: &shape,
        data: &data,
    }));
    let plain = sdpa(gpu, d, dt, 0.0625, None);
    all_schedules_agree(gpu, &plain, &r, &x, &dense);
}
