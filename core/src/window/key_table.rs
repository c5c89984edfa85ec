//! Key → per-key state, for operators whose state is per key (sessions, over windows).
//!
//! A hash map from the key hash to the head of a chain of entries (collisions chain through
//! `next`); a hit is confirmed by comparing the stored key bytes. Existing keys cost one probe
//! and no allocation; entries of removed keys are reused.

use std::collections::HashMap;

use super::window_table::{IdBuild, NIL};

/// One key and its state.
#[derive(Debug, Clone)]
pub(crate) struct KeyEntry<V> {
    pub(crate) hash: u64,
    pub(crate) key: Vec<u8>,
    pub(crate) value: V,
    next: u32,
    live: bool,
}

/// Key bytes (with their hash) → `V`.
#[derive(Debug)]
pub(crate) struct KeyTable<V> {
    map: HashMap<u64, u32, IdBuild>,
    pub(crate) entries: Vec<KeyEntry<V>>,
    free: Vec<u32>,
}

impl<V> Default for KeyTable<V> {
    fn default() -> Self {
        KeyTable {
            map: HashMap::default(),
            entries: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<V> KeyTable<V> {
    /// The entry of `key`, created with `fresh()` when new.
    #[inline]
    pub(crate) fn find_or_insert(
        &mut self,
        hash: u64,
        key: &[u8],
        fresh: impl FnOnce() -> V,
    ) -> u32 {
        let head = self.map.get(&hash).copied().unwrap_or(NIL);
        let mut e = head;
        while e != NIL {
            let entry = &self.entries[e as usize];
            if entry.key == key {
                return e;
            }
            e = entry.next;
        }
        let id = match self.free.pop() {
            Some(id) => {
                let entry = &mut self.entries[id as usize];
                entry.key.clear();
                entry.key.extend_from_slice(key);
                (entry.hash, entry.next, entry.live) = (hash, head, true);
                entry.value = fresh();
                id
            }
            None => {
                self.entries.push(KeyEntry {
                    hash,
                    key: key.to_vec(),
                    value: fresh(),
                    next: head,
                    live: true,
                });
                (self.entries.len() - 1) as u32
            }
        };
        self.map.insert(hash, id);
        id
    }

    /// Removes the entry `id` (no-op when it is not live).
    pub(crate) fn remove(&mut self, id: u32) {
        let (hash, next, live) = {
            let e = &self.entries[id as usize];
            (e.hash, e.next, e.live)
        };
        if !live {
            return;
        }
        let head = self.map.get(&hash).copied().unwrap_or(NIL);
        if head == id {
            if next == NIL {
                self.map.remove(&hash);
            } else {
                self.map.insert(hash, next);
            }
        } else {
            let mut p = head;
            while p != NIL {
                let pn = self.entries[p as usize].next;
                if pn == id {
                    self.entries[p as usize].next = next;
                    break;
                }
                p = pn;
            }
        }
        let e = &mut self.entries[id as usize];
        e.live = false;
        e.next = NIL;
        self.free.push(id);
    }

    /// The live entries' ids.
    pub(crate) fn live(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.entries.len() as u32).filter(|&i| self.entries[i as usize].live)
    }

    /// Number of live keys.
    pub(crate) fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_hashes_with_different_keys_stay_apart() {
        let mut t: KeyTable<u32> = KeyTable::default();
        let a = t.find_or_insert(1, b"a", || 10);
        let b = t.find_or_insert(1, b"b", || 20);
        assert_ne!(a, b);
        assert_eq!(t.find_or_insert(1, b"a", || 99), a);
        t.remove(b);
        assert_eq!(t.len(), 1);
        assert_eq!(t.find_or_insert(1, b"a", || 99), a);
        t.remove(a);
        let c = t.find_or_insert(2, b"c", || 30);
        assert_eq!(t.entries[c as usize].value, 30);
        assert_eq!(t.live().collect::<Vec<_>>(), vec![c]);
    }
}
