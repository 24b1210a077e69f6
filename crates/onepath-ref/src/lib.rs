//! f64 CPU reference kernels: the oracle every GPU kernel is tested against.
//!
//! Everything here is deliberately plain: straightforward loops, inputs widened
//! to `f64` exactly, every sum accumulated in `f64`, no blocking, no online
//! softmax, no fused tricks. If a GPU kernel and this crate disagree, this
//! crate should be the one that is obviously right.
//!
//! Layouts are row-major and documented per function. Shape problems are
//! reported as [`RefError`] by the kernels that take dimensions
//! ([`sdpa`], [`matmul_nt`]); the small element-wise helpers panic with a
//! clear message instead, since a shape mistake there is a bug in the caller.
//!
//! The crate is pure Rust with no platform dependencies, so it also builds for
//! `wasm32-unknown-unknown`.

#![forbid(unsafe_code)]

/// Shape and parameter errors reported by the reference kernels.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum RefError {
    /// A dimension that must be at least 1 was 0.
    #[error("dimension `{name}` must be at least 1, got 0")]
    ZeroDim {
        /// Name of the dimension (e.g. `"head_dim"`).
        name: &'static str,
    },
    /// A buffer's length does not match the length implied by the dimensions.
    #[error("buffer `{name}` has length {actual}, but the dimensions {shape} imply {expected}")]
    LenMismatch {
        /// Name of the buffer (e.g. `"q"`).
        name: &'static str,
        /// The shape the length was derived from, e.g. `"[batch, q_heads, q_len, head_dim] = [1, 8, 1, 64]"`.
        shape: String,
        /// Length implied by the dimensions.
        expected: usize,
        /// Length actually passed.
        actual: usize,
    },
    /// Grouped-query attention needs `q_heads` to be a multiple of `kv_heads`.
    #[error("q_heads ({q_heads}) must be a multiple of kv_heads ({kv_heads})")]
    HeadsNotMultiple {
        /// Number of query heads.
        q_heads: usize,
        /// Number of key/value heads.
        kv_heads: usize,
    },
    /// The product of the dimensions of a buffer overflows `usize`.
    #[error("the dimensions of `{name}` overflow usize")]
    DimsOverflow {
        /// Name of the buffer whose size overflowed.
        name: &'static str,
    },
    /// A scalar parameter is outside its valid range.
    #[error("invalid parameter `{name}` = {value}: {reason}")]
    InvalidParam {
        /// Name of the parameter (e.g. `"softcap"`).
        name: &'static str,
        /// The value that was passed.
        value: f64,
        /// What the value must satisfy.
        reason: &'static str,
    },
}

/// Dimensions of a scaled dot-product attention call (see [`sdpa`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SdpaDims {
    /// Number of independent sequences.
    pub batch: usize,
    /// Number of query heads (`Hq`).
    pub q_heads: usize,
    /// Number of key/value heads (`Hkv`); `q_heads` must be a multiple of it.
    pub kv_heads: usize,
    /// Number of query rows per (sequence, head) (`Tq`).
    pub q_len: usize,
    /// Number of keys/values per (sequence, kv head) (`Tkv`).
    pub kv_len: usize,
    /// Length of every query, key and value vector (`D`).
    pub head_dim: usize,
}

fn nonzero(name: &'static str, v: usize) -> Result<(), RefError> {
    if v == 0 {
        Err(RefError::ZeroDim { name })
    } else {
        Ok(())
    }
}

/// Checked product of `dims`; `name` names the buffer in the error.
fn product(name: &'static str, dims: &[usize]) -> Result<usize, RefError> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or(RefError::DimsOverflow { name })
}

fn check_len(
    name: &'static str,
    shape_names: &str,
    dims: &[usize],
    actual: usize,
) -> Result<(), RefError> {
    let expected = product(name, dims)?;
    if expected != actual {
        return Err(RefError::LenMismatch {
            name,
            shape: format!("{shape_names} = {dims:?}"),
            expected,
            actual,
        });
    }
    Ok(())
}

/// Scaled dot-product attention in f64.
///
/// * `q`: `[batch, q_heads, q_len, head_dim]`, row-major `f32`.
/// * `k`, `v`: `[batch, kv_heads, kv_len, head_dim]`, row-major `f32`
///   (callers widen `f16` data to `f32`, which is exact).
/// * Grouped-query attention: query head `h` uses kv head
///   `h / (q_heads / kv_heads)`.
/// * `score(i, j) = scale * dot(q_i, k_j)`, computed in `f64`; with
///   `softcap = Some(c)` it becomes `c * tanh(score / c)`.
/// * `selected(b, h, i, j)` says whether query row `i` of sequence `b`, query
///   head `h` attends key `j`. Unselected keys are left out of the softmax
///   entirely (nothing like `-inf` is added to a score).
/// * Softmax over the selected keys in `f64`, subtracting the row maximum
///   before `exp`. A row with no selected key outputs zeros (never NaN).
///
/// Returns the output `[batch, q_heads, q_len, head_dim]` in `f64`.
///
/// # Errors
/// [`RefError`] if a dimension is 0, `q_heads` is not a multiple of
/// `kv_heads`, a buffer's length does not match the dimensions, `scale` is not
/// finite, or the softcap is not finite and positive.
pub fn sdpa(
    dims: &SdpaDims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    scale: f64,
    softcap: Option<f64>,
    selected: impl Fn(usize, usize, usize, usize) -> bool,
) -> Result<Vec<f64>, RefError> {
    let &SdpaDims {
        batch,
        q_heads,
        kv_heads,
        q_len,
        kv_len,
        head_dim,
    } = dims;
    nonzero("batch", batch)?;
    nonzero("q_heads", q_heads)?;
    nonzero("kv_heads", kv_heads)?;
    nonzero("q_len", q_len)?;
    nonzero("kv_len", kv_len)?;
    nonzero("head_dim", head_dim)?;
    if !q_heads.is_multiple_of(kv_heads) {
        return Err(RefError::HeadsNotMultiple { q_heads, kv_heads });
    }
    let q_shape = "[batch, q_heads, q_len, head_dim]";
    let kv_shape = "[batch, kv_heads, kv_len, head_dim]";
    check_len("q", q_shape, &[batch, q_heads, q_len, head_dim], q.len())?;
    check_len("k", kv_shape, &[batch, kv_heads, kv_len, head_dim], k.len())?;
    check_len("v", kv_shape, &[batch, kv_heads, kv_len, head_dim], v.len())?;
    if !scale.is_finite() {
        return Err(RefError::InvalidParam {
            name: "scale",
            value: scale,
            reason: "must be finite",
        });
    }
    if let Some(c) = softcap
        && !(c.is_finite() && c > 0.0)
    {
        return Err(RefError::InvalidParam {
            name: "softcap",
            value: c,
            reason: "must be finite and > 0",
        });
    }

    let group = q_heads / kv_heads;
    let mut out = vec![0.0f64; q.len()];
    // (key index, score) of the selected keys of the current row.
    let mut scores: Vec<(usize, f64)> = Vec::with_capacity(kv_len);
    let mut acc = vec![0.0f64; head_dim];

    for b in 0..batch {
        for h in 0..q_heads {
            let kvh = h / group;
            for i in 0..q_len {
                let q_off = ((b * q_heads + h) * q_len + i) * head_dim;
                let q_row = &q[q_off..q_off + head_dim];

                // Scores of the selected keys.
                scores.clear();
                for j in 0..kv_len {
                    if !selected(b, h, i, j) {
                        continue;
                    }
                    let k_off = ((b * kv_heads + kvh) * kv_len + j) * head_dim;
                    let k_row = &k[k_off..k_off + head_dim];
                    let mut dot = 0.0f64;
                    for d in 0..head_dim {
                        dot += f64::from(q_row[d]) * f64::from(k_row[d]);
                    }
                    let mut s = scale * dot;
                    if let Some(c) = softcap {
                        s = self::softcap(s, c);
                    }
                    scores.push((j, s));
                }

                // A row with no selected key stays zero.
                if scores.is_empty() {
                    continue;
                }

                // Softmax with max subtraction, then the weighted sum of v.
                let max = scores
                    .iter()
                    .map(|&(_, s)| s)
                    .fold(f64::NEG_INFINITY, f64::max);
                acc.fill(0.0);
                let mut denom = 0.0f64;
                for &(j, s) in &scores {
                    let w = (s - max).exp();
                    denom += w;
                    let v_off = ((b * kv_heads + kvh) * kv_len + j) * head_dim;
                    let v_row = &v[v_off..v_off + head_dim];
                    for d in 0..head_dim {
                        acc[d] += w * f64::from(v_row[d]);
                    }
                }
                let o_row = &mut out[q_off..q_off + head_dim];
                for d in 0..head_dim {
                    o_row[d] = acc[d] / denom;
                }
            }
        }
    }
    Ok(out)
}

/// `y = x W^T` in f64: `x` is `[m, k]` `f32`, `w` is `[n, k]` `f32` (one row
/// per output feature, as stored in a linear layer), `y` is `[m, n]` `f64`.
///
/// # Errors
/// [`RefError`] if `m`, `k` or `n` is 0 or a buffer's length does not match.
pub fn matmul_nt(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Result<Vec<f64>, RefError> {
    nonzero("m", m)?;
    nonzero("k", k)?;
    nonzero("n", n)?;
    check_len("x", "[m, k]", &[m, k], x.len())?;
    check_len("w", "[n, k]", &[n, k], w.len())?;
    let y_len = product("y", &[m, n])?;
    let mut y = vec![0.0f64; y_len];
    for r in 0..m {
        let x_row = &x[r * k..(r + 1) * k];
        for c in 0..n {
            let w_row = &w[c * k..(c + 1) * k];
            let mut sum = 0.0f64;
            for t in 0..k {
                sum += f64::from(x_row[t]) * f64::from(w_row[t]);
            }
            y[r * n + c] = sum;
        }
    }
    Ok(y)
}

/// `|a - b|` for one element, with every NaN result counted as infinity.
/// Equal values (including equal infinities) give 0.
fn elem_diff(a: f64, b: f32) -> f64 {
    let b = f64::from(b);
    if a == b {
        return 0.0;
    }
    let d = (a - b).abs();
    if d.is_nan() { f64::INFINITY } else { d }
}

/// Maximum absolute difference `max_i |a_i - b_i|` in f64.
///
/// A NaN in either input counts as an infinite difference, so a kernel that
/// produces NaN can never pass a tolerance check. Empty inputs give 0.
///
/// # Panics
/// If `a` and `b` have different lengths.
pub fn max_abs_diff(a: &[f64], b: &[f32]) -> f64 {
    assert_eq!(
        a.len(),
        b.len(),
        "max_abs_diff: lengths differ ({} vs {})",
        a.len(),
        b.len()
    );
    a.iter()
        .zip(b)
        .map(|(&x, &y)| elem_diff(x, y))
        .fold(0.0, f64::max)
}

/// The worst error of `got` against the reference `want` in units of f32 roundoff (2^-24)
/// times the magnitude each element accumulated (`mass`, e.g. `sum_k |x_k w_k|`):
/// `max_i |want_i - got_i| / (2^-24 mass_i)`, to compare with a kernel's rounding depth. A NaN
/// counts as an infinite error. Empty inputs give 0.
///
/// # Panics
/// If the three lengths differ.
pub fn roundoff_ratio(want: &[f64], got: &[f32], mass: &[f64]) -> f64 {
    assert!(
        want.len() == got.len() && got.len() == mass.len(),
        "roundoff_ratio: lengths differ ({}, {}, {})",
        want.len(),
        got.len(),
        mass.len()
    );
    const U: f64 = 1.0 / 16_777_216.0;
    want.iter()
        .zip(got)
        .zip(mass)
        .map(|((&w, &g), &m)| elem_diff(w, g) / (U * m.max(f64::MIN_POSITIVE)))
        .fold(0.0, f64::max)
}

/// Relative L2 error `||a - b|| / ||a||` in f64, with `a` the reference.
///
/// Returns 0 if both are all zeros, infinity if `a` is all zeros but `b` is
/// not, and infinity if either input contains NaN.
///
/// # Panics
/// If `a` and `b` have different lengths.
pub fn rel_l2(a: &[f64], b: &[f32]) -> f64 {
    assert_eq!(
        a.len(),
        b.len(),
        "rel_l2: lengths differ ({} vs {})",
        a.len(),
        b.len()
    );
    let mut diff_sq = 0.0f64;
    let mut ref_sq = 0.0f64;
    for (&x, &y) in a.iter().zip(b) {
        if x.is_nan() || y.is_nan() {
            return f64::INFINITY;
        }
        let d = elem_diff(x, y);
        diff_sq += d * d;
        ref_sq += x * x;
    }
    if diff_sq == 0.0 {
        0.0
    } else if ref_sq == 0.0 {
        f64::INFINITY
    } else {
        (diff_sq / ref_sq).sqrt()
    }
}

/// RMS normalization over rows of length `dim`:
/// `y = x / sqrt(mean(x^2) + eps) * w` (without `w` when it is `None`).
///
/// `w` is the effective per-feature scale; a checkpoint that stores `w - 1`
/// (the Gemma 1–3 `(1 + w)` convention) must be converted by the caller.
///
/// # Panics
/// If `dim` is 0, `x.len()` is not a multiple of `dim`, or `w` is given with a
/// length other than `dim`.
pub fn rms_norm(x: &[f32], w: Option<&[f32]>, eps: f64, dim: usize) -> Vec<f64> {
    assert!(dim > 0, "rms_norm: dim must be at least 1");
    assert!(
        x.len().is_multiple_of(dim),
        "rms_norm: x.len() ({}) is not a multiple of dim ({dim})",
        x.len()
    );
    if let Some(w) = w {
        assert_eq!(
            w.len(),
            dim,
            "rms_norm: w.len() ({}) must equal dim ({dim})",
            w.len()
        );
    }
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks_exact(dim) {
        let mut sum_sq = 0.0f64;
        for &e in row {
            let e = f64::from(e);
            sum_sq += e * e;
        }
        let inv_rms = 1.0 / (sum_sq / dim as f64 + eps).sqrt();
        for (c, &e) in row.iter().enumerate() {
            let scale = w.map_or(1.0, |w| f64::from(w[c]));
            y.push(f64::from(e) * inv_rms * scale);
        }
    }
    y
}

/// GELU, tanh approximation:
/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
pub fn gelu_tanh(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
}

/// Logit soft-capping: `cap * tanh(x / cap)`.
pub fn softcap(x: f64, cap: f64) -> f64 {
    cap * (x / cap).tanh()
}

/// Rotate-half rotary position embedding of one head vector `x` (length `D`),
/// in place: for `i < D/2`, the pair `(x[i], x[i + D/2])` is rotated by the
/// angle `pos * inv_freq[i]`:
///
/// ```text
/// x[i]       <- x[i] cos - x[i + D/2] sin
/// x[i + D/2] <- x[i + D/2] cos + x[i] sin
/// ```
///
/// # Panics
/// If `x.len()` is odd or `inv_freq.len() != x.len() / 2`.
pub fn rope_rotate_half(x: &mut [f64], pos: usize, inv_freq: &[f64]) {
    assert!(
        x.len().is_multiple_of(2),
        "rope_rotate_half: head length ({}) must be even",
        x.len()
    );
    let half = x.len() / 2;
    assert_eq!(
        inv_freq.len(),
        half,
        "rope_rotate_half: inv_freq.len() ({}) must be half the head length ({})",
        inv_freq.len(),
        x.len()
    );
    for i in 0..half {
        let angle = pos as f64 * inv_freq[i];
        let (sin, cos) = angle.sin_cos();
        let a = x[i];
        let b = x[i + half];
        x[i] = a * cos - b * sin;
        x[i + half] = b * cos + a * sin;
    }
}

#[cfg(test)]
mod tests;
