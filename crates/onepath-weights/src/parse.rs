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

/// The safetensors crate's header limit (100 MB), checked before the header is read.
const MAX_HEADER: u64 = 100_000_000;

fn fmt_err(file: &str, detail: impl Into<String>) -> WeightsError {
    WeightsError::Format {
        file: file.to_string(),
        detail: detail.into(),
    }
}

/// The header's tensors, read leniently from the JSON (for checks before the safetensors
/// crate's and for messages): name, dtype spelling, shape and data offsets, each as found.
struct Lenient {
    tensors: Vec<LenientTensor>,
}

/// One tensor's name, dtype spelling, shape and data offsets (each `None` when malformed).
type LenientTensor = (String, Option<String>, Option<Vec<u64>>, Option<(u64, u64)>);

impl Lenient {
    fn read(header: &[u8]) -> Option<Lenient> {
        let v: serde_json::Value = match serde_json::from_slice(header) {
            Ok(v) => v,
            // Not JSON: the safetensors crate reports why.
            Err(_) => return None,
        };
        let tensors = v
            .as_object()?
            .iter()
            .filter(|(k, _)| k.as_str() != "__metadata__")
            .map(|(name, t)| {
                let dtype = t.get("dtype").and_then(|d| d.as_str()).map(str::to_string);
                let shape = t
                    .get("shape")
                    .and_then(|s| s.as_array())
                    .and_then(|a| a.iter().map(|d| d.as_u64()).collect());
                let offsets = t
                    .get("data_offsets")
                    .and_then(|o| Some((o.get(0)?.as_u64()?, o.get(1)?.as_u64()?)));
                (name.clone(), dtype, shape, offsets)
            })
            .collect();
        Some(Lenient { tensors })
    }

    /// Largest end offset.
    fn data_len(&self) -> Option<u64> {
        self.tensors.iter().filter_map(|t| Some(t.3?.1)).max()
    }

    /// The first tensor whose shape and dtype do not give its data_offsets' span, and why.
    fn size_mismatch(&self) -> Option<String> {
        self.tensors.iter().find_map(|(name, dtype, shape, offsets)| {
            let (s, e) = (*offsets)?;
            let shape = shape.as_ref()?;
            let bits: u64 = match dtype.as_deref()? {
                "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
                "U16" | "I16" | "F16" | "BF16" => 16,
                "U32" | "I32" | "F32" => 32,
                "U64" | "I64" | "F64" => 64,
                "F4" => 4,
                "F6_E2M3" | "F6_E3M2" => 6,
                _ => return None,
            };
            let dt = dtype.as_deref().unwrap_or_default();
            let need = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
            match need.and_then(|n| n.checked_mul(bits)) {
                None => Some(format!(
                    "tensor `{name}`: shape {shape:?} of {dt} has more elements than can be addressed"
                )),
                Some(b) if b % 8 != 0 || Some(b / 8) != e.checked_sub(s) => Some(format!(
                    "tensor `{name}`: shape {shape:?} of {dt} needs {} bytes, but its data_offsets \
                     [{s}, {e}) span {}",
                    b as f64 / 8.0,
                    e.wrapping_sub(s)
                )),
                Some(_) => None,
            }
        })
    }
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
    if n > MAX_HEADER {
        return Err(fmt_err(
            file,
            format!("header length {n} is larger than the 100 MB safetensors limit"),
        ));
    }
    let lenient = Lenient::read(&bytes[8..header_end]);
    let data_len = len - header_end;
    // Offsets past the data are refused here, before the safetensors crate adds them up
    // (where a huge one would overflow).
    if let Some(need) = lenient.as_ref().and_then(Lenient::data_len)
        && need > data_len as u64
    {
        return Err(fmt_err(
            file,
            format!(
                "truncated: the header's tensors need {need} data bytes but only {data_len} follow the header"
            ),
        ));
    }
    let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| {
        let mismatch = || lenient.as_ref().and_then(Lenient::size_mismatch);
        let detail = match e {
            SafeTensorError::MetadataIncompleteBuffer => {
                match lenient.as_ref().and_then(Lenient::data_len) {
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
            SafeTensorError::TensorInvalidInfo
            | SafeTensorError::ValidationOverflow
            | SafeTensorError::MisalignedSlice => mismatch().unwrap_or_else(|| {
                "a tensor's data_offsets span does not equal its shape x dtype size".to_string()
            }),
            SafeTensorError::HeaderTooLarge => {
                format!("header length {n} is larger than the 100 MB safetensors limit")
            }
            other => format!("invalid header: {other}"),
        };
        fmt_err(file, detail)
    })?;

    // The crate validated contiguity and sizes; re-check bounds here so indexing later is safe
    // whatever the crate's version does.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn err(bytes: &[u8]) -> String {
        match parse_shard("f", 0, bytes) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    /// A tensor ending at 2^64 - 1 in a small file: the safetensors crate would add that to
    /// the header length (an overflow panic in debug builds); it is refused first.
    #[test]
    fn huge_end_offsets_are_refused_before_they_are_added() {
        let h = r#"{"t":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,18446744073709551615]}}"#;
        let e = err(&file(h, &[0; 4]));
        assert!(
            e.contains("need 18446744073709551615 data bytes but only 4"),
            "{e}"
        );
    }

    #[test]
    fn size_mismatches_name_the_tensor() {
        let h = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[5],"data_offsets":[16,32]}}"#;
        let e = err(&file(h, &[0; 32]));
        assert!(
            e.contains("tensor `b`: shape [5] of F32 needs 20 bytes"),
            "{e}"
        );
        assert!(e.contains("[16, 32) span 16"), "{e}");
        let h =
            r#"{"t":{"dtype":"F32","shape":[1000000000000,1000000000000],"data_offsets":[0,4]}}"#;
        let e = err(&file(h, &[0; 4]));
        assert!(
            e.contains("tensor `t`") && e.contains("more elements"),
            "{e}"
        );
    }

    #[test]
    fn a_header_over_100_mb_is_refused_unread() {
        let mut b = 200_000_000u64.to_le_bytes().to_vec();
        b.resize(200_000_008, b' ');
        assert!(err(&b).contains("header length 200000000 is larger than the 100 MB"));
    }
}
