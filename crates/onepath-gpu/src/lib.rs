//! The wgpu runtime every onepath op runs on.
//!
//! One [`Gpu`] owns the adapter, device and queue, knows which optional features the device has
//! ([`DeviceFeatures`]), and caches compute pipelines by kernel and specialisation constants.
//! Everything here works on native and on wasm: waiting for the GPU is expressed as `async`, and
//! native callers drive it with `pollster::block_on`.
//!
//! Kernel variants are chosen **per device** (from [`DeviceFeatures`]), never per shape, batch or
//! mask: a row's bits may depend on the device, never on what else is in the dispatch.

mod backend;
mod buffer;
mod context;
mod error;
mod pipeline;
mod timer;

pub use backend::BackendChoice;
pub use buffer::{read_buffer, read_buffer_as};
pub use context::{DeviceFeatures, Gpu, GpuOptions};
pub use error::GpuError;
pub use pipeline::{Kernel, PipelineKey};
pub use timer::GpuTimer;
pub use wgpu;
