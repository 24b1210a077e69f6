//! Host-data convenience: upload, run, read back. Used by tests, `onepath parity` and examples;
//! a model keeps its tensors on the GPU and calls [`Sdpa::prepare`] directly.

use super::{KvDType, Rect, Schedule, Sdpa, SdpaBuffers, rect_rows};
use crate::OpError;
use onepath_gpu::{Gpu, read_buffer_as};
use onepath_mask::CanonicalMask;

/// K or V values on the host, in the storage type the kernel reads.
#[derive(Clone, Copy, Debug)]
pub enum KvData<'a> {
    F16(&'a [half::f16]),
    F32(&'a [f32]),
}

impl KvData<'_> {
    pub fn dtype(&self) -> KvDType {
        match self {
            KvData::F16(_) => KvDType::F16,
            KvData::F32(_) => KvDType::F32,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            KvData::F16(x) => x.len(),
            KvData::F32(x) => x.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bytes(&self) -> &[u8] {
        match self {
            KvData::F16(x) => bytemuck::cast_slice(x),
            KvData::F32(x) => bytemuck::cast_slice(x),
        }
    }

    /// The bytes of these key rows in the key-blocked K layout ([`key_blocks`]).
    fn key_block_bytes(&self, head_dim: usize) -> Vec<u8> {
        match self {
            KvData::F16(x) => bytemuck::cast_slice(&key_blocks(x, head_dim)).to_vec(),
            KvData::F32(x) => bytemuck::cast_slice(&key_blocks(x, head_dim)).to_vec(),
        }
    }
}

/// Keys per block of the K layout.
pub const KEY_BLOCK: usize = 32;

/// Elements a K buffer of `rows` key rows (of `head_dim` values) occupies in the key-blocked
/// layout: whole blocks of 32 rows.
pub fn key_blocks_len(rows: u64, head_dim: usize) -> usize {
    (rows as usize).div_ceil(KEY_BLOCK) * KEY_BLOCK * head_dim
}

/// Row-major key rows (`rows x head_dim`, row r at element r * head_dim) in the layout the SDPA
/// kernels read K in: blocks of 32 rows, each block column-major in 16-byte words (8 halves or
/// 4 floats), so that 32 consecutive keys are 512 contiguous bytes for each word. Element d of
/// row r goes to `(r / 32) * 32 * D + (d / e) * 32 * e + (r % 32) * e + d % e` (e = 16 bytes /
/// element size); the last block is padded with `T::default()`.
pub fn key_blocks<T: Copy + Default>(k: &[T], head_dim: usize) -> Vec<T> {
    let e = 16 / std::mem::size_of::<T>();
    let rows = k.len() / head_dim;
    let mut out = vec![T::default(); key_blocks_len(rows as u64, head_dim)];
    for (r, row) in k.chunks_exact(head_dim).enumerate() {
        let block = (r / KEY_BLOCK) * KEY_BLOCK * head_dim + (r % KEY_BLOCK) * e;
        for (w, word) in row.chunks_exact(e).enumerate() {
            let at = block + w * KEY_BLOCK * e;
            out[at..at + e].copy_from_slice(word);
        }
    }
    out
}

impl Sdpa {
    /// Attention over `[B, H, T, D]` host tensors with a canonical mask; returns `[B, Hq, Tq, D]`.
    pub async fn run_rect_host(
        &self,
        gpu: &Gpu,
        rect: &Rect,
        q: &[f32],
        k: KvData<'_>,
        v: KvData<'_>,
        mask: &CanonicalMask,
    ) -> Result<Vec<f32>, OpError> {
        self.run_rect_host_with(gpu, rect, q, k, v, mask, Schedule::Auto)
            .await
    }

    /// [`run_rect_host`](Self::run_rect_host) with a given [`Schedule`] (same bits for any).
    #[allow(clippy::too_many_arguments)]
    pub async fn run_rect_host_with(
        &self,
        gpu: &Gpu,
        rect: &Rect,
        q: &[f32],
        k: KvData<'_>,
        v: KvData<'_>,
        mask: &CanonicalMask,
        schedule: Schedule,
    ) -> Result<Vec<f32>, OpError> {
        rect.check()?;
        if rect.head_dim != self.config.head_dim {
            return Err(OpError::Param {
                what: "head_dim",
                value: rect.head_dim.to_string(),
                why: "it differs from the head_dim this Sdpa was built for",
            });
        }
        let shape = format!("{rect:?}");
        for (name, len, expected) in [
            ("q", q.len(), rect.q_elems()),
            ("k", k.len(), rect.kv_elems()),
            ("v", v.len(), rect.kv_elems()),
        ] {
            if len != expected {
                return Err(OpError::Len {
                    name,
                    shape: shape.clone(),
                    expected,
                    actual: len,
                });
            }
        }
        for (name, data) in [("k", &k), ("v", &v)] {
            if data.dtype() != self.config.kv_dtype {
                return Err(OpError::Param {
                    what: name,
                    value: format!("{:?}", data.dtype()),
                    why: "its storage type differs from the Sdpa's kv_dtype",
                });
            }
        }
        let rows = rect_rows(rect, mask)?;
        let qb = gpu.storage_from("q", bytemuck::cast_slice(q))?;
        let kb = gpu.storage_from("k", &k.key_block_bytes(rect.head_dim))?;
        let vb = gpu.storage_from("v", v.bytes())?;
        let out = gpu.storage("out", (rect.q_elems() * 4) as u64)?;
        let bufs = SdpaBuffers {
            q: &qb,
            k: &kb,
            v: &vb,
            out: &out,
        };
        self.prepare_with(gpu, &rows, rect.head_dim as u32, bufs, schedule)?
            .run(gpu)?;
        Ok(read_buffer_as(gpu, &out).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_blocks_put_each_16_byte_word_of_32_rows_side_by_side() {
        // 40 rows of 8 f32 (2 words each): block 0 holds rows 0-31, block 1 rows 32-39 + padding.
        let d = 8;
        let k: Vec<f32> = (0..40 * d).map(|i| i as f32 + 1.0).collect();
        let b = key_blocks(&k, d);
        assert_eq!(b.len(), 64 * d);
        for r in 0..40 {
            for x in 0..d {
                let at = (r / 32) * 32 * d + (x / 4) * 32 * 4 + (r % 32) * 4 + x % 4;
                assert_eq!(b[at], k[r * d + x], "row {r}, element {x}");
            }
        }
        assert!(b[32 * d..].iter().filter(|&&x| x == 0.0).count() == 24 * d);
        let h: Vec<half::f16> = (0..3 * 16).map(|i| half::f16::from_f32(i as f32)).collect();
        let hb = key_blocks(&h, 16);
        assert_eq!(hb.len(), 32 * 16);
        // Row 2, element 9: word 1 (8 halves per word), lane 2.
        assert_eq!(hb[32 * 8 + 2 * 8 + 1], h[2 * 16 + 9]);
    }
}
