//! GPU ops with checked constructors. Each op validates its shapes on the host and returns an
//! [`OpError`] naming the problem; a kernel never sees an input it was not written for.

mod error;
pub mod sdpa;

pub use error::OpError;

/// Where the WGSL kernels live; every kernel is a plain file in `wgsl/` at the workspace root.
pub mod kernels {
    use onepath_gpu::Kernel;

    pub const SDPA_CHUNK: Kernel = Kernel {
        name: "sdpa_chunk",
        source: include_str!("../../../wgsl/sdpa_chunk.wgsl"),
        entry: "main",
    };
    pub const SDPA_MERGE: Kernel = Kernel {
        name: "sdpa_merge",
        source: include_str!("../../../wgsl/sdpa_merge.wgsl"),
        entry: "main",
    };
    /// Every kernel, for validation tests.
    pub const ALL: &[Kernel] = &[SDPA_CHUNK, SDPA_MERGE];
}
