//! Accuracy of the one-path SDPA against the f64 oracle (`onepath-ref`), with a stated f32 error
//! budget, on random data and on Gemma-like data (RMS-normalised rows, scale 1.0, logits up to
//! ~head_dim), with and without soft-capping, for every supported head_dim and K/V storage.
//! Edge cases live in `sdpa_edges.rs`; bitwise invariance in `sdpa_invariance.rs`.
//!
//! # Error budget
//! With `u = 2^-24` (f32 unit roundoff), `M = scale * max sum_d |q_d k_d|` (the magnitude each
//! dot product is accumulated at; it also bounds |logit|) and `V = max |v|`:
//! - a sequential f32 dot product of `D` terms has a rounding error of about `u * sqrt(D) * M`
//!   (random-walk growth; the worst case `D * u * M` is never approached by these data); the
//!   scale multiply, `tanh` soft-cap and `exp(s - max)` add a few `u * M` more;
//! - softmax is 2-Lipschitz in the max-norm of its logits when the output is measured against
//!   `V`, so the output error is about `2 * V * logit error`, plus the f32 P.V sums and the chunk
//!   merge, a few `u * V` each;
//! - with a soft-cap `c`, `c * tanh(s / c)` carries an absolute error of about `c * u` (tanh is
//!   evaluated through exp, so its error is absolute, not relative, near 0).
//!
//! So the logit error is about `u * g` with `g = sqrt(D) * M + c + 1`, and the budget is
//! `max_abs <= TOL_ABS * u * V * g` and `rel_l2 <= TOL_REL * u * g`. Measured on lavapipe (Vulkan)
//! and llvmpipe (GL), which give identical bits: `max_abs / (u V g)` is at most 0.12 (D = 64,
//! Gemma-like, soft-capped) and 0.005-0.06 elsewhere; `rel_l2 / (u g)` is at most 0.22 (D = 64,
//! random, soft-capped). `TOL_ABS` = 1 and `TOL_REL` = 2 leave about 8-10x margin on the
//! worst case. In absolute terms that is 1e-5..1e-4 on random data and up to 2e-3 on Gemma-like D = 512
//! data (logits up to ~90, whose f32 dot products alone are off by ~1e-5), while a wrong key set
//! or a bad merge is off by 1e-3..1: `tolerance_has_teeth` shows that dropping a single key of a
//! 600-key row exceeds the budget 200x (random data) to 7000x (Gemma-like data, best key).

mod common;
use common::*;
use onepath::mask::{MaskDesc, MaskKind};
use onepath::ops::sdpa::KvDType;

// The budget itself (`budget`, `TOL_ABS`, `TOL_REL`) lives in `common/mod.rs`, shared with the
// edge-case tests.

#[derive(Clone, Copy, Debug)]
enum Data {
    Random,
    Gemma,
}

/// One call under ragged key ranges (batch entry 1 keeps keys [45, 333): partial first and last
/// chunks) against the oracle; prints the measured error and its ratio to the error scale.
fn check(gpu: &onepath::gpu::Gpu, d: usize, dt: KvDType, data: Data, softcap: Option<f32>) {
    let rect = rect(2, 4, 2, 3, 600, d);
    let seed = d as u64 * 31 + dt as u64 * 7 + data as u64 * 3 + u64::from(softcap.is_some());
    let (x, scale) = match data {
        Data::Random => (Inputs::random(seed, &rect, dt), 1.0 / (d as f32).sqrt()),
        Data::Gemma => (Inputs::gemma(seed, &rect, dt), 1.0),
    };
    let (lo, hi) = ([0u32, 45], [600u32, 333]);
    let desc = MaskDesc::new(MaskKind::None)
        .with_key_lo(&lo)
        .with_key_hi(&hi);
    let m = mask(&rect, &desc);
    let s = sdpa(gpu, d, dt, scale, softcap);
    let out = run_in(&s, gpu, &rect, &x, &m);
    let want = reference_with(&rect, &x.q, &x.k, &x.v, scale, softcap, |b, _, _, j| {
        lo[b] as usize <= j && j < hi[b] as usize
    });
    let tol = budget(&rect, &x, scale, softcap);
    let what = format!("D={d} {dt:?} {data:?} softcap={softcap:?}");
    let acc = assert_accurate(&what, &want, &out, tol);
    let g = logit_error_scale(&rect, &x.q, &x.k.f32, scale, softcap);
    let v = max_abs(&x.v.f32);
    eprintln!(
        "{what}: max_abs {:.3e} (/uVg {:.3}, budget {:.3e}), rel_l2 {:.3e} (/ug {:.3}, budget {:.3e})",
        acc.max_abs,
        acc.max_abs / (U32 * v * g),
        tol.0,
        acc.rel_l2,
        acc.rel_l2 / (U32 * g),
        tol.1
    );
}

fn sweep(data: Data, softcap: Option<f32>) {
    let Some(gpu) = gpu() else { return };
    for d in [64, 128, 256, 512] {
        for dt in [KvDType::F16, KvDType::F32] {
            check(gpu, d, dt, data, softcap);
        }
    }
}

#[test]
fn random_data_within_f32_budget() {
    sweep(Data::Random, None);
}

#[test]
fn random_data_softcapped_within_f32_budget() {
    sweep(Data::Random, Some(50.0));
}

#[test]
fn gemma_like_data_within_f32_budget() {
    sweep(Data::Gemma, None);
}

#[test]
fn gemma_like_data_softcapped_within_f32_budget() {
    sweep(Data::Gemma, Some(50.0));
}

/// The budget is tight enough to matter: the oracle with one key dropped from every row (key
/// 255, the last of the first chunk) is far outside it, on both kinds of data. No GPU needed.
#[test]
fn tolerance_has_teeth() {
    for (data, scale) in [(Data::Random, 1.0 / 16.0), (Data::Gemma, 1.0)] {
        let rect = rect(1, 4, 2, 2, 600, 256);
        let x = match data {
            Data::Random => Inputs::random(5, &rect, KvDType::F32),
            Data::Gemma => Inputs::gemma(5, &rect, KvDType::F32),
        };
        // Gemma-like rows are dominated by their best key: drop that one (per kv head, row 0).
        let target: Vec<usize> = (0..rect.q_heads)
            .map(|h| match data {
                Data::Random => 255,
                Data::Gemma => {
                    let qr = q_row(&x.q, &rect, 0, h, 0);
                    let keys = kv_rows(&x.k.f32, &rect, 0, h / 2, 0, rect.kv_len);
                    let dot = |kr: &[f32]| qr.iter().zip(kr).map(|(a, b)| a * b).sum::<f32>();
                    (0..rect.kv_len)
                        .max_by(|&a, &b| {
                            let (da, db) =
                                (dot(&keys[a * 256..][..256]), dot(&keys[b * 256..][..256]));
                            da.total_cmp(&db)
                        })
                        .unwrap()
                }
            })
            .collect();
        let full = reference_with(&rect, &x.q, &x.k, &x.v, scale, None, |_, _, _, _| true);
        let dropped = reference_with(&rect, &x.q, &x.k, &x.v, scale, None, |_, h, _, j| {
            j != target[h]
        });
        let dropped: Vec<f32> = dropped.iter().map(|&v| v as f32).collect();
        let acc = accuracy(&full, &dropped);
        let tol = budget(&rect, &x, scale, None);
        eprintln!("{data:?}, one dropped key: {acc:?}, budget {tol:?}");
        assert!(acc.max_abs > 10.0 * tol.0, "{data:?}: {acc:?} vs {tol:?}");
        assert!(acc.rel_l2 > 10.0 * tol.1, "{data:?}: {acc:?} vs {tol:?}");
    }
}
