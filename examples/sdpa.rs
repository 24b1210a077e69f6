//! One attention call, three ways, same bits.
//!
//! Runs decode attention for one sequence (8 query heads on 1 KV head, head_dim 256, f16 K/V)
//! three ways: with no mask, with an explicit all-True mask, and left-padded inside a batch of
//! two. Then it checks that the three outputs are bitwise identical. (MLX computes the first two
//! differently, which is how Gemma 4 degenerates under continuous batching.)
//!
//! Run: `cargo run --example sdpa` (on Linux without a GPU, install lavapipe first:
//! `scripts/setup.sh`).

use half::f16;
use onepath::gpu::{Gpu, GpuOptions};
use onepath::mask::{BoolMask, MaskDesc, MaskKind, canonicalize};
use onepath::ops::sdpa::{KvDType, KvData, Rect, Sdpa, SdpaConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Open the GPU (the best adapter of any backend; ONEPATH_BACKEND picks one).
    let gpu = pollster::block_on(Gpu::new(&GpuOptions::default()))?;
    println!("adapter: {}", gpu.describe());

    // 2. Compile the kernels for this head_dim and K/V type (checked: D = 96 would be an error).
    let cfg = SdpaConfig {
        head_dim: 256,
        kv_dtype: KvDType::F16,
        scale: 1.0, // Gemma 4 uses no 1/sqrt(d)
        softcap: None,
    };
    let sdpa = pollster::block_on(Sdpa::new(&gpu, cfg))?;

    // 3. One sequence of 1000 cached keys, one query position. Shapes are [B, H, T, D].
    let (d, len) = (256, 1000);
    let q: Vec<f32> = (0..8 * d)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let k: Vec<f16> = (0..len * d)
        .map(|i| f16::from_f32(((i * 104729) % 997) as f32 / 498.0 - 1.0))
        .collect();
    let v: Vec<f16> = (0..len * d)
        .map(|i| f16::from_f32(((i * 15485863) % 991) as f32 / 495.0 - 1.0))
        .collect();
    let alone = Rect {
        batch: 1,
        q_heads: 8,
        kv_heads: 1,
        q_len: 1,
        kv_len: len,
        head_dim: d,
    };

    // 4a. No mask.
    let none = canonicalize(&alone.mask_shape(), &MaskDesc::new(MaskKind::None))?;
    let out_none = pollster::block_on(sdpa.run_rect_host(
        &gpu,
        &alone,
        &q,
        KvData::F16(&k),
        KvData::F16(&v),
        &none,
    ))?;

    // 4b. An explicit all-True boolean mask of shape [Tkv]: canonicalises to the same key set.
    let all_true = vec![true; len];
    let shape = [len];
    let explicit = MaskDesc::new(MaskKind::Bool(BoolMask {
        shape: &shape,
        data: &all_true,
    }));
    let explicit = canonicalize(&alone.mask_shape(), &explicit)?;
    assert_eq!(
        explicit, none,
        "both masks select the same keys, so they are one value"
    );
    let out_explicit = pollster::block_on(sdpa.run_rect_host(
        &gpu,
        &alone,
        &q,
        KvData::F16(&k),
        KvData::F16(&v),
        &explicit,
    ))?;

    // 4c. The same sequence left-padded by 300 keys next to another sequence of 1300 keys.
    let pad = 300;
    let batch = Rect {
        batch: 2,
        kv_len: len + pad,
        ..alone
    };
    let other_k = vec![f16::from_f32(0.25); (len + pad) * d];
    let mut kb = other_k.clone();
    let mut vb = other_k;
    kb.extend(std::iter::repeat_n(f16::from_f32(9.0), pad * d)); // padding: junk, never read
    kb.extend_from_slice(&k);
    vb.extend(std::iter::repeat_n(f16::from_f32(9.0), pad * d));
    vb.extend_from_slice(&v);
    let mut qb = q.clone();
    qb.extend_from_slice(&q);
    let key_lo = [0, pad as u32]; // sequence 1's keys start after its padding
    let padded = MaskDesc::new(MaskKind::None).with_key_lo(&key_lo);
    let padded = canonicalize(&batch.mask_shape(), &padded)?;
    let out_batch = pollster::block_on(sdpa.run_rect_host(
        &gpu,
        &batch,
        &qb,
        KvData::F16(&kb),
        KvData::F16(&vb),
        &padded,
    ))?;
    let out_padded = &out_batch[8 * d..]; // sequence 1's rows

    // 5. Compare bits, not closeness.
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    println!(
        "none == explicit all-True mask: {}",
        bits(&out_none) == bits(&out_explicit)
    );
    println!(
        "alone == left-padded in a batch: {}",
        bits(&out_none) == bits(out_padded)
    );
    assert_eq!(bits(&out_none), bits(&out_explicit));
    assert_eq!(bits(&out_none), bits(out_padded));
    println!("first values of head 0: {:?}", &out_none[..4]);
    Ok(())
}
