//! Cross-process notification: poll the registry directory for versions not seen before.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Result;

use super::{Registry, VersionMeta};

/// The default polling interval of a [`Watcher`].
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// Polls a registry directory and reports versions that appeared since the last poll — the
/// way a process learns of versions published by another process. (In-process publishers are
/// heard sooner with [`Registry::subscribe`].)
///
/// Only new versions are reported, not stage changes; read the stage from the reported
/// metadata or with [`Registry::get`].
#[derive(Debug)]
pub struct Watcher {
    registry: Registry,
    poll: Duration,
    /// The versions seen at the last poll, per model.
    seen: BTreeMap<String, BTreeSet<u64>>,
}

impl Watcher {
    /// A watcher of the registry at `dir` that polls every `poll` (see [`DEFAULT_POLL`]).
    /// Versions present now count as seen: the first poll reports only later ones.
    pub fn new(dir: impl Into<PathBuf>, poll: Duration) -> Result<Self> {
        Self::for_registry(Registry::open(dir)?, poll)
    }

    /// A watcher of `registry` itself (a clone), so warnings about bad entries are given once
    /// between the watcher and the registry's other users.
    pub fn for_registry(registry: Registry, poll: Duration) -> Result<Self> {
        let mut watcher = Watcher {
            registry,
            poll,
            seen: BTreeMap::new(),
        };
        watcher.poll_once()?;
        Ok(watcher)
    }

    /// The polling interval.
    pub fn poll_interval(&self) -> Duration {
        self.poll
    }

    /// Lists the registry once and returns the versions not seen by the previous poll, by model
    /// name and then version. Versions that were removed are forgotten.
    pub fn poll_once(&mut self) -> Result<Vec<VersionMeta>> {
        let mut fresh = Vec::new();
        let mut now = BTreeMap::new();
        for model in self.registry.models()? {
            let known = self.seen.get(&model);
            let mut present = BTreeSet::new();
            for meta in self.registry.versions(&model)? {
                present.insert(meta.version);
                if !known.is_some_and(|k| k.contains(&meta.version)) {
                    fresh.push(meta);
                }
            }
            now.insert(model, present);
        }
        self.seen = now;
        Ok(fresh)
    }

    /// Waits until a poll finds new versions and returns them, polling every
    /// [`poll_interval`](Self::poll_interval). A directory listing is cheap, so each poll runs
    /// on the calling task.
    pub async fn next(&mut self) -> Result<Vec<VersionMeta>> {
        loop {
            let fresh = self.poll_once()?;
            if !fresh.is_empty() {
                return Ok(fresh);
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}
