//! The state table of keyed tumbling and sliding windows: (key, window) → slot.
//!
//! Lookups go through a hash map from `mix(key hash, window start)` to the head of a chain of
//! slots (hash collisions chain through `Slot::next`); a hit is confirmed by comparing the key's
//! hash, the window start and the key's bytes. Existing windows cost one map probe and no
//! allocation; a new window reuses a freed slot (and its key buffer) when there is one.
//! Accumulators live in one flat vector, `n_aggs` per slot. Slots and accumulators are in
//! copy-on-write pages ([`CowPages`]): [`WindowTable::freeze`] copies them for a snapshot in
//! O(pages), and the first write to a page after it copies that page.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::accumulator::Acc;
use crate::state::{CowPages, FrozenPages};

/// End of a slot chain.
pub(crate) const NIL: u32 = u32::MAX;

/// A hasher for keys that are already well-mixed 64-bit hashes: it passes them through.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Builds [`IdHasher`]s.
pub(crate) type IdBuild = BuildHasherDefault<IdHasher>;

/// Combines a key hash and a window start into one well-mixed probe (splitmix64 finalizer).
#[inline]
pub(crate) fn mix(hash: u64, start: i64) -> u64 {
    let mut x = hash ^ (start as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// One (key, window).
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) hash: u64,
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// The key in the row format of the operator's key codec.
    pub(crate) key: Vec<u8>,
    /// Creation order: ties between windows of equal end fire in this order.
    pub(crate) seq: u64,
    pub(crate) fired: bool,
    pub(crate) dirty: bool,
    next: u32,
    live: bool,
}

/// (key, window) → slot with accumulators.
#[derive(Debug)]
pub(crate) struct WindowTable {
    map: HashMap<u64, u32, IdBuild>,
    pub(crate) slots: CowPages<Slot>,
    accs: CowPages<Acc>,
    template: Vec<Acc>,
    free: Vec<u32>,
    next_seq: u64,
    live: usize,
}

impl WindowTable {
    /// An empty table whose windows start with accumulators `template`.
    pub(crate) fn new(template: Vec<Acc>) -> Self {
        WindowTable {
            map: HashMap::default(),
            slots: CowPages::new(1),
            accs: CowPages::new(template.len()),
            template,
            free: Vec::new(),
            next_seq: 0,
            live: 0,
        }
    }

    /// Number of live windows.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The slot of (key, window), created when new: returns (slot, created).
    #[inline]
    pub(crate) fn find_or_insert(
        &mut self,
        hash: u64,
        start: i64,
        end: i64,
        key: &[u8],
    ) -> (u32, bool) {
        let probe = mix(hash, start);
        let head = self.map.get(&probe).copied().unwrap_or(NIL);
        let mut s = head;
        while s != NIL {
            let slot = &self.slots[s as usize];
            if slot.hash == hash && slot.start == start && slot.key == key {
                return (s, false);
            }
            s = slot.next;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = match self.free.pop() {
            Some(id) => {
                let slot = &mut self.slots[id as usize];
                slot.key.clear();
                slot.key.extend_from_slice(key);
                (slot.hash, slot.start, slot.end, slot.seq) = (hash, start, end, seq);
                (slot.fired, slot.dirty, slot.next, slot.live) = (false, false, head, true);
                for a in self.accs.row_mut(id as usize) {
                    a.reset();
                }
                id
            }
            None => {
                self.slots.push(Slot {
                    hash,
                    start,
                    end,
                    key: key.to_vec(),
                    seq,
                    fired: false,
                    dirty: false,
                    next: head,
                    live: true,
                });
                self.accs.push_row(self.template.iter().cloned());
                (self.slots.len() - 1) as u32
            }
        };
        self.map.insert(probe, id);
        self.live += 1;
        (id, true)
    }

    /// The accumulators of `slot`.
    #[inline]
    pub(crate) fn accs_mut(&mut self, slot: u32) -> &mut [Acc] {
        self.accs.row_mut(slot as usize)
    }

    /// The accumulators of `slot`.
    #[inline]
    pub(crate) fn accs(&self, slot: u32) -> &[Acc] {
        self.accs.row(slot as usize)
    }

    /// Frees `slot` (no-op when it is not live).
    pub(crate) fn remove(&mut self, slot: u32) {
        let (hash, start, next, live) = {
            let s = &self.slots[slot as usize];
            (s.hash, s.start, s.next, s.live)
        };
        if !live {
            return;
        }
        let probe = mix(hash, start);
        let head = self.map.get(&probe).copied().unwrap_or(NIL);
        if head == slot {
            if next == NIL {
                self.map.remove(&probe);
            } else {
                self.map.insert(probe, next);
            }
        } else {
            let mut p = head;
            while p != NIL {
                let pn = self.slots[p as usize].next;
                if pn == slot {
                    self.slots[p as usize].next = next;
                    break;
                }
                p = pn;
            }
        }
        let s = &mut self.slots[slot as usize];
        s.live = false;
        s.next = NIL;
        self.free.push(slot);
        self.live -= 1;
    }

    /// The live slots, in creation order.
    #[cfg(test)]
    pub(crate) fn live_slots(&mut self) -> Vec<u32> {
        self.freeze().live_slots()
    }

    /// The slots and accumulators as they are now, in O(pages): later writes to this table
    /// copy the pages they touch instead of changing the copy.
    pub(crate) fn freeze(&mut self) -> FrozenWindows {
        FrozenWindows {
            slots: self.slots.freeze(),
            accs: self.accs.freeze(),
        }
    }
}

/// A [`WindowTable`]'s slots and accumulators frozen for a snapshot.
#[derive(Debug, Clone)]
pub(crate) struct FrozenWindows {
    pub(crate) slots: FrozenPages<Slot>,
    accs: FrozenPages<Acc>,
}

impl FrozenWindows {
    /// The live slots, in creation order.
    pub(crate) fn live_slots(&self) -> Vec<u32> {
        let mut v: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&s| self.slots[s as usize].live)
            .collect();
        v.sort_by_key(|&s| self.slots[s as usize].seq);
        v
    }

    /// The accumulators of `slot`.
    pub(crate) fn accs(&self, slot: u32) -> &[Acc] {
        self.accs.row(slot as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colliding_probes_chain_and_unlink() {
        let mut t = WindowTable::new(vec![Acc::Count(0)]);
        // same hash and start, different key bytes: same probe, one chain
        let (a, new_a) = t.find_or_insert(7, 0, 10, b"a");
        let (b, new_b) = t.find_or_insert(7, 0, 10, b"b");
        let (c, _) = t.find_or_insert(7, 10, 20, b"a");
        assert!(new_a && new_b);
        assert_eq!(t.find_or_insert(7, 0, 10, b"a"), (a, false));
        assert_eq!(t.find_or_insert(7, 0, 10, b"b"), (b, false));
        if let Acc::Count(n) = &mut t.accs_mut(b)[0] {
            *n = 5;
        }
        t.remove(a);
        assert_eq!(t.find_or_insert(7, 0, 10, b"b"), (b, false));
        assert_eq!(t.len(), 2);
        // the freed slot is reused with fresh accumulators
        let (d, new_d) = t.find_or_insert(9, 0, 10, b"z");
        assert!(new_d);
        assert_eq!(d, a);
        assert_eq!(t.accs(d)[0], Acc::Count(0));
        assert_eq!(t.accs(b)[0], Acc::Count(5));
        t.remove(b);
        t.remove(b); // idempotent
        assert_eq!(t.live_slots(), vec![c, d]);
    }
}
