//! Two-phase output for the file sinks of a checkpointed job: one part file per epoch and
//! subtask, invisible until the epoch's checkpoint completed.
//!
//! The part files are written through a [`PartFile`]: a buffered text file
//! ([`FileTarget`], the CSV and JSON-lines sinks) or a Parquet writer, which
//! [`seal`](PartFile::seal) completes (footer) before the file is renamed.
//!
//! The parts of a sink whose `path` is `out/data.csv` live in the directory `out/data/` (the
//! path without its extension). Subtask `s` writes
//!
//! - `.inprogress-<s>.csv` — rows since the last barrier, being written;
//! - `.pending-<s>-<epoch>.csv` — sealed by [`pre_commit`](EpochParts::pre_commit): flushed,
//!   fsynced, renamed; durable but not yet part of the output;
//! - `part-<s>-<epoch>.csv` — published by [`commit`](EpochParts::commit) (a rename, then an
//!   fsync of the directory). The output of a job is exactly the set of `part-*` files.
//!
//! Subtask and epoch are zero-padded (5 and 10 digits) so that names sort by subtask, then
//! epoch. An epoch that received no rows writes no file. On [`close`](EpochParts::close) the
//! rows since the last barrier are published as the part of the epoch after the last one seen.
//!
//! On open, what an earlier attempt left is reconciled with the checkpoint the task restarts
//! from (`restored`): pending epochs up to it are published (their checkpoint completed, only
//! the commit was lost), later pending epochs and in-progress files are deleted, and so are
//! parts of later epochs (published by an attempt whose checkpoint is no longer the one
//! restored: replay writes them again). Without a restored checkpoint every file of the
//! subtask is deleted: the job starts its output afresh, like a file sink truncating its file.

use std::fs;
use std::path::{Path, PathBuf};

use super::file_target::{sync_dir, FileTarget};
use crate::error::{Error, Result};
use crate::message::Epoch;

const PART: &str = "part-";
const PENDING: &str = ".pending-";
const IN_PROGRESS: &str = ".inprogress-";

/// The parts directory of a sink writing `path`: the path without its extension.
pub(crate) fn parts_dir(path: &Path) -> PathBuf {
    path.with_extension("")
}

/// A file being written as the in-progress part of an epoch.
pub(crate) trait PartFile {
    /// Where it is being written.
    fn path(&self) -> &Path;
    /// Completes the file and makes it durable (flush, footer, fsync): it is renamed next,
    /// and never written again.
    fn seal(&mut self) -> Result<()>;
}

impl PartFile for FileTarget {
    fn path(&self) -> &Path {
        FileTarget::path(self)
    }

    fn seal(&mut self) -> Result<()> {
        self.sync()
    }
}

/// The epoch files of one sink subtask.
#[derive(Debug)]
pub(crate) struct EpochParts<F: PartFile = FileTarget> {
    dir: PathBuf,
    subtask: usize,
    /// `.csv`, `.jsonl`, or empty.
    ext: String,
    /// The newest epoch sealed or restored (0: none).
    last_epoch: u64,
    in_progress: Option<F>,
    /// Sealed epochs waiting for their commit, oldest first.
    sealed: Vec<u64>,
}

impl EpochParts<FileTarget> {
    /// The in-progress text file, created on first use; `true` when it was just created.
    pub(crate) fn writer(&mut self) -> Result<(&mut FileTarget, bool)> {
        self.writer_with(FileTarget::create)
    }
}

/// What a file name in the parts directory says.
#[derive(Debug, PartialEq)]
enum Kind {
    Part(u64),
    Pending(u64),
    InProgress,
}

impl<F: PartFile> EpochParts<F> {
    /// Opens the parts of subtask `subtask` for the sink writing `path`, reconciling what an
    /// earlier attempt left with `restored` (see the module docs).
    pub(crate) fn open(path: &Path, subtask: usize, restored: Option<Epoch>) -> Result<Self> {
        let dir = parts_dir(path);
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let ext = path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let mut parts = EpochParts {
            dir,
            subtask,
            ext,
            last_epoch: restored.map_or(0, |e| e.0),
            in_progress: None,
            sealed: Vec::new(),
        };
        parts.reconcile(restored)?;
        Ok(parts)
    }

    fn name(&self, kind: &Kind) -> PathBuf {
        let (s, ext) = (self.subtask, &self.ext);
        self.dir.join(match kind {
            Kind::Part(e) => format!("{PART}{s:05}-{e:010}{ext}"),
            Kind::Pending(e) => format!("{PENDING}{s:05}-{e:010}{ext}"),
            Kind::InProgress => format!("{IN_PROGRESS}{s:05}{ext}"),
        })
    }

    fn parse(&self, file: &str) -> Option<Kind> {
        let rest = file.strip_suffix(self.ext.as_str())?;
        let mine = |rest: &str| -> Option<u64> {
            let (s, e) = rest.split_once('-')?;
            (s.parse::<usize>().ok()? == self.subtask).then_some(())?;
            e.parse().ok()
        };
        if let Some(r) = rest.strip_prefix(PART) {
            return mine(r).map(Kind::Part);
        }
        if let Some(r) = rest.strip_prefix(PENDING) {
            return mine(r).map(Kind::Pending);
        }
        let s = rest.strip_prefix(IN_PROGRESS)?;
        (s.parse::<usize>().ok()? == self.subtask).then_some(Kind::InProgress)
    }

    fn reconcile(&mut self, restored: Option<Epoch>) -> Result<()> {
        let keep_upto = restored.map_or(0, |e| e.0);
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut to_publish = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let Some(kind) = self.parse(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            match kind {
                Kind::Pending(e) if e <= keep_upto => to_publish.push(e),
                Kind::Part(e) if e <= keep_upto => {}
                _ => {
                    let p = entry.path();
                    fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                }
            }
        }
        to_publish.sort_unstable();
        self.sealed = to_publish;
        self.commit(Epoch(keep_upto))
    }

    /// The in-progress file, when rows were written since the last barrier.
    pub(crate) fn in_progress(&mut self) -> Option<&mut F> {
        self.in_progress.as_mut()
    }

    /// Whether an epoch up to `epoch` is sealed and waiting for its commit.
    pub(crate) fn sealed_upto(&self, epoch: Epoch) -> bool {
        self.sealed.iter().any(|&e| e <= epoch.0)
    }

    /// The directory of the parts.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of this subtask's published part of `epoch`.
    pub(crate) fn part_path(&self, epoch: u64) -> PathBuf {
        self.name(&Kind::Part(epoch))
    }

    /// The epochs of this subtask's published parts, oldest first (a directory listing).
    pub(crate) fn published(&self) -> Result<Vec<u64>> {
        let mut epochs = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))? {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            if let Some(Kind::Part(e)) = self.parse(&entry.file_name().to_string_lossy()) {
                epochs.push(e);
            }
        }
        epochs.sort_unstable();
        Ok(epochs)
    }

    /// The in-progress file, created by `create` (given its path) on first use; `true` when it
    /// was just created (a CSV sink writes its header then).
    pub(crate) fn writer_with(
        &mut self,
        create: impl FnOnce(PathBuf) -> Result<F>,
    ) -> Result<(&mut F, bool)> {
        let fresh = self.in_progress.is_none();
        let file = match self.in_progress.take() {
            Some(file) => file,
            None => create(self.name(&Kind::InProgress))?,
        };
        Ok((self.in_progress.insert(file), fresh))
    }

    /// Seals the rows since the last barrier as epoch `epoch`: flushed, fsynced, renamed to
    /// its pending name.
    pub(crate) fn pre_commit(&mut self, epoch: Epoch) -> Result<()> {
        self.last_epoch = self.last_epoch.max(epoch.0);
        if let Some(mut t) = self.in_progress.take() {
            t.seal()?;
            let to = self.name(&Kind::Pending(epoch.0));
            fs::rename(t.path(), &to).map_err(|e| Error::io(&to, e))?;
            sync_dir(&to)?;
            self.sealed.push(epoch.0);
        }
        Ok(())
    }

    /// Publishes every sealed epoch up to `epoch`. Idempotent.
    pub(crate) fn commit(&mut self, epoch: Epoch) -> Result<()> {
        let (publish, keep): (Vec<u64>, Vec<u64>) =
            self.sealed.iter().partition(|&&e| e <= epoch.0);
        self.sealed = keep;
        for e in &publish {
            let (from, to) = (self.name(&Kind::Pending(*e)), self.name(&Kind::Part(*e)));
            fs::rename(&from, &to).map_err(|err| Error::io(&from, err))?;
        }
        if let Some(e) = publish.last() {
            sync_dir(&self.name(&Kind::Part(*e)))?;
        }
        Ok(())
    }

    /// The input ended: publishes what is sealed, and the rows since the last barrier as the
    /// part of the next epoch.
    pub(crate) fn close(&mut self) -> Result<()> {
        self.commit(Epoch(u64::MAX))?;
        if let Some(mut t) = self.in_progress.take() {
            t.seal()?;
            let to = self.name(&Kind::Part(self.last_epoch + 1));
            fs::rename(t.path(), &to).map_err(|e| Error::io(&to, e))?;
            sync_dir(&to)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn write(parts: &mut EpochParts, text: &str) {
        let (t, _) = parts.writer().unwrap();
        t.writer().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn epochs_are_staged_then_published_and_restore_reconciles() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("out.csv");
        let dir = tmp.path().join("out");
        let mut p = EpochParts::<FileTarget>::open(&path, 1, None).unwrap();
        write(&mut p, "a\n");
        p.pre_commit(Epoch(1)).unwrap();
        p.pre_commit(Epoch(2)).unwrap(); // nothing written: no file
        write(&mut p, "b\n");
        p.pre_commit(Epoch(3)).unwrap();
        write(&mut p, "c\n");
        assert_eq!(
            names(&dir),
            [
                ".inprogress-00001.csv",
                ".pending-00001-0000000001.csv",
                ".pending-00001-0000000003.csv"
            ]
        );
        p.commit(Epoch(2)).unwrap();
        p.commit(Epoch(2)).unwrap(); // idempotent
        assert_eq!(
            names(&dir),
            [
                ".inprogress-00001.csv",
                ".pending-00001-0000000003.csv",
                "part-00001-0000000001.csv"
            ]
        );
        drop(p);
        // another subtask's files are left alone
        fs::write(dir.join("part-00002-0000000009.csv"), "x").unwrap();
        // restart from checkpoint 3: pending 3 is published, in-progress rows are dropped
        let mut p = EpochParts::<FileTarget>::open(&path, 1, Some(Epoch(3))).unwrap();
        assert_eq!(
            names(&dir),
            [
                "part-00001-0000000001.csv",
                "part-00001-0000000003.csv",
                "part-00002-0000000009.csv"
            ]
        );
        write(&mut p, "d\n");
        p.close().unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("part-00001-0000000004.csv")).unwrap(),
            "d\n"
        );
        // restart from checkpoint 1: later parts are withdrawn; a fresh start clears all
        EpochParts::<FileTarget>::open(&path, 1, Some(Epoch(1))).unwrap();
        assert_eq!(
            names(&dir),
            ["part-00001-0000000001.csv", "part-00002-0000000009.csv"]
        );
        EpochParts::<FileTarget>::open(&path, 1, None).unwrap();
        assert_eq!(names(&dir), ["part-00002-0000000009.csv"]);
    }
}
