//! The cases that need the GPU: op inputs (attention rows, matmuls, gathers, weights, block
//! ops) and the model's step API.

use super::{Case, Class, case};
use onepath::gpu::Gpu;
use onepath::mask::{KeySet, MaskDesc, MaskKind, canonicalize};
use onepath::ops::OpError;
use onepath::ops::qmm::{
    DenseMatmul, DenseWeights, EmbedGather, GatherRounding, QKernel, QMatmul, QWeights,
};
use onepath::ops::sdpa::{
    KvDType, KvData, Rect, RowSpec, Schedule, Sdpa, SdpaBuffers, SdpaConfig, SdpaWorkspace,
};
use onepath_model::{LoadOptions, Logits, Model, RunOptions, SeqInput};
use onepath_weights::{DType, quantize};
use std::sync::Arc;

const D: usize = 64;

fn sdpa(gpu: &Gpu, head_dim: usize, scale: f32, softcap: Option<f32>) -> Result<Sdpa, OpError> {
    let cfg = SdpaConfig {
        head_dim,
        kv_dtype: KvDType::F32,
        scale,
        softcap,
    };
    pollster::block_on(Sdpa::new(gpu, cfg))
}

fn row(out_off: u32, kv_base: u32, keys: KeySet) -> RowSpec {
    RowSpec {
        q_off: 0,
        out_off,
        kv_base,
        keys,
        pages: None,
    }
}

/// Prepares `rows` with buffers large enough for 512 keys (K: `k_bytes`, if given, instead).
fn prepare(
    gpu: &'static Gpu,
    rows: Vec<RowSpec>,
    stride: u32,
    k_bytes: Option<u64>,
) -> impl Fn() -> Result<(), String> {
    move || {
        let s = sdpa(gpu, D, 1.0, None).map_err(|e| e.to_string())?;
        let big = (512 * D * 4) as u64;
        let q = gpu.storage("q", big).map_err(|e| e.to_string())?;
        let k = gpu
            .storage("k", k_bytes.unwrap_or(big))
            .map_err(|e| e.to_string())?;
        let v = gpu.storage("v", big).map_err(|e| e.to_string())?;
        let out = gpu.storage("out", big).map_err(|e| e.to_string())?;
        let bufs = SdpaBuffers {
            q: &q,
            k: &k,
            v: &v,
            out: &out,
        };
        s.prepare(gpu, &rows, stride, bufs)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn qmatmul(gpu: &Gpu) -> QMatmul {
    let w: Vec<f32> = (0..8 * 64).map(|i| (i % 7) as f32 - 3.0).collect();
    let q = quantize(&w, 8, 64, 64, 4, DType::F16).expect("quantize");
    let qw = QWeights::upload(gpu, &q).expect("upload");
    pollster::block_on(QMatmul::new(gpu, qw)).expect("pipelines")
}

pub fn op_cases(gpu: &'static Gpu) -> Vec<Case> {
    use Class::Op;
    let span = |lo, hi| KeySet::Span { lo, hi };
    let dense_short = KeySet::Dense {
        lo: 0,
        hi: 290,
        bits: vec![0b101],
    };
    let paged = RowSpec {
        pages: Some(Arc::from(&[0u32][..])),
        ..row(0, 0, span(0, 100))
    };
    vec![
        case(
            Op,
            "attention with head_dim 96",
            "head_dim 96 is not supported: use 64, 128, 256 or 512",
            move || sdpa(gpu, 96, 1.0, None),
        ),
        case(
            Op,
            "attention with scale NaN",
            "scale = NaN is not allowed: it must be finite",
            move || sdpa(gpu, D, f32::NAN, None),
        ),
        case(
            Op,
            "attention with soft-cap -1",
            "softcap = -1 is not allowed: it must be finite and positive",
            move || sdpa(gpu, D, 1.0, Some(-1.0)),
        ),
        case(
            Op,
            "3 query heads on 2 KV heads",
            "3 query heads is not a multiple of 2 key/value heads",
            move || -> Result<(), OpError> {
                let s = sdpa(gpu, D, 1.0, None)?;
                let r = Rect {
                    batch: 1,
                    q_heads: 3,
                    kv_heads: 2,
                    q_len: 1,
                    kv_len: 4,
                    head_dim: D,
                };
                let none = MaskDesc::new(MaskKind::None);
                let m = canonicalize(&r.mask_shape(), &none)?;
                let (q, kv) = (vec![0.0; 3 * D], vec![0.0; 2 * 4 * D]);
                let (k, v) = (KvData::F32(&kv), KvData::F32(&kv));
                pollster::block_on(s.run_rect_host(gpu, &r, &q, k, v, &m)).map(|_| ())
            },
        ),
        case(
            Op,
            "a row whose span has lo > hi",
            "attention: row 0: key set Span { lo: 5, hi: 3 } is invalid: lo 5 > hi 3",
            prepare(gpu, vec![row(0, 0, span(5, 3))], D as u32, None),
        ),
        case(
            Op,
            "a dense key set whose words cover 64 of its 290 keys",
            concat!(
                "attention: row 1: key set Dense { lo: 0, hi: 290, 1 bit words } is invalid: ",
                "1 bit words cover 64 keys, but its span [0, 290) has 290 keys"
            ),
            prepare(
                gpu,
                vec![row(0, 0, span(0, 4)), row(64, 0, dense_short)],
                D as u32,
                None,
            ),
        ),
        case(
            Op,
            "two rows with the same out_off",
            "attention: row 1: its output (out_off 0) overlaps row 0's (out_off 0)",
            prepare(
                gpu,
                vec![row(0, 0, span(0, 4)), row(0, 0, span(0, 4))],
                D as u32,
                None,
            ),
        ),
        case(
            Op,
            "two rows whose outputs overlap by half",
            "attention: row 1: its output (out_off 32) overlaps row 0's (out_off 0)",
            prepare(
                gpu,
                vec![row(0, 0, span(0, 4)), row(32, 0, span(0, 4))],
                D as u32,
                None,
            ),
        ),
        case(
            Op,
            "a kv_base that is not a whole key row",
            "attention: row 0: kv_base 65 is not a multiple of head_dim 64",
            prepare(gpu, vec![row(0, 65, span(0, 4))], D as u32, None),
        ),
        case(
            Op,
            "a K/V stride that is not a whole key row",
            "attention K/V stride = 65 (head_dim 64) is not allowed",
            prepare(gpu, vec![row(0, 0, span(0, 4))], 65, None),
        ),
        case(
            Op,
            "a K buffer shorter than the keys",
            "attention K buffer = 256 bytes is not allowed: a row reaches past its end",
            prepare(gpu, vec![row(0, 0, span(0, 4))], D as u32, Some(256)),
        ),
        case(
            Op,
            "a page table that does not reach the row's keys",
            concat!(
                "attention page table = 1 pages for keys up to 99 is not allowed: ",
                "a row's keys must lie inside the pages of its table"
            ),
            prepare(gpu, vec![paged], D as u32, None),
        ),
        case(
            Op,
            "planning a row whose span has lo > hi",
            "attention: row 0: key set Span { lo: 7, hi: 2 }",
            move || -> Result<(), OpError> {
                let s = sdpa(gpu, D, 1.0, None)?;
                let mut ws = SdpaWorkspace::new();
                s.plan(
                    gpu,
                    &mut ws,
                    &[row(0, 0, span(7, 2))],
                    D as u32,
                    Schedule::Auto,
                )
                .map(|_| ())
            },
        ),
        case(
            Op,
            "a quantized matmul of M = 0 rows",
            concat!(
                "matmul: dimension `row of x (M)` is zero: ",
                "matmul needs at least one row of x (M)"
            ),
            move || -> Result<(), OpError> {
                let mm = qmatmul(gpu);
                let (x, y) = (gpu.storage("x", 256)?, gpu.storage("y", 256)?);
                mm.prepare(gpu, 0, &x, &y).map(|_| ())
            },
        ),
        case(
            Op,
            "a dense matmul of M = 0 rows",
            "matmul: dimension `row of x (M)` is zero",
            move || -> Result<(), OpError> {
                let w = vec![0u8; 8 * 64 * 4];
                let dw = DenseWeights::upload(gpu, &w, DType::F32, 8, 64, None)?;
                let mm = pollster::block_on(DenseMatmul::new(gpu, dw))?;
                let (x, y) = (gpu.storage("x", 256)?, gpu.storage("y", 256)?);
                mm.prepare(gpu, 0, &x, &y).map(|_| ())
            },
        ),
        case(
            Op,
            "a matmul whose x is too short for M = 3",
            "tensor `matmul x` has 64 elements but shape [3, 64] f32 needs 192",
            move || -> Result<(), OpError> {
                let mm = qmatmul(gpu);
                let (x, y) = (gpu.storage("x", 256)?, gpu.storage("y", 1024)?);
                mm.prepare(gpu, 3, &x, &y).map(|_| ())
            },
        ),
        case(
            Op,
            "a tiled matmul with 3 splits",
            "splits of a tiled call = 3",
            move || -> Result<(), OpError> {
                let mm = qmatmul(gpu);
                let (x, y) = (
                    gpu.storage("x", 64 * 64 * 4)?,
                    gpu.storage("y", 64 * 8 * 4)?,
                );
                mm.prepare_with(gpu, 64, &x, &y, QKernel::Tiled(3))
                    .map(|_| ())
            },
        ),
        case(
            Op,
            "3-bit weights for the GPU kernels",
            "bits = 3 is not allowed: the quantized kernels take 4 or 8 bits",
            move || -> Result<(), OpError> {
                let w = vec![0.5f32; 8 * 64];
                let q = quantize(&w, 8, 64, 64, 3, DType::F16)?;
                QWeights::upload(gpu, &q).map(|_| ())
            },
        ),
        case(
            Op,
            "dense weights with K = 12",
            "K (columns of W) = 12 is not allowed",
            move || DenseWeights::upload(gpu, &[0u8; 4 * 12], DType::F32, 1, 12, None).map(|_| ()),
        ),
        case(
            Op,
            "dense weights of the wrong byte length",
            "tensor `W bytes` has 100 elements but shape [2, 8] F32 needs 64",
            move || DenseWeights::upload(gpu, &[0u8; 100], DType::F32, 2, 8, None).map(|_| ()),
        ),
        case(
            Op,
            "gathering an id past the embedding table",
            "token id = 8 is not allowed: it is not a row of the embedding table",
            move || -> Result<(), OpError> {
                let mm = qmatmul(gpu);
                let table = mm.weights.clone();
                let g = pollster::block_on(EmbedGather::new(gpu, table, GatherRounding::F32))?;
                pollster::block_on(g.run_host(gpu, &[1, 8])).map(|_| ())
            },
        ),
        case(
            Op,
            "an RMSNorm with eps 0",
            "rms_norm eps = 0 is not allowed: it must be finite and positive",
            move || -> Result<(), OpError> {
                let k = pollster::block_on(onepath::ops::block::RmsNorm::new(gpu))?;
                let b = gpu.storage("b", 1024)?;
                k.prepare(gpu, (64, 1, 1), 0.0, &b, &b, &b, &b).map(|_| ())
            },
        ),
        case(
            Op,
            "a gelu_mul of 0 columns",
            "gelu_mul: dimension `column` is zero",
            move || -> Result<(), OpError> {
                let k = pollster::block_on(onepath::ops::block::GeluMul::new(gpu))?;
                let b = gpu.storage("b", 1024)?;
                k.prepare(gpu, (1, 0), (&b, 0, 0), (&b, 0, 0), &b)
                    .map(|_| ())
            },
        ),
    ]
}

pub fn step_cases(gpu: &'static Gpu) -> Vec<Case> {
    use Class::Step;
    let (cfg, ckpt) = onepath_model::shipped::checkpoint().expect("the shipped model");
    let vocab = cfg.vocab;
    let max = cfg.max_positions;
    let run = RunOptions::for_sequences(&cfg, 2, 64);
    let model = pollster::block_on(Model::load(
        gpu,
        cfg,
        ckpt,
        &LoadOptions::default(),
        run,
        &mut |_, _| {},
    ))
    .expect("the shipped model loads");
    let model = std::rc::Rc::new(std::cell::RefCell::new(model));
    let input = |seq: u64, pos: u32, tokens: Vec<u32>| SeqInput {
        seq,
        pos,
        tokens,
        logits: Logits::Last,
    };
    let step = move |inputs: Vec<SeqInput>| {
        let m = model.clone();
        move || pollster::block_on(m.borrow_mut().step(gpu, &inputs, false)).map(|_| ())
    };
    vec![
        case(
            Step,
            "a token id = vocab",
            format!("token id {vocab} at position 1 is outside the vocabulary (size {vocab})"),
            step(vec![input(1, 0, vec![2, vocab as u32])]),
        ),
        case(
            Step,
            "no tokens",
            "bad step: sequence 1 has no tokens in this step",
            step(vec![input(1, 0, vec![])]),
        ),
        case(
            Step,
            "one sequence twice in a step",
            "bad step: sequence 1 appears twice in one step",
            step(vec![input(1, 0, vec![2]), input(1, 1, vec![3])]),
        ),
        case(
            Step,
            "a new sequence not at position 0",
            concat!(
                "bad step: sequence 3 has 0 positions cached; ",
                "its tokens must start there, not at 5"
            ),
            step(vec![input(3, 5, vec![2])]),
        ),
        case(
            Step,
            "a prompt beyond the context",
            format!(
                "would reach {} positions, beyond the model's context of {max}",
                max + 1
            ),
            step(vec![input(4, 0, vec![2; max + 1])]),
        ),
    ]
}
