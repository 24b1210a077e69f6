mod common;
use common::*;
use onepath::ops::sdpa::{KvDType, Rect};

#[test]
fn small_call_matches_reference() {
    let Some(gpu) = gpu() else { return };
    let rect = Rect {
        batch: 2,
        q_heads: 8,
        kv_heads: 1,
        q_len: 3,
        kv_len: 300,
        head_dim: 64,
    };
    let mut r = rng(1);
    let q = randn(&mut r, rect.q_elems());
    let k = Kv::new(randn(&mut r, rect.kv_elems()), KvDType::F16);
    let v = Kv::new(randn(&mut r, rect.kv_elems()), KvDType::F16);
    let m = no_mask(&rect);
    let s = sdpa(gpu, 64, KvDType::F16, 0.125, None);
    let out = run(&s, gpu, &rect, &q, &k, &v, &m);
    let want = reference(&rect, &q, &k, &v, &m, 0.125, None);
    let err = onepath::reference::max_abs_diff(&want, &out);
    eprintln!("max abs err {err:e}");
    assert!(err < 1e-5, "max abs err {err}");
}
