//! An MLX 4-bit checkpoint on the GPU: one quantized linear, several sequences, same bits.
//!
//! Opens the tiny sharded checkpoint in `tests/fixtures/mlx/tiny_ckpt` (written by mlx-lm's own
//! quantizer, see `make_fixtures.py` there; its config quantizes most linears at 4 bits, group
//! 64), puts `model.layers.0.self_attn.q_proj` on the GPU and computes `y = x Wᵀ` for 5 rows of
//! x (5 sequences decoding together) in one call and for each row alone. The rows match bit for
//! bit: a row's result never depends on how many rows share the call. A 40-row prefill on the
//! tiled kernel (the one for prefill) matches the rows computed alone too. Then it quantizes
//! the dense embedding table at load time with MLX's rule and uses it twice, as an embedding
//! gather and as a tied LM head.
//!
//! Run: `cargo run --example qmatmul` (on Linux without a GPU, install lavapipe first:
//! `scripts/setup.sh`).

use onepath::gpu::{Gpu, GpuOptions};
use onepath::ops::qmm::{EmbedGather, GatherRounding, QKernel, QMatmul, QWeights};
use onepath_weights::{Checkpoint, Linear, QuantParams, dequantize_f32};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gpu = pollster::block_on(Gpu::new(&GpuOptions::default()))?;
    println!("adapter: {}", gpu.describe());

    // 1. Open the checkpoint: every shard memory-mapped, every header and offset checked, the
    //    `quantization` entry of config.json read (with its per-layer overrides).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mlx/tiny_ckpt");
    let ck = Checkpoint::open(&dir)?;

    // 2. A quantized linear: MLX's `.weight` (u32), `.scales`, `.biases` triple, W is [N, K].
    let Linear::Quantized(q) = ck.linear("model.layers.0.self_attn.q_proj")? else {
        return Err("q_proj is stored quantized in this checkpoint".into());
    };
    let (n, k) = (q.rows(), q.cols());
    println!(
        "q_proj: [{n}, {k}], {} bits, group {}",
        q.bits(),
        q.group_size()
    );
    let op = pollster::block_on(QMatmul::new(&gpu, QWeights::upload(&gpu, &q)?))?;

    // 3. Five rows of x in one call, and each row alone.
    let m = 5;
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let together = pollster::block_on(op.run_host(&gpu, &x, m))?;
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    for r in 0..m {
        let alone = pollster::block_on(op.run_host(&gpu, &x[r * k..(r + 1) * k], 1))?;
        assert_eq!(bits(&together[r * n..(r + 1) * n]), bits(&alone), "row {r}");
    }
    println!("{m} rows in one call == each row alone: true");

    // 4. A prefill of 40 rows on the tiled kernel, which `prepare` picks for prefills of real
    //    models (`op.kernel_for(m)`; this 16-row matrix is too small for it to, so the call
    //    names it). Each output is still reduced over K in the one order K fixes, so every row
    //    equals the row computed alone by the decode (GEMV) kernel.
    let p = 40;
    let kernel = QKernel::Tiled(1);
    let xp: Vec<f32> = (0..p * k)
        .map(|i| ((i * 104729) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    let prefill = pollster::block_on(op.run_host_with(&gpu, &xp, p, kernel))?;
    for r in [0, 17, p - 1] {
        let alone = pollster::block_on(op.run_host(&gpu, &xp[r * k..(r + 1) * k], 1))?;
        assert_eq!(
            bits(&prefill[r * n..(r + 1) * n]),
            bits(&alone),
            "prefill row {r}"
        );
    }
    println!(
        "{p}-row prefill ({kernel:?} kernel) rows 0, 17, {} == each row alone: true",
        p - 1
    );

    // 5. Accuracy against the f64 oracle on the dequantized weights.
    let want = onepath::reference::matmul_nt(&x, &dequantize_f32(&q), m, k, n)?;
    let worst = want
        .iter()
        .zip(&together)
        .map(|(w, g)| (w - f64::from(*g)).abs())
        .fold(0.0, f64::max);
    println!("max |GPU - f64| = {worst:.2e}");

    // 6. The embedding table is stored dense (bf16); quantize it now, bit for bit as
    //    mlx_lm.convert would, and share the GPU copy between the gather and a tied LM head.
    let emb = ck.quantized_linear("model.embed_tokens", QuantParams::new(64, 4, "example")?)?;
    let table = QWeights::upload(&gpu, &emb)?;
    let gather = pollster::block_on(EmbedGather::new(&gpu, table.clone(), GatherRounding::F32))?;
    let ids = [3u32, 1, 4];
    let h = pollster::block_on(gather.run_host(&gpu, &ids))?;
    let lm_head = pollster::block_on(QMatmul::new(&gpu, table))?;
    let logits = pollster::block_on(lm_head.run_host(&gpu, &h, ids.len()))?;
    let vocab = emb.rows();
    let best: Vec<usize> = logits
        .chunks(vocab)
        .map(|row| {
            (0..vocab)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0)
        })
        .collect();
    println!("tokens {ids:?} -> tied-LM-head argmax {best:?} (vocab {vocab})");
    Ok(())
}
