//! The crate's error type: every failure names the file or tensor and the problem.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = WeightsError> = std::result::Result<T, E>;

/// Everything that can go wrong while loading, validating or (de)quantizing weights.
///
/// No function of this crate panics on bad input; each problem maps to one of these.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// Reading a file or directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The safetensors container is malformed (truncated, bad header, bad offsets, ...).
    #[error("safetensors file `{file}`: {detail}")]
    Format {
        /// The file (or buffer name) being parsed.
        file: String,
        /// What is wrong.
        detail: String,
    },
    /// `model.safetensors.index.json` is malformed or disagrees with the shards.
    #[error("checkpoint index `{file}`: {detail}")]
    Index {
        /// The index file.
        file: String,
        /// What is wrong.
        detail: String,
    },
    /// A directory holds neither `model.safetensors` nor `model.safetensors.index.json`.
    #[error("{path}: no model.safetensors or model.safetensors.index.json found")]
    NoCheckpoint {
        /// The directory searched.
        path: PathBuf,
    },
    /// Two shards define the same tensor.
    #[error("tensor `{name}` appears in both `{first}` and `{second}`")]
    DuplicateTensor {
        /// Tensor name.
        name: String,
        /// First file holding it.
        first: String,
        /// Second file holding it.
        second: String,
    },
    /// A tensor was requested that the checkpoint does not hold.
    #[error("tensor `{name}` not found in checkpoint")]
    MissingTensor {
        /// Tensor name.
        name: String,
    },
    /// A tensor has a dtype this crate does not handle (only F32, F16, BF16, U32).
    #[error(
        "tensor `{tensor}` in `{file}`: unsupported dtype {dtype} (supported: F32, F16, BF16, U32)"
    )]
    UnsupportedDtype {
        /// Tensor name.
        tensor: String,
        /// File holding it.
        file: String,
        /// The dtype found.
        dtype: String,
    },
    /// A tensor has a supported dtype but not the one this use needs.
    #[error("tensor `{tensor}`: expected {expected}, found {found}")]
    WrongDtype {
        /// Tensor name.
        tensor: String,
        /// What was needed.
        expected: String,
        /// What was found.
        found: String,
    },
    /// A tensor's shape does not fit its role (e.g. scales vs weight and group size).
    #[error("tensor `{tensor}`: {detail}")]
    Shape {
        /// Tensor (or quantized linear) name.
        tensor: String,
        /// What is wrong.
        detail: String,
    },
    /// `config.json` (or its `quantization` entry) is malformed.
    #[error("config: {detail}")]
    Config {
        /// What is wrong.
        detail: String,
    },
    /// A bit width MLX or this crate does not support.
    #[error("{context}: unsupported bits {bits} (supported: 2, 3, 4, 5, 6, 8)")]
    UnsupportedBits {
        /// Where the value came from.
        context: String,
        /// The bit width.
        bits: u64,
    },
    /// A group size MLX's affine mode does not support.
    #[error("{context}: unsupported group size {group_size} (supported: 32, 64, 128)")]
    UnsupportedGroupSize {
        /// Where the value came from.
        context: String,
        /// The group size.
        group_size: u64,
    },
    /// A quantization mode other than `affine` (e.g. `mxfp4`, `nvfp4`, `mxfp8`).
    #[error("{context}: unsupported quantization mode `{mode}` (only `affine` is supported)")]
    UnsupportedMode {
        /// Where the value came from.
        context: String,
        /// The mode.
        mode: String,
    },
    /// A linear has `.scales` but the checkpoint carries no quantization config for it.
    #[error(
        "`{linear}` is quantized (has .scales/.biases) but no quantization config covers it; \
         bits and group size cannot be inferred: pass a QuantConfig"
    )]
    MissingQuantConfig {
        /// The linear's path.
        linear: String,
    },
    /// A buffer is larger than the GPU's maximum storage-buffer binding.
    #[error(
        "tensor `{tensor}` is {bytes} bytes, above the maximum binding size {max_bytes}; \
         split it by rows: {rows} rows of {row_bytes} bytes, at most {rows_per_binding} rows \
         per binding ({bindings} bindings; see `row_splits`)"
    )]
    TooLargeForBinding {
        /// Tensor name.
        tensor: String,
        /// Its size in bytes.
        bytes: u64,
        /// The binding limit.
        max_bytes: u64,
        /// Number of rows (first dimension).
        rows: u64,
        /// Bytes per row.
        row_bytes: u64,
        /// Rows that fit in one binding (0 when a single row is already too large).
        rows_per_binding: u64,
        /// Bindings needed.
        bindings: u64,
    },
    /// A single row does not fit the binding limit, so splitting by rows cannot help.
    #[error("a row of {row_bytes} bytes exceeds the binding limit of {max_bytes} bytes")]
    RowTooLarge {
        /// Bytes per row.
        row_bytes: u64,
        /// The binding limit.
        max_bytes: u64,
    },
    /// Bad arguments to `quantize` / `QuantizedTensor::new` (lengths, divisibility).
    #[error("{context}: {detail}")]
    Invalid {
        /// The operation or tensor.
        context: String,
        /// What is wrong.
        detail: String,
    },
}
