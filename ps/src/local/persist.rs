//! [`LocalPs`] snapshots: the body inside the [`snapshot`](crate::snapshot) frame.
//!
//! ```text
//! tables u64, then per table (by name):
//!   config (length-prefixed JSON of its TableConfig)
//!   rows u64, per row by key: key u64 | updates u64 | touched_ms u64 | dim × (1 + state_len) f32
//!   pending u64, per entry by key: key u64 | count u32 | touched_ms u64
//! ```

use std::sync::MutexGuard;

use super::{LocalPs, Pending, Row, Shard};
use crate::error::{Error, Result};
use crate::snapshot;
use crate::table::TableConfig;

impl LocalPs {
    /// [`ParamStore::snapshot`](crate::ParamStore::snapshot), sync. Every shard of every table is locked for the copy, so
    /// the snapshot is a consistent cut; rows are written by key, so equal stores give equal
    /// bytes.
    pub fn snapshot_now(&self) -> Result<Vec<u8>> {
        let mut w = snapshot::Writer::new();
        w.u64(self.tables.len() as u64);
        let guards: Vec<Vec<MutexGuard<'_, Shard>>> = self
            .tables
            .values()
            .map(|t| (0..t.shards.len()).map(|s| t.lock(s)).collect())
            .collect();
        for (t, shards) in self.tables.values().zip(&guards) {
            let config = serde_json::to_vec(t.cfg.config())
                .map_err(|e| Error::Snapshot(format!("table `{}`: {e}", t.cfg.name())))?;
            w.bytes(&config);
            let mut rows: Vec<(&u64, &Row)> = shards.iter().flat_map(|s| &s.rows).collect();
            rows.sort_unstable_by_key(|(k, _)| **k);
            w.u64(rows.len() as u64);
            for (key, row) in rows {
                w.u64(*key);
                w.u64(row.updates);
                w.u64(row.touched_ms);
                w.f32s(&row.data);
            }
            let mut pending: Vec<(&u64, &Pending)> =
                shards.iter().flat_map(|s| &s.pending).collect();
            pending.sort_unstable_by_key(|(k, _)| **k);
            w.u64(pending.len() as u64);
            for (key, p) in pending {
                w.u64(*key);
                w.u32(p.count);
                w.u64(p.touched_ms);
            }
        }
        Ok(w.finish())
    }

    /// [`ParamStore::restore`](crate::ParamStore::restore), sync. The snapshot is fully decoded and checked before any
    /// shard changes; its tables must equal this store's (names and whole declarations). The
    /// shard count may differ: keys are re-hashed.
    pub fn restore_now(&self, bytes: &[u8]) -> Result<()> {
        let mut r = snapshot::open(bytes)?;
        let n_tables = r.count(1)?;
        if n_tables != self.tables.len() {
            return Err(Error::Snapshot(format!(
                "{n_tables} tables, but the store has {}",
                self.tables.len()
            )));
        }
        let mut decoded: Vec<Vec<Shard>> = Vec::with_capacity(n_tables);
        for t in self.tables.values() {
            let config: TableConfig = serde_json::from_slice(r.bytes()?)
                .map_err(|e| Error::Snapshot(format!("table config: {e}")))?;
            if &config != t.cfg.config() {
                return Err(Error::Snapshot(format!(
                    "table `{}` does not match the store's `{}`",
                    config.name,
                    t.cfg.name()
                )));
            }
            let mut shards: Vec<Shard> = (0..t.shards.len()).map(|_| Shard::default()).collect();
            let floats = t.cfg.dim() * (1 + t.state_len);
            for _ in 0..r.count(24 + 4 * floats)? {
                let key = r.u64()?;
                let (updates, touched_ms) = (r.u64()?, r.u64()?);
                let mut data = super::RowData::zeros(floats);
                r.f32s(&mut data)?;
                let row = Row {
                    data,
                    updates,
                    touched_ms,
                    version: 0,
                };
                if shards[t.shard_of(key)].rows.insert(key, row).is_some() {
                    return Err(Error::Snapshot(format!("key {key} appears twice")));
                }
            }
            for _ in 0..r.count(20)? {
                let key = r.u64()?;
                let p = Pending {
                    count: r.u32()?,
                    touched_ms: r.u64()?,
                };
                if shards[t.shard_of(key)].pending.insert(key, p).is_some() {
                    return Err(Error::Snapshot(format!("pending key {key} appears twice")));
                }
            }
            decoded.push(shards);
        }
        r.end()?;
        // Every restored row counts as changed now, so delta readers re-fetch them.
        for (t, shards) in self.tables.values().zip(decoded) {
            for (s, mut fresh) in shards.into_iter().enumerate() {
                let mut guard = t.lock(s);
                let version = self.next_version();
                for row in fresh.rows.values_mut() {
                    row.version = version;
                }
                *guard = fresh;
            }
        }
        Ok(())
    }
}
