//! [`CheckpointStore`]: completed checkpoints kept in a local directory.
//!
//! Each checkpoint is a directory `chk-<epoch>/` (layout in the `format` module). Every file is
//! written under a temporary name, fsynced and renamed into place; the directory is fsynced;
//! `MANIFEST.json` is written last, so its presence means the checkpoint is complete. On
//! load, the manifest's own checksum and every file's length and xxh3-64 checksum are checked.
//! A checkpoint that does not verify is refused, loudly, never half-used.
//!
//! Chunked states (incremental snapshots) keep runs of references in the checkpoint and their
//! chunks in segment files of the shared `segments/` directory (see `segments`): one per task,
//! stage and checkpoint, written before the manifest, resolved and checked on load, deleted by
//! retention once no retained checkpoint lists them.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::format::{self, FileEntry, Manifest, TaskEntry, FORMAT_VERSION, MANIFEST};
use super::segments::{self, SegmentWrite};
use super::{CompletedCheckpoint, TaskSnapshot};
use crate::error::{Error, Result};
use crate::message::Epoch;

const DIR_PREFIX: &str = "chk-";
const TMP_PREFIX: &str = ".tmp-";
/// The subdirectory of named savepoints, which retention and [`CheckpointStore::clear`] leave
/// alone.
pub const SAVEPOINTS: &str = "savepoints";

/// A local directory of completed checkpoints, keeping the newest `retain` of them.
///
/// One store per job directory, with one writer at a time.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    retain: usize,
}

impl CheckpointStore {
    /// Opens (creating it if needed) the store in `dir`, keeping the newest `retain` (≥ 1)
    /// complete checkpoints after each write.
    pub fn open(dir: impl Into<PathBuf>, retain: usize) -> Result<Self> {
        let dir = dir.into();
        if retain == 0 {
            return Err(Error::config(
                "checkpoint.retain",
                "must keep at least 1 checkpoint, got 0",
            ));
        }
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(CheckpointStore { dir, retain })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory checkpoint `epoch` lives in.
    pub fn checkpoint_dir(&self, epoch: Epoch) -> PathBuf {
        self.dir.join(format!("{DIR_PREFIX}{epoch}"))
    }

    /// Writes `checkpoint` durably and returns its directory, then applies retention.
    ///
    /// An incomplete directory of the same epoch (left by a crash) is replaced; a complete
    /// one is an error, since epochs only grow.
    pub fn write(&self, checkpoint: &CompletedCheckpoint) -> Result<PathBuf> {
        self.write_faulty(checkpoint, None)
    }

    /// [`write`](CheckpointStore::write), failing at `fault` (fault injection): the
    /// checkpoint is left incomplete, as a crash would leave it.
    pub(crate) fn write_faulty(
        &self,
        checkpoint: &CompletedCheckpoint,
        fault: Option<WriteFault>,
    ) -> Result<PathBuf> {
        let epoch = checkpoint.epoch;
        let dir = self.checkpoint_dir(epoch);
        check_task_names(checkpoint)?;
        if dir.exists() {
            if dir.join(MANIFEST).exists() && self.verify(epoch).is_ok() {
                return Err(Error::Internal(format!(
                    "checkpoint {epoch} already exists in {}",
                    dir.display()
                )));
            }
            tracing::warn!(dir = %dir.display(), "replacing an incomplete or corrupt checkpoint");
            remove_checkpoint_dir(&dir)?;
        }
        fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        sync_dir(&self.dir)?;

        let mut tasks = Vec::with_capacity(checkpoint.tasks.len());
        let mut files = Vec::with_capacity(checkpoint.tasks.len());
        let segment_dir = self.dir.join(segments::SEGMENTS);
        let known = self.known_segments(epoch)?;
        #[cfg(test)]
        let fail_segment = fault == Some(WriteFault::Segment);
        #[cfg(not(test))]
        let fail_segment = false;
        let mut used = BTreeMap::new();
        for (i, task) in checkpoint.tasks.iter().enumerate() {
            let name = format!("task-{i}.bin");
            let seg = SegmentWrite {
                dir: &segment_dir,
                epoch: epoch.0,
                known: &known,
                fail: fail_segment,
            };
            let states = segments::externalize(&seg, &task.task, &task.states, &mut used)?;
            let bytes = format::encode_states(&states).map_err(|m| {
                Error::Internal(format!("checkpoint {epoch}, task `{}`: {m}", task.task))
            })?;
            write_atomic(&dir, &name, &bytes)?;
            files.push(FileEntry {
                name: name.clone(),
                len: bytes.len() as u64,
                xxh3: format::checksum(&bytes),
            });
            let inflight = match &task.inflight {
                Some(bytes) => {
                    let name = format!("task-{i}.inflight");
                    write_atomic(&dir, &name, bytes)?;
                    files.push(FileEntry {
                        name: name.clone(),
                        len: bytes.len() as u64,
                        xxh3: format::checksum(bytes),
                    });
                    Some(name)
                }
                None => None,
            };
            if fault == Some(WriteFault::AfterFirstTaskFile) {
                return Err(injected(&dir, "after the first task file"));
            }
            tasks.push(TaskEntry {
                task: task.task.clone(),
                subtask: task.subtask,
                parallelism: task.parallelism,
                source: task.source.clone(),
                operators: task.operators.clone(),
                position: task.position.clone(),
                file: name,
                inflight,
                finished: task.finished,
            });
        }
        sync_dir(&dir)?;
        if !used.is_empty() {
            sync_dir(&segment_dir)?;
        }

        let manifest = Manifest {
            format: FORMAT_VERSION,
            epoch: epoch.0,
            created_ms: checkpoint.created_ms,
            key_groups: checkpoint.key_groups,
            tasks,
            files,
            segments: used.into_values().collect(),
        };
        let bytes = format::encode_manifest(&manifest).map_err(|m| {
            Error::Internal(format!("checkpoint {epoch}: cannot encode manifest: {m}"))
        })?;
        if fault == Some(WriteFault::Manifest) {
            // the manifest's temporary file is written, the rename never happens
            let tmp = dir.join(format!("{TMP_PREFIX}{MANIFEST}"));
            fs::write(&tmp, &bytes[..bytes.len() / 2]).map_err(|e| Error::io(&tmp, e))?;
            return Err(injected(&dir, "while writing the manifest"));
        }
        write_atomic(&dir, MANIFEST, &bytes)?;
        sync_dir(&dir)?;

        // a final checkpoint keeps the one before it, which a new job resumes from
        self.retain_newest(epoch, self.retain + usize::from(checkpoint.is_final()))?;
        Ok(dir)
    }

    /// The epochs of complete checkpoints (those with a manifest), oldest first. Their
    /// contents are verified when loaded.
    pub fn list(&self) -> Result<Vec<Epoch>> {
        Ok(self
            .scan()?
            .into_iter()
            .filter(|&e| self.checkpoint_dir(e).join(MANIFEST).is_file())
            .collect())
    }

    /// Removes every checkpoint of the store, complete or not, and their segments (a job that finished its bounded
    /// input has nothing left to resume, as Flink discards the checkpoints of a finished job).
    /// Other files in the directory are left alone.
    pub fn clear(&self) -> Result<()> {
        for epoch in self.scan()? {
            let dir = self.checkpoint_dir(epoch);
            fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let segment_dir = self.dir.join(segments::SEGMENTS);
        match fs::remove_dir_all(&segment_dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(segment_dir, e)),
            _ => Ok(()),
        }
    }

    /// Loads checkpoint `epoch`, verifying it completely. The error names the file and what
    /// failed.
    pub fn load(&self, epoch: Epoch) -> Result<CompletedCheckpoint> {
        load_dir(&self.checkpoint_dir(epoch), Some(epoch))
    }

    /// The directory of named savepoints, `<dir>/savepoints`.
    pub fn savepoints_dir(&self) -> PathBuf {
        self.dir.join(SAVEPOINTS)
    }

    /// Copies completed checkpoint `epoch` to the savepoint `savepoints/<name>` and returns its
    /// directory: a checkpoint that retention never deletes, which a new job (possibly at
    /// another parallelism) starts from with
    /// [`CheckpointConfig::restore_from`](crate::dataflow::CheckpointConfig::restore_from).
    /// The copy is written under a temporary name, fsynced, renamed into place and verified.
    /// An existing savepoint of that name is an error.
    pub fn save_as(&self, epoch: Epoch, name: &str) -> Result<PathBuf> {
        check_savepoint_name(name)?;
        let source = self.checkpoint_dir(epoch);
        self.verify(epoch)?;
        let root = self.savepoints_dir();
        fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let target = root.join(name);
        if target.exists() {
            return Err(Error::config(
                "savepoint",
                format!("savepoint `{name}` exists already: {}", target.display()),
            ));
        }
        let tmp = root.join(format!("{TMP_PREFIX}{name}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let entries = fs::read_dir(&source).map_err(|e| Error::io(&source, e))?;
        for entry in entries {
            let from = entry.map_err(|e| Error::io(&source, e))?.path();
            let Some(file) = from.file_name() else {
                continue;
            };
            let to = tmp.join(file);
            fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
            File::open(&to)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&to, e))?;
        }
        sync_dir(&tmp)?;
        let manifest = read_manifest(&source)?;
        segments::share(
            &self.dir.join(segments::SEGMENTS),
            &root.join(segments::SEGMENTS),
            &manifest.segments,
        )?;
        fs::rename(&tmp, &target).map_err(|e| Error::io(&target, e))?;
        sync_dir(&root)?;
        load_dir(&target, Some(epoch))?;
        Ok(target)
    }

    /// The newest checkpoint that verifies completely, or `None` when there is none at all.
    ///
    /// Every newer checkpoint that is incomplete or corrupt is refused with a warning naming
    /// its directory and the reason. If checkpoints were completed but not one verifies, this
    /// is an error rather than `None`: starting from scratch would silently lose state.
    pub fn latest(&self) -> Result<Option<CompletedCheckpoint>> {
        self.latest_matching(|_| true)
    }

    /// Like [`latest`](CheckpointStore::latest), passing over final checkpoints (every task
    /// finished, [`CompletedCheckpoint::is_final`]): what a new job resumes from. A job that
    /// ended is resumed from before its end, so that a stopped followed input goes on and its
    /// operators restore their state (a final checkpoint records none); within a running job a
    /// restart restores the final checkpoint itself.
    pub fn latest_resumable(&self) -> Result<Option<CompletedCheckpoint>> {
        self.latest_matching(|c| !c.is_final())
    }

    /// The newest checkpoint that verifies and that `wanted` accepts (see
    /// [`latest`](CheckpointStore::latest)).
    pub(crate) fn latest_matching(
        &self,
        wanted: impl Fn(&CompletedCheckpoint) -> bool,
    ) -> Result<Option<CompletedCheckpoint>> {
        let mut refused = Vec::new();
        for epoch in self.scan()?.into_iter().rev() {
            let dir = self.checkpoint_dir(epoch);
            if !dir.join(MANIFEST).exists() {
                tracing::warn!(
                    dir = %dir.display(),
                    "refusing checkpoint {epoch}: incomplete, no {MANIFEST} (crash during write?)"
                );
                continue;
            }
            match self.load(epoch) {
                Ok(checkpoint) if !wanted(&checkpoint) => {}
                Ok(checkpoint) => return Ok(Some(checkpoint)),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "refusing checkpoint {epoch}: {e}");
                    refused.push(format!("{epoch}: {e}"));
                }
            }
        }
        if refused.is_empty() {
            Ok(None)
        } else {
            Err(corrupt(
                self.dir.clone(),
                format!("no completed checkpoint verifies ({})", refused.join("; ")),
            ))
        }
    }

    /// Checks checkpoint `epoch` completely without keeping its contents.
    fn verify(&self, epoch: Epoch) -> Result<()> {
        self.load(epoch).map(|_| ())
    }

    /// Every `chk-<epoch>` directory, complete or not, oldest first.
    fn scan(&self) -> Result<Vec<Epoch>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut epochs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name();
            let Some(epoch) = name.to_str().and_then(parse_dir_name) else {
                continue;
            };
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                epochs.push(epoch);
            }
        }
        epochs.sort();
        Ok(epochs)
    }

    /// Keeps the newest `retain` sound checkpoints up to `written` and deletes every other
    /// checkpoint directory older than `written` (older checkpoints, crash leftovers, corrupt
    /// ones). "Sound" checks the manifest and file lengths, not the data checksums: rereading
    /// every kept checkpoint on each write would cost more than the check is worth; `load`
    /// checks them all.
    fn retain_newest(&self, written: Epoch, retain: usize) -> Result<()> {
        let mut kept = 0usize;
        for epoch in self.scan()?.into_iter().rev() {
            if epoch > written {
                continue;
            }
            let dir = self.checkpoint_dir(epoch);
            if kept < retain && (epoch == written || is_sound(&dir)) {
                kept += 1;
                continue;
            }
            remove_checkpoint_dir(&dir)?;
        }
        sync_dir(&self.dir)?;
        // a segment goes once no checkpoint left lists it (savepoints keep their own)
        let keep: HashSet<String> = self.known_segments(Epoch(u64::MAX))?.into_keys().collect();
        segments::collect_garbage(&self.dir.join(segments::SEGMENTS), &keep).map(|_| ())
    }

    /// The segments that the checkpoints before `before` list (complete ones, whose manifest
    /// reads): what a new checkpoint may reference and what retention keeps.
    fn known_segments(&self, before: Epoch) -> Result<BTreeMap<String, FileEntry>> {
        let mut known = BTreeMap::new();
        for epoch in self.scan()?.into_iter().filter(|&e| e < before) {
            if let Ok(m) = read_manifest(&self.checkpoint_dir(epoch)) {
                known.extend(m.segments.into_iter().map(|s| (s.name.clone(), s)));
            }
        }
        Ok(known)
    }
}

/// Loads the checkpoint in `dir` (a `chk-<epoch>` directory or a savepoint), verifying it
/// completely; with `epoch`, its manifest must be of that epoch. The error names the file and
/// what failed.
pub fn load_dir(dir: &Path, epoch: Option<Epoch>) -> Result<CompletedCheckpoint> {
    let dir = dir.to_path_buf();
    let manifest = read_manifest(&dir)?;
    if let Some(epoch) = epoch.filter(|e| e.0 != manifest.epoch) {
        return Err(corrupt(
            dir.join(MANIFEST),
            format!("manifest is for epoch {}, expected {epoch}", manifest.epoch),
        ));
    }
    let epoch = Epoch(manifest.epoch);
    let mut tasks = Vec::with_capacity(manifest.tasks.len());
    for entry in &manifest.tasks {
        let bytes = read_verified(&dir, &manifest, &entry.file)?;
        let states =
            format::decode_states(&bytes).map_err(|m| corrupt(dir.join(&entry.file), m))?;
        let segment_dir = segments::segment_dir_of(&dir);
        let states = states
            .into_iter()
            .enumerate()
            .map(|(stage, s)| {
                s.map(|s| {
                    segments::resolve(&segment_dir, &manifest.segments, &entry.task, stage, s)
                })
                .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        let inflight = match &entry.inflight {
            Some(name) => Some(read_verified(&dir, &manifest, name)?),
            None => None,
        };
        if !entry.finished && entry.operators.len() != states.len() {
            return Err(corrupt(
                dir.join(&entry.file),
                format!(
                    "task `{}` has {} states for {} operators",
                    entry.task,
                    states.len(),
                    entry.operators.len()
                ),
            ));
        }
        tasks.push(TaskSnapshot {
            task: entry.task.clone(),
            subtask: entry.subtask,
            parallelism: entry.parallelism,
            source: entry.source.clone(),
            operators: entry.operators.clone(),
            position: entry.position.clone(),
            states,
            inflight,
            finished: entry.finished,
        });
    }
    Ok(CompletedCheckpoint {
        epoch,
        created_ms: manifest.created_ms,
        key_groups: manifest.key_groups,
        tasks,
    })
}

/// A savepoint name is one plain path component.
fn check_savepoint_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        Ok(())
    } else {
        Err(Error::config(
            "savepoint",
            format!("`{name}` is not a savepoint name: use letters, digits, `-`, `_` and `.`"),
        ))
    }
}

/// Where an injected fault makes a checkpoint write fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteFault {
    /// After the first task file was written, before the others and the manifest.
    AfterFirstTaskFile,
    /// While the manifest is written.
    Manifest,
    /// While the first segment is written (before any task file and the manifest).
    #[cfg(test)]
    Segment,
}

fn injected(dir: &Path, when: &str) -> Error {
    Error::io(
        dir,
        io::Error::other(format!("injected fault writing the checkpoint {when}")),
    )
}

/// `chk-<n>` with `n` written exactly as an epoch is displayed (no sign, no leading zeros).
fn parse_dir_name(name: &str) -> Option<Epoch> {
    let digits = name.strip_prefix(DIR_PREFIX)?;
    let n: u64 = digits.parse().ok()?;
    (n.to_string() == digits).then_some(Epoch(n))
}

fn check_task_names(checkpoint: &CompletedCheckpoint) -> Result<()> {
    let mut seen = HashSet::new();
    for task in &checkpoint.tasks {
        if !seen.insert(task.task.as_str()) {
            return Err(Error::Internal(format!(
                "checkpoint {}: task `{}` appears twice",
                checkpoint.epoch, task.task
            )));
        }
    }
    Ok(())
}

/// An `Error::Io` of kind `InvalidData` on `path`: the file is there but its contents are wrong.
pub(super) fn corrupt(path: PathBuf, message: String) -> Error {
    Error::io(path, io::Error::new(io::ErrorKind::InvalidData, message))
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
    format::decode_manifest(&bytes).map_err(|m| corrupt(path, m))
}

/// Reads `name` from `dir` and checks it against its manifest entry.
fn read_verified(dir: &Path, manifest: &Manifest, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    let entry = manifest
        .files
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| corrupt(path.clone(), "not listed in the manifest's files".into()))?;
    let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
    if bytes.len() as u64 != entry.len {
        return Err(corrupt(
            path,
            format!(
                "length mismatch: manifest says {} bytes, file has {}",
                entry.len,
                bytes.len()
            ),
        ));
    }
    let actual = format::checksum(&bytes);
    if actual != entry.xxh3 {
        return Err(corrupt(
            path,
            format!(
                "checksum mismatch: manifest says xxh3 {}, file hashes to {actual}",
                entry.xxh3
            ),
        ));
    }
    Ok(bytes)
}

/// Manifest verifies and every listed file exists with the listed length.
fn is_sound(dir: &Path) -> bool {
    read_manifest(dir).is_ok_and(|m| {
        m.files.iter().all(|f| {
            fs::metadata(dir.join(&f.name)).is_ok_and(|md| md.is_file() && md.len() == f.len)
        })
    })
}

/// Writes `bytes` to `dir/.tmp-<name>`, fsyncs it and renames it to `dir/<name>`. The caller
/// fsyncs `dir` to make the rename durable.
pub(super) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
    let mut file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(file);
    let path = dir.join(name);
    fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}

/// Makes renames and removals inside `dir` durable. Directories cannot be opened for syncing
/// on every platform; there the rename is as durable as the OS makes it.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Removes a checkpoint directory, its manifest first, so that a crash midway leaves an
/// incomplete checkpoint rather than a damaged complete one.
fn remove_checkpoint_dir(dir: &Path) -> Result<()> {
    let manifest = dir.join(MANIFEST);
    match fs::remove_file(&manifest) {
        Ok(()) => sync_dir(dir)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(manifest, e)),
    }
    fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_parse_only_in_canonical_form() {
        assert_eq!(parse_dir_name("chk-0"), Some(Epoch(0)));
        assert_eq!(parse_dir_name("chk-17"), Some(Epoch(17)));
        assert_eq!(parse_dir_name("chk-017"), None);
        assert_eq!(parse_dir_name("chk-+1"), None);
        assert_eq!(parse_dir_name("chk-"), None);
        assert_eq!(parse_dir_name("chk-1.tmp"), None);
        assert_eq!(parse_dir_name("other-1"), None);
    }

    #[test]
    fn retain_zero_is_a_config_error() {
        let dir = std::env::temp_dir().join("eddy-checkpoint-retain-zero-never-created");
        let err = CheckpointStore::open(&dir, 0).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("checkpoint.retain")),
            "{err:?}"
        );
        assert!(!dir.exists());
    }

    #[test]
    fn duplicate_task_names_are_refused_before_anything_is_written() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let store = CheckpointStore::open(tmp.path(), 1)?;
        let task = TaskSnapshot::new("a[0]");
        let chk = CompletedCheckpoint::new(Epoch(1), vec![task.clone(), task]);
        let err = store.write(&chk).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("appears twice")),
            "{err:?}"
        );
        assert!(!store.checkpoint_dir(Epoch(1)).exists());
        Ok(())
    }
}
