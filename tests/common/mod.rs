//! Helpers shared by the conformance tests: the test GPU, seeded data, and the f64 oracle.
#![allow(dead_code)]

use half::f16;
use onepath::gpu::{Gpu, GpuOptions};
use onepath::mask::{CanonicalMask, MaskDesc, MaskKind, canonicalize};
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
        |b, h, i, j| m.row(b, h, i).contains(j as u32),
    )
    .expect("reference")
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
