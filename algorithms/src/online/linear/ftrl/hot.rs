//! [`HotSlots`]: one [`SharedFtrl`](super::SharedFtrl) handle's private replicas of the slots
//! that nearly every row steps — the intercept, the numeric columns, the low-cardinality
//! categories.
//!
//! Under Hogwild every row writes those slots, so with two threads their cache lines move
//! between the cores on every row and most of the second core's time goes to waiting for
//! them. A handle instead steps its own copy of each hot slot and, every 256 rows and at the
//! end of each batch ([`HotSlots::sync`]), adds what it changed to the shared slot: FTRL's `z`
//! and `n` are sums of per-row terms, so the deltas of two handles add up to what one
//! sequential learner would have accumulated (up to the 256-row staleness of each handle's
//! view: merged once per batch of 8192 rows, two handles' intercepts overshot early in
//! training and the progressive logloss of a 50 k-row run moved by 1%), and the
//! weight follows from them ([`FtrlProximal::weight`]). Unlike a Hogwild write, a merge
//! loses no update. When nobody else changed a shared slot since the handle last read it,
//! the merge stores the handle's own floats, so one handle alone trains bit for bit as the
//! owned model.
//!
//! Which slots are hot is decided once per handle from its first [`SAMPLE_ROWS`] rows: an
//! index in at least one row of [`HOT_SHARE`] of them, at most [`MAX_HOT`] of the most
//! frequent; the intercept always. Until then the handle steps the shared slots directly
//! (the intercept excepted). A feature that becomes popular later is stepped Hogwild-style,
//! as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::features::Examples;
use crate::online::linear::for_each_entry;
use crate::optim::FtrlProximal;

/// Rows a handle samples before it picks its hot slots.
pub(super) const SAMPLE_ROWS: u64 = 4096;
/// A feature is hot when it is in at least one of this many sampled rows.
pub(super) const HOT_SHARE: u64 = 64;
/// At most this many hot features per handle (the intercept not counted).
pub(super) const MAX_HOT: usize = 255;

/// Marks an empty bucket of the index table.
const EMPTY: u32 = u32::MAX;

/// A handle's replicas of its hot slots (see the [module docs](self)).
pub(super) struct HotSlots {
    /// Open-addressing table of the hot feature indices, a power of two at least twice
    /// their number, linear probing (the intercept is not in it: it is replica 0).
    keys: Box<[u32]>,
    /// Each bucket's position in `index`/`local`/`base`.
    position: Box<[u16]>,
    /// Bits of the table length's log, for the multiplicative hash.
    shift: u32,
    /// Position in the shared array of each replica: the intercept's (the last) first.
    index: Vec<usize>,
    /// The handle's `[w, z, n]` of each replica.
    local: Vec<[f32; 3]>,
    /// `[z, n]` of each replica as last read from or written to the shared slot.
    base: Vec<[f32; 2]>,
    /// Occurrences per feature index while sampling; `None` once the hot set is chosen.
    sample: Option<Sample>,
}

/// What a handle counts over its first rows.
struct Sample {
    rows: u64,
    counts: HashMap<u32, u32>,
}

impl HotSlots {
    /// The intercept's replica.
    pub(super) const INTERCEPT: usize = 0;

    /// A replica of the intercept only, sampling the features of the rows ahead.
    pub(super) fn new(shared: &[[AtomicU32; 3]]) -> Self {
        let mut hot = HotSlots::with_features(&[], shared);
        hot.sample = Some(Sample {
            rows: 0,
            counts: HashMap::new(),
        });
        hot
    }

    /// Replicas of the intercept and of `features` (none of them `EMPTY`).
    fn with_features(features: &[u32], shared: &[[AtomicU32; 3]]) -> Self {
        let len = (features.len() * 2).next_power_of_two().max(16);
        let mut hot = HotSlots {
            keys: vec![EMPTY; len].into_boxed_slice(),
            position: vec![0; len].into_boxed_slice(),
            shift: 32 - len.trailing_zeros(),
            index: vec![shared.len() - 1],
            local: Vec::with_capacity(features.len() + 1),
            base: Vec::with_capacity(features.len() + 1),
            sample: None,
        };
        for &i in features {
            let mut b = hot.bucket(i);
            while hot.keys[b] != EMPTY {
                b = (b + 1) & (len - 1);
            }
            hot.keys[b] = i;
            hot.position[b] = hot.index.len() as u16;
            hot.index.push(i as usize);
        }
        hot.reload(shared);
        hot
    }

    /// Reads every replica from the shared slots (after a restore overwrote them).
    pub(super) fn reload(&mut self, shared: &[[AtomicU32; 3]]) {
        self.local.clear();
        self.base.clear();
        for &i in &self.index {
            let slot = load(&shared[i]);
            self.local.push(slot);
            self.base.push([slot[1], slot[2]]);
        }
    }

    #[inline(always)]
    fn bucket(&self, i: u32) -> usize {
        (i.wrapping_mul(0x9E37_79B1) >> self.shift) as usize
    }

    /// The replica of slot `i`, if it is hot.
    #[inline(always)]
    pub(super) fn find(&self, i: u32) -> Option<usize> {
        let mask = self.keys.len() - 1;
        let mut b = self.bucket(i);
        loop {
            let key = self.keys[b];
            if key == i {
                return Some(self.position[b] as usize);
            }
            if key == EMPTY {
                return None;
            }
            b = (b + 1) & mask;
        }
    }

    /// The replica at `p`.
    #[inline(always)]
    pub(super) fn get(&self, p: usize) -> [f32; 3] {
        self.local[p]
    }

    /// Sets the replica at `p`.
    #[inline(always)]
    pub(super) fn set(&mut self, p: usize, slot: [f32; 3]) {
        self.local[p] = slot;
    }

    /// While sampling, counts the features of `ex` (call before learning it); once
    /// [`SAMPLE_ROWS`] rows are counted, picks the hot set (a sync first: call it between
    /// batches, after [`sync`](Self::sync)).
    pub(super) fn observe(&mut self, ex: &Examples, shared: &[[AtomicU32; 3]]) {
        let Some(sample) = &mut self.sample else {
            return;
        };
        for r in 0..ex.len() {
            for_each_entry(&ex.features.row(r), |i, _| {
                *sample.counts.entry(i as u32).or_insert(0) += 1;
            });
        }
        sample.rows += ex.len() as u64;
        if sample.rows < SAMPLE_ROWS {
            return;
        }
        let min = (sample.rows / HOT_SHARE).max(1) as u32;
        let mut hot: Vec<(u32, u32)> = sample
            .counts
            .iter()
            .filter(|(&i, &c)| c >= min && i != EMPTY)
            .map(|(&i, &c)| (i, c))
            .collect();
        hot.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        hot.truncate(MAX_HOT);
        let features: Vec<u32> = hot.into_iter().map(|(i, _)| i).collect();
        *self = HotSlots::with_features(&features, shared);
    }

    /// Merges every replica's steps since the last sync into the shared slots and reads the
    /// shared slots back (the other handles' merges included).
    pub(super) fn sync(&mut self, rule: &FtrlProximal, shared: &[[AtomicU32; 3]]) {
        for p in 0..self.index.len() {
            let slot = &shared[self.index[p]];
            let [w, z, n] = self.local[p];
            let [z0, n0] = self.base[p];
            let stepped = z.to_bits() != z0.to_bits() || n.to_bits() != n0.to_bits();
            let merged = if stepped {
                write_back(rule, slot, [z0, n0], [w, z, n])
            } else {
                load(slot)
            };
            self.local[p] = merged;
            self.base[p] = [merged[1], merged[2]];
        }
    }
}

#[inline(always)]
fn load(slot: &[AtomicU32; 3]) -> [f32; 3] {
    [0, 1, 2].map(|k| f32::from_bits(slot[k].load(Ordering::Relaxed)))
}

/// Writes the replica `own` back to the shared slot whose `[z, n]` the handle last saw as
/// `base`: its own floats where nobody merged meanwhile, else its deltas added to the
/// others' (and the weight recomputed). The slot as written.
fn write_back(
    rule: &FtrlProximal,
    slot: &[AtomicU32; 3],
    base: [f32; 2],
    own: [f32; 3],
) -> [f32; 3] {
    let [_, z, n] = own;
    let [z0, n0] = base;
    let swap = |k: usize, from: f32, to: f32| {
        slot[k]
            .compare_exchange(
                from.to_bits(),
                to.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    };
    let n_ours = swap(2, n0, n);
    let z_ours = swap(1, z0, z);
    let merged = if n_ours && z_ours {
        own
    } else {
        let n = if n_ours { n } else { add(&slot[2], n - n0) };
        let z = if z_ours { z } else { add(&slot[1], z - z0) };
        [rule.weight(z, n.sqrt()), z, n]
    };
    slot[0].store(merged[0].to_bits(), Ordering::Relaxed);
    merged
}

/// Atomically adds `d` to the float in `a`; the sum.
fn add(a: &AtomicU32, d: f32) -> f32 {
    let mut old = a.load(Ordering::Relaxed);
    loop {
        let new = (f32::from_bits(old) + d).to_bits();
        match a.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return f32::from_bits(new),
            Err(current) => old = current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{CsrMatrix, Features};

    fn zeros(n: usize) -> Vec<[AtomicU32; 3]> {
        (0..n).map(|_| [0, 0, 0].map(AtomicU32::new)).collect()
    }

    /// Feature 0 in every row, 1..=4 in a quarter each, 63 in the first row only.
    fn rows(n: usize) -> Examples {
        let mut x = CsrMatrix::with_capacity(64, n, 3);
        for r in 0..n {
            x.push(0, 0.5);
            x.push(1 + (r % 4) as u32, 1.0);
            if r == 0 {
                x.push(63, 1.0);
            }
            x.finish_row();
        }
        Examples::new(Features::Sparse(x), vec![0.0; n], None).unwrap()
    }

    #[test]
    fn the_features_in_many_sampled_rows_become_replicas() {
        let shared = zeros(65);
        let mut hot = HotSlots::new(&shared);
        hot.observe(&rows(SAMPLE_ROWS as usize - 1), &shared);
        assert_eq!(hot.find(0), None, "still sampling");
        hot.observe(&rows(1), &shared);
        assert!(hot.find(0).is_some(), "the column in every row");
        for c in 1..=4 {
            assert!(hot.find(c).is_some(), "category {c}: a quarter of the rows");
        }
        assert_eq!(hot.find(63), None, "a feature of 2 rows in {SAMPLE_ROWS}");
        assert_eq!(hot.find(5), None, "a feature of no row");
        assert_eq!(
            hot.index[HotSlots::INTERCEPT],
            64,
            "the intercept is replica 0"
        );
        assert_eq!(hot.index.len(), 6);
    }
}
