//! Which local checkpoint of a worker holds which job-wide epoch (exactly-once across
//! processes).
//!
//! A worker's checkpoints are numbered by its own dataflow, and a source injects only the
//! newest of several requested barriers, so two workers' local numbers drift apart. The
//! job-wide epoch is instead the count of the worker's checkpoint barriers at the shards
//! (its n-th checkpoint is job epoch n, restored with its checkpoint). After every barrier the
//! worker records `job epoch → local checkpoint` in `job-epochs.json` in its checkpoint
//! directory (before its checkpoint is written, so an entry may name a checkpoint that never
//! completed: readers check that it exists). The supervisor reads it to pick each worker's
//! checkpoint of the epoch it rolls back to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The file's name in a worker's checkpoint directory.
pub const FILE: &str = "job-epochs.json";

/// Entries kept (the oldest are dropped): more than any checkpoint retention.
const KEEP: usize = 64;

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The job epochs recorded in `dir`, each with its local checkpoint (empty without a file).
/// A damaged file is an error naming it.
pub fn read(dir: &Path) -> Result<BTreeMap<u64, u64>> {
    let path = path(dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::InvalidArgument(format!("{}: not a job-epoch map: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(io(&path)(e)),
    }
}

/// Records that job epoch `epoch` is local checkpoint `local` in `dir` (atomically).
pub fn record(dir: &Path, epoch: u64, local: u64) -> Result<()> {
    let mut map = read(dir)?;
    map.insert(epoch, local);
    while map.len() > KEEP {
        map.pop_first();
    }
    let path = path(dir);
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let bytes = serde_json::to_vec(&map).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

/// Forgets every recorded epoch (a worker starting from the job's start).
pub fn clear(dir: &Path) -> Result<()> {
    let path = path(dir);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_overwrite_and_the_oldest_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_empty());
        record(dir.path(), 1, 3).unwrap();
        record(dir.path(), 1, 4).unwrap();
        for e in 2..=(KEEP as u64 + 1) {
            record(dir.path(), e, e + 10).unwrap();
        }
        let map = read(dir.path()).unwrap();
        assert_eq!(map.len(), KEEP);
        assert_eq!(map.first_key_value(), Some((&2, &12)));
        std::fs::write(dir.path().join(FILE), b"{").unwrap();
        assert!(read(dir.path()).unwrap_err().to_string().contains(FILE));
        clear(dir.path()).unwrap();
        assert!(read(dir.path()).unwrap().is_empty());
    }
}
