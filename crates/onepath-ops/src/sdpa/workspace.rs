//! Reusable device buffers for SDPA calls, so that a decode loop does not allocate per call.
//!
//! [`Sdpa::prepare`](super::Sdpa::prepare) creates a plan buffer, a partials buffer and three
//! parameter buffers per call. [`Sdpa::prepare_in`](super::Sdpa::prepare_in) takes them from an
//! [`SdpaWorkspace`] instead: they grow (to the next power of two) when a call needs more and
//! are otherwise rewritten in place with `queue.write_buffer`. Nothing of this reaches the
//! arithmetic: a call gives the same bits either way (`tests/sdpa_workspace.rs`).

use super::PreparedSdpa;
use onepath_gpu::{Gpu, GpuError};
use std::marker::PhantomData;
use std::ops::Deref;

/// Device buffers reused by [`Sdpa::prepare_in`](super::Sdpa::prepare_in), grown to the
/// largest call seen.
///
/// One workspace serves one call at a time: [`PreparedIn`] borrows it, and the next
/// `prepare_in` rewrites its buffers through `queue.write_buffer`, whose writes land before the
/// next submission runs. So submit the work recorded from one `PreparedIn` before preparing
/// the next call in the same workspace (a decode step does); use one workspace per call that
/// must be in flight at the same time.
#[derive(Default)]
pub struct SdpaWorkspace {
    waves: Vec<WaveBuffers>,
    /// Counts buffer (re)creations: bindings made against an older generation are stale.
    generation: u64,
}

/// One wave's buffers: plan, partials, the chunk dispatches' parameters (same, mixed) and the
/// merge's.
pub(super) struct WaveBuffers {
    pub plan: wgpu::Buffer,
    pub partials: wgpu::Buffer,
    pub chunk_params: [wgpu::Buffer; 2],
    pub merge_params: wgpu::Buffer,
}

impl SdpaWorkspace {
    pub fn new() -> SdpaWorkspace {
        SdpaWorkspace::default()
    }

    /// Bytes of device memory the workspace holds.
    pub fn bytes(&self) -> u64 {
        self.waves
            .iter()
            .map(|w| {
                w.plan.size()
                    + w.partials.size()
                    + w.chunk_params.iter().map(|b| b.size()).sum::<u64>()
                    + w.merge_params.size()
            })
            .sum()
    }

    /// Wave `i`'s buffers, with room for `plan` (written into it) and `partial_bytes` of
    /// partials; `chunk_params` and `merge_params` are written into theirs. Buffers too small
    /// are replaced by ones of the next power of two (capped at the binding limit).
    pub(super) fn wave(
        &mut self,
        gpu: &Gpu,
        i: usize,
        plan: &[u8],
        partial_bytes: u64,
        chunk_params: [&[u8]; 2],
        merge_params: &[u8],
    ) -> Result<&WaveBuffers, GpuError> {
        let grow = |need: u64| {
            need.max(4)
                .next_power_of_two()
                .min(gpu.max_binding())
                .max(need)
        };
        let (plan_need, part_need) = (plan.len() as u64, partial_bytes);
        while self.waves.len() <= i {
            self.generation += 1;
            self.waves.push(WaveBuffers {
                plan: gpu.storage("sdpa plan", grow(plan_need))?,
                partials: gpu.storage("sdpa partials", grow(part_need))?,
                chunk_params: [
                    gpu.uniform_from("sdpa chunk params", chunk_params[0]),
                    gpu.uniform_from("sdpa chunk params", chunk_params[1]),
                ],
                merge_params: gpu.uniform_from("sdpa merge params", merge_params),
            });
        }
        let w = &mut self.waves[i];
        if w.plan.size() < plan_need {
            w.plan = gpu.storage("sdpa plan", grow(plan_need))?;
            self.generation += 1;
        }
        if w.partials.size() < part_need {
            w.partials = gpu.storage("sdpa partials", grow(part_need))?;
            self.generation += 1;
        }
        gpu.queue.write_buffer(&w.plan, 0, plan);
        gpu.queue
            .write_buffer(&w.chunk_params[0], 0, chunk_params[0]);
        gpu.queue
            .write_buffer(&w.chunk_params[1], 0, chunk_params[1]);
        gpu.queue.write_buffer(&w.merge_params, 0, merge_params);
        Ok(&self.waves[i])
    }
}

impl SdpaWorkspace {
    /// Which set of buffers the workspace holds (changes whenever one is replaced).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Wave `i`'s buffers as the last [`plan`](super::Sdpa::plan) left them.
    pub(super) fn wave_buffers(&self, i: usize) -> Option<&WaveBuffers> {
        self.waves.get(i)
    }
}

/// A call prepared in an [`SdpaWorkspace`]; it borrows the workspace, so the next call cannot
/// be prepared in it while this one is alive. Use it as a [`PreparedSdpa`] (encode, dispatch,
/// run).
pub struct PreparedIn<'w> {
    pub(super) call: PreparedSdpa,
    pub(super) _workspace: PhantomData<&'w mut SdpaWorkspace>,
}

impl Deref for PreparedIn<'_> {
    type Target = PreparedSdpa;

    fn deref(&self) -> &PreparedSdpa {
        &self.call
    }
}
