use crate::{Gpu, GpuError, read_buffer_as};

/// GPU timestamps around compute passes (needs `TIMESTAMP_QUERY`; see [`Gpu::features`]).
/// Pass `i` writes timestamps `2i` and `2i + 1`.
pub struct GpuTimer {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    passes: u32,
    period_ns: f64,
}

impl GpuTimer {
    /// A timer for `passes` passes, or `None` when the device has no timestamp queries.
    pub fn new(gpu: &Gpu, passes: u32) -> Option<GpuTimer> {
        if !gpu.features.timestamps || passes == 0 {
            return None;
        }
        let count = passes * 2;
        let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("timer"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timer resolve"),
            size: u64::from(count) * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Some(GpuTimer {
            set,
            resolve,
            passes,
            period_ns: f64::from(gpu.queue.get_timestamp_period()),
        })
    }

    /// Timestamp writes for pass `i`, to put in a `ComputePassDescriptor`.
    pub fn writes(&self, i: u32) -> wgpu::ComputePassTimestampWrites<'_> {
        assert!(i < self.passes, "timer pass {i} out of range");
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        }
    }

    /// Records the copy of all timestamps into the readable buffer; call before `finish()`.
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder) {
        enc.resolve_query_set(&self.set, 0..self.passes * 2, &self.resolve, 0);
    }

    /// Every timestamp, in nanoseconds after the first (start of pass 0): pass `i` began at
    /// element `2i` and ended at `2i + 1`.
    pub async fn read_ns(&self, gpu: &Gpu) -> Result<Vec<f64>, GpuError> {
        let ticks: Vec<u64> = read_buffer_as(gpu, &self.resolve).await?;
        let first = ticks[0];
        Ok(ticks
            .iter()
            .map(|&t| t.saturating_sub(first) as f64 * self.period_ns)
            .collect())
    }

    /// Nanoseconds from the first timestamp (start of pass 0) to the last (end of the last pass).
    pub async fn read_total_ns(&self, gpu: &Gpu) -> Result<f64, GpuError> {
        Ok(self.read_ns(gpu).await?.last().copied().unwrap_or(0.0))
    }
}
