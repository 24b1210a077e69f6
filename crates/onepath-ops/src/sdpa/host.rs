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
        let kb = gpu.storage_from("k", k.bytes())?;
        let vb = gpu.storage_from("v", v.bytes())?;
        let out = gpu.storage("out", (rect.q_elems() * 4) as u64)?;
        let bufs = SdpaBuffers {
            q: &qb,
            k: &kb,
            v: &vb,
            out: &out,
        };
        let prepared = self.prepare_with(gpu, &rows, rect.head_dim as u32, bufs, schedule)?;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        prepared.encode(&mut enc, None);
        gpu.queue.submit([enc.finish()]);
        gpu.wait_idle()?;
        Ok(read_buffer_as(gpu, &out).await?)
    }
}
