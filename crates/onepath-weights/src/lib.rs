//! Safetensors checkpoints for onepath: Hugging Face (f32/f16/bf16) and MLX affine-quantized
//! (u32 packed weight + scales + biases), with MLX's quantize / dequantize reproduced bit for bit.
//!
//! - [`Checkpoint`]: one parser for memory-mapped files (native, [`Checkpoint::open`]) and byte
//!   buffers (wasm, [`Checkpoint::from_bytes`] / [`Checkpoint::from_shards`]); single-file or
//!   sharded with `model.safetensors.index.json`.
//! - [`Checkpoint::linear`] finds a linear as [`Linear::Quantized`] or [`Linear::Dense`].
//! - [`QuantConfig`]: config.json's `quantization` entry, with per-path overrides.
//! - [`quantize`] / [`dequantize`]: MLX's affine rule (documented in [`quant`]).
//! - [`row_splits`]: row ranges of a `[rows, cols]` tensor that fit a GPU binding limit.
//!
//! Bad input (truncated files, bad headers, offsets out of range, mismatched shapes,
//! unsupported bits / modes / dtypes) gives a [`WeightsError`], never a panic.

#![warn(missing_docs)]

mod checkpoint;
mod config;
mod dtype;
mod error;
mod parse;
pub mod quant;
mod source;
mod split;
mod tensor;

pub use checkpoint::{Checkpoint, INDEX_FILE, Linear, SINGLE_FILE, index_files};
pub use config::{QuantConfig, QuantParams, SUPPORTED_BITS, SUPPORTED_GROUP_SIZES};
pub use dtype::DType;
pub use error::{Result, WeightsError};
pub use quant::{
    QuantizedTensor, dequantize, dequantize_f32, dequantize_rows, dequantize_rows_f32, quantize,
    quantize_view,
};
pub use source::ByteSource;
pub use split::{WEBGPU_DEFAULT_MAX_BINDING, row_splits, row_splits_aligned, row_splits_multi};
pub use tensor::TensorView;
