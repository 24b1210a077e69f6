//! Byte-level mutations of a seed: bit flips, interesting bytes and integers, insertions,
//! deletions, duplications, splices with another seed, edits of little-endian length fields and
//! of decimal numbers in text (a JSON `data_offsets` or `num_hidden_layers`), and JSON tokens.

use crate::rng::Rng;

/// Integers that break size arithmetic: zero, one, powers of two at the type limits, 10^12
/// (a header claiming 10^12 tensors) and 2^63 (a length that overflows a signed size).
pub const INTERESTING_U64: [u64; 14] = [
    0,
    1,
    2,
    7,
    255,
    65_535,
    1 << 31,
    (1 << 32) - 1,
    1 << 32,
    1_000_000_000_000,
    (1 << 53) + 1,
    1 << 63,
    (1 << 63) - 1,
    u64::MAX,
];

/// Decimal spellings written over a number in text.
const INTERESTING_DEC: [&str; 17] = [
    "0",
    "1",
    "-1",
    "2",
    "3",
    "255",
    "4294967295",
    "4294967296",
    "1000000000000",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "-0.0",
    "0.5",
    "1e-320",
];

/// JSON fragments inserted anywhere.
const TOKENS: [&str; 18] = [
    "{", "}", "[", "]", "\"", ",", ":", "null", "true", "false", "\\u0000", "\\ud800", "{}", "[]",
    "\"\":", "[[[[[[[[", "\u{feff}", "\u{0}",
];

/// Applies 1 to 8 random mutations to `data` (kept under `max_len` bytes); `other` is a second
/// input to splice from.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], max_len: usize) {
    let n = 1 + rng.below(8);
    for _ in 0..n {
        mutate_once(rng, data, other);
    }
    data.truncate(max_len);
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    let len = data.len();
    match rng.below(12) {
        // Flip a bit.
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        // An interesting byte.
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = [0u8, 1, 0x7f, 0x80, 0xff, b'"', b'\\', b'0', b'9', b'-'][rng.below(10)];
        }
        // Delete a range.
        2 if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(16.min(len - a))).min(len);
            data.drain(a..b);
        }
        // Insert random bytes.
        3 => {
            let at = rng.below(len + 1);
            let k = 1 + rng.below(8);
            let bytes = rng.bytes(k);
            data.splice(at..at, bytes);
        }
        // Duplicate a range.
        4 if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(64.min(len - a))).min(len);
            let chunk = data[a..b].to_vec();
            let at = rng.below(len + 1);
            data.splice(at..at, chunk);
        }
        // Splice: our head with the other input's tail.
        5 if !other.is_empty() => {
            let a = rng.below(len + 1);
            let b = rng.below(other.len());
            data.truncate(a);
            data.extend_from_slice(&other[b..]);
        }
        // A little-endian integer field (u64, u32 or u16) set to an interesting value, most
        // often at 0 (a safetensors header's length).
        6 if len >= 2 => {
            let v = INTERESTING_U64[rng.below(INTERESTING_U64.len())];
            let w = [8usize, 4, 2][rng.below(3)].min(len);
            let at = if rng.one_in(3) {
                0
            } else {
                rng.below(len - w + 1)
            };
            let bytes = v.to_le_bytes();
            data[at..at + w].copy_from_slice(&bytes[..w]);
        }
        // Add a small delta to a little-endian u64 (an off-by-a-few length).
        7 if len >= 8 => {
            let at = if rng.one_in(2) { 0 } else { rng.below(len - 7) };
            let mut b = [0u8; 8];
            b.copy_from_slice(&data[at..at + 8]);
            let d = rng.below(33) as i64 - 16;
            let v = u64::from_le_bytes(b).wrapping_add(d as u64);
            data[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        // A decimal number in text replaced.
        8 | 9 => {
            if let Some((a, b)) = find_number(rng, data) {
                let rep = if rng.one_in(3) {
                    let v = rng.next_u64() >> rng.below(64);
                    v.to_string()
                } else {
                    INTERESTING_DEC[rng.below(INTERESTING_DEC.len())].to_string()
                };
                data.splice(a..b, rep.into_bytes());
            } else if len > 0 {
                let i = rng.below(len);
                data[i] = b'0' + rng.below(10) as u8;
            }
        }
        // A JSON token inserted.
        10 => {
            let at = rng.below(len + 1);
            let t = TOKENS[rng.below(TOKENS.len())].as_bytes().to_vec();
            data.splice(at..at, t);
        }
        // Truncate.
        _ if len > 0 => {
            data.truncate(rng.below(len));
        }
        _ => data.push(rng.next_u64() as u8),
    }
}

/// A run of ASCII digits (with a leading '-'), starting the search at a random place.
fn find_number(rng: &mut Rng, data: &[u8]) -> Option<(usize, usize)> {
    if data.is_empty() {
        return None;
    }
    let start = rng.below(data.len());
    let pos = data[start..]
        .iter()
        .position(u8::is_ascii_digit)
        .map(|p| start + p)
        .or_else(|| data.iter().position(u8::is_ascii_digit))?;
    let mut a = pos;
    while a > 0 && (data[a - 1].is_ascii_digit() || data[a - 1] == b'-') {
        a -= 1;
    }
    let mut b = pos;
    while b < data.len() && (data[b].is_ascii_digit() || matches!(data[b], b'.' | b'e' | b'E')) {
        b += 1;
    }
    Some((a, b))
}
