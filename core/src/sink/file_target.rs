//! What the file sinks share: the per-subtask file name, a buffered file that can be made
//! durable, and the mapping of writer errors onto [`Error::Io`] naming the file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::operator::TaskInfo;

/// The file a subtask writes: `path` itself when the sink runs with parallelism 1, otherwise
/// `stem-<subtask>.ext` beside it (`out/data.csv` → `out/data-0.csv`, `out/data-1.csv`; a path
/// without an extension gets no extension: `out/data` → `out/data-0`).
pub(crate) fn subtask_path(path: &Path, task: &TaskInfo) -> PathBuf {
    if task.parallelism <= 1 {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{}.{}", task.subtask, ext.to_string_lossy()),
        None => format!("{stem}-{}", task.subtask),
    };
    path.with_file_name(name)
}

/// Checks a sink's `path` setting: it must name a file.
pub(crate) fn check_path(key: &str, path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() || path.file_name().is_none() {
        return Err(Error::config(
            key,
            format!("`{}` does not name a file", path.display()),
        ));
    }
    Ok(())
}

/// Creates the parent directories of `path`.
pub(crate) fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
        }
        _ => Ok(()),
    }
}

/// Makes a rename inside `dir` durable (fsync of the directory; a no-op where directories
/// cannot be opened, e.g. on Windows).
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if cfg!(unix) {
        let d = File::open(dir).map_err(|e| Error::io(dir, e))?;
        d.sync_all().map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

/// An Arrow writer error on `path`: I/O failures become [`Error::Io`] naming the file, the rest
/// (an unsupported type, say) a schema error naming it.
pub(crate) fn arrow_error(path: &Path, e: arrow::error::ArrowError) -> Error {
    match e {
        arrow::error::ArrowError::IoError(_, io) => Error::io(path, io),
        other => Error::schema(path.display().to_string(), other.to_string()),
    }
}

/// A Parquet writer error on `path`, classified like [`arrow_error`].
pub(crate) fn parquet_error(path: &Path, e: parquet::errors::ParquetError) -> Error {
    match e {
        parquet::errors::ParquetError::External(inner) => {
            match inner.downcast::<std::io::Error>() {
                Ok(io) => Error::io(path, *io),
                Err(other) => Error::io(path, std::io::Error::other(other)),
            }
        }
        other => Error::schema(path.display().to_string(), other.to_string()),
    }
}

/// A buffered file being written by one sink subtask.
#[derive(Debug)]
pub(crate) struct FileTarget {
    path: PathBuf,
    out: BufWriter<File>,
}

impl FileTarget {
    /// Creates (or truncates) `path`, creating its parent directories.
    pub(crate) fn create(path: PathBuf) -> Result<Self> {
        create_parent(&path)?;
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(FileTarget {
            path,
            out: BufWriter::with_capacity(1 << 16, file),
        })
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The buffered writer.
    pub(crate) fn writer(&mut self) -> &mut BufWriter<File> {
        &mut self.out
    }

    /// Flushes the buffer, and fsyncs the file if `sync`.
    pub(crate) fn finish(&mut self, sync: bool) -> Result<()> {
        match sync {
            true => self.sync(),
            false => self.out.flush().map_err(|e| Error::io(&self.path, e)),
        }
    }

    /// Flushes the buffer and fsyncs the file: what was written so far is durable.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn task(subtask: usize, parallelism: usize) -> TaskInfo {
        TaskInfo {
            operator: Arc::from("out"),
            subtask,
            parallelism,
            key_groups: crate::keys::DEFAULT_KEY_GROUPS,
        }
    }

    #[test]
    fn subtask_paths() {
        let p = Path::new("out/data.csv");
        assert_eq!(subtask_path(p, &task(0, 1)), PathBuf::from("out/data.csv"));
        assert_eq!(
            subtask_path(p, &task(1, 3)),
            PathBuf::from("out/data-1.csv")
        );
        assert_eq!(
            subtask_path(Path::new("out/data"), &task(2, 3)),
            PathBuf::from("out/data-2")
        );
        assert_eq!(
            subtask_path(Path::new("a.snappy.parquet"), &task(0, 2)),
            PathBuf::from("a.snappy-0.parquet")
        );
    }

    #[test]
    fn check_path_rejects_non_files() {
        assert!(check_path("csv.path", Path::new("")).is_err());
        assert!(check_path("csv.path", Path::new("/")).is_err());
        assert!(check_path("csv.path", Path::new("x.csv")).is_ok());
    }

    #[test]
    fn create_makes_parents_and_errors_name_the_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("a/b/c.txt");
        let mut t = FileTarget::create(path.clone())?;
        t.writer()
            .write_all(b"hello")
            .map_err(|e| Error::io(&path, e))?;
        t.sync()?;
        assert_eq!(
            std::fs::read(&path).map_err(|e| Error::io(&path, e))?,
            b"hello"
        );
        // a file where a directory is needed
        let bad = path.join("d.txt");
        match FileTarget::create(bad) {
            Err(Error::Io { path: p, .. }) => assert_eq!(p, path),
            other => panic!("expected an I/O error, got {other:?}"),
        }
        Ok(())
    }
}
