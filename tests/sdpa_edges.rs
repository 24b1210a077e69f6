//! Edge cases of the one-path SDPA, each against the f64 oracle (budget from `common::budget`,
//! derived in `sdpa_accuracy.rs`) and, where there is an invariant, bitwise:
//! a single key; rows with no key (exact zeros, reported by `CanonicalMask::empty_rows`); a
//! window longer than the sequence (== plain causal); masks that differ per head; irregular
//! (Dense) rows; head_dim 512 over 4097 keys (17 chunks), alone and inside a batch of 2; a row
//! long enough for the merge to fold over several rounds.

mod common;
use common::*;
use onepath::mask::{BoolMask, KeySet, MaskDesc, MaskKind};
use onepath::ops::sdpa::KvDType;

#[test]
fn single_key_returns_its_value() {
    let Some(gpu) = gpu() else { return };
    for (d, hq, hkv, dt) in combos() {
        let r = rect(2, hq, hkv, 3, 1, d);
        let x = Inputs::random(d as u64, &r, dt);
        let s = sdpa(gpu, d, dt, 0.3, Some(20.0));
        let out = run_in(&s, gpu, &r, &x, &no_mask(&r));
        let want = reference_with(&r, &x.q, &x.k, &x.v, 0.3, Some(20.0), |_, _, _, _| true);
        assert_accurate("Tkv = 1", &want, &out, budget(&r, &x, 0.3, Some(20.0)));
        // With one key, p = exp(0) = 1 and l = 1, so every row is that key's value exactly.
        for b in 0..2 {
            for h in 0..hq {
                for i in 0..3 {
                    let v = kv_rows(&x.v.f32, &r, b, h / (hq / hkv), 0, 1);
                    assert_same_bits(
                        q_row(&out, &r, b, h, i),
                        v,
                        &format!("D={d} row ({b},{h},{i})"),
                    );
                }
            }
        }
    }
}

#[test]
fn rows_without_keys_are_zero_and_reported() {
    let Some(gpu) = gpu() else { return };
    for (d, dt) in [(64, KvDType::F16), (512, KvDType::F32)] {
        // Entry 0: query row 1 attends nothing; entry 1: key range [0, 0) empties every row.
        let (hq, tq, tkv) = (4, 3, 300);
        let r = rect(2, hq, 2, tq, tkv, d);
        let data: Vec<bool> = (0..2 * tq * tkv)
            .map(|x| {
                let (b, i, j) = (x / (tq * tkv), x / tkv % tq, x % tkv);
                !(b == 0 && i == 1) && (j + i) % 7 != 0
            })
            .collect();
        let shape = [2, 1, tq, tkv];
        let hi = [tkv as u32, 0];
        let desc = MaskDesc::new(MaskKind::Bool(BoolMask {
            shape: &shape,
            data: &data,
        }))
        .with_key_hi(&hi);
        let m = mask(&r, &desc);
        let mut empty: Vec<_> = (0..hq).map(|h| (0, h, 1)).collect();
        empty.extend((0..hq).flat_map(|h| (0..tq).map(move |i| (1, h, i))));
        empty.sort();
        assert_eq!(m.empty_rows(), empty);

        let x = Inputs::random(1, &r, dt);
        let s = sdpa(gpu, d, dt, 0.125, None);
        let out = run_in(&s, gpu, &r, &x, &m);
        for &(b, h, i) in &empty {
            let row = q_row(&out, &r, b, h, i);
            assert!(
                row.iter().all(|v| v.to_bits() == 0),
                "D={d} row ({b},{h},{i}) is not +0.0"
            );
        }
        let want = reference_with(&r, &x.q, &x.k, &x.v, 0.125, None, |b, _, i, j| {
            b == 0 && data[(i * tkv) + j]
        });
        assert_accurate("empty rows", &want, &out, budget(&r, &x, 0.125, None));
    }
}

#[test]
fn window_longer_than_sequence_is_plain_causal() {
    let Some(gpu) = gpu() else { return };
    for (d, hq, hkv, dt) in combos().into_iter().step_by(2) {
        let r = rect(2, hq, hkv, 40, 300, d);
        let x = Inputs::random(3, &r, dt);
        let s = sdpa(gpu, d, dt, 0.1, None);
        let causal = run_in(
            &s,
            gpu,
            &r,
            &x,
            &mask(&r, &MaskDesc::new(MaskKind::Causal { window: None })),
        );
        for w in [300, 301, 4096, u32::MAX] {
            let m = mask(&r, &MaskDesc::new(MaskKind::Causal { window: Some(w) }));
            let out = run_in(&s, gpu, &r, &x, &m);
            assert_same_bits(
                &out,
                &causal,
                &format!("D={d} {hq}:{hkv} {dt:?}: window {w} vs causal"),
            );
        }
        let want = reference_with(&r, &x.q, &x.k, &x.v, 0.1, None, |_, _, i, j| {
            causal_pred(40, 300, i, j)
        });
        assert_accurate("causal", &want, &causal, budget(&r, &x, 0.1, None));
    }
}

fn causal_pred(tq: usize, tkv: usize, i: usize, j: usize) -> bool {
    causal(tq, tkv, None, i, j)
}

/// Per-head masks: head h gets its own pattern (window, dense stripes, full, empty prefix); each
/// head matches the oracle under its own mask, read from the raw boolean data.
#[test]
fn mask_varying_by_head_matches_reference() {
    let Some(gpu) = gpu() else { return };
    for (d, dt) in [(64, KvDType::F32), (256, KvDType::F16), (512, KvDType::F16)] {
        let (hq, tq, tkv) = (8, 4, 400);
        let r = rect(2, hq, 2, tq, tkv, d);
        let pattern = |b: usize, h: usize, i: usize, j: usize| -> bool {
            match h {
                0 => true,
                1 => causal(tq, tkv, Some(50 + 30 * b as u32), i, j),
                2 => !j.is_multiple_of(3) && j > 20,
                3 => j >= 256 - i,
                4 => j < 257 + b,
                5 => (j / 64 + i).is_multiple_of(2),
                6 => j == 399 || j == 0,
                _ => causal(tq, tkv, None, i, j) && j >= 13 * (b + 1),
            }
        };
        let data: Vec<bool> = (0..2 * hq * tq * tkv)
            .map(|x| {
                let (b, h) = (x / (hq * tq * tkv), x / (tq * tkv) % hq);
                pattern(b, h, x / tkv % tq, x % tkv)
            })
            .collect();
        let shape = [2, hq, tq, tkv];
        let m = mask(
            &r,
            &MaskDesc::new(MaskKind::Bool(BoolMask {
                shape: &shape,
                data: &data,
            })),
        );
        assert!(m.varies_by_head() && !m.all_spans());
        let x = Inputs::random(d as u64, &r, dt);
        let s = sdpa(gpu, d, dt, 0.125, Some(50.0));
        let out = run_in(&s, gpu, &r, &x, &m);
        let want = reference_with(&r, &x.q, &x.k, &x.v, 0.125, Some(50.0), pattern);
        let tol = budget(&r, &x, 0.125, Some(50.0));
        assert_accurate(&format!("D={d} per-head masks"), &want, &out, tol);
        // Also head by head, so one head's error cannot hide in the others' average.
        let n = tq * d;
        for b in 0..2 {
            for h in 0..hq {
                let o = row_off(hq, tq, d, b, h, 0);
                let acc = accuracy(&want[o..o + n], &out[o..o + n]);
                assert!(
                    acc.max_abs <= tol.0,
                    "D={d} b={b} head {h}: {acc:?} vs {tol:?}"
                );
            }
        }
    }
}

/// A Dense row (holes inside its span) matches the oracle, and masked keys holding NaN never
/// reach the output; the same row gives the same bits in a group with span rows.
#[test]
fn dense_row_matches_reference() {
    let Some(gpu) = gpu() else { return };
    for (d, hq, hkv, dt) in combos().into_iter().step_by(3) {
        let (tq, tkv) = (2, 600);
        let r = rect(1, hq, hkv, tq, tkv, d);
        let mut x = Inputs::random(17, &r, dt);
        let hole = |j: usize| j % 5 == 2 || (300..310).contains(&j);
        let keep = |j: usize| (8..590).contains(&j) && !hole(j);
        for h in 0..hkv {
            for j in (0..tkv).filter(|&j| !keep(j)) {
                let o = row_off(hkv, tkv, d, 0, h, j);
                for kv in [&mut x.k, &mut x.v] {
                    kv.f32[o..o + d].fill(f32::NAN);
                    kv.f16[o..o + d].fill(half::f16::NAN);
                }
            }
        }
        let row: Vec<bool> = (0..tkv).map(keep).collect();
        let shape = [tkv];
        let dense = mask(
            &r,
            &MaskDesc::new(MaskKind::Bool(BoolMask {
                shape: &shape,
                data: &row,
            })),
        );
        assert!(matches!(
            dense.row(0, 0, 0),
            KeySet::Dense { lo: 8, hi: 590, .. }
        ));
        let s = sdpa(gpu, d, dt, 1.0 / (d as f32).sqrt(), None);
        let out = run_in(&s, gpu, &r, &x, &dense);
        let want = reference_with(
            &r,
            &x.q,
            &x.k,
            &x.v,
            1.0 / (d as f32).sqrt(),
            None,
            |_, _, _, j| keep(j),
        );
        // The budget from NaN-free data: the NaN keys are excluded from the mass.
        let clean = Inputs::random(17, &r, dt);
        let tol = budget(&r, &clean, 1.0 / (d as f32).sqrt(), None);
        assert_accurate(
            &format!("D={d} {hq}:{hkv} {dt:?} dense row"),
            &want,
            &out,
            tol,
        );

        // Per-query-row masks: row 0 dense, row 1 the whole span [8, 590) including the NaN
        // holes, so both share one workgroup and keys row 0 skips are live for row 1; row 0
        // keeps its bits. (Row 1 should be NaN: see `nan_key_in_the_set_is_never_dropped`.)
        let two: Vec<bool> = (0..tq * tkv)
            .map(|x| {
                if x < tkv {
                    keep(x)
                } else {
                    (8..590).contains(&(x % tkv))
                }
            })
            .collect();
        let shape2 = [tq, tkv];
        let mixed = mask(
            &r,
            &MaskDesc::new(MaskKind::Bool(BoolMask {
                shape: &shape2,
                data: &two,
            })),
        );
        let out2 = run_in(&s, gpu, &r, &x, &mixed);
        for h in 0..hq {
            assert_same_bits(
                q_row(&out2, &r, 0, h, 0),
                q_row(&out, &r, 0, h, 0),
                &format!("D={d} {hq}:{hkv} {dt:?} head {h}: dense row grouped with another row"),
            );
        }
    }
}

/// head_dim 512 over 4097 keys (16 full chunks and one of a single key), f16 and f32, random
/// and Gemma-like data: within budget, and bitwise equal to the same row in a batch of 2.
#[test]
fn d512_over_4097_keys() {
    let Some(gpu) = gpu() else { return };
    let (d, tkv) = (512, 4097);
    for (dt, gemma) in [(KvDType::F16, true), (KvDType::F32, false)] {
        let (scale, cap) = if gemma {
            (1.0, Some(50.0))
        } else {
            (1.0 / 512f32.sqrt(), None)
        };
        let alone = rect(1, 8, 1, 2, tkv, d);
        let x = if gemma {
            Inputs::gemma(4, &alone, dt)
        } else {
            Inputs::random(4, &alone, dt)
        };
        let s = sdpa(gpu, d, dt, scale, cap);
        let m = mask(&alone, &MaskDesc::new(MaskKind::Causal { window: None }));
        let out = run_in(&s, gpu, &alone, &x, &m);
        let want = reference_with(&alone, &x.q, &x.k, &x.v, scale, cap, |_, _, i, j| {
            causal(2, tkv, None, i, j)
        });
        let acc = assert_accurate(
            "D=512 Tkv=4097",
            &want,
            &out,
            budget(&alone, &x, scale, cap),
        );
        eprintln!("D=512 Tkv=4097 {dt:?} gemma={gemma}: {acc:?}");

        // Batch of 2: a different, shorter neighbour first, our sequence second.
        let pair = rect(2, 8, 1, 2, tkv, d);
        let other = Inputs::random(99, &alone, dt);
        let cat = |a: &[f32], b: &[f32]| -> Vec<f32> { a.iter().chain(b).copied().collect() };
        let px = Inputs {
            q: cat(&other.q, &x.q),
            k: Kv::new(cat(&other.k.f32, &x.k.f32), dt),
            v: Kv::new(cat(&other.v.f32, &x.v.f32), dt),
        };
        let hi = [1500u32, tkv as u32];
        let pm = mask(
            &pair,
            &MaskDesc::new(MaskKind::Causal { window: None }).with_key_hi(&hi),
        );
        let pout = run_in(&s, gpu, &pair, &px, &pm);
        assert_same_bits(
            &pout[out.len()..],
            &out,
            &format!("D=512 Tkv=4097 {dt:?}: batch of 2 vs alone"),
        );
    }
}

/// A row of 36000 keys: 141 chunks, 9 merge groups of 16, more than the merge folds in one
/// round (8 groups), so the level-2 fold continues across rounds. Within budget, and bitwise
/// equal to the same row in a batch of 2 beside a shorter neighbour (one round).
#[test]
fn long_row_merges_over_several_rounds() {
    let Some(gpu) = gpu() else { return };
    let (d, tkv) = (64, 36000);
    let dt = KvDType::F16;
    let alone = rect(1, 8, 1, 1, tkv, d);
    let x = Inputs::gemma(5, &alone, dt);
    let s = sdpa(gpu, d, dt, 1.0, None);
    let out = run_in(&s, gpu, &alone, &x, &no_mask(&alone));
    let want = reference_with(&alone, &x.q, &x.k, &x.v, 1.0, None, |_, _, _, _| true);
    let acc = assert_accurate("D=64 Tkv=36000", &want, &out, budget(&alone, &x, 1.0, None));
    eprintln!("D=64 Tkv=36000: {acc:?}");

    let pair = rect(2, 8, 1, 1, tkv, d);
    let other = Inputs::random(98, &alone, dt);
    let cat = |a: &[f32], b: &[f32]| -> Vec<f32> { a.iter().chain(b).copied().collect() };
    let px = Inputs {
        q: cat(&other.q, &x.q),
        k: Kv::new(cat(&other.k.f32, &x.k.f32), dt),
        v: Kv::new(cat(&other.v.f32, &x.v.f32), dt),
    };
    let hi = [20000u32, tkv as u32];
    let pm = mask(&pair, &MaskDesc::new(MaskKind::None).with_key_hi(&hi));
    let pout = run_in(&s, gpu, &pair, &px, &pm);
    assert_same_bits(
        &pout[out.len()..],
        &out,
        "D=64 Tkv=36000: batch of 2 vs alone",
    );
}

/// A key inside a row's set is never dropped, even when its score is NaN: the row is NaN alone,
/// in a group of rows with its own span, and in a group whose other row has a different span.
/// (NaN bit patterns are compared after canonicalising NaN, since payloads are not portable.)
///
/// Minimal case: D = 64, f32, Tq = 2, Tkv = 4, key 1 all NaN; row 0 attends keys 0..4, row 1
/// attends keys 0..4 (uniform group) or 0..3 (mixed group).
///
/// Membership is decided from the row's valid bits (the -1 marker), never from the sign of p,
/// so a NaN key is never silently dropped (this failed before the marker test was changed).
#[test]
fn nan_key_in_the_set_is_never_dropped() {
    let Some(gpu) = gpu() else { return };
    let r = rect(1, 1, 1, 2, 4, 64);
    let mut x = Inputs::random(1, &r, KvDType::F32);
    x.k.f32[64..128].fill(f32::NAN);
    let s = sdpa(gpu, 64, KvDType::F32, 0.125, None);
    let canon = |v: &[f32]| -> Vec<f32> {
        v.iter()
            .map(|&x| if x.is_nan() { f32::NAN } else { x })
            .collect()
    };
    let alone_rect = rect(1, 1, 1, 1, 4, 64);
    let alone_x = Inputs {
        q: x.q[..64].to_vec(),
        k: Kv::new(x.k.f32.clone(), KvDType::F32),
        v: Kv::new(x.v.f32.clone(), KvDType::F32),
    };
    let alone = run_in(&s, gpu, &alone_rect, &alone_x, &no_mask(&alone_rect));
    assert!(
        alone.iter().all(|v| v.is_nan()),
        "a row attending a NaN key is NaN"
    );
    let shape = [2, 4];
    for (name, row1) in [("uniform", [true; 4]), ("mixed", [true, true, true, false])] {
        let data: Vec<bool> = [true; 4].iter().chain(&row1).copied().collect();
        let b = BoolMask {
            shape: &shape,
            data: &data,
        };
        let m = mask(&r, &MaskDesc::new(MaskKind::Bool(b)));
        let out = run_in(&s, gpu, &r, &x, &m);
        assert_same_bits(
            &canon(q_row(&out, &r, 0, 0, 0)),
            &canon(&alone),
            &format!("row 0 (keys 0..4, key 1 NaN) in a {name} group vs alone"),
        );
    }
}
