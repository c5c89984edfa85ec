//! A shard's snapshot files in the data directory: `shard-I-of-N.<unix-ms>.snap` (periodic
//! and final snapshots) and `shard-I-of-N.<unix-ms>.e<E>.snap` (the snapshot a job asked for
//! at its checkpoint epoch `E`), each a [snapshot frame](crate::snapshot) around
//!
//! ```text
//! shard u32 | shards u32 | applied u64 | tables (length-prefixed JSON) | store snapshot (bytes)
//!   | job (length-prefixed UTF-8) | epoch u64 | next worker id u64   (since frame version 3)
//! ```
//!
//! where `applied` counts the key updates the shard had applied when the snapshot was taken
//! (read before the store is copied, so it never overstates what the snapshot holds), `job`
//! names the job whose tables these are (empty: none) and `epoch` is the newest checkpoint
//! epoch the shard had snapshotted by then (0: none), and the next worker id shard 0 leases
//! out (so ids stay unique across its restarts). Files are written to a temporary name,
//! synced and renamed, so a crash mid-write leaves the older snapshots intact; [`latest`]
//! skips files that fail their checksum. The newest `keep` files of each kind are kept.

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
    /// The job whose tables these are (empty: none).
    pub job: String,
    /// The newest checkpoint epoch the shard had snapshotted (0: none).
    pub epoch: u64,
    /// The next worker id the shard leases out.
    pub next_worker: u64,
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
        w.bytes(self.job.as_bytes());
        w.u64(self.epoch);
        w.u64(self.next_worker);
        Ok(w.finish())
    }

    /// Decodes and checks framed bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = snapshot::open(bytes)?;
        let (shard, shards, applied) = (r.u32()?, r.u32()?, r.u64()?);
        let tables = serde_json::from_slice(r.bytes()?)
            .map_err(|e| Error::Snapshot(format!("tables: {e}")))?;
        let store = r.bytes()?.to_vec();
        let (job, epoch, next_worker) = if r.version() >= 3 {
            let job = std::str::from_utf8(r.bytes()?)
                .map_err(|e| Error::Snapshot(format!("job: {e}")))?
                .to_owned();
            (job, r.u64()?, r.u64()?)
        } else {
            (String::new(), 0, 0)
        };
        r.end()?;
        Ok(ShardSnapshot {
            shard,
            shards,
            applied,
            tables,
            store,
            job,
            epoch,
            next_worker,
        })
    }
}

fn prefix(shard: u32, shards: u32) -> String {
    format!("shard-{shard}-of-{shards}.")
}

/// One snapshot file's name, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapFile {
    /// When it was written (Unix ms, kept increasing).
    pub stamp: u64,
    /// The checkpoint epoch it was taken for (`None`: a periodic or final snapshot).
    pub epoch: Option<u64>,
    /// Its path.
    pub path: PathBuf,
}

/// Parses `<stamp>.snap` or `<stamp>.e<epoch>.snap` (after the shard's prefix).
fn parse_name(rest: &str) -> Option<(u64, Option<u64>)> {
    let rest = rest.strip_suffix(".snap")?;
    match rest.split_once('.') {
        None => Some((rest.parse().ok()?, None)),
        Some((stamp, epoch)) => Some((
            stamp.parse().ok()?,
            Some(epoch.strip_prefix('e')?.parse().ok()?),
        )),
    }
}

/// The snapshot files of shard `shard` of `shards` in `dir`, newest first.
pub fn list(dir: &Path, shard: u32, shards: u32) -> Result<Vec<PathBuf>> {
    Ok(files(dir, shard, shards)?
        .into_iter()
        .map(|f| f.path)
        .collect())
}

/// The snapshot files of shard `shard` of `shards` in `dir`, newest first, parsed.
pub fn files(dir: &Path, shard: u32, shards: u32) -> Result<Vec<SnapFile>> {
    let prefix = prefix(shard, shards);
    let mut found: Vec<SnapFile> = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir.display(), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir.display(), e))?;
        let name = entry.file_name();
        let Some((stamp, epoch)) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(parse_name)
        else {
            continue;
        };
        found.push(SnapFile {
            stamp,
            epoch,
            path: entry.path(),
        });
    }
    found.sort_unstable_by(|a, b| b.stamp.cmp(&a.stamp).then(b.path.cmp(&a.path)));
    Ok(found)
}

/// The snapshot of job `job` at checkpoint epoch `epoch` in `dir` (the newest such file that
/// decodes), or `None`.
pub fn at_epoch(
    dir: &Path,
    shard: u32,
    shards: u32,
    job: &str,
    epoch: u64,
) -> Result<Option<ShardSnapshot>> {
    for f in files(dir, shard, shards)? {
        if f.epoch != Some(epoch) {
            continue;
        }
        let bytes = std::fs::read(&f.path).map_err(|e| Error::io(f.path.display(), e))?;
        // a corrupt file is skipped like in `latest`: an older one may hold the epoch too
        if let Ok(snap) = ShardSnapshot::decode(&bytes) {
            if snap.job == job && snap.epoch == epoch {
                return Ok(Some(snap));
            }
        }
    }
    Ok(None)
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

/// Writes `snap` as a new file in `dir` (created if missing), labelled as the snapshot of
/// checkpoint epoch `snap.epoch` when `at_epoch`, and removes all but the newest `keep`
/// files of its kind (periodic, or epoch); returns the new file's path.
pub fn write(dir: &Path, snap: &ShardSnapshot, keep: usize, at_epoch: bool) -> Result<PathBuf> {
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
            .and_then(|n| n.strip_prefix(&prefix(snap.shard, snap.shards)))
            .and_then(parse_name)
            .map(|(stamp, _)| stamp)
            .unwrap_or(0);
        stamp = stamp.max(last + 1);
    }
    let label = if at_epoch {
        format!(".e{}", snap.epoch)
    } else {
        String::new()
    };
    let name = format!("{}{stamp:020}{label}.snap", prefix(snap.shard, snap.shards));
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
    let kind = files(dir, snap.shard, snap.shards)?
        .into_iter()
        .filter(|f| f.epoch.is_some() == at_epoch);
    for old in kind.skip(keep.max(1)) {
        std::fs::remove_file(&old.path).map_err(|e| Error::io(old.path.display(), e))?;
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
            job: "j".into(),
            epoch: applied,
            next_worker: 7,
        }
    }

    #[test]
    fn newest_good_snapshot_wins_and_old_ones_are_pruned() {
        let dir =
            std::env::temp_dir().join(format!("eddy-ps-files-{}-{}", std::process::id(), line!()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(latest(&dir, 1, 2).unwrap().0.is_none(), "missing dir: none");
        for a in 1..=4 {
            write(&dir, &snap(a), 3, false).unwrap();
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

    #[test]
    fn epoch_snapshots_are_found_by_job_and_epoch_and_kept_apart() {
        let dir =
            std::env::temp_dir().join(format!("eddy-ps-files-{}-{}", std::process::id(), line!()));
        let _ = std::fs::remove_dir_all(&dir);
        for e in 1..=3 {
            write(&dir, &snap(e), 2, true).unwrap();
            write(&dir, &snap(10 + e), 2, false).unwrap();
        }
        let all = files(&dir, 1, 2).unwrap();
        assert_eq!(all.len(), 4, "two of each kind kept: {all:?}");
        assert_eq!(all.iter().filter(|f| f.epoch.is_some()).count(), 2);
        assert_eq!(at_epoch(&dir, 1, 2, "j", 3).unwrap().unwrap(), snap(3));
        assert_eq!(at_epoch(&dir, 1, 2, "j", 2).unwrap().unwrap().applied, 2);
        assert!(at_epoch(&dir, 1, 2, "j", 1).unwrap().is_none(), "pruned");
        assert!(
            at_epoch(&dir, 1, 2, "other", 3).unwrap().is_none(),
            "another job's"
        );
        // the newest file of either kind is what a restart restores
        assert_eq!(latest(&dir, 1, 2).unwrap().0.unwrap().1, snap(13));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
