//! `eddy learn --registry DIR --name NAME [--publish-every 5s|100000rows]`: the trained pipeline
//! and model become versions of NAME in a model registry — one at the end of training, and,
//! with `--publish-every`, one every T seconds or N rows while training runs (a
//! [`ModelStream`]). Each version records when it was made, by what command, on how many rows,
//! the progressive-validation metrics so far, the data path and the previous version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use eddy_algorithms::eval::{MetricValues, ProgressiveValidation};
use eddy_algorithms::pipeline::Pipeline;
use eddy_algorithms::trained::{OnlineModel, TrainedModel};
use eddy_workflow::model_stream::{ModelStream, PublishEvery};
use eddy_workflow::registry::{Lineage, NewVersion, Registry, VersionMeta};

/// The registry options of `eddy learn`.
#[derive(Debug, Clone, Default, Args)]
pub struct PublishArgs {
    /// Publish the trained pipeline and model to the model registry in this directory.
    #[arg(long, requires = "name")]
    pub registry: Option<PathBuf>,
    /// The model name in the registry (with --registry).
    #[arg(long, requires = "registry")]
    pub name: Option<String>,
    /// Also publish while training: every interval (`5s`, `500ms`, `2m`), every N rows
    /// (`100000rows`), or both (`10s,100000rows`). Needs --registry.
    #[arg(long, requires = "registry")]
    pub publish_every: Option<PublishEvery>,
}

/// Publishes versions for one run of `eddy learn`.
#[derive(Debug)]
pub struct Publisher {
    stream: ModelStream,
    /// Whether versions are also published during training.
    periodic: bool,
}

/// The metrics of a report or of progressive validation so far, as registry metadata.
pub fn metric_map(values: &MetricValues) -> BTreeMap<String, f64> {
    values
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

impl Publisher {
    /// The publisher `args` ask for (none without `--registry`). `data` is the training data,
    /// recorded as lineage; the parent of the first version is the newest existing version of
    /// the model.
    pub fn from_args(args: &PublishArgs, data: &Path) -> anyhow::Result<Option<Self>> {
        let (Some(dir), Some(name)) = (&args.registry, &args.name) else {
            if args.publish_every.is_some() {
                bail!("--publish-every needs --registry and --name");
            }
            return Ok(None);
        };
        let registry = Registry::open(dir)
            .with_context(|| format!("opening the model registry {}", dir.display()))?;
        let parent = registry
            .latest(name)
            .with_context(|| format!("reading model `{name}` in {}", dir.display()))?
            .map(|m| m.version);
        let template = NewVersion {
            producer: producer(),
            lineage: Lineage {
                data: Some(data.display().to_string()),
                parent,
            },
            ..NewVersion::default()
        };
        // Without --publish-every only the final version is published: the stream's policy
        // is never consulted.
        let every = args.publish_every.unwrap_or(PublishEvery::rows(u64::MAX));
        let stream = ModelStream::new(registry, name.clone(), every, template)
            .with_context(|| format!("publishing model `{name}`"))?;
        Ok(Some(Publisher {
            stream,
            periodic: args.publish_every.is_some(),
        }))
    }

    /// After a trained micro-batch: publishes a snapshot when one is due. A failed publish
    /// fails the job as an external error (the registry's file system misbehaved).
    pub fn on_batch(
        &mut self,
        pipeline: &Pipeline,
        model: &OnlineModel,
        eval: &mut ProgressiveValidation,
    ) -> eddy_core::Result<Option<VersionMeta>> {
        let rows = eval.rows();
        if !self.periodic || !self.stream.due(rows) {
            return Ok(None);
        }
        let trained = TrainedModel {
            pipeline: pipeline.clone(),
            model: model.clone(),
        };
        let metrics = metric_map(&eval.cumulative());
        self.stream
            .publish(&trained, rows, metrics)
            .map(Some)
            .map_err(|e| eddy_core::Error::Operator {
                operator: "learn".into(),
                subtask: 0,
                message: format!("publishing model `{}`: {e}", self.stream.name()),
                domain: eddy_core::error::ErrorDomain::External,
            })
    }

    /// At the end of training: publishes the final model (unless a periodic snapshot already
    /// holds exactly it) and says so on stderr.
    pub fn finish(
        &mut self,
        pipeline: &Pipeline,
        model: &OnlineModel,
        rows: u64,
        metrics: &MetricValues,
    ) -> anyhow::Result<VersionMeta> {
        let trained = TrainedModel {
            pipeline: pipeline.clone(),
            model: model.clone(),
        };
        let name = self.stream.name().to_string();
        let meta = self
            .stream
            .finish(&trained, rows, metric_map(metrics))
            .with_context(|| format!("publishing model `{name}`"))?;
        eprintln!(
            "published {} version {} ({} versions this run)",
            name,
            meta.version,
            self.stream.published()
        );
        Ok(meta)
    }
}

/// The producer recorded in version metadata: the command line and the host.
fn producer() -> String {
    let args: Vec<String> = std::env::args().collect();
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    if host.is_empty() {
        args.join(" ")
    } else {
        format!("{} (on {host})", args.join(" "))
    }
}
