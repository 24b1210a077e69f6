//! Parsing one safetensors buffer into a tensor table, with precise errors for bad input.

use std::collections::HashMap;

use safetensors::{SafeTensorError, SafeTensors};

use crate::{DType, Result, WeightsError};

/// One tensor's entry: where its bytes are inside its shard.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// Index of the shard holding it.
    pub shard: usize,
    /// The dtype, or the safetensors spelling of an unsupported one.
    pub dtype: Result<DType, String>,
    /// Shape.
    pub shape: Vec<usize>,
    /// Absolute byte range inside the shard buffer.
    pub start: usize,
    /// End of the byte range (exclusive).
    pub end: usize,
}

fn fmt_err(file: &str, detail: impl Into<String>) -> WeightsError {
    WeightsError::Format {
        file: file.to_string(),
        detail: detail.into(),
    }
}

/// Largest end offset in the header's tensors, read leniently from the JSON (for messages).
fn declared_data_len(header: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(header).ok()?;
    v.as_object()?
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .filter_map(|(_, t)| t.get("data_offsets")?.get(1)?.as_u64())
        .max()
}

/// A parsed shard: its tensors and its `__metadata__` strings.
pub(crate) struct Parsed {
    pub entries: Vec<(String, Entry)>,
    pub metadata: HashMap<String, String>,
}

/// Parses the header of `bytes` (a whole safetensors file named `file`) into entries tagged
/// with `shard`. Every offset is checked against the buffer; nothing here can panic.
pub(crate) fn parse_shard(file: &str, shard: usize, bytes: &[u8]) -> Result<Parsed> {
    let len = bytes.len();
    let Some(n_bytes) = bytes.get(..8) else {
        return Err(fmt_err(
            file,
            format!(
                "truncated: {len} bytes, but a safetensors file starts with an 8-byte header length"
            ),
        ));
    };
    let mut n8 = [0u8; 8];
    n8.copy_from_slice(n_bytes);
    let n = u64::from_le_bytes(n8);
    let header_end = n.checked_add(8).filter(|&e| e <= len as u64).ok_or_else(|| {
        fmt_err(
            file,
            format!("header length {n} runs past the end of the file ({len} bytes): truncated or not a safetensors file"),
        )
    })? as usize;
    let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| {
        let data_len = len - header_end;
        let detail = match e {
            SafeTensorError::MetadataIncompleteBuffer => {
                match declared_data_len(&bytes[8..header_end]) {
                    Some(need) if need > data_len as u64 => format!(
                        "truncated: the header's tensors need {need} data bytes but only {data_len} follow the header"
                    ),
                    Some(need) => format!(
                        "the header's tensors cover {need} data bytes but {data_len} follow the header (trailing bytes)"
                    ),
                    None => format!("tensor data does not cover the {data_len} data bytes exactly"),
                }
            }
            SafeTensorError::InvalidOffset(name) => format!(
                "tensor `{name}` has data offsets that are out of range or not contiguous with the previous tensor"
            ),
            SafeTensorError::TensorInvalidInfo => {
                "a tensor's data_offsets span does not equal its shape x dtype size".to_string()
            }
            SafeTensorError::HeaderTooLarge => {
                format!("header length {n} is larger than the 100 MB safetensors limit")
            }
            other => format!("invalid header: {other}"),
        };
        fmt_err(file, detail)
    })?;

    // The crate validated contiguity and sizes; re-check bounds here so indexing later is safe
    // whatever the crate's version does.
    let data_len = len - header_end;
    let mut out = Vec::new();
    for (name, info) in metadata.tensors() {
        let (s, e) = info.data_offsets;
        if s > e || e > data_len {
            return Err(fmt_err(
                file,
                format!(
                    "tensor `{name}`: data offsets [{s}, {e}) out of range (data section is {data_len} bytes)"
                ),
            ));
        }
        let dtype = DType::from_safetensors(info.dtype).ok_or_else(|| format!("{:?}", info.dtype));
        if let Ok(dt) = dtype {
            let numel = info.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if numel.and_then(|n| n.checked_mul(dt.size())) != Some(e - s) {
                return Err(fmt_err(
                    file,
                    format!(
                        "tensor `{name}`: shape {:?} of {dt} does not match its {} data bytes",
                        info.shape,
                        e - s
                    ),
                ));
            }
        }
        out.push((
            name,
            Entry {
                shard,
                dtype,
                shape: info.shape.clone(),
                start: header_end + s,
                end: header_end + e,
            },
        ));
    }
    Ok(Parsed {
        entries: out,
        metadata: metadata.metadata().clone().unwrap_or_default(),
    })
}
