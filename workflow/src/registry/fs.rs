//! File-system primitives of the registry: names, unique temporary paths, durable writes.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// The model bytes inside a version directory.
pub(crate) const MODEL_FILE: &str = "model.eddy";
/// The metadata inside a version directory.
pub(crate) const META_FILE: &str = "meta.json";
/// The pinned version of a model, in the model directory.
pub(crate) const PIN_FILE: &str = "PIN";

/// Checks that `name` is usable as one directory name: non-empty, at most 128 bytes of ASCII
/// letters, digits, `-`, `_` and `.`, not starting with `.` (hidden entries are the registry's
/// temporaries).
pub(crate) fn check_model_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 128 {
        Some("it is longer than 128 bytes")
    } else if name.starts_with('.') {
        Some("it starts with `.`")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Some("only ASCII letters, digits, `-`, `_` and `.` are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The version number of a `v<N>` directory name (`N` ≥ 1, decimal, no sign or leading zero).
pub(crate) fn parse_version_dir(name: &str) -> Option<u64> {
    let digits = name.strip_prefix('v')?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The directory name of a version.
pub(crate) fn version_dir_name(version: u64) -> String {
    format!("v{version}")
}

/// A name no other writer (thread or process) uses at the same time:
/// `<prefix><pid>-<nanos>-<counter>`.
pub(crate) fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}-{nanos}-{n}", std::process::id())
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Creates `path` (which must not exist), writes `bytes` and fsyncs it.
pub(crate) fn write_new_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut f = File::create_new(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().map_err(|e| Error::io(path, e))
}

/// Fsyncs a directory so renames inside it are durable. Platforms where a directory cannot be
/// opened or synced do not undo a completed rename, so that failure is ignored.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Replaces `target` with `bytes` atomically: a uniquely named temporary file beside it, fsync,
/// rename over `target`, fsync of the directory. A reader sees the old file or the new one.
pub(crate) fn replace_atomic(target: &Path, bytes: &[u8]) -> Result<()> {
    let dir = target
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let tmp = dir.join(unique_name(".tmp-"));
    if let Err(e) = write_new_synced(&tmp, bytes) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, target) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(target, e));
    }
    sync_dir(&dir);
    Ok(())
}

/// Reads a file, or `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names() {
        for ok in ["ctr", "ctr-v2", "a.b_c", "X9"] {
            assert!(check_model_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".tmp", "a/b", "..", "a b", "é"] {
            assert!(check_model_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn version_dirs() {
        assert_eq!(parse_version_dir("v1"), Some(1));
        assert_eq!(parse_version_dir("v42"), Some(42));
        assert_eq!(version_dir_name(42), "v42");
        for bad in ["v", "v0", "v01", "1", "v-1", "v1a", ".tmp-v1", "V1"] {
            assert_eq!(parse_version_dir(bad), None, "{bad}");
        }
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name(".tmp-"), unique_name(".tmp-"));
    }
}
