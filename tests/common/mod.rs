//! Helpers shared by the conformance tests: the test GPU, seeded data, and the f64 oracle.
#![allow(dead_code)]

use half::f16;
use onepath::gpu::{Gpu, GpuOptions};
use onepath::mask::{CanonicalMask, MaskDesc, MaskKind, canonicalize};
use onepath::ops::OpError;
use onepath::ops::sdpa::{KvDType, KvData, Rect, Sdpa, SdpaConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::OnceLock;

/// The GPU every test shares (backend from `ONEPATH_BACKEND`, default auto). Without an adapter
/// the test says so and returns `None`; with `CI` set that is a failure, never a skip.
pub fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        let backend = onepath::gpu::BackendChoice::from_env().expect("ONEPATH_BACKEND");
        let opts = GpuOptions {
            backend,
            force_fallback: false,
            shader_checks: GpuOptions::checks_from_env(),
        };
        match pollster::block_on(Gpu::new(&opts)) {
            Ok(g) => {
                eprintln!("test GPU: {}", g.describe());
                Some(g)
            }
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("CI is set and no GPU adapter is usable, which fails the run: {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED (no GPU adapter; CI would fail here): {e}");
                None
            }
        }
    })
    .as_ref()
}

/// A second device on the same backend with wgpu's shader run-time checks set to `checks`
/// (the shared [`gpu`] follows `ONEPATH_SHADER_CHECKS`, default off). `None` where [`gpu`] is.
pub fn gpu_with_checks(checks: bool) -> Option<Gpu> {
    gpu()?;
    let opts = GpuOptions {
        backend: onepath::gpu::BackendChoice::from_env().expect("ONEPATH_BACKEND"),
        force_fallback: false,
        shader_checks: checks,
    };
    Some(pollster::block_on(Gpu::new(&opts)).expect("a second device on the test adapter"))
}

/// Seeded standard-normal-ish data (sum of uniforms; deterministic across platforms).
pub fn randn(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| (0..4).map(|_| rng.random::<f32>() - 0.5).sum::<f32>() * 1.7)
        .collect()
}

/// Gemma-like rows: each row of `d` scaled to RMS 1 (what q_norm / k_norm / v_norm produce).
pub fn rms_rows(rng: &mut StdRng, n: usize, d: usize) -> Vec<f32> {
    let mut x = randn(rng, n);
    for row in x.chunks_mut(d) {
        let rms = (row.iter().map(|v| v * v).sum::<f32>() / d as f32).sqrt();
        row.iter_mut().for_each(|v| *v /= rms);
    }
    x
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// K/V storage for a test: the values the kernel reads, and the same values widened to f32
/// for the reference.
pub struct Kv {
    pub f16: Vec<f16>,
    pub f32: Vec<f32>,
    pub dtype: KvDType,
}

impl Kv {
    pub fn new(values: Vec<f32>, dtype: KvDType) -> Kv {
        let f16: Vec<f16> = values.iter().map(|&x| f16::from_f32(x)).collect();
        let f32 = match dtype {
            KvDType::F16 => f16.iter().map(|x| x.to_f32()).collect(),
            KvDType::F32 => values,
        };
        Kv { f16, f32, dtype }
    }

    pub fn data(&self) -> KvData<'_> {
        match self.dtype {
            KvDType::F16 => KvData::F16(&self.f16),
            KvDType::F32 => KvData::F32(&self.f32),
        }
    }
}

pub fn sdpa(
    gpu: &Gpu,
    head_dim: usize,
    kv_dtype: KvDType,
    scale: f32,
    softcap: Option<f32>,
) -> Sdpa {
    let cfg = SdpaConfig {
        head_dim,
        kv_dtype,
        scale,
        softcap,
    };
    pollster::block_on(Sdpa::new(gpu, cfg)).expect("sdpa pipelines")
}

pub fn mask(rect: &Rect, desc: &MaskDesc) -> CanonicalMask {
    canonicalize(&rect.mask_shape(), desc).expect("mask")
}

pub fn no_mask(rect: &Rect) -> CanonicalMask {
    mask(rect, &MaskDesc::new(MaskKind::None))
}

pub fn run(
    s: &Sdpa,
    gpu: &Gpu,
    rect: &Rect,
    q: &[f32],
    k: &Kv,
    v: &Kv,
    m: &CanonicalMask,
) -> Vec<f32> {
    pollster::block_on(s.run_rect_host(gpu, rect, q, k.data(), v.data(), m)).expect("sdpa run")
}

/// The f64 oracle for a rectangular call, with the mask given by the canonical form's rows.
pub fn reference(
    rect: &Rect,
    q: &[f32],
    k: &Kv,
    v: &Kv,
    m: &CanonicalMask,
    scale: f32,
    softcap: Option<f32>,
) -> Vec<f64> {
    reference_with(rect, q, k, v, scale, softcap, |b, h, i, j| {
        m.row(b, h, i).contains(j as u32)
    })
}

/// Bits of an f32 slice, for `==` comparisons that treat -0.0 and NaN payloads strictly.
pub fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

pub fn random_rect(rng: &mut StdRng) -> Rect {
    let kv_heads = [1, 2][rng.random_range(0..2)];
    Rect {
        batch: rng.random_range(1..4),
        q_heads: kv_heads * [1, 2, 4][rng.random_range(0..3)],
        kv_heads,
        q_len: rng.random_range(1..5),
        kv_len: rng.random_range(1..600),
        head_dim: 64,
    }
}

/// Unit roundoff of f32 (half an ulp of 1.0): the scale of every tolerance in these tests.
pub const U32: f64 = 1.0 / 16_777_216.0;

/// The bitwise-invariance matrix: (head_dim, query heads, KV heads, K/V storage), covering
/// D = 64, 256, 512, GQA 8:1 and 4:2, f16 and f32 K/V.
pub fn combos() -> Vec<(usize, usize, usize, KvDType)> {
    let mut v = Vec::new();
    for d in [64, 256, 512] {
        for (hq, hkv) in [(8, 1), (4, 2)] {
            for dt in [KvDType::F16, KvDType::F32] {
                v.push((d, hq, hkv, dt));
            }
        }
    }
    v
}

pub fn rect(
    batch: usize,
    q_heads: usize,
    kv_heads: usize,
    q_len: usize,
    kv_len: usize,
    head_dim: usize,
) -> Rect {
    Rect {
        batch,
        q_heads,
        kv_heads,
        q_len,
        kv_len,
        head_dim,
    }
}

/// q, K and V of one rectangular call.
pub struct Inputs {
    pub q: Vec<f32>,
    pub k: Kv,
    pub v: Kv,
}

impl Inputs {
    /// Seeded random inputs for `rect` (see [`randn`]).
    pub fn random(seed: u64, rect: &Rect, dtype: KvDType) -> Inputs {
        let mut r = rng(seed);
        let q = randn(&mut r, rect.q_elems());
        let k = Kv::new(randn(&mut r, rect.kv_elems()), dtype);
        let v = Kv::new(randn(&mut r, rect.kv_elems()), dtype);
        Inputs { q, k, v }
    }

    /// Gemma-like inputs: every q, k and v row has RMS 1 (used with scale 1.0).
    pub fn gemma(seed: u64, rect: &Rect, dtype: KvDType) -> Inputs {
        let d = rect.head_dim;
        let mut r = rng(seed);
        let q = rms_rows(&mut r, rect.q_elems(), d);
        let k = Kv::new(rms_rows(&mut r, rect.kv_elems(), d), dtype);
        let v = Kv::new(rms_rows(&mut r, rect.kv_elems(), d), dtype);
        Inputs { q, k, v }
    }
}

/// Like [`run`], but returns the error instead of panicking.
pub fn try_run(
    s: &Sdpa,
    gpu: &Gpu,
    rect: &Rect,
    q: &[f32],
    k: KvData<'_>,
    v: KvData<'_>,
    m: &CanonicalMask,
) -> Result<Vec<f32>, OpError> {
    pollster::block_on(s.run_rect_host(gpu, rect, q, k, v, m))
}

/// [`run`] on an [`Inputs`].
pub fn run_in(s: &Sdpa, gpu: &Gpu, rect: &Rect, x: &Inputs, m: &CanonicalMask) -> Vec<f32> {
    run(s, gpu, rect, &x.q, &x.k, &x.v, m)
}

/// The f64 oracle with the attended keys given by a predicate `(b, h, i, j)`, so expected
/// values can come from first principles rather than from the canonical mask under test.
#[allow(clippy::too_many_arguments)]
pub fn reference_with(
    rect: &Rect,
    q: &[f32],
    k: &Kv,
    v: &Kv,
    scale: f32,
    softcap: Option<f32>,
    selected: impl Fn(usize, usize, usize, usize) -> bool,
) -> Vec<f64> {
    let dims = onepath::reference::SdpaDims {
        batch: rect.batch,
        q_heads: rect.q_heads,
        kv_heads: rect.kv_heads,
        q_len: rect.q_len,
        kv_len: rect.kv_len,
        head_dim: rect.head_dim,
    };
    onepath::reference::sdpa(
        &dims,
        q,
        &k.f32,
        &v.f32,
        f64::from(scale),
        softcap.map(f64::from),
        selected,
    )
    .expect("reference")
}

/// Element offset of row `(b, h, i)` in a `[B, H, T, D]` tensor.
pub fn row_off(batch_heads: usize, len: usize, d: usize, b: usize, h: usize, i: usize) -> usize {
    ((b * batch_heads + h) * len + i) * d
}

/// Output (or q) row `(b, h, i)` of a rectangular call.
pub fn q_row<'a>(x: &'a [f32], rect: &Rect, b: usize, h: usize, i: usize) -> &'a [f32] {
    let o = row_off(rect.q_heads, rect.q_len, rect.head_dim, b, h, i);
    &x[o..o + rect.head_dim]
}

/// Keys `[from, to)` of batch entry `b`, KV head `h`, from a `[B, Hkv, Tkv, D]` tensor.
pub fn kv_rows<'a>(
    x: &'a [f32],
    rect: &Rect,
    b: usize,
    h: usize,
    from: usize,
    to: usize,
) -> &'a [f32] {
    let d = rect.head_dim;
    let o = row_off(rect.kv_heads, rect.kv_len, d, b, h, 0);
    &x[o + from * d..o + to * d]
}

/// Bitwise equality (`bits(a) == bits(b)`); on failure names the first differing element.
pub fn assert_same_bits(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    if bits(a) != bits(b) {
        let i = (0..a.len())
            .find(|&i| a[i].to_bits() != b[i].to_bits())
            .unwrap();
        let n = (0..a.len())
            .filter(|&i| a[i].to_bits() != b[i].to_bits())
            .count();
        panic!(
            "{what}: {n} of {} elements differ; first at index {i}: {:e} ({:#010x}) vs {:e} ({:#010x})",
            a.len(),
            a[i],
            a[i].to_bits(),
            b[i],
            b[i].to_bits()
        );
    }
}

/// Lower-right aligned causal predicate (query `i` of `tq` sits at `i + tkv - tq`), optionally
/// with a sliding window of `w` keys: written from the definition, independent of the mask crate.
pub fn causal(tq: usize, tkv: usize, window: Option<u32>, i: usize, j: usize) -> bool {
    let p = i as i64 + tkv as i64 - tq as i64;
    let j = j as i64;
    j <= p && window.is_none_or(|w| p - j < i64::from(w))
}

/// A `[tq, tkv]` boolean mask of [`causal`].
pub fn causal_bools(tq: usize, tkv: usize, window: Option<u32>) -> Vec<bool> {
    (0..tq * tkv)
        .map(|x| causal(tq, tkv, window, x / tkv, x % tkv))
        .collect()
}

/// Accuracy of a GPU output against the f64 oracle.
#[derive(Clone, Copy, Debug)]
pub struct Accuracy {
    pub max_abs: f64,
    pub rel_l2: f64,
}

pub fn accuracy(want: &[f64], got: &[f32]) -> Accuracy {
    Accuracy {
        max_abs: onepath::reference::max_abs_diff(want, got),
        rel_l2: onepath::reference::rel_l2(want, got),
    }
}

/// Largest `scale * sum_d |q_d * k_d|` over every (row, key) pair the call could pair up: the
/// magnitude the f32 dot products and logits are accumulated at (bounds |logit| too).
pub fn logit_mass(rect: &Rect, q: &[f32], k: &[f32], scale: f32) -> f64 {
    let d = rect.head_dim;
    let group = rect.q_heads / rect.kv_heads;
    let mut m = 0.0f64;
    for b in 0..rect.batch {
        for h in 0..rect.q_heads {
            let keys = kv_rows(k, rect, b, h / group, 0, rect.kv_len);
            for i in 0..rect.q_len {
                let qr = q_row(q, rect, b, h, i);
                for kr in keys.chunks(d) {
                    let s: f64 = qr
                        .iter()
                        .zip(kr)
                        .map(|(a, b)| f64::from(*a).abs() * f64::from(*b).abs())
                        .sum();
                    m = m.max(s);
                }
            }
        }
    }
    m * f64::from(scale).abs()
}

pub fn max_abs(x: &[f32]) -> f64 {
    x.iter().fold(0.0f64, |m, v| m.max(f64::from(*v).abs()))
}

/// The logit error scale `g = sqrt(D) * M + c + 1` of the accuracy budget (see
/// `sdpa_accuracy.rs`): `M` from [`logit_mass`], `c` the soft-cap (0 without).
pub fn logit_error_scale(
    rect: &Rect,
    q: &[f32],
    k: &[f32],
    scale: f32,
    softcap: Option<f32>,
) -> f64 {
    let m = logit_mass(rect, q, k, scale);
    (rect.head_dim as f64).sqrt() * m + f64::from(softcap.unwrap_or(0.0)) + 1.0
}

/// The accuracy budget `(max_abs, rel_l2)` of one call (derivation in `sdpa_accuracy.rs`).
pub fn budget(rect: &Rect, x: &Inputs, scale: f32, softcap: Option<f32>) -> (f64, f64) {
    let g = logit_error_scale(rect, &x.q, &x.k.f32, scale, softcap);
    let v = max_abs(&x.v.f32);
    (TOL_ABS * U32 * v * g, TOL_REL * U32 * g)
}

/// Multiplier of the absolute budget (`sdpa_accuracy.rs`: measured worst ratio 0.12).
pub const TOL_ABS: f64 = 1.0;
/// Multiplier of the relative-L2 budget (`sdpa_accuracy.rs`: measured worst ratio 0.22).
pub const TOL_REL: f64 = 2.0;

/// Checks `got` against the oracle within [`budget`]; returns the accuracy for reports.
pub fn assert_accurate(what: &str, want: &[f64], got: &[f32], tol: (f64, f64)) -> Accuracy {
    let acc = accuracy(want, got);
    assert!(
        acc.max_abs <= tol.0 && acc.rel_l2 <= tol.1,
        "{what}: max_abs {:e} rel_l2 {:e} exceed the budget ({:e}, {:e})",
        acc.max_abs,
        acc.rel_l2,
        tol.0,
        tol.1
    );
    acc
}
