//! Prefill and decode are one path: each row of a causal prefill over T positions has the same
//! bits as the single-position decode of that position over the cache grown to t + 1 keys,
//! whether the decode call's K/V hold exactly t + 1 keys or a larger, partly filled cache
//! (key_hi), with and without a sliding window, and as does a prefill split into two pieces
//! (chunked prefill). T crosses the 256-key chunk boundary. Every position is checked against a
//! decode over exactly t + 1 keys; positions 255, 256, 257, T - 1 and a few random ones also in
//! a T-slot cache. Runs over [`combos`], Gemma-like data with soft-cap for every other one.

mod common;
use common::*;
use onepath::mask::{MaskDesc, MaskKind};
use onepath::ops::sdpa::{KvDType, Rect, Sdpa};
use rand::Rng;

/// Positions checked in a fixed-capacity cache: chunk-boundary cases plus a few random ones.
fn positions(t: usize, seed: u64) -> Vec<usize> {
    let mut p = vec![0, 1, 99, 100, 101, 255, 256, 257, t - 1];
    let mut r = rng(seed);
    p.extend((0..3).map(|_| r.random_range(0..t)));
    p
}

/// Keys `[0, n)` of a `[1, Hkv, T, D]` tensor as a `[1, Hkv, n, D]` tensor.
fn prefix(rect: &Rect, x: &[f32], n: usize) -> Vec<f32> {
    (0..rect.kv_heads)
        .flat_map(|h| kv_rows(x, rect, 0, h, 0, n).iter().copied())
        .collect()
}

/// Query rows of position `t` for every head, as a `[1, Hq, 1, D]` tensor.
fn position_q(rect: &Rect, q: &[f32], t: usize) -> Vec<f32> {
    (0..rect.q_heads)
        .flat_map(|h| q_row(q, rect, 0, h, t).iter().copied())
        .collect()
}

/// Checks the prefill rows at `ts` against decodes over exactly t + 1 keys, and those at
/// `cache_ts` against decodes in a T-slot cache, for one configuration and window.
#[allow(clippy::too_many_arguments)]
fn prefill_equals_decodes(
    s: &Sdpa,
    full: &Rect,
    x: &Inputs,
    dt: KvDType,
    window: Option<u32>,
    ts: &[usize],
    cache_ts: &[usize],
    ctx: &str,
) {
    let gpu = gpu().unwrap();
    let (d, hq, hkv, t_len) = (full.head_dim, full.q_heads, full.kv_heads, full.kv_len);
    let causal = MaskDesc::new(MaskKind::Causal { window });
    let prefill = run_in(s, gpu, full, x, &mask(full, &causal));
    let prefill_row = |t: usize| position_q(full, &prefill, t);

    for &t in ts {
        // Decode over exactly t + 1 cached keys.
        let r = rect(1, hq, hkv, 1, t + 1, d);
        let dx = Inputs {
            q: position_q(full, &x.q, t),
            k: Kv::new(prefix(full, &x.k.f32, t + 1), dt),
            v: Kv::new(prefix(full, &x.v.f32, t + 1), dt),
        };
        let out = run_in(s, gpu, &r, &dx, &mask(&r, &causal));
        let what = format!(
            "{ctx} window {window:?}: prefill row {t} vs decode over {} keys",
            t + 1
        );
        assert_same_bits(&prefill_row(t), &out, &what);
    }

    // Decode over a fixed-capacity cache of T slots of which t + 1 are filled (key_hi); the
    // window then comes from key_lo, as a serving loop would pass it.
    for &t in cache_ts {
        let r = rect(1, hq, hkv, 1, t_len, d);
        let dx = Inputs {
            q: position_q(full, &x.q, t),
            k: Kv::new(x.k.f32.clone(), dt),
            v: Kv::new(x.v.f32.clone(), dt),
        };
        let lo = [window.map_or(0, |w| (t + 1).saturating_sub(w as usize)) as u32];
        let hi = [t as u32 + 1];
        let m = mask(
            &r,
            &MaskDesc::new(MaskKind::None)
                .with_key_lo(&lo)
                .with_key_hi(&hi),
        );
        let out = run_in(s, gpu, &r, &dx, &m);
        let what =
            format!("{ctx} window {window:?}: prefill row {t} vs decode in a {t_len}-slot cache");
        assert_same_bits(&prefill_row(t), &out, &what);
    }
}

/// Every position of every configuration; Gemma-like data with soft-cap for every other one.
#[test]
fn prefill_rows_equal_decodes() {
    let Some(gpu) = gpu() else { return };
    for (n, (d, hq, hkv, dt)) in combos().into_iter().enumerate() {
        let t_len = if d == 512 { 270 } else { 300 };
        let full = rect(1, hq, hkv, t_len, t_len, d);
        let gemma = n % 2 == 1;
        let (x, s) = if gemma {
            (
                Inputs::gemma(100 + n as u64, &full, dt),
                sdpa(gpu, d, dt, 1.0, Some(50.0)),
            )
        } else {
            let s = sdpa(gpu, d, dt, 1.0 / (d as f32).sqrt(), None);
            (Inputs::random(100 + n as u64, &full, dt), s)
        };
        let ctx = format!("D={d} {hq}:{hkv} {dt:?} gemma-like={gemma} T={t_len}");
        let all: Vec<usize> = (0..t_len).collect();
        let sampled = positions(t_len, n as u64);
        for window in [None, Some(100)] {
            prefill_equals_decodes(&s, &full, &x, dt, window, &all, &sampled, &ctx);
        }
    }
}

/// A prefill split in two calls (positions [0, a), then [a, T) over all T keys, lower-right
/// causal) equals the one-call prefill, for a split inside and at a chunk boundary.
#[test]
fn chunked_prefill_equals_one_call() {
    let Some(gpu) = gpu() else { return };
    for (n, (d, hq, hkv, dt)) in combos().into_iter().enumerate().step_by(3) {
        let t_len = 300;
        let full = rect(1, hq, hkv, t_len, t_len, d);
        let x = Inputs::random(200 + n as u64, &full, dt);
        let s = sdpa(gpu, d, dt, 1.0 / (d as f32).sqrt(), None);
        for window in [None, Some(100)] {
            let causal = MaskDesc::new(MaskKind::Causal { window });
            let one = run_in(&s, gpu, &full, &x, &mask(&full, &causal));
            for a in [100, 256] {
                for (from, to) in [(0, a), (a, t_len)] {
                    let r = rect(1, hq, hkv, to - from, to, d);
                    let mut q = Vec::with_capacity(hq * (to - from) * d);
                    for h in 0..hq {
                        for t in from..to {
                            q.extend_from_slice(q_row(&x.q, &full, 0, h, t));
                        }
                    }
                    let px = Inputs {
                        q,
                        k: Kv::new(prefix(&full, &x.k.f32, to), dt),
                        v: Kv::new(prefix(&full, &x.v.f32, to), dt),
                    };
                    let out = run_in(&s, gpu, &r, &px, &mask(&r, &causal));
                    for h in 0..hq {
                        for t in from..to {
                            assert_same_bits(
                                q_row(&out, &r, 0, h, t - from),
                                q_row(&one, &full, 0, h, t),
                                &format!(
                                    "D={d} {hq}:{hkv} {dt:?} window {window:?}: row ({h}, {t}) of \
                                     piece [{from}, {to}) vs one-call prefill"
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
}
