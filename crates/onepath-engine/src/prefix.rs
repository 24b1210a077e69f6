//! The prefix cache: full KV pages of earlier sequences, found again by their exact tokens.
//!
//! A page of `PAGE_KEYS` positions is keyed by a hash chained over every token up to its end;
//! an entry also keeps its tokens and its parent's key, and a lookup compares them, so a hash
//! collision is a miss, never a wrong page. A page's K/V depend only on the tokens up to it
//! (one path per (sequence, position)), so a sequence that starts on cached pages computes
//! exactly what it would have computed itself.
//!
//! The cache holds its pages through the KV cache's reference counts. Under memory pressure
//! the least recently used leaf whose pages only the cache holds is evicted first.

use onepath_model::Kind;
use onepath_model::kv::{FREED, KvCache};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// Positions per page.
pub const PAGE: usize = onepath_model::kv::PAGE_KEYS as usize;

#[derive(Clone, Debug)]
struct Entry {
    parent: Option<u64>,
    tokens: Vec<u32>,
    /// Buffers of the (full, sliding) pages.
    buffer: (u32, u32),
    /// The page of each kind (`None` where the model has no layers of that kind; `FREED` for a
    /// sliding page its sequence had let go when the page was cached).
    full: Option<u32>,
    sliding: Option<u32>,
    children: u32,
    used: u64,
}

/// Pages a sequence can start on: `blocks` pages per kind and the buffers they live in.
#[derive(Clone, Debug, Default)]
pub struct Hit {
    pub buffer: (u32, u32),
    pub full: Vec<u32>,
    pub sliding: Vec<u32>,
}

impl Hit {
    pub fn positions(&self, uses_full: bool) -> usize {
        PAGE * if uses_full {
            self.full.len()
        } else {
            self.sliding.len()
        }
    }
}

#[derive(Debug, Default)]
pub struct PrefixCache {
    entries: HashMap<u64, Entry>,
    clock: u64,
}

fn key(parent: Option<u64>, tokens: &[u32]) -> u64 {
    let mut h = DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

impl PrefixCache {
    /// The entry of `tokens`' block `i` if cached exactly.
    fn find(&self, parent: Option<u64>, block: &[u32]) -> Option<(u64, &Entry)> {
        let k = key(parent, block);
        let e = self.entries.get(&k)?;
        (e.parent == parent && e.tokens == block).then_some((k, e))
    }

    /// The longest cached run of `prompt`'s pages a new sequence may start on: whole pages
    /// only, leaving at least the prompt's last token to compute (its logits are needed), all
    /// in one pair of buffers, and with every sliding page the next query reads still held.
    pub fn lookup(&mut self, prompt: &[u32], kv: &KvCache) -> Hit {
        let max_blocks = prompt.len().saturating_sub(1) / PAGE;
        let mut chain: Vec<(u64, Entry)> = Vec::new();
        let mut parent = None;
        for b in 0..max_blocks {
            let block = &prompt[b * PAGE..(b + 1) * PAGE];
            let Some((k, e)) = self.find(parent, block) else {
                break;
            };
            if chain.first().is_some_and(|(_, f)| f.buffer != e.buffer) {
                break;
            }
            chain.push((k, e.clone()));
            parent = Some(k);
        }
        // The longest prefix whose reachable sliding pages are all held.
        let window = kv.window() as usize;
        let mut n = chain.len();
        while n > 0 {
            let len = n * PAGE;
            let first_needed = (len + 1).saturating_sub(window) / PAGE;
            let ok = chain[..n]
                .iter()
                .enumerate()
                .all(|(i, (_, e))| i < first_needed || e.sliding != Some(FREED));
            if ok {
                break;
            }
            n -= 1;
        }
        self.clock += 1;
        for (k, _) in &chain[..n] {
            if let Some(e) = self.entries.get_mut(k) {
                e.used = self.clock;
            }
        }
        let Some((_, first)) = chain.first() else {
            return Hit::default();
        };
        Hit {
            buffer: first.buffer,
            full: chain[..n].iter().filter_map(|(_, e)| e.full).collect(),
            sliding: chain[..n].iter().filter_map(|(_, e)| e.sliding).collect(),
        }
    }

    /// Caches `seq`'s pages wholly below its cached length (`tokens` are its tokens, at least
    /// that many). `done` is how far an earlier call got (blocks, last key); it resumes there
    /// while that entry lasts. A block already cached (by another sequence) is only touched.
    pub fn register(
        &mut self,
        kv: &mut KvCache,
        seq: u64,
        tokens: &[u32],
        done: &mut (usize, Option<u64>),
    ) {
        let Some(s) = kv.seqs.get(&seq) else {
            return;
        };
        let (buffer, len) = (s.buffer, s.len as usize);
        let blocks = (len / PAGE).min(tokens.len() / PAGE);
        if done.1.is_some_and(|k| !self.entries.contains_key(&k)) {
            *done = (0, None);
        }
        let (start, mut parent) = *done;
        for b in start..blocks {
            let block = &tokens[b * PAGE..(b + 1) * PAGE];
            let k = key(parent, block);
            self.clock += 1;
            let clock = self.clock;
            match self.entries.get_mut(&k) {
                Some(e) if e.parent == parent && e.tokens == block => e.used = clock,
                Some(_) => return, // a hash collision: keep the one cached, stop here
                None => {
                    let s = &kv.seqs[&seq];
                    let full = kv.uses(Kind::Full).then(|| s.full[b]);
                    let sliding = kv.uses(Kind::Sliding).then(|| s.sliding[b]);
                    if let Some(p) = parent.and_then(|p| self.entries.get_mut(&p)) {
                        p.children += 1;
                    }
                    if let Some(p) = full {
                        kv.retain(Kind::Full, buffer.0, p);
                    }
                    if let Some(p) = sliding.filter(|&p| p != FREED) {
                        kv.retain(Kind::Sliding, buffer.1, p);
                    }
                    self.entries.insert(
                        k,
                        Entry {
                            parent,
                            tokens: block.to_vec(),
                            buffer,
                            full,
                            sliding,
                            children: 0,
                            used: clock,
                        },
                    );
                }
            }
            parent = Some(k);
            *done = (b + 1, parent);
        }
    }

    /// Evicts the least recently used leaf whose pages would actually be freed (only the
    /// cache holds them); false if there is none.
    pub fn evict_one(&mut self, kv: &mut KvCache) -> bool {
        let only_cache = |kind: Kind, buffer: u32, p: Option<u32>| {
            p.is_none_or(|p| p == FREED || kv.pools(kind).buffers[buffer as usize].refs(p) == 1)
        };
        let victim = self
            .entries
            .iter()
            .filter(|(_, e)| e.children == 0)
            .filter(|(_, e)| {
                only_cache(Kind::Full, e.buffer.0, e.full)
                    && only_cache(Kind::Sliding, e.buffer.1, e.sliding)
            })
            .min_by_key(|(k, e)| (e.used, **k))
            .map(|(k, _)| *k);
        let Some(k) = victim else {
            return false;
        };
        self.remove(kv, k);
        true
    }

    fn remove(&mut self, kv: &mut KvCache, k: u64) {
        let Some(e) = self.entries.remove(&k) else {
            return;
        };
        if let Some(p) = e.parent.and_then(|p| self.entries.get_mut(&p)) {
            p.children -= 1;
        }
        if let Some(p) = e.full {
            kv.release(Kind::Full, e.buffer.0, p);
        }
        if let Some(p) = e.sliding.filter(|&p| p != FREED) {
            kv.release(Kind::Sliding, e.buffer.1, p);
        }
    }

    /// Lets go of every cached page.
    pub fn clear(&mut self, kv: &mut KvCache) {
        let keys: Vec<u64> = self.entries.keys().copied().collect();
        for k in keys {
            self.remove(kv, k);
        }
    }

    /// Pages the cache holds that no sequence does (free once evicted): (full, sliding).
    pub fn held_alone(&self, kv: &KvCache) -> (usize, usize) {
        let mut n = (0, 0);
        for e in self.entries.values() {
            if let Some(p) = e.full
                && kv.pools(Kind::Full).buffers[e.buffer.0 as usize].refs(p) == 1
            {
                n.0 += 1;
            }
            if let Some(p) = e.sliding.filter(|&p| p != FREED)
                && kv.pools(Kind::Sliding).buffers[e.buffer.1 as usize].refs(p) == 1
            {
                n.1 += 1;
            }
        }
        n
    }
}
