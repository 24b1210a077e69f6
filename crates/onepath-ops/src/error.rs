use thiserror::Error;

/// Bad input to an op, or a GPU failure while running it.
#[derive(Debug, Error)]
pub enum OpError {
    #[error("head_dim {0} is not supported: use 64, 128, 256 or 512")]
    HeadDim(usize),
    #[error("{q_heads} query heads is not a multiple of {kv_heads} key/value heads")]
    Heads { q_heads: usize, kv_heads: usize },
    #[error("{op}: dimension `{name}` is zero: {op} needs at least one {name}")]
    ZeroDim {
        /// The op refusing the call (`attention`, `matmul`, ...).
        op: &'static str,
        name: &'static str,
    },
    /// One row of an attention call breaks a rule; `detail` names the offending values.
    #[error("{op}: row {row}: {detail}")]
    Row {
        op: &'static str,
        row: usize,
        detail: String,
    },
    #[error("tensor `{name}` has {actual} elements but shape {shape} needs {expected}")]
    Len {
        name: &'static str,
        shape: String,
        expected: usize,
        actual: usize,
    },
    #[error("the mask is for {mask}, but the attention call is {call}")]
    MaskShape { mask: String, call: String },
    #[error("{what} = {value} is not allowed: {why}")]
    Param {
        what: &'static str,
        value: String,
        why: &'static str,
    },
    /// A call beyond the device's limits (binding size, workgroups per dimension) or 32-bit
    /// addressing; the string names what and, where it helps, the limit.
    #[error("{0}: too large for one call on this device; split the call")]
    TooBig(String),
    #[error(transparent)]
    Mask(#[from] onepath_mask::MaskError),
    #[error(transparent)]
    Weights(#[from] onepath_weights::WeightsError),
    #[error(transparent)]
    Gpu(#[from] onepath_gpu::GpuError),
}
