use crate::{Gpu, GpuError};

/// Copies `buffer` (which needs `COPY_SRC`) to the host. Works on native and wasm: the wait is an
/// `await` on the map callback; on native the device is polled until the copy completes.
pub async fn read_buffer(gpu: &Gpu, buffer: &wgpu::Buffer) -> Result<Vec<u8>, GpuError> {
    let size = buffer.size();
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
    gpu.queue.submit([enc.finish()]);

    let (tx, rx) = futures_channel::oneshot::channel();
    staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        // The receiver only goes away if the caller dropped the future; nothing to report then.
        let _ = tx.send(r);
    });
    gpu.wait_idle()?;
    rx.await
        .map_err(|_| GpuError::Readback("the device was lost before the copy finished".into()))?
        .map_err(|e| GpuError::Readback(e.to_string()))?;
    let data = staging
        .slice(..)
        .get_mapped_range()
        .map_err(|e| GpuError::Readback(e.to_string()))?
        .to_vec();
    staging.unmap();
    Ok(data)
}

/// [`read_buffer`] reinterpreted as plain values (`f32`, `u32`, ...).
pub async fn read_buffer_as<T: bytemuck::Pod>(
    gpu: &Gpu,
    buffer: &wgpu::Buffer,
) -> Result<Vec<T>, GpuError> {
    let bytes = read_buffer(gpu, buffer).await?;
    Ok(bytemuck::pod_collect_to_vec(&bytes))
}
