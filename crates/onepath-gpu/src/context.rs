use crate::pipeline::PipelineCache;
use crate::{BackendChoice, GpuError};
use wgpu::util::DeviceExt;

/// How to open the GPU.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    pub backend: BackendChoice,
    /// Ask for the OS's software adapter (lavapipe, WARP) even when a hardware one exists.
    pub force_fallback: bool,
    /// Keep wgpu's run-time checks in every kernel: index clamps on arrays and buffers, and a
    /// counter in every loop. Off by default: onepath's kernels are its own, every loop is
    /// bounded and every index comes from a host-checked plan, and the checks cost speed
    /// (they clamp every workgroup-memory access). Turning them on changes no result; it only
    /// changes what an out-of-range access would do, so it is a debugging aid
    /// (`ONEPATH_SHADER_CHECKS=1`). Browsers always check, whatever this says.
    pub shader_checks: bool,
}

impl GpuOptions {
    /// Name of the environment variable that turns [`GpuOptions::shader_checks`] on.
    pub const CHECKS_ENV: &'static str = "ONEPATH_SHADER_CHECKS";

    /// Whether `ONEPATH_SHADER_CHECKS` asks for checked shaders (`1`, `true`, `yes`, `on`).
    pub fn checks_from_env() -> bool {
        std::env::var(Self::CHECKS_ENV).is_ok_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
    }
}

/// The optional capabilities the kernels may use. Variants are chosen from these and from
/// nothing else, so one device always computes a given row the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceFeatures {
    pub shader_f16: bool,
    pub subgroups: bool,
    pub timestamps: bool,
}

/// An open device: adapter, device, queue, the features in use and a pipeline cache.
pub struct Gpu {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub features: DeviceFeatures,
    pub limits: wgpu::Limits,
    /// Whether kernels keep wgpu's run-time checks (see [`GpuOptions::shader_checks`]).
    pub shader_checks: bool,
    pub(crate) pipelines: PipelineCache,
}

impl Gpu {
    /// Opens the best adapter of the chosen backend (discrete, then integrated, then software).
    pub async fn new(opts: &GpuOptions) -> Result<Gpu, GpuError> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = opts.backend.backends();
        let instance = wgpu::Instance::new(desc);
        let adapter = pick_adapter(&instance, opts).await?;
        Self::from_adapter(adapter, opts.shader_checks).await
    }

    /// Opens a device on `adapter`, enabling the optional features it has.
    pub async fn from_adapter(
        adapter: wgpu::Adapter,
        shader_checks: bool,
    ) -> Result<Gpu, GpuError> {
        let info = adapter.get_info();
        let available = adapter.features();
        let wanted =
            wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY;
        let required_features = available & wanted;
        // Ask for everything the adapter offers; the kernels themselves are written to fit
        // WebGPU's default limits (256 invocations, 16 KiB of workgroup storage), so a larger
        // limit only lets bigger tensors bind, it never changes which kernel runs.
        let limits = adapter.limits();
        let dd = wgpu::DeviceDescriptor {
            label: Some("onepath"),
            required_features,
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) =
            adapter
                .request_device(&dd)
                .await
                .map_err(|source| GpuError::RequestDevice {
                    adapter: info.name.clone(),
                    source,
                })?;
        let features = DeviceFeatures {
            shader_f16: required_features.contains(wgpu::Features::SHADER_F16),
            subgroups: required_features.contains(wgpu::Features::SUBGROUP),
            timestamps: required_features.contains(wgpu::Features::TIMESTAMP_QUERY),
        };
        Ok(Gpu {
            adapter,
            device,
            queue,
            info,
            features,
            limits,
            shader_checks,
            pipelines: PipelineCache::default(),
        })
    }

    /// One line naming the adapter, backend and features, for logs and reports.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, driver {} {}) f16={} subgroups={} timestamps={}{}",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info,
            self.features.shader_f16,
            self.features.subgroups,
            self.features.timestamps,
            if self.shader_checks {
                " shader-checks=on"
            } else {
                ""
            }
        )
    }

    /// Largest byte size one storage binding may have on this device.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// A storage buffer holding `bytes` (also usable as copy source and destination).
    pub fn storage_from(&self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer, GpuError> {
        self.check_binding(bytes.len() as u64)?;
        // wgpu rejects zero-sized bindings; keep one word so empty inputs stay valid.
        let contents: &[u8] = if bytes.is_empty() { &[0; 4] } else { bytes };
        Ok(self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            }))
    }

    /// An uninitialised (zeroed by wgpu) storage buffer of `size` bytes.
    pub fn storage(&self, label: &str, size: u64) -> Result<wgpu::Buffer, GpuError> {
        self.check_binding(size)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// A uniform buffer holding a small parameter block.
    pub fn uniform_from(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytes,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    fn check_binding(&self, bytes: u64) -> Result<(), GpuError> {
        let limit = self.max_binding();
        if bytes > limit {
            return Err(GpuError::TooLarge {
                bytes,
                limit,
                which: "storage binding",
            });
        }
        Ok(())
    }

    /// Waits until submission `index` has finished (native); a no-op on wasm.
    pub fn wait_for(&self, index: wgpu::SubmissionIndex) -> Result<(), GpuError> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|e| GpuError::Device {
                what: "waiting for a submission".into(),
                message: e.to_string(),
            })?;
        #[cfg(target_arch = "wasm32")]
        let _ = index;
        Ok(())
    }

    /// Waits until every submitted command buffer has finished, on native and on wasm: the
    /// browser's queue reports it through `onSubmittedWorkDone`, awaited here, so the page's
    /// event loop keeps running meanwhile. Use this (or a buffer map) on wasm wherever the
    /// GPU's work must be done before going on; [`Gpu::wait_idle`] cannot block there.
    pub async fn idle(&self) -> Result<(), GpuError> {
        #[cfg(not(target_arch = "wasm32"))]
        self.wait_idle()?;
        #[cfg(target_arch = "wasm32")]
        {
            let (tx, rx) = futures_channel::oneshot::channel();
            self.queue.on_submitted_work_done(move || {
                // The receiver only goes away if the caller dropped the future.
                let _ = tx.send(());
            });
            rx.await.map_err(|_| GpuError::Device {
                what: "waiting for the queue".into(),
                message: "the device was lost before the submitted work finished".into(),
            })?;
        }
        Ok(())
    }

    /// Waits until the queue is idle on native. On wasm a synchronous wait is impossible (the
    /// browser runs the GPU's callbacks on the page's own event loop), so this returns at once
    /// there: results are read through mapped buffers, whose maps are awaited, and code that
    /// must wait without reading anything awaits [`Gpu::idle`].
    pub fn wait_idle(&self) -> Result<(), GpuError> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Device {
                what: "waiting for the queue".into(),
                message: e.to_string(),
            })?;
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

#[cfg(not(target_arch = "wasm32"))]
async fn pick_adapter(
    instance: &wgpu::Instance,
    opts: &GpuOptions,
) -> Result<wgpu::Adapter, GpuError> {
    let mut adapters = instance.enumerate_adapters(opts.backend.backends()).await;
    if opts.force_fallback {
        adapters.retain(|a| a.get_info().device_type == wgpu::DeviceType::Cpu);
    }
    adapters.sort_by_key(|a| rank(a.get_info().device_type));
    match adapters.into_iter().next() {
        Some(a) => Ok(a),
        None => Err(GpuError::NoAdapter {
            backend: opts.backend.to_string(),
            seen: seen_adapters().await,
        }),
    }
}

#[cfg(not(target_arch = "wasm32"))]
async fn seen_adapters() -> String {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let all = instance.enumerate_adapters(wgpu::Backends::all()).await;
    if all.is_empty() {
        return "none".into();
    }
    all.iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(target_arch = "wasm32")]
async fn pick_adapter(
    instance: &wgpu::Instance,
    opts: &GpuOptions,
) -> Result<wgpu::Adapter, GpuError> {
    let ro = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        force_fallback_adapter: opts.force_fallback,
        compatible_surface: None,
        apply_limit_buckets: false,
    };
    instance
        .request_adapter(&ro)
        .await
        .map_err(|e| GpuError::NoAdapter {
            backend: opts.backend.to_string(),
            seen: format!("none ({e}); does this browser have WebGPU enabled?"),
        })
}
