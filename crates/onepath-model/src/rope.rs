//! RoPE angles, computed on the host per step: `(cos, sin)` of `pos * inv_freq_i` for the
//! step's positions, as transformers computes them (inverse frequencies and the product in
//! f32, then cos and sin of that f32 angle, here in f64 rounded once). A position's table
//! depends on the position alone.

use crate::config::AttnShape;

/// Inverse frequencies of a head dim's `D/2` rotate-half pairs: `theta^(-2i/D)` for the
/// `floor(partial * D / 2)` rotated pairs, 0 for the rest (they pass through unchanged).
pub fn inv_freq(a: &AttnShape) -> Vec<f32> {
    let d = a.head_dim;
    let rotated = (a.partial_rotary * d as f64 / 2.0).floor() as usize;
    (0..d / 2)
        .map(|i| {
            if i >= rotated {
                return 0.0;
            }
            let e = (2 * i) as f32 / d as f32;
            (1.0 / (a.rope_theta as f32 as f64).powf(f64::from(e))) as f32
        })
        .collect()
}

/// Appends the `(cos, sin)` pairs of position `pos` to `out`.
pub fn push_angles(inv: &[f32], pos: u32, out: &mut Vec<f32>) {
    let p = pos as f32;
    for &f in inv {
        let a = f64::from(p * f);
        out.push(a.cos() as f32);
        out.push(a.sin() as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportional_rope_rotates_a_quarter_with_the_full_denominator() {
        let a = AttnShape {
            head_dim: 512,
            kv_heads: 1,
            rope_theta: 1e6,
            partial_rotary: 0.25,
        };
        let f = inv_freq(&a);
        assert_eq!(f.len(), 256);
        assert_eq!(f[0], 1.0);
        assert!(f[64..].iter().all(|&x| x == 0.0));
        let want = 1e6f64.powf(-2.0 * 63.0 / 512.0);
        assert!((f64::from(f[63]) - want).abs() < 1e-6 * want);
        let mut t = Vec::new();
        push_angles(&f, 7, &mut t);
        assert_eq!((t[2 * 100], t[2 * 100 + 1]), (1.0, 0.0));
    }
}
