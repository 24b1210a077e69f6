//! The paged KV cache's bookkeeping: a page allocator per attention kind and each sequence's
//! page tables. Pure Rust; the pages themselves live in the model's per-layer GPU buffers
//! (`[kv_heads, pages * PAGE_KEYS, head_dim]`), written by `kv_append` and read by SDPA.
//!
//! Sliding layers keep only the pages their window can still reach: after every step the
//! pages wholly below `len - sliding_window + 1` go back to the pool. KV-shared layers have no
//! pages of their own; they read their source layer's.

use crate::ModelError;
use crate::config::Kind;
use onepath_ops::sdpa::PAGE_KEYS;
use std::collections::HashMap;
use std::sync::Arc;

/// A page that was freed (below a sliding window); never read.
pub const FREED: u32 = u32::MAX;

/// Free pages of one pool, handed out lowest first (so a run is reproducible).
#[derive(Clone, Debug)]
pub struct PagePool {
    free: Vec<u32>,
    total: u32,
}

impl PagePool {
    pub fn new(total: u32) -> PagePool {
        PagePool {
            free: (0..total).rev().collect(),
            total,
        }
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    pub fn free_pages(&self) -> usize {
        self.free.len()
    }

    fn take(&mut self) -> Option<u32> {
        self.free.pop()
    }

    fn give(&mut self, p: u32) {
        self.free.push(p);
        // Lowest first: keep the stack sorted descending (pools are small).
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }
}

/// One sequence's cache state.
#[derive(Clone, Debug, Default)]
pub struct SeqCache {
    /// Positions stored.
    pub len: u32,
    /// Logical page -> physical page, per kind (`FREED` for dropped sliding pages).
    pub full: Vec<u32>,
    pub sliding: Vec<u32>,
}

/// Page pools and every sequence's tables.
#[derive(Clone, Debug)]
pub struct KvCache {
    pub full: PagePool,
    pub sliding: PagePool,
    pub seqs: HashMap<u64, SeqCache>,
    window: u32,
    uses: [bool; 2],
}

impl KvCache {
    /// `pages`: (full, sliding) pool sizes; `uses`: whether the model has (full, sliding)
    /// layers at all.
    pub fn new(pages: (u32, u32), window: u32, uses: [bool; 2]) -> KvCache {
        KvCache {
            full: PagePool::new(pages.0),
            sliding: PagePool::new(pages.1),
            seqs: HashMap::new(),
            window,
            uses,
        }
    }

    /// Makes room for positions `[len, len + n)` of `seq` (created if new), taking pages as
    /// needed; on a shortage nothing is taken and the error says which pool ran out.
    pub fn reserve(&mut self, seq: u64, n: u32) -> Result<(), ModelError> {
        let s = self.seqs.entry(seq).or_default();
        let end = s.len.checked_add(n).ok_or(ModelError::TooLong {
            seq,
            len: u32::MAX,
            max: u32::MAX as usize,
        })?;
        let pages = end.div_ceil(PAGE_KEYS) as usize;
        let need_full = if self.uses[0] {
            pages.saturating_sub(s.full.len())
        } else {
            0
        };
        let need_sliding = if self.uses[1] {
            pages.saturating_sub(s.sliding.len())
        } else {
            0
        };
        for (pool, need, what) in [
            (&self.full, need_full, "full-attention"),
            (&self.sliding, need_sliding, "sliding-window"),
        ] {
            if pool.free_pages() < need {
                return Err(ModelError::OutOfPages {
                    pool: what,
                    need,
                    free: pool.free_pages(),
                });
            }
        }
        for _ in 0..need_full {
            let p = self.full.take().expect("counted above");
            s.full.push(p);
        }
        for _ in 0..need_sliding {
            let p = self.sliding.take().expect("counted above");
            s.sliding.push(p);
        }
        Ok(())
    }

    /// The physical slot of position `pos` of `seq` in the `kind` pool.
    pub fn slot(&self, seq: u64, kind: Kind, pos: u32) -> Option<u32> {
        let s = self.seqs.get(&seq)?;
        let t = match kind {
            Kind::Full => &s.full,
            Kind::Sliding => &s.sliding,
        };
        let p = *t.get((pos / PAGE_KEYS) as usize)?;
        (p != FREED).then(|| p * PAGE_KEYS + pos % PAGE_KEYS)
    }

    /// `seq`'s page table for `kind`, as SDPA reads it.
    pub fn table(&self, seq: u64, kind: Kind) -> Arc<[u32]> {
        let s = &self.seqs[&seq];
        Arc::from(match kind {
            Kind::Full => s.full.as_slice(),
            Kind::Sliding => s.sliding.as_slice(),
        })
    }

    /// Records that `n` positions were appended to `seq` and frees the sliding pages no later
    /// query can reach.
    pub fn advance(&mut self, seq: u64, n: u32) {
        let window = self.window;
        let Some(s) = self.seqs.get_mut(&seq) else {
            return;
        };
        s.len += n;
        // The next query (position len) attends keys from len + 1 - window on.
        let first_needed = (s.len + 1).saturating_sub(window);
        let dead = (first_needed / PAGE_KEYS) as usize;
        for p in s.sliding.iter_mut().take(dead) {
            if *p != FREED {
                self.sliding.give(*p);
                *p = FREED;
            }
        }
    }

    /// Frees every page of `seq`.
    pub fn remove(&mut self, seq: u64) {
        if let Some(s) = self.seqs.remove(&seq) {
            for p in s.full {
                self.full.give(p);
            }
            for p in s.sliding.into_iter().filter(|&p| p != FREED) {
                self.sliding.give(p);
            }
        }
    }

    /// Positions stored for `seq` (0 if unknown).
    pub fn len(&self, seq: u64) -> u32 {
        self.seqs.get(&seq).map_or(0, |s| s.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_pages_past_the_window_return_to_the_pool() {
        let mut c = KvCache::new((8, 8), 100, [true, true]);
        c.reserve(1, 300).unwrap();
        assert_eq!(c.full.free_pages(), 8 - 5);
        assert_eq!(c.sliding.free_pages(), 8 - 5);
        c.advance(1, 300);
        // The next query (301st position, index 300) attends from 201: pages 0..3 are dead.
        assert_eq!(c.sliding.free_pages(), 3 + 3);
        assert_eq!(c.slot(1, Kind::Sliding, 150), None);
        assert!(c.slot(1, Kind::Sliding, 201).is_some());
        assert!(c.slot(1, Kind::Full, 0).is_some());
        c.remove(1);
        assert_eq!((c.full.free_pages(), c.sliding.free_pages()), (8, 8));
    }

    #[test]
    fn a_shortage_takes_nothing_and_names_the_pool() {
        let mut c = KvCache::new((2, 8), 64, [true, true]);
        let e = c.reserve(1, 200).unwrap_err();
        assert!(e.to_string().contains("full-attention"), "{e}");
        assert_eq!(c.full.free_pages(), 2);
        assert_eq!(c.sliding.free_pages(), 8);
    }
}
