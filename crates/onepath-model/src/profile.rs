//! Where a step's time goes, for benchmarks: host phases (gathers and uploads, attention
//! planning, recording and submitting, waiting for the result) and, with GPU timestamps, the
//! GPU's time per part of the step. Off unless a caller sets [`Model::profile`](crate::Model).

use std::collections::BTreeMap;

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileMode {
    /// Host phases, and the GPU time of the step's one compute pass.
    Phases,
    /// As `Phases`, but every dispatch in a compute pass of its own with timestamps, summed
    /// per part of the step (matmuls by role, attention, norms, ...). Pass boundaries add
    /// their own cost, so the parts add up to more than a normal step takes.
    Ops,
}

/// Accumulated over the pieces (submissions) run since it was set.
#[derive(Clone, Debug)]
pub struct Profile {
    pub mode: ProfileMode,
    pub pieces: u64,
    /// Host: embeddings, per-layer inputs, RoPE tables, slots, uploads.
    pub prep_s: f64,
    /// Host: attention plans and their per-layer bindings.
    pub attn_s: f64,
    /// Host: building (first time only) and recording the step, and submitting it.
    pub encode_s: f64,
    /// Host: from submission to the result on the host (the GPU's work and the readback).
    pub wait_s: f64,
    /// GPU time inside the step's passes (needs timestamp queries).
    pub gpu_s: f64,
    /// GPU time from the start of the step's first pass to the end of its last, idle gaps
    /// between submissions included.
    pub gpu_span_s: f64,
    /// `Ops` only: GPU seconds and dispatch counts per part of the step.
    pub ops: BTreeMap<&'static str, (u64, f64)>,
}

impl Profile {
    pub fn new(mode: ProfileMode) -> Profile {
        Profile {
            mode,
            pieces: 0,
            prep_s: 0.0,
            attn_s: 0.0,
            encode_s: 0.0,
            wait_s: 0.0,
            gpu_s: 0.0,
            gpu_span_s: 0.0,
            ops: BTreeMap::new(),
        }
    }
}
