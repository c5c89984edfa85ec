//! The delta feed of [`LocalPs`]: the rows changed since a version, for keeping a serving copy
//! fresh.
//!
//! Every change (a push, a restore) takes a new store version while it holds the stripe it
//! changes, and stamps the rows it writes with it. [`LocalPs::delta_since`] reads the current
//! version *before* scanning the stripes, so a change with a version at or below the returned
//! cursor is either already visible or still holding a stripe the scan waits for: following the
//! cursor never misses a change. Rows dropped by expiry are not reported.

use std::sync::atomic::Ordering;

use super::LocalPs;
use crate::error::Result;

/// Rows of one table changed since a version: `keys`, and `dim` weights per key in `values`
/// (in the same order; no particular key order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    /// The changed keys.
    pub keys: Vec<u64>,
    /// `dim` weights per key.
    pub values: Vec<f32>,
}

impl Delta {
    /// Empties both vectors, keeping their capacity.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.values.clear();
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no row changed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
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
    /// weights), and returns the cursor for the next call.
    pub fn delta_since(&self, table: &str, since: u64, out: &mut Delta) -> Result<u64> {
        let t = self.table(table)?;
        let now = self.version();
        let dim = t.cfg.dim();
        for s in 0..t.shards.len() {
            let shard = t.lock(s);
            for (&key, row) in &shard.rows {
                if row.version > since {
                    out.keys.push(key);
                    out.values.extend_from_slice(&row.data[..dim]);
                }
            }
        }
        Ok(now)
    }
}
