//! The model registry: versioned model files with metadata, in a directory any process can
//! read.
//!
//! ```text
//! <root>/
//!   <model>/                 one directory per model (ASCII letters, digits, `-`, `_`, `.`)
//!     PIN                    optional: the pinned version number
//!     v1/ model.eddy meta.json
//!     v2/ model.eddy meta.json
//!     .tmp-<unique>/         a version being written (never listed)
//! ```
//!
//! `model.eddy` holds opaque model-file bytes (normally [`TrainedModel::to_bytes`]); the
//! registry checks them with the model-file header and checksum when they are loaded.
//! `meta.json` is a [`VersionMeta`] (kebab-case JSON).
//!
//! **Atomicity.** [`Registry::publish`] writes both files into a hidden `.tmp-<unique>`
//! directory inside the model directory, fsyncs them, and renames that directory to `v<N>`,
//! where `N` is one past the newest version. Renaming a directory onto a non-empty one fails,
//! so a writer that loses the race to another writer (in this process or another) rewrites
//! its `meta.json` with `N + 1` and tries again: concurrent writers get distinct versions and
//! a `v<N>` directory is complete from the moment it exists. Readers list only `v<N>`
//! directories holding both files with a `meta.json` that parses and names that version.
//! Stage changes rewrite `meta.json` by temporary file and rename; the `PIN` file likewise.
//! Retention renames a version to a hidden name before deleting it, so no reader sees half a
//! version. A crashed writer leaves a `.tmp-` directory behind; it is never listed.
//!
//! **Damage.** Anything else under a `v<N>` name — a stray file, a symlink loop, a `meta.json`
//! that is missing, a directory, unparsable or about another version, a missing model file —
//! is skipped with one warning per path and problem (not one per poll), and the other versions
//! list as usual: one bad entry never fails the registry.
//!
//! **Stages.** Promoting a version to [`Stage::Production`] archives the previous production
//! version(s) of that model: the new one is written first, then the old ones are demoted, so
//! a reader may briefly see two production versions (it should take the newest, as
//! [`Registry::production`] does) but never none. Stage changes from one [`Registry`] (and its
//! clones) are serialized; across processes the last writer wins.
//!
//! **Subscribers.** [`Registry::subscribe`] gives in-process [`VersionEvent`]s for publishes and
//! stage changes; [`Watcher`] polls the directory to see versions written by other processes.
//!
//! [`TrainedModel::to_bytes`]: eddy_algorithms::trained::TrainedModel::to_bytes
//!
//! ## Modules
//! | module | what |
//! |---|---|
//! | this one | [`Registry`]: open, publish, list, get, load |
//! | `meta` | [`VersionMeta`], [`NewVersion`], [`Stage`], [`Lineage`], [`VersionEvent`] |
//! | `stage` | promote / archive, pin / unpin, retention |
//! | `watch` | [`Watcher`]: cross-process polling |
//! | `fs` | names, unique temporaries, durable writes |

mod fs;
mod meta;
mod stage;
mod watch;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use crate::error::{Error, Result};
pub(crate) use fs::check_model_name;
use fs::{META_FILE, MODEL_FILE};
pub use meta::{EventKind, Lineage, NewVersion, Stage, VersionEvent, VersionMeta};
pub use watch::{Watcher, DEFAULT_POLL};

/// Events buffered per subscriber before a slow one starts missing them (it then gets
/// `RecvError::Lagged` and can re-read the registry).
const EVENT_CAPACITY: usize = 256;

/// Publish attempts before giving up (each lost race moves to a higher version).
const MAX_PUBLISH_ATTEMPTS: u32 = 10_000;

/// A model registry rooted at one directory. Cloning is cheap; clones share subscribers and
/// the stage-change lock.
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
    events: broadcast::Sender<VersionEvent>,
    /// Serializes stage changes, pins and retention of this registry and its clones.
    stage_lock: Arc<Mutex<()>>,
    /// Bad entries already warned about (path and problem), so a poll every second does not
    /// repeat the warning; shared by clones.
    warned: Arc<Mutex<HashSet<(PathBuf, String)>>>,
}

impl Registry {
    /// Opens the registry at `dir`, creating the directory if needed.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let root = dir.into();
        std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Ok(Registry {
            root,
            events,
            stage_lock: Arc::new(Mutex::new(())),
            warned: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// Opens the registry at `dir` for reading and serving: the directory must exist, so a
    /// mistyped path is refused ([`Error::InvalidArgument`] naming it) instead of becoming a
    /// new, empty registry that serves nothing.
    pub fn open_existing(dir: impl Into<PathBuf>) -> Result<Self> {
        let root = dir.into();
        let refuse = |why: String| {
            Err(Error::InvalidArgument(format!(
                "no model registry at {}: {why}",
                root.display()
            )))
        };
        match std::fs::metadata(&root) {
            Ok(m) if m.is_dir() => Self::open(root),
            Ok(_) => refuse("not a directory".into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                refuse("the directory does not exist".into())
            }
            Err(e) => refuse(e.to_string()),
        }
    }

    /// The registry's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A receiver of every later publish and stage change made through this registry (or its
    /// clones). Other processes' changes are seen with a [`Watcher`].
    pub fn subscribe(&self) -> broadcast::Receiver<VersionEvent> {
        self.events.subscribe()
    }

    /// Stores `bytes` as the next version of `model` with the metadata `new`, atomically (see
    /// the module docs), and returns the stored metadata. Publishing in
    /// [`Stage::Production`] archives the previous production version, as
    /// [`promote`](Self::promote) does.
    pub fn publish(&self, model: &str, bytes: &[u8], new: NewVersion) -> Result<VersionMeta> {
        let model_dir = self.model_dir(model)?;
        std::fs::create_dir_all(&model_dir).map_err(|e| Error::io(&model_dir, e))?;
        let tmp = model_dir.join(fs::unique_name(".tmp-"));
        std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let result = self.publish_from(model, &model_dir, &tmp, bytes, new);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        let meta = result?;
        if meta.stage == Stage::Production {
            let _guard = self.lock();
            self.demote_other_production(model, meta.version)?;
        }
        self.notify(EventKind::Published, &meta);
        Ok(meta)
    }

    fn publish_from(
        &self,
        model: &str,
        model_dir: &Path,
        tmp: &Path,
        bytes: &[u8],
        new: NewVersion,
    ) -> Result<VersionMeta> {
        fs::write_new_synced(&tmp.join(MODEL_FILE), bytes)?;
        let mut meta = VersionMeta {
            model: model.to_string(),
            version: 0,
            created_ms: fs::now_ms(),
            producer: new.producer,
            training_rows: new.training_rows,
            metrics: new.metrics,
            lineage: new.lineage,
            stage: new.stage,
        };
        let mut version = 1;
        for _ in 0..MAX_PUBLISH_ATTEMPTS {
            // Re-read the newest version on every attempt, so a slow writer does not slot in
            // below versions published (and perhaps retired) meanwhile.
            version = version.max(self.max_version_dir(model_dir)? + 1);
            meta.version = version;
            let json = meta_json(&meta, &tmp.join(META_FILE))?;
            fs::replace_atomic(&tmp.join(META_FILE), &json)?;
            fs::sync_dir(tmp);
            let target = model_dir.join(fs::version_dir_name(version));
            match std::fs::rename(tmp, &target) {
                Ok(()) => {
                    fs::sync_dir(model_dir);
                    return Ok(meta);
                }
                // Another writer took `v<N>`: move past it and past anything newer.
                Err(_) if target.exists() => version += 1,
                Err(e) => return Err(Error::io(&target, e)),
            }
        }
        Err(Error::io(
            model_dir,
            std::io::Error::other(format!(
                "no free version after {MAX_PUBLISH_ATTEMPTS} attempts"
            )),
        ))
    }

    /// The names of the models in the registry, sorted.
    pub fn models(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in read_dir(&self.root)? {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    self.warn_once(
                        &self.root,
                        format!("unreadable directory entry ({e}); skipped"),
                    );
                    continue;
                }
            };
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
                if fs::check_model_name(name).is_ok() {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// The complete versions of `model`, oldest first (empty for an unknown model).
    pub fn versions(&self, model: &str) -> Result<Vec<VersionMeta>> {
        let model_dir = self.model_dir(model)?;
        let mut numbers = match read_dir(&model_dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(fs::parse_version_dir))
                .collect::<Vec<_>>(),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e),
        };
        numbers.sort_unstable();
        let mut out = Vec::with_capacity(numbers.len());
        for n in numbers {
            if let Some(meta) = self.read_meta(model, n)? {
                out.push(meta);
            }
        }
        Ok(out)
    }

    /// The metadata of one version.
    pub fn get(&self, model: &str, version: u64) -> Result<VersionMeta> {
        self.model_dir(model)?;
        self.read_meta(model, version)?
            .ok_or_else(|| unknown(model, version))
    }

    /// The newest complete version of `model`, if any.
    pub fn latest(&self, model: &str) -> Result<Option<VersionMeta>> {
        Ok(self.versions(model)?.pop())
    }

    /// The versions of `model` in `stage`, oldest first.
    pub fn by_stage(&self, model: &str, stage: Stage) -> Result<Vec<VersionMeta>> {
        let mut all = self.versions(model)?;
        all.retain(|m| m.stage == stage);
        Ok(all)
    }

    /// The newest production version of `model`, if any.
    pub fn production(&self, model: &str) -> Result<Option<VersionMeta>> {
        Ok(self.by_stage(model, Stage::Production)?.pop())
    }

    /// The model bytes of a version, refused with [`Error::ModelFile`] naming the file if the
    /// header or checksum does not check out.
    pub fn load_bytes(&self, model: &str, version: u64) -> Result<Vec<u8>> {
        let path = self.version_dir(model, version)?.join(MODEL_FILE);
        let bytes = fs::read_optional(&path)?.ok_or_else(|| unknown(model, version))?;
        eddy_algorithms::model::read_header(&bytes)
            .map_err(|source| Error::ModelFile { path, source })?;
        Ok(bytes)
    }

    /// Loads and decodes a version as a model of `kind` (e.g.
    /// [`TRAINED_MODEL_KIND`](eddy_algorithms::trained::TRAINED_MODEL_KIND)).
    pub fn load<T: DeserializeOwned + serde::Serialize + 'static>(
        &self,
        model: &str,
        version: u64,
        kind: &str,
    ) -> Result<T> {
        let bytes = self.load_bytes(model, version)?;
        eddy_algorithms::model::decode(&bytes, kind).map_err(|source| Error::ModelFile {
            path: self
                .root
                .join(model)
                .join(fs::version_dir_name(version))
                .join(MODEL_FILE),
            source,
        })
    }

    /// The newest version of `model` whose model bytes pass the checks, with its bytes.
    /// Corrupt versions are skipped with one warning naming them.
    pub fn latest_loadable(&self, model: &str) -> Result<Option<(VersionMeta, Vec<u8>)>> {
        for meta in self.versions(model)?.into_iter().rev() {
            match self.load_bytes(model, meta.version) {
                Ok(bytes) => return Ok(Some((meta, bytes))),
                Err(e @ Error::ModelFile { .. }) => {
                    let path = self.version_dir(model, meta.version)?.join(MODEL_FILE);
                    self.warn_once(&path, format!("corrupt model version skipped: {e}"));
                }
                // Removed by retention since it was listed.
                Err(Error::UnknownVersion { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The directory of `model`, after checking the name.
    fn model_dir(&self, model: &str) -> Result<PathBuf> {
        fs::check_model_name(model)?;
        Ok(self.root.join(model))
    }

    fn version_dir(&self, model: &str, version: u64) -> Result<PathBuf> {
        Ok(self.model_dir(model)?.join(fs::version_dir_name(version)))
    }

    /// The highest `v<N>` directory number (0 if none), complete or not.
    fn max_version_dir(&self, model_dir: &Path) -> Result<u64> {
        Ok(read_dir(model_dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(fs::parse_version_dir))
            .max()
            .unwrap_or(0))
    }

    /// The metadata of a complete version; `None` if it does not exist (or is being removed).
    /// A bad entry is skipped with one warning (per path and problem, see
    /// [`warn_once`](Self::warn_once)), never an error, so one bad version does not hide the
    /// good ones: a file or a symlink loop where a version directory should be, a `meta.json`
    /// that is missing, unreadable (a directory, say), does not parse or names another
    /// version, and a missing model file.
    fn read_meta(&self, model: &str, version: u64) -> Result<Option<VersionMeta>> {
        let dir = self.version_dir(model, version)?;
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                self.warn_once(
                    &dir,
                    "not a directory where a version should be; skipped".into(),
                );
                return Ok(None);
            }
            // Removed by retention since it was listed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                self.warn_once(&dir, format!("unreadable version entry ({e}); skipped"));
                return Ok(None);
            }
        }
        let meta_path = dir.join(META_FILE);
        let bytes = match std::fs::read(&meta_path) {
            Ok(bytes) => bytes,
            // Retention renames the whole directory away, and writers rename complete
            // directories in, so a version directory without its metadata is damage.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if dir.is_dir() {
                    self.warn_once(&meta_path, "missing: the version is skipped".into());
                }
                return Ok(None);
            }
            Err(e) => {
                self.warn_once(&meta_path, format!("cannot be read ({e}); version skipped"));
                return Ok(None);
            }
        };
        if !dir.join(MODEL_FILE).is_file() {
            if !meta_path.exists() {
                // Removed by retention since the metadata was read.
                return Ok(None);
            }
            self.warn_once(&dir, "version without a model file; skipped".into());
            return Ok(None);
        }
        match serde_json::from_slice::<VersionMeta>(&bytes) {
            Ok(meta) if meta.version == version && meta.model == model => Ok(Some(meta)),
            Ok(meta) => {
                self.warn_once(
                    &meta_path,
                    format!(
                        "metadata names {} version {}; skipped",
                        meta.model, meta.version
                    ),
                );
                Ok(None)
            }
            Err(e) => {
                self.warn_once(&meta_path, format!("unparsable metadata ({e}); skipped"));
                Ok(None)
            }
        }
    }

    /// Logs a warning about a bad registry entry the first time this registry (or a clone)
    /// meets that path with that problem; later meetings are silent, so a server polling
    /// every second warns once. Returns whether it logged.
    pub(crate) fn warn_once(&self, path: &Path, problem: String) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        let first = warned.insert((path.to_path_buf(), problem.clone()));
        if first {
            tracing::warn!(path = %path.display(), "registry entry skipped: {problem}");
        }
        first
    }

    fn notify(&self, kind: EventKind, meta: &VersionMeta) {
        // No receivers is not an error: nobody is listening.
        let _ = self.events.send(VersionEvent {
            kind,
            model: meta.model.clone(),
            version: meta.version,
            stage: meta.stage,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The lock guards no data, so a panic while holding it leaves nothing inconsistent.
        self.stage_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn meta_json(meta: &VersionMeta, path: &Path) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(meta).map_err(|source| Error::Meta {
        path: path.to_path_buf(),
        source,
    })
}

fn read_dir(dir: &Path) -> Result<std::fs::ReadDir> {
    std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))
}

fn unknown(model: &str, version: u64) -> Error {
    Error::UnknownVersion {
        model: model.to_string(),
        version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// #14 case 13: a server polls every second; each bad entry is warned about once.
    #[cfg(unix)]
    #[test]
    fn bad_entries_are_warned_about_once_across_polls_and_clones() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let bytes = eddy_algorithms::model::encode("test-model", &vec![1.0f32]).unwrap();
        reg.publish("ctr", &bytes, NewVersion::default()).unwrap();
        let ctr = dir.path().join("ctr");
        std::fs::write(ctr.join("v2"), b"stray").unwrap();
        std::fs::create_dir_all(ctr.join("v3/meta.json")).unwrap();
        std::fs::write(ctr.join("v3/model.eddy"), &bytes).unwrap();
        std::os::unix::fs::symlink("v4", ctr.join("v4")).unwrap();
        std::fs::create_dir(ctr.join("v5")).unwrap();
        std::fs::write(ctr.join("v5/model.eddy"), &bytes).unwrap();
        std::fs::create_dir(ctr.join("v6")).unwrap();
        std::fs::write(ctr.join("v6/meta.json"), b"{ not json").unwrap();
        std::fs::write(ctr.join("v6/model.eddy"), &bytes).unwrap();

        let clone = reg.clone();
        let mut watcher = Watcher::for_registry(reg.clone(), DEFAULT_POLL).unwrap();
        for _ in 0..5 {
            assert_eq!(reg.versions("ctr").unwrap().len(), 1);
            assert_eq!(clone.versions("ctr").unwrap().len(), 1);
            watcher.poll_once().unwrap();
        }
        let warned = reg.warned.lock().unwrap().clone();
        let paths: Vec<String> = warned
            .iter()
            .map(|(p, _)| p.strip_prefix(&ctr).unwrap().display().to_string())
            .collect();
        assert_eq!(warned.len(), 5, "one warning per bad entry: {warned:?}");
        for p in ["v2", "v3/meta.json", "v4", "v5/meta.json", "v6/meta.json"] {
            assert!(paths.iter().any(|q| q == p), "{p} not warned: {warned:?}");
        }
        // a repeat of a warned problem logs nothing
        let (path, problem) = warned.iter().next().unwrap().clone();
        assert!(!reg.warn_once(&path, problem));
    }
}
