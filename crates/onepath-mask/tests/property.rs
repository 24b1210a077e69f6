//! Randomised checks against the brute-force reference in `common`.

mod common;

use common::{assert_matches, bcast_index, causal, in_range, materialize, shape};
use onepath_mask::{
    AdditiveMask, BoolMask, KeySet, MaskDType, MaskDesc, MaskError, MaskKind, MaskShape,
    canonicalize,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Row-major coordinates of `flat` in `dims`.
fn unravel(dims: &[usize], mut flat: usize) -> Vec<usize> {
    let mut c = vec![0; dims.len()];
    for k in (0..dims.len()).rev() {
        c[k] = flat % dims[k];
        flat /= dims[k];
    }
    c
}

/// A random mask shape that broadcasts to `s`: rank 1..=4, each dim 1 or the target.
fn random_mask_shape(rng: &mut StdRng, s: &MaskShape) -> Vec<usize> {
    let rank = rng.random_range(1..=4);
    s.dims()[4 - rank..]
        .iter()
        .map(|&t| if rng.random_bool(0.5) { t } else { 1 })
        .collect()
}

/// Random bool data of `mshape`, rows drawn from several styles so that empty, full,
/// contiguous and irregular rows all occur.
fn random_data(rng: &mut StdRng, mshape: &[usize]) -> Vec<bool> {
    let lk = *mshape.last().unwrap();
    let rows: usize = mshape[..mshape.len() - 1].iter().product();
    let mut data = Vec::with_capacity(rows * lk);
    for _ in 0..rows {
        let a = rng.random_range(0..=lk);
        let b = rng.random_range(a..=lk);
        let style = rng.random_range(0..5);
        let p = rng.random_range(0.0..1.0);
        for j in 0..lk {
            data.push(match style {
                0 => rng.random_bool(p),
                1 => (a..b).contains(&j),
                2 => true,
                3 => false,
                _ => (a..b).contains(&j) && !rng.random_bool(0.05),
            });
        }
    }
    // Sometimes make every head identical so the collapse path is exercised.
    let rank = mshape.len();
    if rank >= 3 && mshape[rank - 3] > 1 && rng.random_bool(0.5) {
        for flat in 0..data.len() {
            let mut c = unravel(mshape, flat);
            c[rank - 3] = 0;
            let src = c.iter().zip(mshape).fold(0, |acc, (&x, &d)| acc * d + x);
            data[flat] = data[src];
        }
    }
    data
}

fn random_ranges(rng: &mut StdRng, s: &MaskShape) -> (Option<Vec<u32>>, Option<Vec<u32>>) {
    let kv = s.kv_len as u32;
    let mut lo = Vec::new();
    let mut hi = Vec::new();
    for _ in 0..s.batch {
        let a = rng.random_range(0..=kv);
        let b = rng.random_range(a..=kv);
        lo.push(a);
        hi.push(b);
    }
    let lo = rng.random_bool(0.5).then_some(lo);
    let hi = rng.random_bool(0.5).then_some(hi);
    (lo, hi)
}

#[test]
fn random_masks_match_brute_force() {
    let mut rng = StdRng::seed_from_u64(0x006f_6e65_7061_7468);
    let dtypes = [MaskDType::F32, MaskDType::F16, MaskDType::BF16];
    // How often the interesting paths ran, so the test cannot silently stop covering them.
    let (mut varied, mut collapsed, mut dense, mut empty) = (0, 0, 0, 0);
    for case in 0..1000 {
        let kv = rng.random_range(1..=140);
        let s = shape(
            rng.random_range(1..=3),
            rng.random_range(1..=4),
            rng.random_range(1..=6),
            kv,
        );
        let (lo, hi) = random_ranges(&mut rng, &s);
        let (lo, hi) = (lo.as_deref(), hi.as_deref());
        let ranged = |b: usize, j: usize| in_range(lo, hi, kv, b, j);
        let form = rng.random_range(0..4);
        let mshape = random_mask_shape(&mut rng, &s);
        let bools = random_data(&mut rng, &mshape);
        let dtype = dtypes[rng.random_range(0..3)];
        let masked = [dtype.most_negative_finite(), f32::NEG_INFINITY];
        let adds: Vec<f32> = bools
            .iter()
            .map(|&v| match (v, rng.random_bool(0.5)) {
                (true, z) => {
                    if z {
                        0.0
                    } else {
                        -0.0
                    }
                }
                (false, m) => masked[m as usize],
            })
            .collect();
        let window = match rng.random_range(0..3) {
            0 => None,
            _ => Some(rng.random_range(1..=kv as u32 + 2)),
        };
        let kind = match form {
            0 => MaskKind::None,
            1 => MaskKind::Causal { window },
            2 => MaskKind::Bool(BoolMask {
                shape: &mshape,
                data: &bools,
            }),
            _ => MaskKind::Additive(AdditiveMask {
                shape: &mshape,
                data: &adds,
                dtype,
            }),
        };
        let mask_val = |b: usize, h: usize, i: usize, j: usize| match form {
            0 => true,
            1 => causal(s.q_len, kv, window, i, j),
            _ => bools[bcast_index(&mshape, [b, h, i, j])],
        };
        let desc = MaskDesc {
            kind,
            key_lo: lo,
            key_hi: hi,
        };
        let got = match canonicalize(&s, &desc) {
            Ok(m) => m,
            Err(MaskError::CausalQueryLongerThanKeys { .. }) if form == 1 && s.q_len > kv => {
                continue;
            }
            Err(e) => panic!("case {case}: unexpected error {e}"),
        };
        let want = |b: usize, h: usize, i: usize, j: usize| mask_val(b, h, i, j) && ranged(b, j);
        assert_matches(&got, want);
        varied += got.varies_by_head() as u32;
        collapsed += (form >= 2
            && mshape.len() >= 3
            && mshape[mshape.len() - 3] > 1
            && !got.varies_by_head()) as u32;
        dense += !got.all_spans() as u32;
        empty += !got.empty_rows().is_empty() as u32;

        // Form independence: the same selection as one fully materialised bool mask.
        let full = materialize(&s, mask_val);
        let dims = s.dims();
        let alt = MaskDesc {
            kind: MaskKind::Bool(BoolMask {
                shape: &dims,
                data: &full,
            }),
            key_lo: lo,
            key_hi: hi,
        };
        assert_eq!(
            canonicalize(&s, &alt).unwrap(),
            got,
            "case {case} {s:?} {mshape:?}"
        );
        // And with the key ranges folded into the mask itself.
        let folded = materialize(&s, want);
        let alt = MaskDesc::new(MaskKind::Bool(BoolMask {
            shape: &dims,
            data: &folded,
        }));
        assert_eq!(canonicalize(&s, &alt).unwrap(), got, "case {case} folded");
    }
    eprintln!("coverage: varied {varied} collapsed {collapsed} dense {dense} empty {empty}");
    assert!(
        varied > 10 && collapsed > 10 && dense > 10 && empty > 10,
        "coverage: varied {varied} collapsed {collapsed} dense {dense} empty {empty}"
    );
}

#[test]
fn random_predicates_are_canonical() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..2000 {
        let kv = rng.random_range(0..=300u32);
        let p = rng.random_range(0.0..1.0);
        let a = rng.random_range(0..=kv);
        let b = rng.random_range(a..=kv);
        let sparse = rng.random_bool(0.5);
        let row: Vec<bool> = (0..kv)
            .map(|j| (a..b).contains(&j) && (!sparse || rng.random_bool(p)))
            .collect();
        let ks = KeySet::from_predicate(kv, |j| row[j as usize]);
        assert!(ks.is_canonical(), "{ks:?}");
        assert_eq!(ks, KeySet::from_bools(&row));
        for j in 0..kv + 70 {
            assert_eq!(
                ks.contains(j),
                row.get(j as usize).copied().unwrap_or(false)
            );
        }
        let selected: Vec<u32> = (0..kv).filter(|&j| row[j as usize]).collect();
        assert_eq!(ks.iter().collect::<Vec<_>>(), selected);
        assert_eq!(ks.count() as usize, selected.len());
        let contiguous = selected.windows(2).all(|w| w[1] == w[0] + 1);
        assert_eq!(ks.is_span(), contiguous);
        assert_eq!(ks.lo(), selected.first().copied().unwrap_or(0));
        assert_eq!(ks.hi(), selected.last().map_or(0, |&x| x + 1));
    }
}
