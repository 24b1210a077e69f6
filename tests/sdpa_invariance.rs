//! Bitwise batch invariance of the one-path SDPA: a row's output bits depend only on its own
//! query, keys and values. Proved here by `==` on the bit patterns, over head_dim 64/256/512,
//! GQA 8:1 and 4:2, f16 and f32 K/V ([`combos`]):
//! - every mask form selecting the same keys (None, all-true bool, all-zero additive in
//!   f32/f16/bf16, full key ranges; explicit causal / sliding-window masks vs `MaskKind::Causal`)
//!   gives the same bits;
//! - a left-padded row in a batch (via key_lo or via a bool mask, with and without causal and
//!   sliding window) equals the same row computed alone over just its real keys;
//! - a sequence gives the same bits in batches of 1, 3 and 8 with different neighbours;
//! - repeated runs (fresh pipelines, prepared calls encoded twice) give the same bits.
//!
//! Prefill vs decode is in `sdpa_decode.rs`.

mod common;
use common::*;
use onepath::mask::{AdditiveMask, BoolMask, MaskDType, MaskDesc, MaskKind};
use onepath::ops::sdpa::{KvDType, Rect, SdpaBuffers, key_blocks, rect_rows};

/// Keys per sequence for the bitwise matrix: several 256-key chunks, fewer at D = 512.
fn kv_len(d: usize) -> usize {
    if d == 512 { 300 } else { 520 }
}

/// Keys `[from, to)` of batch entry `b` as a `[1, Hkv, to - from, D]` tensor.
fn entry_keys(rect: &Rect, x: &[f32], b: usize, from: usize, to: usize) -> Vec<f32> {
    (0..rect.kv_heads)
        .flat_map(|h| kv_rows(x, rect, b, h, from, to).iter().copied())
        .collect()
}

/// The `[Hq, Tq, D]` block of batch entry `b` (q or output).
fn entry_rows<'a>(rect: &Rect, x: &'a [f32], b: usize) -> &'a [f32] {
    let n = rect.q_heads * rect.q_len * rect.head_dim;
    &x[b * n..(b + 1) * n]
}

#[test]
fn mask_forms_are_one_computation() {
    let Some(gpu) = gpu() else { return };
    for (d, hq, hkv, dt) in combos() {
        let tkv = kv_len(d);
        let rect = rect(2, hq, hkv, 3, tkv, d);
        let x = Inputs::random(d as u64 + hq as u64, &rect, dt);
        let s = sdpa(gpu, d, dt, 1.0 / (d as f32).sqrt(), None);
        let ctx = format!("D={d} {hq}:{hkv} {dt:?}");
        let base = run_in(&s, gpu, &rect, &x, &no_mask(&rect));

        let t = vec![true; rect.batch * hq * 3 * tkv];
        let zeros = vec![0.0f32; 3 * tkv];
        let neg_zeros = vec![-0.0f32; tkv];
        let full_lo = vec![0u32; rect.batch];
        let full_hi = vec![tkv as u32; rect.batch];
        let (s1, s2, s2b, s4, s4b) = ([tkv], [3, tkv], [1, tkv], [2, hq, 3, tkv], [1, 1, 3, tkv]);
        let all_keys: Vec<(&str, MaskDesc)> = vec![
            (
                "bool [Tkv]",
                MaskDesc::new(MaskKind::Bool(BoolMask {
                    shape: &s1,
                    data: &t[..tkv],
                })),
            ),
            (
                "bool [B, H, Tq, Tkv]",
                MaskDesc::new(MaskKind::Bool(BoolMask {
                    shape: &s4,
                    data: &t,
                })),
            ),
            (
                "additive f32 zeros [Tq, Tkv]",
                MaskDesc::new(MaskKind::Additive(AdditiveMask {
                    shape: &s2,
                    data: &zeros,
                    dtype: MaskDType::F32,
                })),
            ),
            (
                "additive f16 -0.0 [1, Tkv]",
                MaskDesc::new(MaskKind::Additive(AdditiveMask {
                    shape: &s2b,
                    data: &neg_zeros,
                    dtype: MaskDType::F16,
                })),
            ),
            (
                "additive bf16 zeros [1, 1, Tq, Tkv]",
                MaskDesc::new(MaskKind::Additive(AdditiveMask {
                    shape: &s4b,
                    data: &zeros,
                    dtype: MaskDType::BF16,
                })),
            ),
            (
                "key_lo = 0, key_hi = Tkv",
                MaskDesc::new(MaskKind::None)
                    .with_key_lo(&full_lo)
                    .with_key_hi(&full_hi),
            ),
        ];
        for (name, desc) in &all_keys {
            let m = mask(&rect, desc);
            assert_eq!(m, no_mask(&rect), "{ctx} {name}: canonical form");
            let out = run_in(&s, gpu, &rect, &x, &m);
            assert_same_bits(&out, &base, &format!("{ctx}: {name} vs None"));
        }

        // Causal and sliding window: explicit boolean and additive masks vs the causal kind.
        for window in [None, Some(100)] {
            let kind = mask(&rect, &MaskDesc::new(MaskKind::Causal { window }));
            let want = run_in(&s, gpu, &rect, &x, &kind);
            let bools = causal_bools(3, tkv, window);
            let s3 = [1, 3, tkv];
            let add: Vec<f32> = bools
                .iter()
                .map(|&on| if on { 0.0 } else { f32::NEG_INFINITY })
                .collect();
            let add16: Vec<f32> = bools
                .iter()
                .map(|&on| if on { 0.0 } else { -65504.0 })
                .collect();
            let forms = [
                (
                    "bool [Tq, Tkv]",
                    MaskKind::Bool(BoolMask {
                        shape: &s2,
                        data: &bools,
                    }),
                ),
                (
                    "additive f32 -inf",
                    MaskKind::Additive(AdditiveMask {
                        shape: &s3,
                        data: &add,
                        dtype: MaskDType::F32,
                    }),
                ),
                (
                    "additive f16 -65504",
                    MaskKind::Additive(AdditiveMask {
                        shape: &s2,
                        data: &add16,
                        dtype: MaskDType::F16,
                    }),
                ),
            ];
            for (name, kind) in forms {
                let out = run_in(&s, gpu, &rect, &x, &mask(&rect, &MaskDesc::new(kind)));
                assert_same_bits(
                    &out,
                    &want,
                    &format!("{ctx}: explicit {name} vs Causal {{ window: {window:?} }}"),
                );
            }
        }
    }
}

/// How entry 1's left padding is expressed.
#[derive(Clone, Copy, Debug)]
enum Pad {
    KeyLo,
    BoolMask,
}

#[test]
fn left_padded_row_equals_row_alone() {
    let Some(gpu) = gpu() else { return };
    for (d, hq, hkv, dt) in combos() {
        let tkv = kv_len(d) + 40;
        let pad = 37;
        let s = sdpa(gpu, d, dt, 1.0 / (d as f32).sqrt(), None);
        for tq in [1, 5] {
            let rect = rect(3, hq, hkv, tq, tkv, d);
            let mut x = Inputs::random(7 * d as u64 + tq as u64, &rect, dt);
            // Entry 1's padded keys hold NaN: a skipped key must never be read into a row.
            for h in 0..hkv {
                let o = row_off(hkv, tkv, d, 1, h, 0);
                for kv in [&mut x.k, &mut x.v] {
                    kv.f32[o..o + pad * d].fill(f32::NAN);
                    kv.f16[o..o + pad * d].fill(half::f16::NAN);
                }
            }
            let solo = self::rect(1, hq, hkv, tq, tkv - pad, d);
            let sx = Inputs {
                q: entry_rows(&rect, &x.q, 1).to_vec(),
                k: Kv::new(entry_keys(&rect, &x.k.f32, 1, pad, tkv), dt),
                v: Kv::new(entry_keys(&rect, &x.v.f32, 1, pad, tkv), dt),
            };
            // Neighbours: entry 0 full, entry 2 ragged at both ends.
            let lo = [0u32, pad as u32, 10];
            let hi = [tkv as u32, tkv as u32, tkv as u32 - 50];
            let in_range: Vec<bool> = (0..3 * tkv)
                .map(|x| lo[x / tkv] as usize <= x % tkv && x % tkv < hi[x / tkv] as usize)
                .collect();
            for window in [None, Some(100), Some(0)] {
                // Some(0) stands for "no causal mask" here.
                let kind = match window {
                    Some(0) => MaskKind::None,
                    w => MaskKind::Causal { window: w },
                };
                let want = run_in(&s, gpu, &solo, &sx, &mask(&solo, &MaskDesc::new(kind)));
                for how in [Pad::KeyLo, Pad::BoolMask] {
                    let m = match how {
                        Pad::KeyLo => mask(
                            &rect,
                            &MaskDesc::new(kind).with_key_lo(&lo).with_key_hi(&hi),
                        ),
                        Pad::BoolMask if matches!(kind, MaskKind::None) => {
                            let b = BoolMask {
                                shape: &[3, 1, 1, tkv],
                                data: &in_range,
                            };
                            mask(&rect, &MaskDesc::new(MaskKind::Bool(b)))
                        }
                        Pad::BoolMask => {
                            // Causal AND padding in one explicit [B, 1, Tq, Tkv] mask.
                            let data: Vec<bool> = (0..3 * tq * tkv)
                                .map(|x| {
                                    let (b, i, j) = (x / (tq * tkv), x / tkv % tq, x % tkv);
                                    in_range[b * tkv + j] && causal(tq, tkv, window, i, j)
                                })
                                .collect();
                            let b = BoolMask {
                                shape: &[3, 1, tq, tkv],
                                data: &data,
                            };
                            mask(&rect, &MaskDesc::new(MaskKind::Bool(b)))
                        }
                    };
                    let out = run_in(&s, gpu, &rect, &x, &m);
                    assert_same_bits(
                        entry_rows(&rect, &out, 1),
                        &want,
                        &format!(
                            "D={d} {hq}:{hkv} {dt:?} Tq={tq} {kind:?} padding via {how:?}: \
                             padded entry vs alone"
                        ),
                    );
                }
            }
        }
    }
}

#[test]
fn batch_composition_does_not_change_bits() {
    let Some(gpu) = gpu() else { return };
    for (d, hq, hkv, dt) in combos() {
        let len = kv_len(d) - 70;
        let s = sdpa(gpu, d, dt, 1.0 / (d as f32).sqrt(), None);
        let ctx = format!("D={d} {hq}:{hkv} {dt:?}");
        let alone = rect(1, hq, hkv, 2, len, d);
        let seq = Inputs::random(11 * d as u64, &alone, dt);
        let want = run_in(&s, gpu, &alone, &seq, &no_mask(&alone));
        // (batch, slot of the sequence, padded key count, neighbour seed)
        for (batch, slot, tkv, seed) in [(3, 1, len + 150, 1), (8, 5, len + 100, 2), (3, 0, len, 3)]
        {
            let r = rect(batch, hq, hkv, 2, tkv, d);
            let mut x = Inputs::random(seed, &r, dt);
            let n = hq * 2 * d;
            x.q[slot * n..(slot + 1) * n].copy_from_slice(&seq.q);
            let (mut k, mut v) = (x.k.f32.clone(), x.v.f32.clone());
            for h in 0..hkv {
                let o = row_off(hkv, tkv, d, slot, h, 0);
                k[o..o + len * d].copy_from_slice(kv_rows(&seq.k.f32, &alone, 0, h, 0, len));
                v[o..o + len * d].copy_from_slice(kv_rows(&seq.v.f32, &alone, 0, h, 0, len));
            }
            (x.k, x.v) = (Kv::new(k, dt), Kv::new(v, dt));
            // Neighbours get other lengths (some shorter, one a single key); ours ends at `len`.
            let hi: Vec<u32> = (0..batch)
                .map(|b| if b == slot { len } else { [tkv, 1, tkv - 33, 257][b % 4] } as u32)
                .collect();
            let m = mask(&r, &MaskDesc::new(MaskKind::None).with_key_hi(&hi));
            let out = run_in(&s, gpu, &r, &x, &m);
            assert_same_bits(
                entry_rows(&r, &out, slot),
                &want,
                &format!("{ctx}: sequence in slot {slot} of a batch of {batch} vs alone"),
            );
        }
    }
}

#[test]
fn repeated_runs_are_identical() {
    let Some(gpu) = gpu() else { return };
    for (d, hq, hkv, dt) in combos() {
        let rect = rect(2, hq, hkv, 2, 300, d);
        let x = Inputs::random(3, &rect, dt);
        let m = mask(&rect, &MaskDesc::new(MaskKind::Causal { window: None }));
        let ctx = format!("D={d} {hq}:{hkv} {dt:?}");
        let s = sdpa(gpu, d, dt, 0.1, Some(30.0));
        let first = run_in(&s, gpu, &rect, &x, &m);
        for rep in 0..2 {
            let again = run_in(&s, gpu, &rect, &x, &m);
            assert_same_bits(&again, &first, &format!("{ctx}: run {rep} vs first"));
        }
        let fresh = sdpa(gpu, d, dt, 0.1, Some(30.0));
        let out = run_in(&fresh, gpu, &rect, &x, &m);
        assert_same_bits(&out, &first, &format!("{ctx}: fresh Sdpa vs first"));

        // One prepared call encoded twice into one command buffer, over a dirty output buffer.
        let rows = rect_rows(&rect, &m).unwrap();
        let qb = gpu.storage_from("q", &le_bytes(&x.q)).unwrap();
        let kb = gpu.storage_from("k", &key_bytes(&x.k, d)).unwrap();
        let vb = gpu.storage_from("v", &kv_bytes(&x.v)).unwrap();
        let dirty = vec![f32::NAN; rect.q_elems()];
        let ob = gpu.storage_from("out", &le_bytes(&dirty)).unwrap();
        let bufs = SdpaBuffers {
            q: &qb,
            k: &kb,
            v: &vb,
            out: &ob,
        };
        let p = s.prepare(gpu, &rows, d as u32, bufs).unwrap();
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        p.encode(&mut enc, None);
        p.encode(&mut enc, None);
        gpu.queue.submit([enc.finish()]);
        gpu.wait_idle().unwrap();
        let out: Vec<f32> = pollster::block_on(onepath::gpu::read_buffer_as(gpu, &ob)).unwrap();
        assert_same_bits(&out, &first, &format!("{ctx}: prepared call encoded twice"));
    }
}

fn le_bytes(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The bytes the kernel reads for K or V (f16 pairs or f32).
fn kv_bytes(kv: &Kv) -> Vec<u8> {
    match kv.dtype {
        KvDType::F16 => kv.f16.iter().flat_map(|v| v.to_le_bytes()).collect(),
        KvDType::F32 => le_bytes(&kv.f32),
    }
}

/// The bytes of K in the key-blocked layout the kernels read.
fn key_bytes(kv: &Kv, d: usize) -> Vec<u8> {
    match kv.dtype {
        KvDType::F16 => key_blocks(&kv.f16, d)
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        KvDType::F32 => le_bytes(&key_blocks(&kv.f32, d)),
    }
}
