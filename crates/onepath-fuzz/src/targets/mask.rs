//! Mask canonicalisation (`onepath-mask`): the input bytes drive `arbitrary`, so a byte
//! mutation is a mutation of the shape, the form, the data or the key ranges.

use crate::Outcome;
use arbitrary::{Arbitrary, Unstructured};
use onepath_mask::{
    AdditiveMask, BoolMask, KeySet, MaskDType, MaskDesc, MaskKind, MaskShape, canonicalize,
};

#[derive(Arbitrary, Debug)]
enum Dims {
    /// Up to 2^16 rows of up to 4096 keys: real work, bounded.
    Small { b: u8, h: u8, q: u8, kv: u16 },
    /// Any sizes, with a data-free form: must fail fast or work without materialising them.
    Huge { b: u64, h: u64, q: u64, kv: u64 },
}

#[derive(Arbitrary, Debug)]
enum Form {
    None,
    Causal(Option<u32>),
    Bool {
        shape: Vec<u8>,
        bits: Vec<u8>,
    },
    Additive {
        shape: Vec<u8>,
        dtype: u8,
        values: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    dims: Dims,
    form: Form,
    key_lo: Option<Vec<u32>>,
    key_hi: Option<Vec<u32>>,
    /// A hand-made key set for `KeySet::check`.
    keys: (bool, u32, u32, Vec<u64>),
}

pub fn seeds() -> Vec<Vec<u8>> {
    let mut rng = crate::rng::Rng::new(7);
    (0..16).map(|i| rng.bytes(16 << (i % 6))).collect()
}

const VALUES: [f32; 6] = [0.0, f32::NEG_INFINITY, f32::MIN, -65504.0, 1.0, f32::NAN];

pub fn mask(data: &[u8]) -> Outcome {
    let mut u = Unstructured::new(data);
    let Ok(inp) = Input::arbitrary(&mut u) else {
        return Err("too few bytes for an input".into());
    };
    check_keys(&inp.keys);
    let shape = match inp.dims {
        Dims::Small { b, h, q, kv } => MaskShape {
            batch: usize::from(b % 16),
            heads: usize::from(h % 16),
            q_len: usize::from(q),
            kv_len: usize::from(kv % 4096),
        },
        Dims::Huge { b, h, q, kv } => MaskShape {
            batch: b as usize,
            heads: h as usize,
            q_len: q as usize,
            kv_len: kv as usize,
        },
    };
    let small = matches!(inp.dims, Dims::Small { .. });
    let rows = shape
        .batch
        .checked_mul(shape.heads)
        .and_then(|n| n.checked_mul(shape.q_len));
    if !small
        && rows.is_some_and(|n| n > 1 << 16 && n <= u32::MAX as usize)
        && shape.kv_len <= u32::MAX as usize
    {
        // A real call of that many rows: its canonical mask is that large by design.
        return Err("a legitimately large call".into());
    }
    let bools: Vec<bool>;
    let floats: Vec<f32>;
    let mshape: Vec<usize>;
    let kind = match &inp.form {
        Form::None => MaskKind::None,
        Form::Causal(w) => MaskKind::Causal { window: *w },
        Form::Bool { shape: s, bits } => {
            mshape = s.iter().take(5).map(|&d| usize::from(d % 70)).collect();
            bools = fill(&mshape, bits.len(), |i| bits[i % bits.len()] & 1 == 1);
            MaskKind::Bool(BoolMask {
                shape: &mshape,
                data: &bools,
            })
        }
        Form::Additive {
            shape: s,
            dtype,
            values,
        } => {
            mshape = s.iter().take(5).map(|&d| usize::from(d % 70)).collect();
            floats = fill(&mshape, values.len(), |i| {
                VALUES[usize::from(values[i % values.len()]) % VALUES.len()]
            });
            let dtype = [MaskDType::F32, MaskDType::F16, MaskDType::BF16][usize::from(*dtype) % 3];
            MaskKind::Additive(AdditiveMask {
                shape: &mshape,
                data: &floats,
                dtype,
            })
        }
    };
    if !small && !matches!(kind, MaskKind::None | MaskKind::Causal { .. }) {
        return Err("explicit masks are only made for small shapes".into());
    }
    let mut desc = MaskDesc::new(kind);
    if let Some(lo) = &inp.key_lo {
        desc = desc.with_key_lo(lo);
    }
    if let Some(hi) = &inp.key_hi {
        desc = desc.with_key_hi(hi);
    }
    let m = canonicalize(&shape, &desc).map_err(|e| e.to_string())?;
    for ks in m.stored_rows() {
        if let Err(e) = ks.check_canonical() {
            panic!("canonicalize produced a non-canonical key set: {e}");
        }
    }
    if small {
        let _ = (m.all_spans(), m.empty_rows().len(), m.varies_by_head());
    }
    Ok(())
}

/// Data for an explicit mask: the product of its shape (when small), or the given length
/// (a wrong length must be an error).
fn fill<T>(shape: &[usize], given: usize, f: impl Fn(usize) -> T) -> Vec<T> {
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= 1 << 20)
        .unwrap_or(given.min(1 << 10));
    let n = if given % 7 == 3 {
        given.min(1 << 10)
    } else {
        n
    };
    if given == 0 {
        return Vec::new();
    }
    (0..n).map(f).collect()
}

/// `KeySet::check` on a hand-made set, and the accessors that must not panic on one.
fn check_keys(&(dense, lo, hi, ref bits): &(bool, u32, u32, Vec<u64>)) {
    let ks = if dense {
        KeySet::Dense {
            lo,
            hi,
            bits: bits.clone(),
        }
    } else {
        KeySet::Span { lo, hi }
    };
    let ok = ks.check().is_ok();
    let _ = (
        ks.is_empty(),
        ks.lo(),
        ks.hi(),
        ks.count(),
        ks.is_span(),
        ks.is_canonical(),
    );
    for j in [0, lo, lo.wrapping_add(1), hi.wrapping_sub(1), hi, u32::MAX] {
        let _ = ks.contains(j);
    }
    if ok && hi.saturating_sub(lo) <= 1 << 14 {
        let n = ks.iter().count() as u32;
        assert_eq!(n, ks.count(), "iter and count disagree on a checked set");
        let _ = ks.restrict(lo.saturating_add(1), hi);
    }
}
