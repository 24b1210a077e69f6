//! Host-side planning for the one-path SDPA: which rows share a workgroup, which (group, chunk)
//! work items run, and where each partial lives. Pure Rust, no GPU.
//!
//! Nothing decided here changes a row's bits: grouping, work-item order and waves only decide
//! *where* a row is computed. The row's arithmetic is fixed by its own key set (see
//! `wgsl/sdpa_chunk.wgsl`).

use crate::OpError;
use onepath_mask::KeySet;
use std::sync::Arc;

/// Keys per chunk. Must equal `CHUNK` in `wgsl/sdpa_chunk.wgsl` (a test checks it); it is part of
/// the numerical contract, so it never depends on shapes or devices.
pub const CHUNK: u32 = 256;
/// Query rows one workgroup serves (a whole 8:1 GQA group of query heads).
pub const GROUP_ROWS: usize = 8;

/// Keys per page of a paged KV cache. Must equal `PAGE` in the chunk kernels (a test checks).
/// A multiple of the 32-key K block, so a page is whole blocks; it only decides addresses.
pub const PAGE_KEYS: u32 = 64;

/// Words of a group record; must equal `GROUP_WORDS` in `wgsl/sdpa_chunk.wgsl` (a test checks).
pub const GROUP_WORDS: usize = 40;
const ROW_WORDS: usize = 8;
const NONE: u32 = u32::MAX;

/// One query row: where its query and output live, and which keys it attends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowSpec {
    /// Element offset of the query row in the q buffer (f32).
    pub q_off: u32,
    /// Element offset of the output row in the output buffer (f32).
    pub out_off: u32,
    /// Row-major element offset of key 0 of this row's (sequence, KV head): where its row is
    /// in V, and which key row it is in the key-blocked K (offset / head_dim).
    pub kv_base: u32,
    /// The canonical key set, relative to key 0 of the sequence.
    pub keys: KeySet,
    /// `None`: key `j` is at `kv_base + j * kv_stride`. `Some(table)`: the cache is paged,
    /// key `j` is slot `table[j / PAGE_KEYS] * PAGE_KEYS + j % PAGE_KEYS`, at
    /// `kv_base + slot * kv_stride`. Rows of one sequence share one table (an `Arc`).
    pub pages: Option<Arc<[u32]>>,
}

impl RowSpec {
    /// Row-major element offset of key `j` (as the kernels compute it), or `None` when a page
    /// table does not reach key `j`.
    pub fn key_elem(&self, j: u32, kv_stride: u32) -> Option<u64> {
        let slot = match &self.pages {
            None => u64::from(j),
            Some(t) => {
                let page = *t.get((j / PAGE_KEYS) as usize)?;
                u64::from(page) * u64::from(PAGE_KEYS) + u64::from(j % PAGE_KEYS)
            }
        };
        Some(u64::from(self.kv_base) + slot * u64::from(kv_stride))
    }
}

/// A planned wave: at most `max_partial_bytes` of partials, one chunk pass + one merge pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wave {
    /// groups | rows | items | bits, as u32 words (see the record layouts in the WGSL file).
    pub plan: Vec<u32>,
    pub rows_off: u32,
    pub items_off: u32,
    pub bits_off: u32,
    pub n_rows: u32,
    pub n_items: u32,
    /// Items `0..n_same_items` belong to groups whose rows all attend one shared span; they
    /// come first, so they can run through the kernel compiled for that case (fewer
    /// registers). The arithmetic is the same either way.
    pub n_same_items: u32,
    /// Number of (row, chunk) partials this wave writes.
    pub n_partials: u32,
}

/// Checks what the kernels take on trust from `rows` (no buffer involved): every row's
/// `kv_base` is a multiple of `head_dim`, every key set passes [`KeySet::check`] (a span has
/// `lo <= hi`; a dense set's bit words cover exactly its span), and no two rows' outputs
/// (`head_dim` values from `out_off`) overlap: the merge kernel writes them from different
/// workgroups, so aliased outputs would race. O(rows) when the outputs come in increasing
/// order, as every caller in this workspace writes them; O(rows log rows) otherwise.
pub fn check_rows(rows: &[RowSpec], head_dim: u32) -> Result<(), OpError> {
    let row_err = |row: usize, detail: String| OpError::Row {
        op: "attention",
        row,
        detail,
    };
    let mut sorted = true;
    let mut prev: Option<u32> = None;
    for (i, r) in rows.iter().enumerate() {
        if !r.kv_base.is_multiple_of(head_dim) {
            return Err(row_err(
                i,
                format!(
                    "kv_base {} is not a multiple of head_dim {head_dim} (keys are whole rows)",
                    r.kv_base
                ),
            ));
        }
        r.keys.check().map_err(|e| row_err(i, e.to_string()))?;
        if prev.is_some_and(|p| u64::from(r.out_off) < u64::from(p) + u64::from(head_dim)) {
            sorted = false;
        }
        prev = Some(r.out_off);
    }
    if sorted {
        return Ok(());
    }
    let mut by_out: Vec<(u32, usize)> = rows.iter().map(|r| r.out_off).zip(0..).collect();
    by_out.sort_unstable();
    for w in by_out.windows(2) {
        let ((a, i), (b, j)) = (w[0], w[1]);
        if u64::from(b) < u64::from(a) + u64::from(head_dim) {
            let (first, second) = (i.min(j), i.max(j));
            return Err(row_err(
                second,
                format!(
                    "its output (out_off {}) overlaps row {first}'s (out_off {}): each row \
                     writes head_dim = {head_dim} values, and two rows may not write the same one",
                    rows[second].out_off, rows[first].out_off
                ),
            ));
        }
    }
    Ok(())
}

/// Plans `rows` into waves. `head_dim` sets the partial record size; `max_partial_bytes` caps
/// each wave's partial buffer (a binding limit), so any number of rows can run. The rows are
/// checked first ([`check_rows`]).
pub fn plan_rows(
    rows: &[RowSpec],
    head_dim: u32,
    max_partial_bytes: u64,
) -> Result<Vec<Wave>, OpError> {
    check_rows(rows, head_dim)?;
    plan_checked(rows, head_dim, max_partial_bytes)
}

/// [`plan_rows`] of rows that passed [`check_rows`].
pub(crate) fn plan_checked(
    rows: &[RowSpec],
    head_dim: u32,
    max_partial_bytes: u64,
) -> Result<Vec<Wave>, OpError> {
    let record = u64::from(head_dim + 4) * 4;
    let mut waves = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        // Take rows while their partials fit; a single row always fits a sane binding.
        let mut end = start;
        let mut bytes = 0u64;
        while end < rows.len() {
            let add = u64::from(n_chunks(&rows[end].keys)) * record;
            if end > start && bytes + add > max_partial_bytes {
                break;
            }
            if add > max_partial_bytes {
                return Err(OpError::TooBig(format!(
                    "one row's partials ({add} bytes) exceed the {max_partial_bytes}-byte binding"
                )));
            }
            bytes += add;
            end += 1;
        }
        waves.push(plan_wave(&rows[start..end])?);
        start = end;
    }
    Ok(waves)
}

/// Number of chunks of a key set: its index range [lo, hi) cut every `CHUNK` keys from `lo`.
pub fn n_chunks(keys: &KeySet) -> u32 {
    // Saturating: a set with lo > hi is refused by `check_rows`, never planned.
    keys.hi().saturating_sub(keys.lo()).div_ceil(CHUNK)
}

fn plan_wave(rows: &[RowSpec]) -> Result<Wave, OpError> {
    // Group consecutive rows that share (kv_base, lo, page table); empty rows join no group
    // (merge writes 0).
    let mut groups: Vec<Vec<usize>> = Vec::new();
    type GroupKey<'a> = (u32, u32, Option<&'a Arc<[u32]>>);
    let mut open: Option<GroupKey> = None;
    for (i, r) in rows.iter().enumerate() {
        if r.keys.is_empty() {
            continue;
        }
        let key = (r.kv_base, r.keys.lo(), r.pages.as_ref());
        let same_table = |a: Option<&Arc<[u32]>>, b: Option<&Arc<[u32]>>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        };
        let joins = open.is_some_and(|o| o.0 == key.0 && o.1 == key.1 && same_table(o.2, key.2));
        match groups.last_mut() {
            Some(g) if joins && g.len() < GROUP_ROWS => g.push(i),
            _ => {
                groups.push(vec![i]);
                open = Some(key);
            }
        }
    }

    let rows_off = groups.len() * GROUP_WORDS;
    let items_off = rows_off + rows.len() * ROW_WORDS;
    let n_items: usize = groups
        .iter()
        .map(|g| {
            g.iter()
                .map(|&i| n_chunks(&rows[i].keys))
                .max()
                .unwrap_or(0) as usize
        })
        .sum();
    let bits_off = items_off + 2 * n_items;
    let mut plan = vec![0u32; bits_off];

    // Group record: key_base, lo, n_rows, max_hi, same, 0, 0, 0, row ids [8], q offsets [8],
    // partial base [8], chunk count [8] (the last two per row slot, filled below).
    // `same` = 1 when every row attends exactly one shared span: the kernel's P.V loop then
    // needs no per-key test.
    let mut same = vec![false; groups.len()];
    for (gi, g) in groups.iter().enumerate() {
        let first = &rows[g[0]];
        same[gi] = first.keys.is_span() && g.iter().all(|&i| rows[i].keys == first.keys);
        let rec = &mut plan[gi * GROUP_WORDS..(gi + 1) * GROUP_WORDS];
        rec[0] = first.kv_base;
        rec[1] = first.keys.lo();
        rec[2] = g.len() as u32;
        rec[3] = g.iter().map(|&i| rows[i].keys.hi()).max().unwrap_or(0);
        rec[4] = u32::from(same[gi]);
        for (slot, &i) in g.iter().enumerate() {
            rec[8 + slot] = i as u32;
            rec[16 + slot] = rows[i].q_off;
        }
    }

    let mut part = 0u32;
    let mut bits: Vec<u32> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let n = n_chunks(&r.keys);
        let dense = match &r.keys {
            KeySet::Dense { bits: words, .. } => {
                let off = bits.len() as u32;
                for w in words {
                    bits.push(*w as u32);
                    bits.push((*w >> 32) as u32);
                }
                off
            }
            KeySet::Span { .. } => NONE,
        };
        let rec = &mut plan[rows_off + i * ROW_WORDS..rows_off + (i + 1) * ROW_WORDS];
        rec.copy_from_slice(&[
            r.q_off,
            r.keys.hi(),
            dense,
            part,
            n,
            r.out_off,
            r.keys.lo(),
            0,
        ]);
        part = part
            .checked_add(n)
            .ok_or_else(|| OpError::TooBig("the number of partials".into()))?;
    }
    for (gi, g) in groups.iter().enumerate() {
        for (slot, &i) in g.iter().enumerate() {
            let row = rows_off + i * ROW_WORDS;
            plan[gi * GROUP_WORDS + 24 + slot] = plan[row + 3];
            plan[gi * GROUP_WORDS + 32 + slot] = plan[row + 4];
        }
    }

    // Items of `same` groups first (see `Wave::n_same_items`), each group's chunks in order.
    let mut w = items_off;
    let mut n_same_items = 0u32;
    for want_same in [true, false] {
        for (gi, g) in groups.iter().enumerate() {
            if same[gi] != want_same {
                continue;
            }
            let chunks = g
                .iter()
                .map(|&i| n_chunks(&rows[i].keys))
                .max()
                .unwrap_or(0);
            for c in 0..chunks {
                plan[w] = gi as u32;
                plan[w + 1] = c;
                w += 2;
            }
            if want_same {
                n_same_items += chunks;
            }
        }
    }
    plan.extend_from_slice(&bits);
    if bits.is_empty() {
        plan.push(0); // keep the section addressable
    }
    // Page tables after the bits, one copy per distinct table; group word 5 holds its index.
    let mut tables: Vec<(&Arc<[u32]>, u32)> = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        let at = match &rows[g[0]].pages {
            None => NONE,
            Some(t) => match tables.iter().find(|(u, _)| Arc::ptr_eq(u, t)) {
                Some(&(_, at)) => at,
                None => {
                    let at = u32::try_from(plan.len())
                        .map_err(|_| OpError::TooBig("the SDPA plan".into()))?;
                    plan.extend_from_slice(t);
                    tables.push((t, at));
                    at
                }
            },
        };
        plan[gi * GROUP_WORDS + 5] = at;
    }
    Ok(Wave {
        plan,
        rows_off: rows_off as u32,
        items_off: items_off as u32,
        bits_off: bits_off as u32,
        n_rows: rows.len() as u32,
        n_items: n_items as u32,
        n_same_items,
        n_partials: part,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives each row its own output (`plan_rows` refuses overlapping ones).
    fn distinct(mut rows: Vec<RowSpec>) -> Vec<RowSpec> {
        for (i, r) in rows.iter_mut().enumerate() {
            r.out_off = i as u32 * 64;
        }
        rows
    }

    fn row(kv_base: u32, lo: u32, hi: u32) -> RowSpec {
        RowSpec {
            q_off: 0,
            out_off: 0,
            kv_base,
            keys: KeySet::Span { lo, hi },
            pages: None,
        }
    }

    #[test]
    fn bad_rows_are_refused_naming_the_row_and_value() {
        let err = |rows: Vec<RowSpec>| plan_rows(&rows, 64, u64::MAX).unwrap_err().to_string();
        let e = err(distinct(vec![row(0, 0, 4), row(0, 5, 3)]));
        assert!(
            e.contains("attention: row 1") && e.contains("lo 5 > hi 3"),
            "{e}"
        );
        assert!(!e.contains("bytes"), "blamed the partials: {e}");
        let mut dense = row(0, 0, 0);
        dense.keys = KeySet::Dense {
            lo: 0,
            hi: 290,
            bits: vec![0b101],
        };
        let e = err(vec![dense]);
        assert!(e.contains("row 0") && e.contains("cover 64 keys") && e.contains("290"));
        let e = err(vec![row(0, 0, 4), row(0, 0, 4)]);
        assert!(e.contains("row 1") && e.contains("out_off 0") && e.contains("overlaps row 0"));
        // Overlapping, not equal, and out of order.
        let mut rows = distinct(vec![row(0, 0, 4), row(0, 0, 4), row(0, 0, 4)]);
        rows[0].out_off = 160;
        rows[2].out_off = 130;
        let e = err(rows);
        assert!(
            e.contains("row 2") && e.contains("out_off 130") && e.contains("row 0"),
            "{e}"
        );
        let e = err(vec![row(65, 0, 4)]);
        assert!(e.contains("row 0") && e.contains("kv_base 65") && e.contains("head_dim 64"));
        // Adjacent outputs, in any order, are fine.
        let mut rows = distinct(vec![row(0, 0, 4), row(0, 0, 4), row(0, 0, 4)]);
        rows.swap(0, 2);
        assert!(plan_rows(&rows, 64, u64::MAX).is_ok());
    }

    #[test]
    fn chunks_count_from_the_rows_first_key() {
        assert_eq!(n_chunks(&KeySet::Span { lo: 0, hi: 0 }), 0);
        assert_eq!(n_chunks(&KeySet::Span { lo: 0, hi: 1 }), 1);
        assert_eq!(
            n_chunks(&KeySet::Span {
                lo: 5,
                hi: 5 + CHUNK
            }),
            1
        );
        assert_eq!(
            n_chunks(&KeySet::Span {
                lo: 5,
                hi: 6 + CHUNK
            }),
            2
        );
    }

    #[test]
    fn rows_sharing_sequence_and_first_key_share_a_group_of_at_most_eight() {
        let rows: Vec<RowSpec> = (0..10).map(|_| row(0, 0, 300)).collect();
        let w = &plan_rows(&distinct(rows.clone()), 64, u64::MAX).unwrap()[0];
        assert_eq!(w.rows_off as usize, 2 * GROUP_WORDS);
        assert_eq!(w.plan[2], 8);
        assert_eq!(w.plan[GROUP_WORDS + 2], 2);
        assert_eq!(w.n_items, 4); // two groups of two chunks
        assert_eq!(w.n_partials, 20);
    }

    #[test]
    fn different_first_keys_split_groups_and_empty_rows_join_none() {
        let rows = vec![row(0, 0, 10), row(0, 1, 10), row(0, 0, 0), row(64, 1, 10)];
        let w = &plan_rows(&distinct(rows.clone()), 64, u64::MAX).unwrap()[0];
        assert_eq!(w.rows_off as usize, 3 * GROUP_WORDS);
        let empty = w.rows_off as usize + 2 * ROW_WORDS;
        assert_eq!(w.plan[empty + 4], 0, "an empty row has no chunk");
    }

    #[test]
    fn same_span_groups_come_first_and_carry_their_rows_partials() {
        // Group 0: two rows with different spans (mixed); group 1: one shared span.
        let rows = vec![
            row(0, 0, 300),
            row(0, 0, 600),
            row(64, 0, 520),
            row(64, 0, 520),
        ];
        let w = &plan_rows(&distinct(rows.clone()), 64, u64::MAX).unwrap()[0];
        assert_eq!(w.plan[4], 0, "group 0 is mixed");
        assert_eq!(w.plan[GROUP_WORDS + 4], 1, "group 1 attends one span");
        assert_eq!(w.n_items, 3 + 3);
        assert_eq!(w.n_same_items, 3);
        let items: Vec<(u32, u32)> = (0..w.n_items as usize)
            .map(|i| {
                let at = w.items_off as usize + 2 * i;
                (w.plan[at], w.plan[at + 1])
            })
            .collect();
        assert_eq!(items, [(1, 0), (1, 1), (1, 2), (0, 0), (0, 1), (0, 2)]);
        // Partial base and chunk count per row slot mirror the row records.
        for (gi, ids) in [(0usize, [0usize, 1]), (1, [2, 3])] {
            for (slot, i) in ids.into_iter().enumerate() {
                let row = w.rows_off as usize + i * ROW_WORDS;
                assert_eq!(w.plan[gi * GROUP_WORDS + 24 + slot], w.plan[row + 3]);
                assert_eq!(w.plan[gi * GROUP_WORDS + 32 + slot], w.plan[row + 4]);
            }
        }
    }

    #[test]
    fn waves_cap_partial_bytes_and_cover_every_row_once() {
        let rows: Vec<RowSpec> = (0..9).map(|i| row(0, 0, 100 + 200 * i)).collect();
        let record = (64 + 4) * 4;
        // The largest row (hi = 1700) needs 7 partials; cap waves at 8.
        let waves = plan_rows(&distinct(rows.clone()), 64, 8 * record).unwrap();
        assert!(waves.len() > 1);
        assert!(
            waves
                .iter()
                .all(|w| u64::from(w.n_partials) * record <= 8 * record)
        );
        let total: u32 = waves.iter().map(|w| w.n_rows).sum();
        assert_eq!(total, 9);
        let err = plan_rows(&[row(0, 0, 100_000)], 64, record).unwrap_err();
        assert!(err.to_string().contains("exceed"));
    }
}
