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
        })
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
            let entry = entry.map_err(|e| Error::io(&self.root, e))?;
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
    pub fn load<T: DeserializeOwned>(&self, model: &str, version: u64, kind: &str) -> Result<T> {
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
    /// Corrupt versions are skipped with an error log naming them.
    pub fn latest_loadable(&self, model: &str) -> Result<Option<(VersionMeta, Vec<u8>)>> {
        for meta in self.versions(model)?.into_iter().rev() {
            match self.load_bytes(model, meta.version) {
                Ok(bytes) => return Ok(Some((meta, bytes))),
                Err(e @ Error::ModelFile { .. }) => {
                    tracing::error!(model, version = meta.version, error = %e, "skipping corrupt model version");
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
    /// A version whose `meta.json` does not parse or names another version is skipped with a
    /// warning.
    fn read_meta(&self, model: &str, version: u64) -> Result<Option<VersionMeta>> {
        let dir = self.version_dir(model, version)?;
        let meta_path = dir.join(META_FILE);
        let Some(bytes) = fs::read_optional(&meta_path)? else {
            return Ok(None);
        };
        if !dir.join(MODEL_FILE).is_file() {
            if !meta_path.exists() {
                // Removed by retention since the metadata was read.
                return Ok(None);
            }
            tracing::warn!(path = %dir.display(), "version without a model file; skipped");
            return Ok(None);
        }
        match serde_json::from_slice::<VersionMeta>(&bytes) {
            Ok(meta) if meta.version == version && meta.model == model => Ok(Some(meta)),
            Ok(meta) => {
                tracing::warn!(path = %meta_path.display(), model = meta.model, version = meta.version, "metadata names another version; skipped");
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(path = %meta_path.display(), error = %e, "unparsable metadata; skipped");
                Ok(None)
            }
        }
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
