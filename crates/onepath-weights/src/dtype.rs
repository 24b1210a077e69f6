//! Element types handled by this crate and exact conversions between them.

use half::{bf16, f16};

/// The tensor element types this crate reads: three float formats and packed `u32` words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16 (the top 16 bits of an f32).
    BF16,
    /// Unsigned 32-bit integers (MLX's packed quantized weights).
    U32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        !matches!(self, DType::U32)
    }

    /// The safetensors spelling (`"F32"`, `"F16"`, `"BF16"`, `"U32"`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::U32 => "U32",
        }
    }

    /// Maps a safetensors dtype; `None` for the ones this crate does not handle.
    pub fn from_safetensors(d: safetensors::Dtype) -> Option<DType> {
        match d {
            safetensors::Dtype::F32 => Some(DType::F32),
            safetensors::Dtype::F16 => Some(DType::F16),
            safetensors::Dtype::BF16 => Some(DType::BF16),
            safetensors::Dtype::U32 => Some(DType::U32),
            _ => None,
        }
    }

    /// Rounds `x` to the nearest value of this float type (ties to even) and returns it as f32.
    ///
    /// Identity for `F32`; for `U32` the value is returned unchanged as well.
    #[inline]
    pub fn round(self, x: f32) -> f32 {
        match self {
            DType::F32 | DType::U32 => x,
            DType::F16 => f16::from_f32(x).to_f32(),
            DType::BF16 => bf16::from_f32(x).to_f32(),
        }
    }

    /// Decodes little-endian element bytes (`bytes.len() == self.size()`) to f32.
    ///
    /// `U32` values are converted numerically. Returns `None` on a length mismatch.
    #[inline]
    pub fn decode(self, bytes: &[u8]) -> Option<f32> {
        Some(match self {
            DType::F32 => f32::from_le_bytes(bytes.try_into().ok()?),
            DType::U32 => u32::from_le_bytes(bytes.try_into().ok()?) as f32,
            DType::F16 => f16::from_bits(u16::from_le_bytes(bytes.try_into().ok()?)).to_f32(),
            DType::BF16 => bf16::from_bits(u16::from_le_bytes(bytes.try_into().ok()?)).to_f32(),
        })
    }

    /// Encodes `x` (rounded to nearest, ties to even) as little-endian bytes of this type,
    /// appending to `out`. `U32` stores `x as u32` (saturating).
    #[inline]
    pub fn encode(self, x: f32, out: &mut Vec<u8>) {
        match self {
            DType::F32 => out.extend_from_slice(&x.to_le_bytes()),
            DType::U32 => out.extend_from_slice(&(x as u32).to_le_bytes()),
            DType::F16 => out.extend_from_slice(&f16::from_f32(x).to_bits().to_le_bytes()),
            DType::BF16 => out.extend_from_slice(&bf16::from_f32(x).to_bits().to_le_bytes()),
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Decodes a whole little-endian buffer of `dtype` elements to f32 (trailing partial element
/// ignored; callers validate lengths first).
pub(crate) fn decode_all(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    let n = dtype.size();
    bytes
        .chunks_exact(n)
        .map(|c| dtype.decode(c).unwrap_or(0.0))
        .collect()
}
