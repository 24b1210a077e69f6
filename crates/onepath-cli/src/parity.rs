//! `onepath parity`: the field's failing case, run on this adapter.
//!
//! MLX's Gemma 4 degenerates under continuous batching because a row's attention is computed
//! differently depending on the mask's form, padding, batch size and prefill/decode. This runs
//! exactly those comparisons (8 query heads on 1 KV head, Gemma-like RMS-normalised data, scale
//! 1.0) and checks that every one is bitwise equal, plus the error against an f64 reference.

use crate::util::{adapter_json, rms_rows, yes};
use half::f16;
use onepath_gpu::Gpu;
use onepath_mask::{AdditiveMask, BoolMask, MaskDType, MaskDesc, MaskKind, canonicalize};
use onepath_ops::sdpa::{KvDType, KvData, Rect, Schedule, Sdpa, SdpaConfig};
use serde_json::json;
use std::process::ExitCode;

const HQ: usize = 8;
/// Target sequence length: crosses the 256-key chunk boundaries twice.
const LEN: usize = 600;
/// Prefill rows (the last `PREFILL` positions of the sequence).
const PREFILL: usize = 16;

/// One sequence's data, position-major: q [pos, HQ, D], k and v [pos, D].
struct Seq {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl Seq {
    fn new(seed: u64, len: usize, d: usize) -> Seq {
        Seq {
            q: rms_rows(seed, len * HQ * d, d),
            k: rms_rows(seed + 1, len * d, d),
            v: rms_rows(seed + 2, len * d, d),
        }
    }
}

/// One batch entry: a sequence, how many of its positions it has (`kv_len`), left-padded so
/// that all entries end at the batch's Tkv, as mlx-lm's batched cache does.
struct Entry<'a> {
    seq: &'a Seq,
    kv_len: usize,
}

struct Case {
    mode: &'static str,
    head_dim: usize,
    kv_dtype: KvDType,
    mask_forms: bool,
    padded_vs_solo: bool,
    batch1_vs_batch8: bool,
    prefill_vs_decode: bool,
    schedules: bool,
    max_abs_err: f64,
}

impl Case {
    fn all_equal(&self) -> bool {
        self.mask_forms
            && self.padded_vs_solo
            && self.batch1_vs_batch8
            && self.prefill_vs_decode
            && self.schedules
    }
}

type R<T> = Result<T, Box<dyn std::error::Error>>;

pub fn run(gpu: &Gpu, as_json: bool) -> R<ExitCode> {
    let mut cases = Vec::new();
    for d in [256, 512] {
        for dt in [KvDType::F16, KvDType::F32] {
            let cfg = SdpaConfig {
                head_dim: d,
                kv_dtype: dt,
                scale: 1.0,
                softcap: None,
            };
            let sdpa = pollster::block_on(Sdpa::new(gpu, cfg))?;
            let target = Seq::new(1000 + d as u64, LEN, d);
            let others: Vec<Seq> = (0..8).map(|i| Seq::new(i * 10, LEN + 64, d)).collect();
            for tq in [1, PREFILL] {
                cases.push(case(gpu, &sdpa, &target, &others, tq)?);
            }
        }
    }
    let all = cases.iter().all(Case::all_equal);
    if as_json {
        let rows: Vec<_> = cases
            .iter()
            .map(|c| {
                json!({
                    "mode": c.mode, "head_dim": c.head_dim,
                    "kv_dtype": format!("{:?}", c.kv_dtype).to_lowercase(),
                    "gqa": "8:1",
                    "mask_forms_bitwise_equal": c.mask_forms,
                    "padded_vs_solo_bitwise_equal": c.padded_vs_solo,
                    "batch1_vs_batch8_bitwise_equal": c.batch1_vs_batch8,
                    "prefill_vs_decode_bitwise_equal": c.prefill_vs_decode,
                    "groups_vs_rows_schedule_bitwise_equal": c.schedules,
                    "max_abs_err_vs_f64": c.max_abs_err,
                })
            })
            .collect();
        let out = json!({"adapter": adapter_json(gpu), "cases": rows, "all_bitwise_equal": all});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("adapter: {}", gpu.describe());
        println!(
            "8 query heads on 1 KV head, Gemma-like data (RMS-normalised q/k/v, scale 1.0), \
             sequence of {LEN} keys; prefill = last {PREFILL} positions.\n\
             Each column: is the row bitwise equal across the two ways of computing it?\n"
        );
        println!(
            "{:<8} {:>4} {:>4}  {:>10} {:>14} {:>15} {:>17} {:>15}  {:>12}",
            "mode",
            "D",
            "K/V",
            "mask forms",
            "padded = solo",
            "batch 1 = 8",
            "prefill = decode",
            "groups = rows",
            "max |err|"
        );
        for c in &cases {
            println!(
                "{:<8} {:>4} {:>4}  {:>10} {:>14} {:>15} {:>17} {:>15}  {:>12.3e}",
                c.mode,
                c.head_dim,
                format!("{:?}", c.kv_dtype).to_lowercase(),
                yes(c.mask_forms),
                yes(c.padded_vs_solo),
                yes(c.batch1_vs_batch8),
                yes(c.prefill_vs_decode),
                yes(c.schedules),
                c.max_abs_err
            );
        }
        println!(
            "\nmask forms: decode compares None, an all-True bool mask, an all-zero additive mask, \
             key lengths and `causal`;\n  prefill compares `causal`, an explicit bool causal mask \
             and additive causal masks (-inf and bf16-min).\nmax |err|: solo output against an f64 \
             reference (K/V as stored).\ngroups = rows: one workgroup per group of 8 rows vs one per row \
             (alone and in the batch of 8).\nall bitwise equal: {}",
            yes(all)
        );
    }
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs every comparison for one (mode, head_dim, dtype): `tq` = 1 is decode, else prefill.
fn case(gpu: &Gpu, sdpa: &Sdpa, target: &Seq, others: &[Seq], tq: usize) -> R<Case> {
    let d = sdpa.config.head_dim;
    let causal = MaskKind::Causal { window: None };
    let solo_entry = [Entry {
        seq: target,
        kv_len: LEN,
    }];
    let solo = run_batch(gpu, sdpa, &solo_entry, tq, LEN, causal, 0)?;

    // Mask forms: for decode every form selects all keys; for prefill, the causal forms.
    let (tkv, shape) = (LEN, [tq, LEN]);
    let causal_bool: Vec<bool> = (0..tq * tkv)
        .map(|x| x % tkv <= x / tkv + tkv - tq)
        .collect();
    let additive = |masked: f32| -> Vec<f32> {
        causal_bool
            .iter()
            .map(|&b| if b { 0.0 } else { masked })
            .collect()
    };
    let add_inf = additive(f32::NEG_INFINITY);
    let add_min = additive(half::bf16::MIN.to_f32());
    let mut forms = vec![
        MaskKind::Bool(BoolMask {
            shape: &shape,
            data: &causal_bool,
        }),
        MaskKind::Additive(AdditiveMask {
            shape: &shape,
            data: &add_inf,
            dtype: MaskDType::F32,
        }),
        MaskKind::Additive(AdditiveMask {
            shape: &shape,
            data: &add_min,
            dtype: MaskDType::BF16,
        }),
    ];
    if tq == 1 {
        forms.push(MaskKind::None);
    }
    let mut mask_forms = true;
    for form in forms {
        mask_forms &= run_batch(gpu, sdpa, &solo_entry, tq, LEN, form, 0)? == solo;
    }
    if tq == 1 {
        // Explicit full key lengths.
        let rect = rect_for(1, tq, LEN, d);
        let lo = [0u32];
        let hi = [LEN as u32];
        let desc = MaskDesc::new(MaskKind::None)
            .with_key_lo(&lo)
            .with_key_hi(&hi);
        mask_forms &= run_desc(gpu, sdpa, &solo_entry, &rect, &desc, (0, Schedule::Auto))? == solo;
    }

    // Padded inside a batch of 3 vs alone.
    let padded = [
        Entry {
            seq: &others[0],
            kv_len: LEN + 37,
        },
        Entry {
            seq: target,
            kv_len: LEN,
        },
        Entry {
            seq: &others[1],
            kv_len: LEN - 200,
        },
    ];
    let padded_vs_solo = run_batch(gpu, sdpa, &padded, tq, LEN + 37, causal, 1)? == solo;

    // Batch of 8 with neighbours of other lengths vs alone.
    let lens = [LEN + 64, 17, 300, LEN + 1, LEN, 256, 1, 513];
    let batch: Vec<Entry> = (0..8)
        .map(|i| Entry {
            seq: if i == 4 { target } else { &others[i] },
            kv_len: lens[i].max(tq),
        })
        .collect();
    let batch1_vs_batch8 = run_batch(gpu, sdpa, &batch, tq, LEN + 64, causal, 4)? == solo;

    // Prefill vs decode: each row of the prefill equals a one-position call over the cache
    // holding exactly the positions up to it. For decode, the row equals the last prefill row.
    let prefill_vs_decode = if tq == 1 {
        let pre = run_batch(gpu, sdpa, &solo_entry, PREFILL, LEN, causal, 0)?;
        last_rows(&pre, PREFILL, d) == solo
    } else {
        let mut ok = true;
        for i in 0..tq {
            let pos = LEN - tq + i;
            let e = [Entry {
                seq: target,
                kv_len: pos + 1,
            }];
            let one = run_batch(gpu, sdpa, &e, 1, pos + 1, causal, 0)?;
            ok &= one == row_at(&solo, tq, i, d);
        }
        ok
    };

    // Split heuristics: the same rows spread one workgroup per group of rows or one per row.
    let mut schedules = true;
    for sch in [Schedule::Groups, Schedule::Rows] {
        schedules &= run_batch_with(gpu, sdpa, &solo_entry, (tq, LEN), causal, 0, sch)? == solo;
        schedules &= run_batch_with(gpu, sdpa, &batch, (tq, LEN + 64), causal, 4, sch)? == solo;
    }

    let max_abs_err = reference_err(sdpa, target, tq, &solo)?;
    Ok(Case {
        mode: if tq == 1 { "decode" } else { "prefill" },
        head_dim: d,
        kv_dtype: sdpa.config.kv_dtype,
        mask_forms,
        padded_vs_solo,
        batch1_vs_batch8,
        prefill_vs_decode,
        schedules,
        max_abs_err,
    })
}

fn rect_for(batch: usize, tq: usize, tkv: usize, d: usize) -> Rect {
    Rect {
        batch,
        q_heads: HQ,
        kv_heads: 1,
        q_len: tq,
        kv_len: tkv,
        head_dim: d,
    }
}

/// Runs a left-padded batch with mask `kind` plus each entry's padding, and returns the bits of
/// entry `pick`'s output rows, [HQ, tq, D].
fn run_batch(
    gpu: &Gpu,
    sdpa: &Sdpa,
    entries: &[Entry],
    tq: usize,
    tkv: usize,
    kind: MaskKind,
    pick: usize,
) -> R<Vec<u32>> {
    run_batch_with(gpu, sdpa, entries, (tq, tkv), kind, pick, Schedule::Auto)
}

/// [`run_batch`] with the chunk work spread by `schedule`.
fn run_batch_with(
    gpu: &Gpu,
    sdpa: &Sdpa,
    entries: &[Entry],
    (tq, tkv): (usize, usize),
    kind: MaskKind,
    pick: usize,
    schedule: Schedule,
) -> R<Vec<u32>> {
    let d = sdpa.config.head_dim;
    let rect = rect_for(entries.len(), tq, tkv, d);
    let lo: Vec<u32> = entries.iter().map(|e| (tkv - e.kv_len) as u32).collect();
    let desc = MaskDesc::new(kind).with_key_lo(&lo);
    run_desc(gpu, sdpa, entries, &rect, &desc, (pick, schedule))
}

fn run_desc(
    gpu: &Gpu,
    sdpa: &Sdpa,
    entries: &[Entry],
    rect: &Rect,
    desc: &MaskDesc,
    (pick, schedule): (usize, Schedule),
) -> R<Vec<u32>> {
    let (tq, tkv, d) = (rect.q_len, rect.kv_len, rect.head_dim);
    let mut q = vec![0f32; rect.q_elems()];
    // Padding keys hold junk (not zeros), so a kernel that read them would be caught.
    let mut k = rms_rows(7, rect.kv_elems(), d);
    let mut v = rms_rows(8, rect.kv_elems(), d);
    for (b, e) in entries.iter().enumerate() {
        let pad = tkv - e.kv_len;
        k[(b * tkv + pad) * d..(b + 1) * tkv * d].copy_from_slice(&e.seq.k[..e.kv_len * d]);
        v[(b * tkv + pad) * d..(b + 1) * tkv * d].copy_from_slice(&e.seq.v[..e.kv_len * d]);
        for h in 0..HQ {
            for i in 0..tq {
                let pos = e.kv_len - tq + i;
                let src = (pos * HQ + h) * d;
                let dst = ((b * HQ + h) * tq + i) * d;
                q[dst..dst + d].copy_from_slice(&e.seq.q[src..src + d]);
            }
        }
    }
    let mask = canonicalize(&rect.mask_shape(), desc)?;
    let out = match sdpa.config.kv_dtype {
        KvDType::F16 => {
            let kh: Vec<f16> = k.iter().map(|&x| f16::from_f32(x)).collect();
            let vh: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            pollster::block_on(sdpa.run_rect_host_with(
                gpu,
                rect,
                &q,
                KvData::F16(&kh),
                KvData::F16(&vh),
                &mask,
                schedule,
            ))?
        }
        KvDType::F32 => pollster::block_on(sdpa.run_rect_host_with(
            gpu,
            rect,
            &q,
            KvData::F32(&k),
            KvData::F32(&v),
            &mask,
            schedule,
        ))?,
    };
    let n = HQ * tq * d;
    Ok(out[pick * n..(pick + 1) * n]
        .iter()
        .map(|x| x.to_bits())
        .collect())
}

/// Row `i` of every head of a [HQ, tq, D] output.
fn row_at(out: &[u32], tq: usize, i: usize, d: usize) -> Vec<u32> {
    (0..HQ)
        .flat_map(|h| out[(h * tq + i) * d..(h * tq + i + 1) * d].iter().copied())
        .collect()
}

fn last_rows(out: &[u32], tq: usize, d: usize) -> Vec<u32> {
    row_at(out, tq, tq - 1, d)
}

/// Max |GPU - f64 reference| for the solo call (K/V rounded to their storage type first).
fn reference_err(sdpa: &Sdpa, seq: &Seq, tq: usize, solo: &[u32]) -> R<f64> {
    let d = sdpa.config.head_dim;
    let round = |x: &[f32]| -> Vec<f32> {
        match sdpa.config.kv_dtype {
            KvDType::F16 => x.iter().map(|&v| f16::from_f32(v).to_f32()).collect(),
            KvDType::F32 => x.to_vec(),
        }
    };
    let (k, v) = (round(&seq.k[..LEN * d]), round(&seq.v[..LEN * d]));
    let mut q = vec![0f32; HQ * tq * d];
    for h in 0..HQ {
        for i in 0..tq {
            let src = ((LEN - tq + i) * HQ + h) * d;
            q[(h * tq + i) * d..(h * tq + i + 1) * d].copy_from_slice(&seq.q[src..src + d]);
        }
    }
    let dims = onepath_ref::SdpaDims {
        batch: 1,
        q_heads: HQ,
        kv_heads: 1,
        q_len: tq,
        kv_len: LEN,
        head_dim: d,
    };
    let want = onepath_ref::sdpa(&dims, &q, &k, &v, 1.0, None, |_, _, i, j| j <= i + LEN - tq)?;
    let got: Vec<f32> = solo.iter().map(|&b| f32::from_bits(b)).collect();
    Ok(onepath_ref::max_abs_diff(&want, &got))
}
