//! GPU ops with checked constructors. Each op validates its shapes on the host and returns an
//! [`OpError`] naming the problem; a kernel never sees an input it was not written for.

pub mod block;
mod error;
pub mod linear;
pub mod qmm;
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
    pub const SDPA_CHUNK_ROW: Kernel = Kernel {
        name: "sdpa_chunk_row",
        source: include_str!("../../../wgsl/sdpa_chunk_row.wgsl"),
        entry: "main",
    };
    pub const SDPA_MERGE: Kernel = Kernel {
        name: "sdpa_merge",
        source: include_str!("../../../wgsl/sdpa_merge.wgsl"),
        entry: "main",
    };
    pub const QMATMUL: Kernel = Kernel {
        name: "qmatmul",
        source: include_str!("../../../wgsl/qmatmul.wgsl"),
        entry: "main",
    };
    pub const QMATMUL_TILED: Kernel = Kernel {
        name: "qmatmul_tiled",
        source: include_str!("../../../wgsl/qmatmul_tiled.wgsl"),
        entry: "main",
    };
    pub const QMATMUL_COMBINE: Kernel = Kernel {
        name: "qmatmul_combine",
        source: include_str!("../../../wgsl/qmatmul_combine.wgsl"),
        entry: "main",
    };
    pub const MATMUL_DENSE_GEMV: Kernel = Kernel {
        name: "matmul_dense_gemv",
        source: include_str!("../../../wgsl/matmul_dense_gemv.wgsl"),
        entry: "main",
    };
    pub const MATMUL_DENSE_TILED: Kernel = Kernel {
        name: "matmul_dense_tiled",
        source: include_str!("../../../wgsl/matmul_dense_tiled.wgsl"),
        entry: "main",
    };
    pub const EMBED_GATHER: Kernel = Kernel {
        name: "embed_gather",
        source: include_str!("../../../wgsl/embed_gather.wgsl"),
        entry: "main",
    };
    pub const RMS_NORM: Kernel = Kernel {
        name: "rms_norm",
        source: include_str!("../../../wgsl/rms_norm.wgsl"),
        entry: "main",
    };
    pub const ADD_NORM: Kernel = Kernel {
        name: "add_norm",
        source: include_str!("../../../wgsl/add_norm.wgsl"),
        entry: "main",
    };
    pub const Q_PREP: Kernel = Kernel {
        name: "q_prep",
        source: include_str!("../../../wgsl/q_prep.wgsl"),
        entry: "main",
    };
    pub const KV_APPEND: Kernel = Kernel {
        name: "kv_append",
        source: include_str!("../../../wgsl/kv_append.wgsl"),
        entry: "main",
    };
    pub const GELU_MUL: Kernel = Kernel {
        name: "gelu_mul",
        source: include_str!("../../../wgsl/gelu_mul.wgsl"),
        entry: "main",
    };
    pub const PLE_COMBINE: Kernel = Kernel {
        name: "ple_combine",
        source: include_str!("../../../wgsl/ple_combine.wgsl"),
        entry: "main",
    };
    pub const SOFTCAP_ARGMAX: Kernel = Kernel {
        name: "softcap_argmax",
        source: include_str!("../../../wgsl/softcap_argmax.wgsl"),
        entry: "main",
    };
    pub const ARGMAX_MERGE: Kernel = Kernel {
        name: "argmax_merge",
        source: include_str!("../../../wgsl/argmax_merge.wgsl"),
        entry: "main",
    };
    /// Not an op: the memory read ceiling that `onepath bench bandwidth` measures.
    pub const READ_BANDWIDTH: Kernel = Kernel {
        name: "read_bandwidth",
        source: include_str!("../../../wgsl/read_bandwidth.wgsl"),
        entry: "main",
    };
    /// Not an op: the near-empty kernel whose dispatches `onepath bench dispatch` times.
    pub const DISPATCH_PROBE: Kernel = Kernel {
        name: "dispatch_probe",
        source: include_str!("../../../wgsl/dispatch_probe.wgsl"),
        entry: "main",
    };
    /// Every kernel, for validation tests.
    pub const ALL: &[Kernel] = &[
        SDPA_CHUNK,
        SDPA_CHUNK_ROW,
        SDPA_MERGE,
        QMATMUL,
        QMATMUL_TILED,
        QMATMUL_COMBINE,
        MATMUL_DENSE_GEMV,
        MATMUL_DENSE_TILED,
        EMBED_GATHER,
        RMS_NORM,
        ADD_NORM,
        Q_PREP,
        KV_APPEND,
        GELU_MUL,
        PLE_COMBINE,
        SOFTCAP_ARGMAX,
        ARGMAX_MERGE,
        READ_BANDWIDTH,
        DISPATCH_PROBE,
    ];
}
