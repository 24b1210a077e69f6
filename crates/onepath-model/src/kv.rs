//! The paged KV cache's bookkeeping: page allocators per attention kind and each sequence's
//! page tables. Pure Rust; the pages themselves live in the model's per-layer GPU buffers
//! (`[kv_heads, pages * PAGE_KEYS, head_dim]` each), written by `kv_append` and read by SDPA.
//!
//! A pool larger than one storage binding (128 MiB in browsers) spreads over several buffers,
//! each holding whole pages. A sequence lives in one buffer per kind (the one with the most
//! free pages when it starts), so each of its attention rows reads one binding; its page
//! table holds page numbers inside that buffer.
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

/// Free pages of one buffer, handed out lowest first (so a run is reproducible).
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

/// One kind's pages, in one or more buffers of at most `per_buffer` pages each.
#[derive(Clone, Debug)]
pub struct Pools {
    pub buffers: Vec<PagePool>,
}

impl Pools {
    fn new(pages: u32, per_buffer: u32) -> Pools {
        let per = per_buffer.max(1);
        let mut buffers = Vec::new();
        let mut left = pages;
        while left > 0 {
            buffers.push(PagePool::new(left.min(per)));
            left -= left.min(per);
        }
        Pools { buffers }
    }

    /// Pages in all buffers.
    pub fn total(&self) -> u32 {
        self.buffers.iter().map(PagePool::total).sum()
    }

    /// Free pages in all buffers.
    pub fn free_pages(&self) -> usize {
        self.buffers.iter().map(PagePool::free_pages).sum()
    }

    /// The buffer a new sequence goes to: the one with the most free pages, the first of
    /// equals.
    fn roomiest(&self) -> u32 {
        let mut best = 0;
        for (i, b) in self.buffers.iter().enumerate() {
            if b.free_pages() > self.buffers[best].free_pages() {
                best = i;
            }
        }
        best as u32
    }
}

/// One sequence's cache state.
#[derive(Clone, Debug, Default)]
pub struct SeqCache {
    /// Positions stored.
    pub len: u32,
    /// Logical page -> page of its buffer, per kind (`FREED` for dropped sliding pages).
    pub full: Vec<u32>,
    pub sliding: Vec<u32>,
    /// The buffer of each kind's pages: (full, sliding).
    pub buffer: (u32, u32),
}

/// Page pools and every sequence's tables.
#[derive(Clone, Debug)]
pub struct KvCache {
    pub full: Pools,
    pub sliding: Pools,
    pub seqs: HashMap<u64, SeqCache>,
    window: u32,
    uses: [bool; 2],
}

impl KvCache {
    /// `pages`: (full, sliding) pool sizes, `per_buffer` the most pages one buffer of each
    /// holds; `uses`: whether the model has (full, sliding) layers at all.
    pub fn new(pages: (u32, u32), per_buffer: (u32, u32), window: u32, uses: [bool; 2]) -> KvCache {
        KvCache {
            full: Pools::new(pages.0, per_buffer.0),
            sliding: Pools::new(pages.1, per_buffer.1),
            seqs: HashMap::new(),
            window,
            uses,
        }
    }

    /// The pools of `kind`.
    pub fn pools(&self, kind: Kind) -> &Pools {
        match kind {
            Kind::Full => &self.full,
            Kind::Sliding => &self.sliding,
        }
    }

    /// Makes room for positions `[len, len + n)` of `seq` (created if new, in the roomiest
    /// buffer of each kind), taking pages as needed; on a shortage nothing is taken and the
    /// error says which pool ran out.
    pub fn reserve(&mut self, seq: u64, n: u32) -> Result<(), ModelError> {
        let new = !self.seqs.contains_key(&seq);
        let mut s = self.seqs.get(&seq).cloned().unwrap_or_default();
        if new {
            s.buffer = (self.full.roomiest(), self.sliding.roomiest());
        }
        let end = s.len.checked_add(n).ok_or(ModelError::TooLong {
            seq,
            len: u32::MAX,
            max: u32::MAX as usize,
        })?;
        let pages = end.div_ceil(PAGE_KEYS) as usize;
        let need = |uses: bool, have: usize| if uses { pages.saturating_sub(have) } else { 0 };
        let (need_full, need_sliding) = (
            need(self.uses[0], s.full.len()),
            need(self.uses[1], s.sliding.len()),
        );
        for (pools, b, need, what) in [
            (&self.full, s.buffer.0, need_full, "full-attention"),
            (&self.sliding, s.buffer.1, need_sliding, "sliding-window"),
        ] {
            let free = pools
                .buffers
                .get(b as usize)
                .map_or(0, PagePool::free_pages);
            if free < need {
                return Err(ModelError::OutOfPages {
                    pool: what,
                    need,
                    free,
                });
            }
        }
        for _ in 0..need_full {
            s.full.push(
                self.full.buffers[s.buffer.0 as usize]
                    .take()
                    .expect("counted above"),
            );
        }
        for _ in 0..need_sliding {
            s.sliding.push(
                self.sliding.buffers[s.buffer.1 as usize]
                    .take()
                    .expect("counted above"),
            );
        }
        self.seqs.insert(seq, s);
        Ok(())
    }

    /// The buffer of `seq`'s `kind` pages and the slot of position `pos` in it.
    pub fn slot(&self, seq: u64, kind: Kind, pos: u32) -> Option<(u32, u32)> {
        let s = self.seqs.get(&seq)?;
        let (t, b) = match kind {
            Kind::Full => (&s.full, s.buffer.0),
            Kind::Sliding => (&s.sliding, s.buffer.1),
        };
        let p = *t.get((pos / PAGE_KEYS) as usize)?;
        (p != FREED).then(|| (b, p * PAGE_KEYS + pos % PAGE_KEYS))
    }

    /// `seq`'s buffer and page table for `kind`, as SDPA reads it.
    pub fn table(&self, seq: u64, kind: Kind) -> (u32, Arc<[u32]>) {
        let s = &self.seqs[&seq];
        match kind {
            Kind::Full => (s.buffer.0, Arc::from(s.full.as_slice())),
            Kind::Sliding => (s.buffer.1, Arc::from(s.sliding.as_slice())),
        }
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
        let pool = &mut self.sliding.buffers[s.buffer.1 as usize];
        for p in s.sliding.iter_mut().take(dead) {
            if *p != FREED {
                pool.give(*p);
                *p = FREED;
            }
        }
    }

    /// Frees every page of `seq`.
    pub fn remove(&mut self, seq: u64) {
        if let Some(s) = self.seqs.remove(&seq) {
            for p in s.full {
                self.full.buffers[s.buffer.0 as usize].give(p);
            }
            for p in s.sliding.into_iter().filter(|&p| p != FREED) {
                self.sliding.buffers[s.buffer.1 as usize].give(p);
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
        let mut c = KvCache::new((8, 8), (8, 8), 100, [true, true]);
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
        let mut c = KvCache::new((2, 8), (2, 8), 64, [true, true]);
        let e = c.reserve(1, 200).unwrap_err();
        assert!(e.to_string().contains("full-attention"), "{e}");
        assert_eq!(c.full.free_pages(), 2);
        assert_eq!(c.sliding.free_pages(), 8);
        assert!(
            c.seqs.is_empty(),
            "a failed reserve leaves no sequence behind"
        );
    }

    #[test]
    fn sequences_spread_over_buffers_and_stay_in_theirs() {
        // 7 full pages in buffers of 3: [3, 3, 1].
        let mut c = KvCache::new((7, 7), (3, 3), 1000, [true, false]);
        assert_eq!(
            c.full
                .buffers
                .iter()
                .map(PagePool::total)
                .collect::<Vec<_>>(),
            [3, 3, 1]
        );
        c.reserve(1, 100).unwrap(); // 2 pages in buffer 0
        c.advance(1, 100);
        c.reserve(2, 100).unwrap(); // buffer 1 has the most room now
        c.advance(2, 100);
        assert_eq!((c.seqs[&1].buffer.0, c.seqs[&2].buffer.0), (0, 1));
        c.reserve(1, 64).unwrap(); // a third page, still in buffer 0
        c.advance(1, 64);
        assert_eq!(c.slot(1, Kind::Full, 150).unwrap().0, 0);
        let e = c.reserve(1, 64).unwrap_err(); // buffer 0 is full, whatever the others hold
        assert!(e.to_string().contains("0 free"), "{e}");
        c.remove(1);
        assert_eq!(c.full.buffers[0].free_pages(), 3);
    }
}
