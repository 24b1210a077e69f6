//! [`KeySet`]: the canonical set of keys one query row attends.

use crate::MaskError;

/// Which keys one query row attends, in canonical form.
///
/// Keys are indices into that batch entry's `Tkv` keys. The representation is unique: two key
/// sets that select the same keys are equal (`==`, same hash), whatever predicate, mask or
/// combination of ranges produced them. The constructors in this crate
/// ([`KeySet::from_predicate`], [`KeySet::span`], [`KeySet::from_bools`] and
/// [`crate::canonicalize`]) only ever produce canonical values; building a variant by hand
/// that breaks the invariants below gives a value that may compare unequal to its canonical
/// twin (use [`KeySet::is_canonical`] to check).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeySet {
    /// Contiguous keys `[lo, hi)`. The empty set is always `Span { lo: 0, hi: 0 }`
    /// (canonical empty); a non-empty span has `lo < hi`.
    Span {
        /// First selected key.
        lo: u32,
        /// One past the last selected key.
        hi: u32,
    },
    /// Non-contiguous: keys in `lo..hi` where bit `j - lo` of `bits` is set (u64 words,
    /// little-endian bit order: word `(j - lo) / 64`, bit `(j - lo) % 64`).
    ///
    /// Canonical: bit 0 set (`lo` selected), bit `hi - 1 - lo` set, no bit set at or past
    /// `hi - lo`, `bits.len() == ceil((hi - lo) / 64)`, and the set is NOT contiguous
    /// (contiguous sets are always [`KeySet::Span`]).
    Dense {
        /// First selected key.
        lo: u32,
        /// One past the last selected key.
        hi: u32,
        /// Selection bits relative to `lo`.
        bits: Vec<u64>,
    },
}

impl Default for KeySet {
    /// The canonical empty set.
    fn default() -> Self {
        KeySet::EMPTY
    }
}

impl KeySet {
    /// The canonical empty set, `Span { lo: 0, hi: 0 }`.
    pub const EMPTY: KeySet = KeySet::Span { lo: 0, hi: 0 };

    /// The canonical set for the contiguous keys `[lo, hi)`; `lo >= hi` gives the empty set.
    pub fn span(lo: u32, hi: u32) -> KeySet {
        if lo < hi {
            KeySet::Span { lo, hi }
        } else {
            KeySet::EMPTY
        }
    }

    /// True when no key is selected.
    pub fn is_empty(&self) -> bool {
        match self {
            KeySet::Span { lo, hi } => lo >= hi,
            KeySet::Dense { .. } => false,
        }
    }

    /// First selected key (0 when empty).
    pub fn lo(&self) -> u32 {
        match self {
            KeySet::Span { lo, .. } | KeySet::Dense { lo, .. } => *lo,
        }
    }

    /// One past the last selected key (0 when empty).
    pub fn hi(&self) -> u32 {
        match self {
            KeySet::Span { hi, .. } | KeySet::Dense { hi, .. } => *hi,
        }
    }

    /// True when key `j` is selected.
    pub fn contains(&self, j: u32) -> bool {
        match self {
            KeySet::Span { lo, hi } => *lo <= j && j < *hi,
            KeySet::Dense { lo, hi, bits } => {
                if j < *lo || j >= *hi {
                    return false;
                }
                let k = (j - lo) as usize;
                // `get`: a hand-made set whose words are short selects nothing past them.
                bits.get(k / 64).is_some_and(|w| w >> (k % 64) & 1 == 1)
            }
        }
    }

    /// Number of selected keys.
    pub fn count(&self) -> u32 {
        match self {
            KeySet::Span { lo, hi } => hi.saturating_sub(*lo),
            KeySet::Dense { bits, .. } => bits.iter().map(|w| w.count_ones()).sum(),
        }
    }

    /// True for [`KeySet::Span`] (contiguous or empty), false for [`KeySet::Dense`].
    pub fn is_span(&self) -> bool {
        matches!(self, KeySet::Span { .. })
    }

    /// The selected keys in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let (lo, hi) = (self.lo(), self.hi());
        (lo..hi).filter(move |&j| self.contains(j))
    }

    /// Canonical key set of the keys `j < kv_len` for which `f(j)` is true.
    pub fn from_predicate(kv_len: u32, f: impl Fn(u32) -> bool) -> KeySet {
        Self::from_predicate_in(0, kv_len, f)
    }

    /// Canonical key set of the keys `j` in `[lo, hi)` for which `f(j)` is true.
    pub fn from_predicate_in(lo: u32, hi: u32, f: impl Fn(u32) -> bool) -> KeySet {
        let Some(first) = (lo..hi).find(|&j| f(j)) else {
            return KeySet::EMPTY;
        };
        // `first` is selected, so the reverse search always finds something.
        let last = (first..hi).rev().find(|&j| f(j)).unwrap_or(first);
        if (first..=last).all(&f) {
            return KeySet::Span {
                lo: first,
                hi: last + 1,
            };
        }
        let mut bits = vec![0u64; words_for(last + 1 - first)];
        for j in first..=last {
            if f(j) {
                let k = (j - first) as usize;
                bits[k / 64] |= 1 << (k % 64);
            }
        }
        KeySet::Dense {
            lo: first,
            hi: last + 1,
            bits,
        }
    }

    /// Canonical key set of the `true` entries of `row` (key `j` is `row[j]`).
    ///
    /// # Panics
    /// If `row.len()` exceeds `u32::MAX`.
    pub fn from_bools(row: &[bool]) -> KeySet {
        let len = u32::try_from(row.len()).expect("more than u32::MAX keys");
        scan_slice(row, 0, len, |&b: &bool| b)
    }

    /// The keys of `self` that also lie in `[lo, hi)`, canonical.
    pub fn restrict(&self, lo: u32, hi: u32) -> KeySet {
        match self {
            KeySet::Span { lo: a, hi: b } => KeySet::span((*a).max(lo), (*b).min(hi)),
            KeySet::Dense { lo: a, hi: b, .. } => {
                Self::from_predicate_in((*a).max(lo), (*b).min(hi), |j| self.contains(j))
            }
        }
    }

    /// Checks every canonical-form invariant documented on the variants.
    pub fn is_canonical(&self) -> bool {
        self.check_canonical().is_ok()
    }

    /// Checks that the kernels can take this set: `lo <= hi` for a span (an empty span
    /// `lo == hi` is accepted, whatever `lo`), and for a dense set every invariant documented
    /// on [`KeySet::Dense`] (its bit words cover exactly its span, the first and last key are
    /// selected, nothing is set past `hi`, and it is not contiguous). O(words); the error names
    /// the set and what is wrong.
    pub fn check(&self) -> Result<(), MaskError> {
        match self {
            KeySet::Span { lo, hi } if lo > hi => Err(self.invalid(format!("lo {lo} > hi {hi}"))),
            KeySet::Span { .. } => Ok(()),
            KeySet::Dense { .. } => self.check_canonical(),
        }
    }

    /// [`KeySet::check`], plus the canonical empty span (`lo == hi` only as `0, 0`).
    pub fn check_canonical(&self) -> Result<(), MaskError> {
        match self {
            KeySet::Span { lo, hi } if lo > hi => Err(self.invalid(format!("lo {lo} > hi {hi}"))),
            KeySet::Span { lo, hi } if lo == hi && *lo != 0 => Err(self.invalid(format!(
                "an empty span is written lo = hi = 0, not lo = hi = {lo}"
            ))),
            KeySet::Span { .. } => Ok(()),
            KeySet::Dense { lo, hi, bits } => {
                if lo >= hi {
                    return Err(
                        self.invalid(format!("a dense set needs lo < hi, got lo {lo}, hi {hi}"))
                    );
                }
                let n = (hi - lo) as usize;
                let need = words_for(hi - lo);
                if bits.len() != need {
                    return Err(self.invalid(format!(
                        "{} bit words cover {} keys, but its span [{lo}, {hi}) has {n} keys \
                         ({need} words)",
                        bits.len(),
                        bits.len() * 64
                    )));
                }
                if !n.is_multiple_of(64) && bits[n / 64] >> (n % 64) != 0 {
                    return Err(self.invalid(format!("bits are set at or past hi {hi}")));
                }
                if bits[0] & 1 == 0 {
                    return Err(self.invalid(format!("key lo {lo} is not selected")));
                }
                let last = n - 1;
                if bits[last / 64] >> (last % 64) & 1 == 0 {
                    return Err(self.invalid(format!("key hi - 1 = {} is not selected", hi - 1)));
                }
                let full = bits[..n / 64].iter().all(|&w| w == u64::MAX)
                    && (n.is_multiple_of(64) || bits[n / 64] == (1u64 << (n % 64)) - 1);
                if full {
                    return Err(self.invalid(format!(
                        "every key of [{lo}, {hi}) is selected: a contiguous set is a Span"
                    )));
                }
                Ok(())
            }
        }
    }

    fn invalid(&self, reason: String) -> MaskError {
        let keys = match self {
            KeySet::Span { lo, hi } => format!("Span {{ lo: {lo}, hi: {hi} }}"),
            KeySet::Dense { lo, hi, bits } => {
                format!("Dense {{ lo: {lo}, hi: {hi}, {} bit words }}", bits.len())
            }
        };
        MaskError::InvalidKeySet { keys, reason }
    }
}

/// Number of u64 words holding `n` bits.
fn words_for(n: u32) -> usize {
    (n as usize).div_ceil(64)
}

/// Canonical key set of the keys `j` in `[lo, hi)` with `on(&row[j])`; `row` is indexed by key.
///
/// Scans the slice in fixed-size blocks whose branch-free reductions the compiler vectorises
/// (no per-key allocation); bits are only built when the selection is not contiguous.
pub(crate) fn scan_slice<T>(row: &[T], lo: u32, hi: u32, on: impl Fn(&T) -> bool + Copy) -> KeySet {
    if lo >= hi {
        return KeySet::EMPTY;
    }
    let window = &row[lo as usize..hi as usize];
    let Some(first) = first_on(window, on) else {
        return KeySet::EMPTY;
    };
    let last = last_on(window, on).unwrap_or(first);
    let sel = &window[first..=last];
    let abs_lo = lo + first as u32;
    let abs_hi = lo + last as u32 + 1;
    if all_on(sel, on) {
        return KeySet::Span {
            lo: abs_lo,
            hi: abs_hi,
        };
    }
    let mut bits = vec![0u64; sel.len().div_ceil(64)];
    for (word, chunk) in bits.iter_mut().zip(sel.chunks(64)) {
        for (k, v) in chunk.iter().enumerate() {
            *word |= u64::from(on(v)) << k;
        }
    }
    KeySet::Dense {
        lo: abs_lo,
        hi: abs_hi,
        bits,
    }
}

/// Block size of the vectorisable scans.
const BLOCK: usize = 64;

/// Index of the first element with `on`.
fn first_on<T>(s: &[T], on: impl Fn(&T) -> bool + Copy) -> Option<usize> {
    let mut blocks = s.chunks_exact(BLOCK);
    for (n, block) in blocks.by_ref().enumerate() {
        if block.iter().fold(false, |a, v| a | on(v)) {
            return block.iter().position(on).map(|k| n * BLOCK + k);
        }
    }
    let base = s.len() - blocks.remainder().len();
    blocks.remainder().iter().position(on).map(|k| base + k)
}

/// Index of the last element with `on`.
fn last_on<T>(s: &[T], on: impl Fn(&T) -> bool + Copy) -> Option<usize> {
    let mut blocks = s.rchunks_exact(BLOCK);
    for (n, block) in blocks.by_ref().enumerate() {
        if block.iter().fold(false, |a, v| a | on(v)) {
            let start = s.len() - (n + 1) * BLOCK;
            return block.iter().rposition(on).map(|k| start + k);
        }
    }
    blocks.remainder().iter().rposition(on)
}

/// True when every element has `on`.
fn all_on<T>(s: &[T], on: impl Fn(&T) -> bool + Copy) -> bool {
    let mut blocks = s.chunks_exact(BLOCK);
    blocks
        .by_ref()
        .all(|block| block.iter().fold(true, |a, v| a & on(v)))
        && blocks.remainder().iter().all(on)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicate_and_bools_agree() {
        let row: Vec<bool> = (0..200)
            .map(|j| j % 7 == 3 || (100..150).contains(&j))
            .collect();
        let a = KeySet::from_bools(&row);
        let b = KeySet::from_predicate(200, |j| row[j as usize]);
        assert_eq!(a, b);
        assert!(a.is_canonical());
        assert!(!a.is_span());
        for j in 0..220 {
            assert_eq!(a.contains(j), row.get(j as usize).copied().unwrap_or(false));
        }
        assert_eq!(a.count() as usize, row.iter().filter(|&&b| b).count());
        assert_eq!(a.iter().count() as u32, a.count());
    }

    #[test]
    fn contiguous_is_span_and_empty_is_canonical() {
        let row: Vec<bool> = (0..70).map(|j| (5..66).contains(&j)).collect();
        assert_eq!(KeySet::from_bools(&row), KeySet::Span { lo: 5, hi: 66 });
        assert_eq!(KeySet::from_bools(&[false; 9]), KeySet::EMPTY);
        assert_eq!(KeySet::from_predicate(0, |_| true), KeySet::EMPTY);
        assert_eq!(KeySet::span(9, 3), KeySet::EMPTY);
        assert!(KeySet::EMPTY.is_empty());
        assert_eq!(KeySet::EMPTY.count(), 0);
        assert!(!KeySet::Span { lo: 3, hi: 3 }.is_canonical());
    }

    #[test]
    fn dense_word_boundaries() {
        // Selections whose extent is exactly 64, 65 and 128 keys.
        for n in [64u32, 65, 128, 129] {
            let f = |j: u32| j == 10 || j == 10 + n - 1 || j == 40;
            let ks = KeySet::from_predicate(300, f);
            assert!(ks.is_canonical(), "{ks:?}");
            assert_eq!((ks.lo(), ks.hi()), (10, 10 + n));
            for j in 0..300 {
                assert_eq!(ks.contains(j), f(j));
            }
        }
    }

    #[test]
    fn check_names_what_is_wrong() {
        let err = |k: KeySet| k.check().unwrap_err().to_string();
        let e = err(KeySet::Span { lo: 5, hi: 3 });
        assert!(
            e.contains("Span { lo: 5, hi: 3 }") && e.contains("lo 5 > hi 3"),
            "{e}"
        );
        // 64 keys of bits for a 290-key span.
        let short = KeySet::Dense {
            lo: 0,
            hi: 290,
            bits: vec![0b101],
        };
        let e = err(short);
        assert!(
            e.contains("1 bit words cover 64 keys") && e.contains("290 keys"),
            "{e}"
        );
        let tail = KeySet::Dense {
            lo: 0,
            hi: 3,
            bits: vec![0b1101],
        };
        assert!(err(tail).contains("past hi 3"));
        let contiguous = KeySet::Dense {
            lo: 0,
            hi: 64,
            bits: vec![u64::MAX],
        };
        assert!(err(contiguous).contains("contiguous"));
        assert!(
            err(KeySet::Dense {
                lo: 0,
                hi: 3,
                bits: vec![0b110]
            })
            .contains("key lo 0")
        );
        // An empty span anywhere passes `check` but is not canonical.
        assert!(KeySet::Span { lo: 7, hi: 7 }.check().is_ok());
        assert!(KeySet::Span { lo: 7, hi: 7 }.check_canonical().is_err());
        assert!(
            !KeySet::Dense {
                lo: 0,
                hi: 290,
                bits: vec![1]
            }
            .contains(200)
        );
    }

    #[test]
    fn check_agrees_with_the_constructors() {
        for n in [2u32, 63, 64, 65, 127, 128, 129, 300] {
            for f in [
                |j: u32| j.is_multiple_of(2),
                |j: u32| j % 7 != 3,
                |j: u32| j < 5 || j % 64 == 63,
            ] {
                let ks = KeySet::from_predicate(n, f);
                assert!(ks.check_canonical().is_ok(), "{ks:?}");
            }
        }
    }

    #[test]
    fn restrict_matches_predicate() {
        let f = |j: u32| j % 3 != 1;
        let ks = KeySet::from_predicate(50, f);
        for (lo, hi) in [(0, 50), (2, 3), (4, 20), (7, 8), (30, 10)] {
            let want = KeySet::from_predicate(50, |j| f(j) && lo <= j && j < hi);
            assert_eq!(ks.restrict(lo, hi), want);
        }
    }
}
