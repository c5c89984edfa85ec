//! [`LocalPs`] snapshots: the body inside the [`snapshot`](crate::snapshot) frame.
//!
//! ```text
//! tables u64, then per table (by name):
//!   config (length-prefixed JSON of its TableConfig)
//!   rows u64, per row by key: key u64 | updates u64 | touched_ms u64 | dim × (1 + state_len) f32
//!   pending u64, per entry by key: key u64 | count u32 | touched_ms u64
//! version ≥ 2 only: the push-dedup table, by client id
//!   clients u64, per client: id u64 | high u64 | window (low u64, high u64) | seen_ms u64
//! ```
//!
//! Tombstones of the delta feed are not kept: a restore resyncs older delta cursors instead
//! (see [`delta`](super::delta)).

use std::sync::{MutexGuard, PoisonError};

use super::dedup::Dedup;
use super::{LocalPs, Pending, Row, Shard};
use crate::error::{Error, Result};
use crate::snapshot;
use crate::table::TableConfig;

impl LocalPs {
    /// [`ParamStore::snapshot`](crate::ParamStore::snapshot), sync. Every shard of every
    /// table is locked for the copy, and no stamped push is between its claim and its rows, so
    /// the snapshot is a consistent cut of rows and dedup table; rows and clients are written
    /// by key, so equal stores give equal bytes.
    pub fn snapshot_now(&self) -> Result<Vec<u8>> {
        let _exclusive = self
            .dedup
            .gate
            .write()
            .unwrap_or_else(PoisonError::into_inner);
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
        self.dedup.write(&mut w);
        Ok(w.finish())
    }

    /// [`ParamStore::restore`](crate::ParamStore::restore), sync. The snapshot is fully
    /// decoded and checked before any shard changes; its tables must equal this store's (names
    /// and whole declarations). The shard count may differ: keys are re-hashed. The dedup
    /// table is replaced by the snapshot's (empty from a version-1 snapshot), and delta cursors
    /// from before the restore get a full resync.
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
            let mut shards: Vec<Shard> = (0..t.shards.len()).map(|_| Shard::empty(0)).collect();
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
        let clients = Dedup::read(&mut r)?;
        r.end()?;
        let _exclusive = self
            .dedup
            .gate
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Every restored row counts as changed now, and rows may have vanished without a
        // tombstone: older delta cursors resync.
        for (t, shards) in self.tables.values().zip(decoded) {
            for (s, mut fresh) in shards.into_iter().enumerate() {
                let mut guard = t.lock(s);
                let version = self.next_version();
                for row in fresh.rows.values_mut() {
                    row.version = version;
                }
                fresh.horizon = version;
                *guard = fresh;
            }
        }
        self.dedup.replace(clients);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::local::{LocalPsConfig, PushOutcome, PushStamp};
    use crate::snapshot::Writer;

    fn store() -> LocalPs {
        LocalPsConfig::new(vec![TableConfig::new("w", 1)])
            .build()
            .unwrap()
    }

    /// A snapshot of `store()` holding one row, in body layout `version` (1 has no dedup table).
    fn by_hand(version: u32) -> Vec<u8> {
        let mut w = Writer::versioned(version);
        w.u64(1);
        w.bytes(&serde_json::to_vec(&TableConfig::new("w", 1)).unwrap());
        w.u64(1); // rows
        let state = store().tables["w"].state_len;
        w.u64(5);
        w.u64(3); // updates
        w.u64(1_000); // touched_ms
        w.f32s(&[0.25]);
        w.f32s(&vec![0.5; state]);
        w.u64(0); // pending
        if version >= 2 {
            w.u64(1); // clients
            for v in [77, 4, 1, 0, 1_000] {
                w.u64(v);
            }
        }
        w.finish()
    }

    #[test]
    fn a_version_1_snapshot_loads_with_an_empty_dedup_table() {
        let ps = store();
        ps.push_stamped(
            "w",
            &[9],
            &[1.0],
            None,
            SystemTime::now(),
            PushStamp { client: 77, seq: 4 },
        )
        .unwrap();
        ps.restore_now(&by_hand(1)).unwrap();
        let mut w = Vec::new();
        ps.pull_now("w", &[5, 9], &mut w).unwrap();
        assert_eq!(w, vec![0.25, 0.0], "the snapshot's rows, nothing else");
        assert_eq!(ps.row_updates("w", 5).unwrap(), Some(3));
        assert_eq!(
            ps.dedup_clients(),
            0,
            "the stamps of the store before are gone too"
        );
        // re-snapshotting writes the current version, and equal stores give equal bytes
        let v2 = ps.snapshot_now().unwrap();
        assert_eq!(snapshot::open(&v2).unwrap().version(), snapshot::VERSION);
        let other = store();
        other.restore_now(&v2).unwrap();
        assert_eq!(other.snapshot_now().unwrap(), v2);
    }

    #[test]
    fn a_version_2_snapshot_restores_the_dedup_table() {
        let ps = store();
        ps.restore_now(&by_hand(2)).unwrap();
        assert_eq!(ps.dedup_clients(), 1);
        let stamp = |seq| PushStamp { client: 77, seq };
        let now = SystemTime::now();
        let push = |seq| {
            ps.push_stamped("w", &[5], &[1.0], None, now, stamp(seq))
                .unwrap()
        };
        assert_eq!(push(4), PushOutcome::Duplicate);
        assert_eq!(push(3), PushOutcome::Applied);
        assert_eq!(ps.row_updates("w", 5).unwrap(), Some(4));
    }

    #[test]
    fn unknown_versions_and_mislabelled_bodies_are_refused() {
        let ps = store();
        let v3 = {
            let mut w = Writer::versioned(snapshot::VERSION + 1);
            w.u64(0);
            w.finish()
        };
        let e = ps.restore_now(&v3).unwrap_err().to_string();
        assert!(
            e.contains(&format!("unknown version {}", snapshot::VERSION + 1)),
            "{e}"
        );
        // a version-2 body labelled version 1 has trailing bytes (its dedup table)
        let mut bytes = by_hand(2);
        let n = bytes.len() - 8;
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes[..n]);
        bytes[n..].copy_from_slice(&sum.to_le_bytes());
        let e = ps.restore_now(&bytes).unwrap_err().to_string();
        assert!(e.contains("trailing bytes"), "{e}");
        assert_eq!(
            ps.row_count("w").unwrap(),
            0,
            "a refused restore changes nothing"
        );
    }
}
