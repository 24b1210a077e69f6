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
pub use onepath_ops::sdpa::PAGE_KEYS;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

/// A page that was freed (below a sliding window); never read.
pub const FREED: u32 = u32::MAX;

/// Pages of one buffer with their reference counts, handed out lowest first (so a run is
/// reproducible). A page is shared when several sequences (or the engine's prefix cache) hold
/// it; it returns to the free list when the last holder lets go.
#[derive(Clone, Debug)]
pub struct PagePool {
    free: BinaryHeap<Reverse<u32>>,
    refs: Vec<u32>,
    total: u32,
}

impl PagePool {
    pub fn new(total: u32) -> PagePool {
        PagePool {
            free: (0..total).map(Reverse).collect(),
            refs: vec![0; total as usize],
            total,
        }
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    pub fn free_pages(&self) -> usize {
        self.free.len()
    }

    /// Holders of page `p` (0: free).
    pub fn refs(&self, p: u32) -> u32 {
        self.refs.get(p as usize).copied().unwrap_or(0)
    }

    fn take(&mut self) -> Option<u32> {
        let Reverse(p) = self.free.pop()?;
        self.refs[p as usize] = 1;
        Some(p)
    }

    /// One more holder of a page in use.
    fn retain(&mut self, p: u32) {
        debug_assert!(self.refs[p as usize] > 0, "retain of free page {p}");
        self.refs[p as usize] += 1;
    }

    /// One holder fewer; the last one frees the page.
    fn give(&mut self, p: u32) {
        let r = &mut self.refs[p as usize];
        debug_assert!(*r > 0, "page {p} freed twice");
        *r = r.saturating_sub(1);
        if *r == 0 {
            self.free.push(Reverse(p));
        }
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

    /// Starts `seq` on pages other holders already filled: `len` positions whose pages are
    /// `full` and `sliding` (`FREED` where a sliding page is out of every later query's reach)
    /// in buffers `buffer`. Each page gains a holder; pages the window no longer reaches are
    /// let go at once. Error if `seq` exists or a table does not cover `len`.
    pub fn adopt(
        &mut self,
        seq: u64,
        buffer: (u32, u32),
        full: &[u32],
        sliding: &[u32],
        len: u32,
    ) -> Result<(), ModelError> {
        let pages = len.div_ceil(PAGE_KEYS) as usize;
        let covers = |uses: bool, t: &[u32]| if uses { t.len() == pages } else { t.is_empty() };
        if self.seqs.contains_key(&seq)
            || !covers(self.uses[0], full)
            || !covers(self.uses[1], sliding)
        {
            return Err(ModelError::Step(format!(
                "cannot adopt {len} cached positions for sequence {seq}: it exists, or the page \
                 tables ({} full, {} sliding) do not cover them",
                full.len(),
                sliding.len()
            )));
        }
        let first_needed = (len + 1).saturating_sub(self.window) / PAGE_KEYS;
        for (i, &p) in sliding.iter().enumerate() {
            if p == FREED && i as u32 >= first_needed {
                return Err(ModelError::Step(format!(
                    "sequence {seq} would adopt a freed sliding page ({i}) its next query reads"
                )));
            }
        }
        for &p in full {
            self.full.buffers[buffer.0 as usize].retain(p);
        }
        for &p in sliding.iter().filter(|&&p| p != FREED) {
            self.sliding.buffers[buffer.1 as usize].retain(p);
        }
        self.seqs.insert(
            seq,
            SeqCache {
                len: 0,
                full: full.to_vec(),
                sliding: sliding.to_vec(),
                buffer,
            },
        );
        self.advance(seq, len);
        Ok(())
    }

    /// One more holder of a page (the engine's prefix cache keeping a finished page).
    pub fn retain(&mut self, kind: Kind, buffer: u32, page: u32) {
        let pools = match kind {
            Kind::Full => &mut self.full,
            Kind::Sliding => &mut self.sliding,
        };
        pools.buffers[buffer as usize].retain(page);
    }

    /// One holder fewer of a page (freed with its last holder).
    pub fn release(&mut self, kind: Kind, buffer: u32, page: u32) {
        let pools = match kind {
            Kind::Full => &mut self.full,
            Kind::Sliding => &mut self.sliding,
        };
        pools.buffers[buffer as usize].give(page);
    }

    /// Whether the model has layers of `kind`.
    pub fn uses(&self, kind: Kind) -> bool {
        match kind {
            Kind::Full => self.uses[0],
            Kind::Sliding => self.uses[1],
        }
    }

    /// The sliding window (positions).
    pub fn window(&self) -> u32 {
        self.window
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

    #[test]
    fn adopted_pages_are_freed_by_their_last_holder() {
        let mut c = KvCache::new((8, 8), (8, 8), 200, [true, true]);
        c.reserve(1, 192).unwrap();
        c.advance(1, 192);
        let (full, sliding) = (c.seqs[&1].full.clone(), c.seqs[&1].sliding.clone());
        // Sequence 2 starts on sequence 1's first two pages (128 positions).
        c.adopt(2, (0, 0), &full[..2], &sliding[..2], 128).unwrap();
        // Its next query (position 128) reads every earlier key: both sliding pages stay.
        assert_eq!(c.slot(2, Kind::Full, 5), c.slot(1, Kind::Full, 5));
        assert_eq!(c.full.free_pages(), 8 - 3);
        c.remove(1);
        assert_eq!(
            c.full.free_pages(),
            8 - 2,
            "shared pages stay while 2 holds them"
        );
        c.reserve(2, 1).unwrap();
        c.advance(2, 1);
        c.remove(2);
        assert_eq!((c.full.free_pages(), c.sliding.free_pages()), (8, 8));
        assert!(
            c.adopt(3, (0, 0), &full[..1], &sliding[..1], 100).is_err(),
            "table short"
        );
    }
}
