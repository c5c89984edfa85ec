//! The shard's figures for a metrics endpoint ([`PsStatsHandle`]): tables and their rows,
//! update, push and pull counts, the age of the last snapshot file.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use eddy_algorithms::learner::UpdateRule;

use super::Shared;

/// Milliseconds since the Unix epoch.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Reads a serving shard's figures ([`PsServer::stats`](super::PsServer::stats)); cheap to
/// clone, valid while and after the shard serves.
#[derive(Debug, Clone)]
pub struct PsStatsHandle(pub(super) Arc<Shared>);

/// One table of a shard: its name, rows (keys) and values per row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PsTableStats {
    /// The table.
    pub name: String,
    /// Rows (keys) the shard holds.
    pub rows: u64,
    /// Values per row.
    pub dim: u64,
    /// Floats of update-rule state per value (FTRL: 2, SGD: 0), stored beside each weight.
    pub state_len: u64,
}

/// A shard's figures at one moment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PsShardStats {
    /// This shard's index.
    pub shard: u32,
    /// Shards of the job.
    pub shards: u32,
    /// Key updates applied since the tables were created (restored ones included).
    pub applied: u64,
    /// Push requests received since the process started.
    pub pushes: u64,
    /// Pull requests received since the process started.
    pub pulls: u64,
    /// The tables (empty before the first client declared them).
    pub tables: Vec<PsTableStats>,
    /// When the last snapshot file was written by this process (ms since the Unix epoch).
    pub last_snapshot_ms: Option<u64>,
    /// The job whose tables the shard holds (empty: none).
    pub job: String,
}

impl PsStatsHandle {
    /// The shard's figures now.
    pub fn read(&self) -> PsShardStats {
        let s = &self.0;
        let tables = s
            .store
            .get()
            .map(|store| {
                store
                    .tables()
                    .map(|t| PsTableStats {
                        name: t.name().to_string(),
                        rows: store.row_count(t.name()).unwrap_or(0) as u64,
                        dim: t.dim() as u64,
                        state_len: t.rule().state_len() as u64,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let snapshot = s.snapshot_ms.load(Ordering::Relaxed);
        PsShardStats {
            shard: s.cfg.shard,
            shards: s.cfg.shards,
            applied: s.applied.load(Ordering::Relaxed),
            pushes: s.pushes.load(Ordering::Relaxed),
            pulls: s.pulls.load(Ordering::Relaxed),
            tables,
            last_snapshot_ms: (snapshot > 0).then_some(snapshot),
            job: s.label().job.clone(),
        }
    }
}
