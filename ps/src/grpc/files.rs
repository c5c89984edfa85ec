//! A shard's snapshot files: `shard-I-of-N.<unix-ms>.snap` in the data directory, each a
//! [snapshot frame](crate::snapshot) around
//!
//! ```text
//! shard u32 | shards u32 | applied u64 | tables (length-prefixed JSON) | store snapshot (bytes)
//! ```
//!
//! where `applied` counts the key updates the shard had applied when the snapshot was taken
//! (read before the store is copied, so it never overstates what the snapshot holds). Files
//! are written to a temporary name, synced and renamed, so a crash mid-write leaves the older
//! snapshots intact; [`latest`] skips files that fail their checksum.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::snapshot;
use crate::table::TableConfig;

/// A decoded shard snapshot file.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardSnapshot {
    /// The shard's index.
    pub shard: u32,
    /// The shard count of the cluster it belongs to.
    pub shards: u32,
    /// Key updates applied when it was taken.
    pub applied: u64,
    /// The tables.
    pub tables: Vec<TableConfig>,
    /// The [`LocalPs`](crate::LocalPs) snapshot.
    pub store: Vec<u8>,
}

impl ShardSnapshot {
    /// The framed bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut w = snapshot::Writer::new();
        w.u32(self.shard);
        w.u32(self.shards);
        w.u64(self.applied);
        let tables = serde_json::to_vec(&self.tables)
            .map_err(|e| Error::Snapshot(format!("tables: {e}")))?;
        w.bytes(&tables);
        w.bytes(&self.store);
        Ok(w.finish())
    }

    /// Decodes and checks framed bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = snapshot::open(bytes)?;
        let (shard, shards, applied) = (r.u32()?, r.u32()?, r.u64()?);
        let tables = serde_json::from_slice(r.bytes()?)
            .map_err(|e| Error::Snapshot(format!("tables: {e}")))?;
        let store = r.bytes()?.to_vec();
        r.end()?;
        Ok(ShardSnapshot {
            shard,
            shards,
            applied,
            tables,
            store,
        })
    }
}

fn prefix(shard: u32, shards: u32) -> String {
    format!("shard-{shard}-of-{shards}.")
}

/// The snapshot files of shard `shard` of `shards` in `dir`, newest first.
pub fn list(dir: &Path, shard: u32, shards: u32) -> Result<Vec<PathBuf>> {
    let prefix = prefix(shard, shards);
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir.display(), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir.display(), e))?;
        let name = entry.file_name();
        let Some(stamp) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".snap"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((stamp, entry.path()));
    }
    found.sort_unstable_by(|a, b| b.cmp(a));
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// What [`latest`] found: the newest snapshot that decodes (with its path), and the newer
/// files skipped because they did not (each with why).
pub type Found = (Option<(PathBuf, ShardSnapshot)>, Vec<(PathBuf, Error)>);

/// The newest snapshot of the shard in `dir` that decodes; see [`Found`].
pub fn latest(dir: &Path, shard: u32, shards: u32) -> Result<Found> {
    let mut skipped = Vec::new();
    for path in list(dir, shard, shards)? {
        let decoded = std::fs::read(&path)
            .map_err(|e| Error::io(path.display(), e))
            .and_then(|b| ShardSnapshot::decode(&b));
        match decoded {
            Ok(s) => return Ok((Some((path, s)), skipped)),
            Err(e) => skipped.push((path, e)),
        }
    }
    Ok((None, skipped))
}

/// Writes `snap` as a new file in `dir` (created if missing) and removes all but the newest
/// `keep` files of the shard; returns the new file's path.
pub fn write(dir: &Path, snap: &ShardSnapshot, keep: usize) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    let bytes = snap.encode()?;
    let mut stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // Keep names increasing even when two snapshots land in the same millisecond.
    if let Some(newest) = list(dir, snap.shard, snap.shards)?.first() {
        let last = newest
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit('.').nth(1))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        stamp = stamp.max(last + 1);
    }
    let name = format!("{}{stamp:020}.snap", prefix(snap.shard, snap.shards));
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(tmp.display(), e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(tmp.display(), e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(path.display(), e))?;
    for old in list(dir, snap.shard, snap.shards)?
        .into_iter()
        .skip(keep.max(1))
    {
        std::fs::remove_file(&old).map_err(|e| Error::io(old.display(), e))?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(applied: u64) -> ShardSnapshot {
        ShardSnapshot {
            shard: 1,
            shards: 2,
            applied,
            tables: vec![TableConfig::new("w", 1)],
            store: vec![1, 2, 3],
        }
    }

    #[test]
    fn newest_good_snapshot_wins_and_old_ones_are_pruned() {
        let dir =
            std::env::temp_dir().join(format!("eddy-ps-files-{}-{}", std::process::id(), line!()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(latest(&dir, 1, 2).unwrap().0.is_none(), "missing dir: none");
        for a in 1..=4 {
            write(&dir, &snap(a), 3).unwrap();
        }
        assert_eq!(list(&dir, 1, 2).unwrap().len(), 3);
        assert!(
            list(&dir, 0, 2).unwrap().is_empty(),
            "other shards' files are not ours"
        );
        let (found, skipped) = latest(&dir, 1, 2).unwrap();
        assert_eq!(found.unwrap().1, snap(4));
        assert!(skipped.is_empty());
        // corrupt the newest: the one before it is used, and the bad one is named
        let newest = list(&dir, 1, 2).unwrap()[0].clone();
        let mut bytes = std::fs::read(&newest).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 1;
        std::fs::write(&newest, bytes).unwrap();
        let (found, skipped) = latest(&dir, 1, 2).unwrap();
        assert_eq!(found.unwrap().1.applied, 3);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].0, newest);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
