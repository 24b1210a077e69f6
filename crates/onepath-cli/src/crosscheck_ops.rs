//! The op census of `onepath crosscheck`: the decoder's kernels one at a time, on the same
//! seeded inputs on every backend, their outputs compared bit for bit. Where two backends'
//! logits differ, this says which kernels already differ on their own; the first of those in
//! the decoder's order (listed in [`ORDER`]) is the op where the model's outputs first part.

use crate::crosscheck::LogitStats;
use onepath_gpu::{Gpu, read_buffer_as};
use onepath_mask::KeySet;
use onepath_ops::block::{Dispatch, GeluMul, RmsNorm, SoftcapArgmax};
use onepath_ops::linear::Linear;
use onepath_ops::sdpa::{KvDType, RowSpec, Sdpa, SdpaBuffers, SdpaConfig};
use onepath_weights::Checkpoint;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type R<T> = Result<T, Box<dyn std::error::Error>>;

/// The ops in the order a decoder layer (then the head) runs them.
pub const ORDER: [&str; 5] = [
    "rms_norm (sqrt, division)",
    "linear q_proj (4-bit or dense matmul, FMA)",
    "sdpa, f32 K/V, 300 keys (exp)",
    "gelu_mul (tanh)",
    "softcap_argmax (tanh)",
];

fn seeded(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| (rng.random::<f32>() - 0.5) * 2.0 * scale)
        .collect()
}

fn run(gpu: &Gpu, calls: &[&Dispatch]) {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        for c in calls {
            c.dispatch(&mut pass);
        }
    }
    gpu.queue.submit([enc.finish()]);
}

/// Each op's output on this backend, in [`ORDER`]; the linear is the checkpoint's first
/// `q_proj` (skipped, as an empty output, when it has none).
pub fn outputs(gpu: &Gpu, ckpt: &Checkpoint) -> R<Vec<Vec<f32>>> {
    pollster::block_on(async {
        let mut out = Vec::new();
        // rms_norm: 8 rows of 256.
        let (rows, n) = (8usize, 256usize);
        let x = gpu.storage_from("x", bytemuck::cast_slice(&seeded(1, rows * n, 3.0)))?;
        let w = gpu.storage_from("w", bytemuck::cast_slice(&seeded(2, n, 1.0)))?;
        let idx: Vec<u32> = (0..rows as u32).collect();
        let idx = gpu.storage_from("idx", bytemuck::cast_slice(&idx))?;
        let y = gpu.storage("y", (rows * n * 4) as u64)?;
        let op = RmsNorm::new(gpu).await?;
        let d = op.prepare(gpu, (n, rows, rows), 1e-6, &x, &w, &idx, &y)?;
        run(gpu, &[&d]);
        out.push(read_buffer_as::<f32>(gpu, &y).await?);

        // linear: the first q_proj, 3 rows.
        let name = ckpt
            .tensor_names()
            .into_iter()
            .find(|t| t.ends_with("q_proj.weight"))
            .map(|t| t.trim_end_matches(".weight").to_string());
        match name {
            Some(path) => {
                let lin = Linear::upload(gpu, &ckpt.linear(&path)?, None, None).await?;
                let m = 3;
                let xs = seeded(3, m * lin.cols(), 1.0);
                let x = gpu.storage_from("x", bytemuck::cast_slice(&xs))?;
                let y = gpu.storage("y", (m * lin.rows() * 4) as u64)?;
                let p = lin.prepare(gpu, m, &x, &y)?;
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                p.encode(&mut enc, None);
                gpu.queue.submit([enc.finish()]);
                out.push(read_buffer_as::<f32>(gpu, &y).await?);
            }
            None => out.push(Vec::new()),
        }

        // sdpa: 4 query rows of head_dim 64 over 300 keys (two chunks and their merge), f32
        // K/V from one buffer each (random values; the key-blocked layout needs no care here).
        let (d, keys, heads) = (64usize, 300u32, 4usize);
        let sdpa = Sdpa::new(
            gpu,
            SdpaConfig {
                head_dim: d,
                kv_dtype: KvDType::F32,
                scale: 1.0 / 8.0,
                softcap: None,
            },
        )
        .await?;
        let kv_len = 320 * d;
        let q = gpu.storage_from("q", bytemuck::cast_slice(&seeded(7, heads * d, 2.0)))?;
        let k = gpu.storage_from("k", bytemuck::cast_slice(&seeded(8, kv_len, 2.0)))?;
        let v = gpu.storage_from("v", bytemuck::cast_slice(&seeded(9, kv_len, 1.0)))?;
        let o = gpu.storage("o", (heads * d * 4) as u64)?;
        let rows: Vec<RowSpec> = (0..heads)
            .map(|h| RowSpec {
                q_off: (h * d) as u32,
                out_off: (h * d) as u32,
                kv_base: 0,
                keys: KeySet::Span { lo: 0, hi: keys },
                pages: None,
            })
            .collect();
        let bufs = SdpaBuffers {
            q: &q,
            k: &k,
            v: &v,
            out: &o,
        };
        let call = sdpa.prepare(gpu, &rows, d as u32, bufs)?;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        call.encode(&mut enc, None);
        gpu.queue.submit([enc.finish()]);
        out.push(read_buffer_as::<f32>(gpu, &o).await?);

        // gelu_mul: 8 rows of 512.
        let (rows, n) = (8usize, 512usize);
        let a = gpu.storage_from("a", bytemuck::cast_slice(&seeded(4, rows * n, 4.0)))?;
        let b = gpu.storage_from("b", bytemuck::cast_slice(&seeded(5, rows * n, 2.0)))?;
        let y = gpu.storage("y", (rows * n * 4) as u64)?;
        let op = GeluMul::new(gpu).await?;
        let d = op.prepare(gpu, (rows, n), (&a, n, 0), (&b, n, 0), &y)?;
        run(gpu, &[&d]);
        out.push(read_buffer_as::<f32>(gpu, &y).await?);

        // softcap_argmax: 4 rows of 2048, soft-cap 30 (the logits are capped in place).
        let (rows, vocab) = (4usize, 2048usize);
        let l = gpu.storage_from("l", bytemuck::cast_slice(&seeded(6, rows * vocab, 60.0)))?;
        let ids = gpu.storage("ids", (rows * 4) as u64)?;
        let op = SoftcapArgmax::new(gpu).await?;
        let [d0, d1] = op.prepare(gpu, (rows, vocab), Some(30.0), &l, &ids)?;
        run(gpu, &[&d0, &d1]);
        out.push(read_buffer_as::<f32>(gpu, &l).await?);
        Ok(out)
    })
}

/// Per op of [`ORDER`]: how two backends' outputs compare.
pub fn compare(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<LogitStats> {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let mut s = LogitStats::default();
            if x.len() == y.len() && !x.is_empty() {
                s.add(x, y, x.len());
            }
            s
        })
        .collect()
}
