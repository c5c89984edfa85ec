//! [`ModelStream`]: an online trainer publishes a version of its model to the registry every
//! T seconds or every N rows, so serving follows training.
//!
//! ```
//! # fn demo(trained: &eddy_algorithms::trained::TrainedModel) -> eddy_workflow::Result<()> {
//! use std::collections::BTreeMap;
//! use eddy_workflow::model_stream::{ModelStream, PublishEvery};
//! use eddy_workflow::registry::{NewVersion, Registry};
//!
//! let registry = Registry::open("models")?;
//! let every: PublishEvery = "100000rows".parse()?;
//! let template = NewVersion { producer: "trainer".into(), ..NewVersion::default() };
//! let mut stream = ModelStream::new(registry, "ctr", every, template)?;
//! // after each micro-batch the trainer learned:
//! let rows_seen = 250_000;
//! if let Some(meta) = stream.on_progress(trained, rows_seen, BTreeMap::new)? {
//!     println!("published version {}", meta.version);
//! }
//! // at the end of the stream:
//! stream.finish(trained, rows_seen, BTreeMap::new())?;
//! # Ok(()) }
//! ```
//!
//! **Full snapshots, not deltas.** Every version is the whole [`TrainedModel`] (pipeline
//! statistics and learner state) in the model-file format. A delta on top of a base version
//! would make a version loadable only while its base chain survives — retention, archiving and
//! a corrupt base would each break every later version — and serving would have to replay
//! chains to swap. The state is also not delta-friendly: FTRL's `z`/`n` accumulators, the
//! scalers' running moments and the naive-Bayes counts change on every touched feature, so a
//! delta of a busy stream is close to a snapshot anyway. A snapshot of a 2^22-feature FTRL
//! model is a few tens of MB written at most once per publish interval, which the interval
//! bounds; each version stays independently loadable, checksummed and retainable. The
//! `lineage.parent` of each version names the one published before it, so the chain is still
//! recorded.
//!
//! Publishing is synchronous in the trainer's thread: the snapshot is taken between
//! micro-batches, so it is consistent (no half-learned batch), and the registry's atomic
//! publish makes it visible all at once.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use eddy_algorithms::trained::TrainedModel;

use crate::error::{Error, Result};
use crate::registry::{NewVersion, Registry, VersionMeta};

/// When a [`ModelStream`] publishes: every `interval` of wall time, every `rows` trained rows,
/// or whichever comes first when both are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublishEvery {
    /// Publish when this much time has passed since the last publish.
    pub interval: Option<Duration>,
    /// Publish when this many rows were trained since the last publish.
    pub rows: Option<u64>,
}

impl PublishEvery {
    /// Every `interval`.
    pub fn interval(interval: Duration) -> Self {
        PublishEvery {
            interval: Some(interval),
            rows: None,
        }
    }

    /// Every `rows` rows.
    pub fn rows(rows: u64) -> Self {
        PublishEvery {
            interval: None,
            rows: Some(rows),
        }
    }

    fn check(&self) -> Result<()> {
        if self.interval.is_none() && self.rows.is_none() {
            return Err(Error::InvalidArgument(
                "publish-every: give an interval, a row count or both".into(),
            ));
        }
        if self.interval == Some(Duration::ZERO) || self.rows == Some(0) {
            return Err(Error::InvalidArgument(
                "publish-every: the interval and the row count must be positive".into(),
            ));
        }
        Ok(())
    }
}

impl FromStr for PublishEvery {
    type Err = Error;

    /// `5s`, `500ms`, `2m`, `1h`, `100000rows`, or both joined by `,` (e.g. `10s,50000rows`).
    fn from_str(s: &str) -> Result<Self> {
        let mut every = PublishEvery::default();
        for part in s.split(',').map(str::trim) {
            let bad = |why: &str| {
                Error::InvalidArgument(format!(
                    "publish-every `{s}`: `{part}` {why} (expected e.g. `5s`, `500ms`, `2m`, `100000rows`)"
                ))
            };
            if let Some(digits) = part
                .strip_suffix("rows")
                .or_else(|| part.strip_suffix("row"))
            {
                let n: u64 = digits
                    .parse()
                    .map_err(|_| bad("does not start with a whole number"))?;
                every.rows = Some(n);
            } else {
                every.interval =
                    Some(eddy_core::duration::parse_duration(part).map_err(|m| bad(&m))?);
            }
        }
        every.check()?;
        Ok(every)
    }
}

impl fmt::Display for PublishEvery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(i) = self.interval {
            parts.push(format!("{}ms", i.as_millis()));
        }
        if let Some(r) = self.rows {
            parts.push(format!("{r}rows"));
        }
        f.write_str(&parts.join(","))
    }
}

/// Metrics as registry metadata: by name, finite values only (JSON has no NaN).
pub fn metric_map(values: &eddy_algorithms::eval::MetricValues) -> BTreeMap<String, f64> {
    values
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Where a [`ModelStream`] stands: kept in a trainer's checkpoints.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StreamPosition {
    /// Training rows at the last publish.
    pub rows_at_last: u64,
    /// The last version published.
    pub last: Option<VersionMeta>,
    /// Versions published so far.
    pub published: u64,
}

/// Publishes snapshots of an online model to the registry as training goes (see the module
/// docs). Each version's metadata is the template's, with the training rows, the metrics
/// given at publish time, and `lineage.parent` set to the previously published version.
#[derive(Debug)]
pub struct ModelStream {
    registry: Registry,
    name: String,
    every: PublishEvery,
    template: NewVersion,
    last_publish: Instant,
    rows_at_last: u64,
    last: Option<VersionMeta>,
    published: u64,
}

impl ModelStream {
    /// A stream of versions of `name` in `registry`, published as `every` says. The first
    /// version's parent is `template.lineage.parent` (e.g. the version training started from).
    pub fn new(
        registry: Registry,
        name: impl Into<String>,
        every: PublishEvery,
        template: NewVersion,
    ) -> Result<Self> {
        every.check()?;
        let name = name.into();
        // Refuse a bad model name now rather than at the first publish.
        registry.versions(&name)?;
        Ok(ModelStream {
            registry,
            name,
            every,
            template,
            last_publish: Instant::now(),
            rows_at_last: 0,
            last: None,
            published: 0,
        })
    }

    /// The model name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The policy.
    pub fn every(&self) -> PublishEvery {
        self.every
    }

    /// The last version this stream published.
    pub fn last(&self) -> Option<&VersionMeta> {
        self.last.as_ref()
    }

    /// How many versions this stream published.
    pub fn published(&self) -> u64 {
        self.published
    }

    /// Whether a publish is due after `rows_seen` trained rows in all.
    pub fn due(&self, rows_seen: u64) -> bool {
        let rows = rows_seen.saturating_sub(self.rows_at_last);
        if rows == 0 {
            return false;
        }
        self.every.rows.is_some_and(|n| rows >= n)
            || self
                .every
                .interval
                .is_some_and(|t| self.last_publish.elapsed() >= t)
    }

    /// Call after each trained micro-batch: publishes `model` when a publish is due and
    /// returns the new version's metadata. `metrics` is only called when publishing.
    pub fn on_progress(
        &mut self,
        model: &TrainedModel,
        rows_seen: u64,
        metrics: impl FnOnce() -> BTreeMap<String, f64>,
    ) -> Result<Option<VersionMeta>> {
        if !self.due(rows_seen) {
            return Ok(None);
        }
        self.publish(model, rows_seen, metrics()).map(Some)
    }

    /// Where the stream stands, for a checkpoint: restoring it with
    /// [`restore_position`](Self::restore_position) makes a restarted trainer continue the
    /// same chain of versions.
    pub fn position(&self) -> StreamPosition {
        StreamPosition {
            rows_at_last: self.rows_at_last,
            last: self.last.clone(),
            published: self.published,
        }
    }

    /// Continues from a [`position`](Self::position) taken by an earlier attempt. Versions
    /// that attempt published after the position are recognized, not published twice (see
    /// [`publish`](Self::publish)).
    pub fn restore_position(&mut self, position: StreamPosition) {
        self.rows_at_last = position.rows_at_last;
        self.last = position.last;
        self.published = position.published;
        self.last_publish = Instant::now();
    }

    /// Publishes `model` now, whatever the policy says.
    ///
    /// **Replays publish nothing twice.** When a version newer than the last one of this stream
    /// already is the one this call would publish — same producer, same training rows, same
    /// parent — an
    /// earlier attempt of the same trainer published it before a failure and the trainer
    /// replayed from a checkpoint taken before that publish; that version is adopted and
    /// returned instead of publishing a duplicate.
    pub fn publish(
        &mut self,
        model: &TrainedModel,
        rows_seen: u64,
        metrics: BTreeMap<String, f64>,
    ) -> Result<VersionMeta> {
        let mut new = self.template.clone();
        new.training_rows = rows_seen;
        new.metrics = metrics;
        if let Some(last) = &self.last {
            new.lineage.parent = Some(last.version);
        }
        if let Some(existing) = self.replayed(&new)? {
            self.adopt(existing.clone(), rows_seen);
            return Ok(existing);
        }
        let bytes = model.to_bytes()?;
        let meta = self.registry.publish(&self.name, &bytes, new)?;
        tracing::info!(
            model = self.name,
            version = meta.version,
            rows = rows_seen,
            "published model version"
        );
        self.adopt(meta.clone(), rows_seen);
        Ok(meta)
    }

    /// The newest version, when it is the one `new` describes (see [`publish`](Self::publish)).
    fn replayed(&self, new: &NewVersion) -> Result<Option<VersionMeta>> {
        let after = self.last.as_ref().map_or(0, |l| l.version);
        Ok(self.registry.versions(&self.name)?.into_iter().find(|v| {
            v.version > after
                && v.producer == new.producer
                && v.training_rows == new.training_rows
                && v.lineage.parent == new.lineage.parent
        }))
    }

    fn adopt(&mut self, meta: VersionMeta, rows_seen: u64) {
        self.last_publish = Instant::now();
        self.rows_at_last = rows_seen;
        self.last = Some(meta);
        self.published += 1;
    }

    /// At the end of training: publishes `model` if it learned rows since the last publish
    /// (or nothing was published yet) and returns the newest version of this stream.
    pub fn finish(
        &mut self,
        model: &TrainedModel,
        rows_seen: u64,
        metrics: BTreeMap<String, f64>,
    ) -> Result<VersionMeta> {
        match &self.last {
            Some(last) if rows_seen == self.rows_at_last => Ok(last.clone()),
            _ => self.publish(model, rows_seen, metrics),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_every_parses() {
        let p = |s: &str| s.parse::<PublishEvery>();
        assert_eq!(
            p("5s").unwrap(),
            PublishEvery::interval(Duration::from_secs(5))
        );
        assert_eq!(p("100000rows").unwrap(), PublishEvery::rows(100_000));
        assert_eq!(
            p("250ms, 10rows").unwrap(),
            PublishEvery {
                interval: Some(Duration::from_millis(250)),
                rows: Some(10)
            }
        );
        for bad in ["", "5", "s", "5x", "0s", "0rows", "-5s"] {
            assert!(p(bad).is_err(), "{bad}");
        }
        assert_eq!(p("2m").unwrap().to_string(), "120000ms");
    }
}
