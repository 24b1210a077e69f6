//! Splitting tensors by rows so each piece fits a GPU storage-buffer binding.
//!
//! Browsers cap `maxStorageBufferBindingSize` at 128 MiB by default, and e.g. the Gemma 4 E2B
//! embedding table is larger, so the GPU side binds such tensors as several row ranges.

use std::ops::Range;

use crate::{Result, WeightsError};

/// The default WebGPU `maxStorageBufferBindingSize` (128 MiB).
pub const WEBGPU_DEFAULT_MAX_BINDING: u64 = 128 << 20;

/// Row ranges `0..a, a..b, ...` covering `0..rows` where each range holds at most
/// `max_binding_bytes` bytes (`row_bytes` per row). All ranges but the last have the same
/// length. Errors with [`WeightsError::RowTooLarge`] if one row does not fit.
pub fn row_splits(
    rows: usize,
    row_bytes: usize,
    max_binding_bytes: u64,
) -> Result<Vec<Range<usize>>> {
    row_splits_aligned(rows, row_bytes, max_binding_bytes, 1)
}

/// Like [`row_splits`], and additionally every range starts at a byte offset
/// (`start * row_bytes`) that is a multiple of `offset_align` (e.g. 256, WebGPU's
/// `minStorageBufferOffsetAlignment`, when the ranges are bound at offsets of one buffer).
/// `offset_align` 0 is treated as 1.
pub fn row_splits_aligned(
    rows: usize,
    row_bytes: usize,
    max_binding_bytes: u64,
    offset_align: u64,
) -> Result<Vec<Range<usize>>> {
    row_splits_multi(rows, &[row_bytes], max_binding_bytes, offset_align)
}

/// Row ranges for several buffers split at the same rows (e.g. a quantized weight and its
/// scales and biases): each range fits `max_binding_bytes` in every buffer, and starts at a
/// multiple of `offset_align` bytes in every buffer.
pub fn row_splits_multi(
    rows: usize,
    row_bytes: &[usize],
    max_binding_bytes: u64,
    offset_align: u64,
) -> Result<Vec<Range<usize>>> {
    if rows == 0 {
        return Ok(Vec::new());
    }
    let align = offset_align.max(1);
    let (mut per, mut step) = (u64::MAX, 1u64);
    for &rb in row_bytes {
        let rb = rb as u64;
        if rb > max_binding_bytes {
            return Err(WeightsError::RowTooLarge {
                row_bytes: rb,
                max_bytes: max_binding_bytes,
            });
        }
        if let Some(fit) = max_binding_bytes.checked_div(rb) {
            per = per.min(fit);
            let s = align / gcd(rb, align);
            step = step / gcd(step, s) * s;
        }
    }
    if per >= rows as u64 {
        // Everything fits one binding starting at offset 0: alignment is moot.
        return Ok(std::iter::once(0..rows).collect());
    }
    let per = per - per % step;
    if per == 0 {
        return Err(WeightsError::Invalid {
            context: "row_splits".into(),
            detail: format!(
                "rows of {row_bytes:?} bytes cannot start at multiples of {offset_align} bytes \
                 within a {max_binding_bytes}-byte binding"
            ),
        });
    }
    let per = usize::try_from(per).unwrap_or(usize::MAX).min(rows);
    Ok((0..rows.div_ceil(per))
        .map(|i| i * per..((i + 1) * per).min(rows))
        .collect())
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Builds the "too large, split like this" error.
pub(crate) fn binding_error(tensor: &str, rows: usize, row_bytes: usize, max: u64) -> WeightsError {
    let rb = row_bytes as u64;
    let per = if rb == 0 || rb > max { 0 } else { max / rb };
    WeightsError::TooLargeForBinding {
        tensor: tensor.to_string(),
        bytes: rows as u64 * rb,
        max_bytes: max,
        rows: rows as u64,
        row_bytes: rb,
        rows_per_binding: per,
        bindings: if per == 0 {
            0
        } else {
            (rows as u64).div_ceil(per)
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_rows_and_fit() {
        // Gemma 4 E2B embedding table as bf16: 262144 x 1536 x 2 bytes = 768 MiB.
        let (rows, rb) = (262_144usize, 1536 * 2);
        let s = row_splits(rows, rb, WEBGPU_DEFAULT_MAX_BINDING).unwrap();
        assert_eq!(s.len(), 7);
        assert_eq!(s[0].start, 0);
        assert_eq!(s.last().unwrap().end, rows);
        for w in s.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        assert!(
            s.iter()
                .all(|r| (r.len() * rb) as u64 <= WEBGPU_DEFAULT_MAX_BINDING)
        );
    }

    #[test]
    fn aligned_starts() {
        let s = row_splits_aligned(1000, 12, 1000, 256).unwrap();
        assert!(
            s.iter()
                .all(|r| (r.start * 12) % 256 == 0 && r.len() * 12 <= 1000)
        );
        assert_eq!(s.last().unwrap().end, 1000);
        assert!(row_splits_aligned(10, 100, 150, 256).is_err());
    }

    #[test]
    fn edge_cases() {
        assert!(row_splits(0, 10, 5).unwrap().is_empty());
        assert_eq!(row_splits(5, 0, 5).unwrap(), vec![0..5]);
        assert_eq!(row_splits(3, 10, 1 << 40).unwrap(), vec![0..3]);
        assert!(matches!(
            row_splits(3, 10, 5),
            Err(WeightsError::RowTooLarge { .. })
        ));
        assert_eq!(row_splits(5, 10, 20).unwrap(), vec![0..2, 2..4, 4..5]);
    }
}
