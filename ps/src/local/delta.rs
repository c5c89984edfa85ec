//! The delta feed of [`LocalPs`]: the rows changed and the keys removed since a version, for
//! keeping a serving copy fresh; and [`LocalPs::expire`], which makes the removals.
//!
//! Every change (a push, an expiry, a restore) takes a new store version while it holds the
//! stripe it changes, and stamps what it writes with it: a row with the version of its last
//! change, a key expiry removed with a *tombstone* `(version, key)` in its stripe.
//! [`LocalPs::delta_since`] reads the current version *before* scanning the stripes, so a
//! change with a version at or below the returned cursor is either already visible or still
//! holding a stripe the scan waits for: following the cursor never misses a change.
//!
//! **Removals.** A delta lists the keys removed after the cursor in [`Delta::removed`], and the
//! rows changed after it in [`Delta::keys`] / [`Delta::values`]; within one delta a key is in at
//! most one of them (a key re-admitted after its removal is a changed row, not a removal).
//!
//! **Bound and resync.** Each table keeps at most [`LocalPsConfig::tombstones`] removals
//! (⌈tombstones / stripes⌉ per stripe, the newest); dropping one raises the stripe's
//! *horizon* to its version. A restore sets every stripe's horizon to the restore's version
//! (rows may vanish without tombstones), and a new store starts with its build version as
//! horizon. A cursor below a horizon may have missed removals, so it gets a **full resync**:
//! the delta holds every row of the table, [`Delta::resync`] is set and the reader drops
//! whatever it holds that is not in it. A fresh cursor (0) is below every horizon, so its first
//! delta is a resync too.
//!
//! [`LocalPsConfig::tombstones`]: super::LocalPsConfig::tombstones

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::{unix_ms, LocalPs, Shard, Table};
use crate::error::Result;

/// What changed in one table since a cursor: rows changed (`keys`, and `dim` weights per key
/// in `values`, in the same order), keys removed, and whether this is a full resync. No
/// particular key order.
///
/// Apply it in this order: if `resync`, drop every row you hold; delete the `removed` keys;
/// upsert the changed rows. Across deltas a key can move between `removed` and `keys`, and one
/// `Delta` does not keep their order: apply each delta (or [`clear`](Delta::clear) it) before
/// reading the next into it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    /// The changed keys.
    pub keys: Vec<u64>,
    /// `dim` weights per key.
    pub values: Vec<f32>,
    /// Keys removed (by expiry) and not re-admitted since.
    pub removed: Vec<u64>,
    /// The cursor was older than the feed's memory of removals (or fresh): the changed rows are
    /// every row of the table, and rows not among them are gone.
    pub resync: bool,
}

impl Delta {
    /// Empties the vectors (keeping their capacity) and clears `resync`.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.values.clear();
        self.removed.clear();
        self.resync = false;
    }

    /// The number of changed rows.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is nothing to apply: no changed row, no removal, no resync.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.removed.is_empty() && !self.resync
    }
}

/// Where a delta reader stands: the version it has seen, per shard of the store (one for a
/// [`LocalPs`]). The default (empty) cursor has seen nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeltaCursor(pub Vec<u64>);

impl DeltaCursor {
    /// The version seen of shard `shard` (0: nothing), growing the cursor to `shards` entries.
    pub(crate) fn seen(&mut self, shard: usize, shards: usize) -> u64 {
        if self.0.len() != shards {
            self.0.resize(shards, 0);
        }
        self.0[shard]
    }
}

impl LocalPs {
    /// The latest version handed out: pass it to [`delta_since`](LocalPs::delta_since) to get
    /// only later changes. Versions start at the store's build time in nanoseconds, so they
    /// keep increasing across restarts while the wall clock does.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// A new version, for a change about to be written.
    pub(super) fn next_version(&self) -> u64 {
        self.version.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Appends to `out` the rows of `table` changed after version `since` (their current
    /// weights) and the keys removed after it, and returns the cursor for the next call. When
    /// `since` is older than the feed remembers removals (see the [module docs](self)), `out`
    /// is cleared and filled with every row instead, and `out.resync` is set.
    pub fn delta_since(&self, table: &str, since: u64, out: &mut Delta) -> Result<u64> {
        let t = self.table(table)?;
        let now = self.version();
        for s in 0..t.shards.len() {
            let shard = t.lock(s);
            if since < shard.horizon {
                drop(shard);
                return Ok(self.full_resync(t, out));
            }
            changed_rows(t, &shard, since, out);
            let from = out.removed.len();
            let first = shard.tombstones.partition_point(|&(v, _)| v <= since);
            for &(_, key) in shard.tombstones.range(first..) {
                if !shard.rows.contains_key(&key) {
                    out.removed.push(key);
                }
            }
            // A key removed twice since the cursor is reported once.
            let tail = &mut out.removed[from..];
            if tail.len() > 1 {
                tail.sort_unstable();
                let mut kept = from + 1;
                for i in from + 1..out.removed.len() {
                    if out.removed[i] != out.removed[kept - 1] {
                        out.removed[kept] = out.removed[i];
                        kept += 1;
                    }
                }
                out.removed.truncate(kept);
            }
        }
        Ok(now)
    }

    /// Replaces `out` with every row of `t`, flagged as a resync; returns the cursor.
    fn full_resync(&self, t: &Table, out: &mut Delta) -> u64 {
        out.clear();
        out.resync = true;
        let now = self.version();
        for s in 0..t.shards.len() {
            changed_rows(t, &t.lock(s), 0, out);
        }
        now
    }

    /// Drops, in every table with an expiry, the rows not pushed to for that long before `now`,
    /// and the pending admission counts not bumped for that long; returns the rows dropped.
    /// The dropped rows' keys are reported by the delta feed as removed.
    pub fn expire(&self, now: SystemTime) -> usize {
        let now_ms = unix_ms(now);
        let mut dropped = 0;
        for t in self.tables.values() {
            let Some(expiry) = t.cfg.config().expiry else {
                continue;
            };
            let cutoff = now_ms.saturating_sub(expiry.as_millis() as u64);
            for s in 0..t.shards.len() {
                let mut guard = t.lock(s);
                let shard = &mut *guard;
                let before = shard.rows.len();
                let mut version = None;
                let tombstones = &mut shard.tombstones;
                shard.rows.retain(|&key, r| {
                    if r.touched_ms > cutoff {
                        return true;
                    }
                    // Taken under the stripe's lock, as for a push.
                    let v = *version.get_or_insert_with(|| self.next_version());
                    tombstones.push_back((v, key));
                    false
                });
                shard.pending.retain(|_, p| p.touched_ms > cutoff);
                let over = shard.tombstones.len().saturating_sub(t.tombstone_cap);
                if over > 0 {
                    // The oldest go; the reader must be past the newest of them.
                    let (newest_dropped, _) = shard.tombstones[over - 1];
                    shard.tombstones.drain(..over);
                    shard.horizon = shard.horizon.max(newest_dropped);
                }
                dropped += before - shard.rows.len();
            }
        }
        dropped
    }
}

/// Appends the rows of `shard` changed after `since`.
fn changed_rows(t: &Table, shard: &Shard, since: u64, out: &mut Delta) {
    let dim = t.cfg.dim();
    for (&key, row) in &shard.rows {
        if row.version > since {
            out.keys.push(key);
            out.values.extend_from_slice(&row.data[..dim]);
        }
    }
}
