use thiserror::Error;

/// Everything the runtime can fail with. Each message names the problem and, where there is one,
/// the fix.
#[derive(Debug, Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found for backend {backend}.\n  On Linux without a GPU install the software \
         Vulkan driver: `sudo apt-get install -y mesa-vulkan-drivers` (lavapipe), or try \
         `--backend gl` / ONEPATH_BACKEND=gl.\n  Adapters seen: {seen}"
    )]
    NoAdapter { backend: String, seen: String },
    #[error("unknown backend `{0}`: expected one of auto, vulkan, metal, dx12, gl, webgpu")]
    UnknownBackend(String),
    #[error("could not open the device on adapter `{adapter}`: {source}")]
    RequestDevice {
        adapter: String,
        #[source]
        source: wgpu::RequestDeviceError,
    },
    #[error("kernel `{kernel}` failed to compile or validate: {message}")]
    Shader { kernel: String, message: String },
    #[error("reading a buffer back from the GPU failed: {0}")]
    Readback(String),
    #[error("GPU error during {what}: {message}")]
    Device { what: String, message: String },
    #[error(
        "buffer of {bytes} bytes exceeds this device's limit of {limit} bytes per {which}; \
         split the tensor"
    )]
    TooLarge {
        bytes: u64,
        limit: u64,
        which: &'static str,
    },
}
