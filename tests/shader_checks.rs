//! wgpu's shader run-time checks (index clamps, loop counters) are off by default
//! (`GpuOptions::shader_checks`). They may change what an out-of-range access does, never a
//! result: every kernel gives the same bits with them on and off.

mod common;
mod qmm_common;

use common::*;
use onepath::mask::{MaskDesc, MaskKind};
use onepath_weights::DType;

#[test]
fn sdpa_bits_do_not_depend_on_shader_checks() {
    let (Some(a), Some(b)) = (gpu_with_checks(false), gpu_with_checks(true)) else {
        return;
    };
    for (d, hq, hkv, dt) in combos() {
        // Prefill with a causal mask over a length that is no multiple of the chunk.
        let r = rect(2, hq, hkv, 5, 300, d);
        let x = Inputs::gemma(11 + d as u64, &r, dt);
        let m = mask(&r, &MaskDesc::new(MaskKind::Causal { window: None }));
        let sa = sdpa(&a, d, dt, 1.0, None);
        let sb = sdpa(&b, d, dt, 1.0, None);
        let ya = run_in(&sa, &a, &r, &x, &m);
        let yb = run_in(&sb, &b, &r, &x, &m);
        assert_same_bits(
            &ya,
            &yb,
            &format!("D={d} {hq}:{hkv} {dt:?}, checks off vs on"),
        );
    }
}

#[test]
fn qmatmul_bits_do_not_depend_on_shader_checks() {
    let (Some(a), Some(b)) = (gpu_with_checks(false), gpu_with_checks(true)) else {
        return;
    };
    for (bits, group) in [(4, 64), (8, 32)] {
        let (n, k, m) = (67, 384, 3);
        let q = qmm_common::qtensor(5, n, k, group, bits, DType::BF16);
        let x = randn(&mut rng(6), m * k);
        let ya = qmm_common::run(&a, &qmm_common::qmm(&a, &q, None), &x, m);
        let yb = qmm_common::run(&b, &qmm_common::qmm(&b, &q, None), &x, m);
        qmm_common::assert_bits(
            &format!("{bits}-bit group {group}, checks off vs on"),
            &ya,
            &yb,
        );
    }
}
