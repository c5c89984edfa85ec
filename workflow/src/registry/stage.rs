//! Stage changes, metric annotations, pins and retention.

use crate::error::{Error, Result};

use super::fs::{self, META_FILE, PIN_FILE};
use super::{meta_json, unknown, EventKind, Registry, Stage, VersionMeta};

impl Registry {
    /// Moves a version to `stage`, rewriting its `meta.json` atomically, and returns the new
    /// metadata. Promoting to [`Stage::Production`] archives every other production version of
    /// the model afterwards (so there is never a moment with none). Each change is announced to
    /// subscribers as [`EventKind::StageChanged`]; a version already in `stage` is left alone.
    ///
    /// A version whose `model.eddy` fails its header or checksum check is refused with
    /// [`Error::ModelFile`] for every stage but [`Stage::Archived`]: the registry never names a
    /// corrupt version as the one to serve.
    pub fn promote(&self, model: &str, version: u64, stage: Stage) -> Result<VersionMeta> {
        let _guard = self.lock();
        if stage != Stage::Archived {
            self.load_bytes(model, version)?;
        }
        let meta = self.set_stage(model, version, stage)?;
        if stage == Stage::Production {
            self.demote_other_production(model, version)?;
        }
        Ok(meta)
    }

    /// Adds `metrics` to a version's metadata (a later value replaces one of the same name),
    /// rewriting its `meta.json` atomically; returns the new metadata. Evaluation gates record
    /// their holdout metrics this way, under the gate's name (`gate.auc`), beside the training
    /// metrics the publisher gave. The model file itself never changes.
    pub fn annotate(
        &self,
        model: &str,
        version: u64,
        metrics: &std::collections::BTreeMap<String, f64>,
    ) -> Result<VersionMeta> {
        let _guard = self.lock();
        let mut meta = self.get(model, version)?;
        meta.metrics
            .extend(metrics.iter().map(|(k, v)| (k.clone(), *v)));
        let path = self.version_dir(model, version)?.join(META_FILE);
        fs::replace_atomic(&path, &meta_json(&meta, &path)?)?;
        Ok(meta)
    }

    /// Moves a version to [`Stage::Archived`].
    pub fn archive(&self, model: &str, version: u64) -> Result<VersionMeta> {
        self.promote(model, version, Stage::Archived)
    }

    /// Pins `version` of `model` (serving's "pinned" policy reads it with
    /// [`pinned`](Self::pinned)); the pin is a `PIN` file in the model directory, replaced
    /// atomically. The version must exist and its model file pass the checksum check.
    pub fn pin(&self, model: &str, version: u64) -> Result<()> {
        let _guard = self.lock();
        self.get(model, version)?;
        self.load_bytes(model, version)?;
        let path = self.model_dir(model)?.join(PIN_FILE);
        fs::replace_atomic(&path, format!("{version}\n").as_bytes())
    }

    /// Removes the pin of `model`, if any.
    pub fn unpin(&self, model: &str) -> Result<()> {
        let _guard = self.lock();
        let path = self.model_dir(model)?.join(PIN_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// The pinned version of `model`, if any.
    pub fn pinned(&self, model: &str) -> Result<Option<u64>> {
        let path = self.model_dir(model)?.join(PIN_FILE);
        let Some(bytes) = fs::read_optional(&path)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        text.trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| Error::Corrupt {
                path,
                message: format!("expected a version number, found {:?}", text.trim()),
            })
    }

    /// Deletes the versions of `model` older than the newest `keep`, except the pinned one and
    /// production ones; returns the deleted version numbers, oldest first. `keep` must be at
    /// least 1, so the newest version (and so the version counter) always survives.
    ///
    /// Each version is first renamed to a hidden name and then removed, so readers never see
    /// half of one.
    pub fn retain(&self, model: &str, keep: usize) -> Result<Vec<u64>> {
        if keep == 0 {
            return Err(Error::InvalidArgument(
                "retention must keep at least one version".into(),
            ));
        }
        let _guard = self.lock();
        let pinned = self.pinned(model)?;
        let versions = self.versions(model)?;
        let cut = versions.len().saturating_sub(keep);
        let model_dir = self.model_dir(model)?;
        let mut deleted = Vec::new();
        for meta in &versions[..cut] {
            if Some(meta.version) == pinned || meta.stage == Stage::Production {
                continue;
            }
            let dir = model_dir.join(fs::version_dir_name(meta.version));
            let doomed = model_dir.join(fs::unique_name(".del-"));
            match std::fs::rename(&dir, &doomed) {
                Ok(()) => {}
                // Deleted by someone else meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            }
            std::fs::remove_dir_all(&doomed).map_err(|e| Error::io(&doomed, e))?;
            deleted.push(meta.version);
        }
        fs::sync_dir(&model_dir);
        Ok(deleted)
    }

    /// Archives every production version of `model` other than `keep`. The caller holds the
    /// stage lock.
    pub(super) fn demote_other_production(&self, model: &str, keep: u64) -> Result<()> {
        for old in self.by_stage(model, Stage::Production)? {
            if old.version != keep {
                self.set_stage(model, old.version, Stage::Archived)?;
            }
        }
        Ok(())
    }

    /// Rewrites a version's stage and announces the change. The caller holds the stage lock.
    fn set_stage(&self, model: &str, version: u64, stage: Stage) -> Result<VersionMeta> {
        let mut meta = self.get(model, version)?;
        if meta.stage == stage {
            return Ok(meta);
        }
        meta.stage = stage;
        let path = self.version_dir(model, version)?.join(META_FILE);
        if !path.exists() {
            return Err(unknown(model, version));
        }
        fs::replace_atomic(&path, &meta_json(&meta, &path)?)?;
        self.notify(EventKind::StageChanged, &meta);
        Ok(meta)
    }
}
