use crate::{Gpu, GpuError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A compute kernel: one WGSL file and its entry point. Specialisation happens only through
/// WGSL `override` constants, passed at pipeline creation.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// Name for labels, errors and the cache key (e.g. `"sdpa_chunk"`).
    pub name: &'static str,
    /// The WGSL source, usually `include_str!` of a file in `wgsl/`.
    pub source: &'static str,
    pub entry: &'static str,
}

/// Cache key: the kernel and the exact bits of every override constant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub kernel: &'static str,
    pub entry: &'static str,
    pub constants: Vec<(String, u64)>,
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<&'static str, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
}

impl Gpu {
    /// The pipeline for `kernel` specialised with `constants`, compiled once per device and
    /// cached. Compilation runs inside an error scope, so a bad shader is an `Err`, not a panic.
    pub async fn pipeline(
        &self,
        kernel: &Kernel,
        constants: &[(&str, f64)],
    ) -> Result<Arc<wgpu::ComputePipeline>, GpuError> {
        let key = PipelineKey {
            kernel: kernel.name,
            entry: kernel.entry,
            constants: constants
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_bits()))
                .collect(),
        };
        if let Some(p) = lock(&self.pipelines.pipelines).get(&key) {
            return Ok(p.clone());
        }
        let module = self.module(kernel).await?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.name),
                layout: None,
                module: &module,
                entry_point: Some(kernel.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        if let Some(err) = scope.pop().await {
            return Err(GpuError::Shader {
                kernel: format!("{} with {:?}", kernel.name, constants),
                message: err.to_string(),
            });
        }
        let pipeline = Arc::new(pipeline);
        lock(&self.pipelines.pipelines).insert(key, pipeline.clone());
        Ok(pipeline)
    }

    async fn module(&self, kernel: &Kernel) -> Result<Arc<wgpu::ShaderModule>, GpuError> {
        if let Some(m) = lock(&self.pipelines.modules).get(kernel.name) {
            return Ok(m.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(kernel.name),
            source: wgpu::ShaderSource::Wgsl(kernel.source.into()),
        };
        let module = if self.shader_checks {
            self.device.create_shader_module(desc)
        } else {
            // SAFETY: the unchecked module differs only in what an out-of-range access or an
            // unbounded loop would do. onepath's kernels have neither: every loop is bounded by
            // a uniform or constant, and every buffer index comes from a plan the host built and
            // checked against the buffer sizes (tests run the kernels both ways and compare the
            // bits). A caller compiling a `Kernel` of its own should open the device with
            // `GpuOptions::shader_checks`.
            unsafe {
                self.device
                    .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        };
        if let Some(err) = scope.pop().await {
            return Err(GpuError::Shader {
                kernel: kernel.name.to_string(),
                message: err.to_string(),
            });
        }
        let module = Arc::new(module);
        lock(&self.pipelines.modules).insert(kernel.name, module.clone());
        Ok(module)
    }

    /// A bind group for group 0 of `pipeline`, binding `buffers` to bindings 0, 1, 2, ...
    pub fn bind(
        &self,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &entries,
        })
    }
}

/// A poisoned cache lock only means another thread panicked mid-insert; the map is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
