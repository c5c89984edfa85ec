//! `eddy learn --registry DIR --name NAME [--publish-every 5s|100000rows]`: the trained pipeline
//! and model become versions of NAME in a model registry — one at the end of training, and,
//! with `--publish-every`, one every T seconds or N rows while training runs (the training
//! job's [`ModelStream`](eddy_workflow::model_stream::ModelStream)). Each version records when it was made, by what command, on how many rows,
//! the progressive-validation metrics so far, the data path and the previous version.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use eddy_workflow::model_stream::PublishEvery;
use eddy_workflow::registry::{Lineage, NewVersion, Registry};
use eddy_workflow::train::PublishTo;

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

/// The publishing `args` ask for (none without `--registry`). `data` is the training data,
/// recorded as lineage; the parent of the first version is the newest existing version of
/// the model. Without `--publish-every` only the final version is published.
pub fn publish_to(args: &PublishArgs, data: &Path) -> anyhow::Result<Option<PublishTo>> {
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
    Ok(Some(PublishTo {
        registry,
        name: name.clone(),
        // without --publish-every the periodic policy never fires: only the final version
        every: args.publish_every.unwrap_or(PublishEvery::rows(u64::MAX)),
        template,
    }))
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
