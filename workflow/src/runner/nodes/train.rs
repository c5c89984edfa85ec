//! `batch-train` and `stream-train`: thin callers of the training job
//! ([`TrainJob`](crate::train::TrainJob)).
//!
//! A batch node with a batch learner fits it on its whole source and publishes one version; a
//! batch node with an online learner makes `epochs` progressive passes and publishes at the
//! end. A stream node learns its source with progressive validation and publishes a version
//! every `publish-every` and/or every `publish-rows` rows, and once more at the end; it keeps
//! checkpoints in `<run dir>/checkpoints/<node>/` (every `checkpoint-every`, with its
//! `failover` mode), so a retry or a restarted run resumes from the newest checkpoint. On a
//! followed file it runs until the run is stopped (Ctrl-C), which takes a last checkpoint.
//! While it runs, its job's failover counters (once any moves) and its source's lag (when the
//! source measures one: Kafka's consumer lag; at most once a second) go to the run state, so
//! `eddy status` shows them live. On a `delayed-labels` source so does its label tally
//! (positives, negatives, mean and longest label delay, late rows; at most once a second,
//! also as the job's gauges on the serve nodes' `/metrics`), and the final tally is in the
//! node's metrics.
//! A stream node with `parallelism` > 1 or a `ps` trains through a parameter server (the
//! job's [`PsConfig`]); one with `processes` trains in worker processes
//! ([`processes`](super::processes)).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_algorithms::pipeline::Pipeline;
use eddy_algorithms::trained::{OnlineModel, TrainedModel, TRAINED_MODEL_KIND};
use eddy_core::metrics::MetricsRegistry;

use super::{NodeCtx, Outcome, Progress};
use crate::error::{Error, Result};
use crate::labels::{LabelCounters, LabelTally};
use crate::model_stream::{metric_map, PublishEvery};
use crate::registry::{Lineage, NewVersion};
use crate::runner::data::describe;
use crate::runner::learners;
use crate::runner::sources::TrainInput;
use crate::spec::{NodeKind, TrainSpec, Workflow};
use crate::train::{
    job_id_in, PsConfig, PsSpec, PublishTo, TrainConfig, TrainEvent, TrainJob, TrainOutcome,
};

pub(crate) fn run(ctx: &NodeCtx) -> Result<Outcome> {
    match &ctx.spec.kind {
        NodeKind::BatchTrain(t) => train(ctx, t, false),
        NodeKind::StreamTrain(t) => train(ctx, t, true),
        _ => Err(node_err(ctx, "not a training node")),
    }
}

pub(super) fn node_err(ctx: &NodeCtx, message: impl Into<String>) -> Error {
    Error::Node {
        node: ctx.spec.name.clone(),
        message: message.into(),
    }
}

/// The registry metadata every version of the node starts from.
pub(super) fn template(ctx: &NodeCtx, t: &TrainSpec, parent: Option<u64>) -> NewVersion {
    template_of(&ctx.wf, &ctx.spec.name, t, parent)
}

/// [`template`] of node `node` of `wf`.
pub(super) fn template_of(
    wf: &Workflow,
    node: &str,
    t: &TrainSpec,
    parent: Option<u64>,
) -> NewVersion {
    NewVersion {
        producer: format!("{}/{node}", wf.name),
        lineage: Lineage {
            data: Some(describe(wf, &t.source)),
            parent,
        },
        ..Default::default()
    }
}

/// The newest loadable version of `model` as a trained model, with its version number.
fn latest(ctx: &NodeCtx, model: &str) -> Result<Option<(u64, TrainedModel)>> {
    let Some((meta, bytes)) = ctx.registry.latest_loadable(model)? else {
        return Ok(None);
    };
    let trained = eddy_algorithms::model::decode::<TrainedModel>(&bytes, TRAINED_MODEL_KIND)?;
    Ok(Some((meta.version, trained)))
}

/// Where training starts: a warm start from another node's latest version, or fresh (a batch
/// fit ignores `warm-start`).
fn start(ctx: &NodeCtx, t: &TrainSpec) -> Result<(Pipeline, Option<OnlineModel>, Option<u64>)> {
    let Some(w) = t.warm_start.as_ref().filter(|_| t.learner.is_online()) else {
        return Ok((
            learners::pipeline(&ctx.wf.features[&t.features])?,
            None,
            None,
        ));
    };
    let (version, parent) = latest(ctx, w)?
        .ok_or_else(|| node_err(ctx, format!("warm start: `{w}` has published no version")))?;
    let model =
        learners::spec(&ctx.spec.name, t)?.warm_started(parent.pipeline.dim(), &parent.model)?;
    Ok((parent.pipeline, Some(model), Some(version)))
}

/// The job's configuration for one pass; `last` says whether it is the pass that publishes.
fn config(
    ctx: &NodeCtx,
    t: &TrainSpec,
    stream: bool,
    last: bool,
    parent: Option<u64>,
) -> Result<TrainConfig> {
    let name = &ctx.spec.name;
    let mut config = TrainConfig::new(name.clone(), learners::spec(name, t)?);
    config.failover.mode = t.failover;
    config.parallelism = t.parallelism as usize;
    config.ps = match t.ps.clone() {
        // running shards know the node's job by the id kept in the run directory
        Some(store @ PsSpec::Remote(_)) => Some(PsConfig {
            consistency: t.consistency,
            job: Some(job_id_in(&ctx.run_dir.join("ps-jobs").join(name))?),
            existing: t.ps_existing,
            ..PsConfig::new(store)
        }),
        other => other.map(|store| PsConfig {
            consistency: t.consistency,
            ..PsConfig::new(store)
        }),
    };
    if stream && t.epochs <= 1 {
        config.checkpoint.interval = t.checkpoint_every;
        config.checkpoint.dir = t
            .checkpoint_every
            .map(|_| ctx.run_dir.join("checkpoints").join(name));
    }
    if last {
        let every = PublishEvery {
            interval: t.publish_every.filter(|_| stream),
            rows: t.publish_rows.filter(|_| stream),
        };
        config.publish = Some(PublishTo {
            registry: ctx.registry.clone(),
            name: name.clone(),
            // no periodic policy: only the final version
            every: if every == PublishEvery::default() {
                PublishEvery::rows(u64::MAX)
            } else {
                every
            },
            template: template(ctx, t, parent),
        });
    }
    let progress = ctx.progress.clone();
    let node = name.clone();
    config.events = Some(Arc::new(move |event: &TrainEvent| {
        let p = match event {
            TrainEvent::Rows(rows) => Progress::Rows {
                node: node.clone(),
                rows: *rows,
            },
            TrainEvent::Published {
                version,
                rows,
                metrics,
            } => Progress::Published {
                node: node.clone(),
                version: *version,
                rows: *rows,
                metrics: metrics.clone(),
            },
            // the rows resume from the checkpoint: the next `Rows` says so
            TrainEvent::Restored { .. } => return,
        };
        // the scheduler outlives every node task; a send can only fail during shutdown
        let _ = progress.send(p);
    }));
    Ok(config)
}

/// Runs one pass of the job over the node's source; Ctrl-C stops it cleanly. Returns the
/// outcome and, on a `delayed-labels` source, the final label tally.
fn pass(
    ctx: &NodeCtx,
    t: &TrainSpec,
    config: TrainConfig,
    pipeline: Pipeline,
    model: Option<OnlineModel>,
) -> Result<(TrainOutcome, Option<LabelTally>)> {
    let mut config = config;
    let source = TrainInput::open(&ctx.wf, &t.source, &ctx.generators)?;
    config.batch_rows = Some(source.batch_rows());
    let job = TrainJob::new(config)?;
    let (input, labels) = source.attach(job.flow())?;
    let handle = job.start(input, pipeline, model)?;
    ctx.jobs.watch(&ctx.spec.name, handle.job().metrics());
    let mut stopping = false;
    let mut live = LiveCounters {
        labels,
        ..LiveCounters::default()
    };
    while !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
        live.report(ctx, handle.job().metrics(), false);
        if ctx.stopped() && !stopping {
            stopping = true;
            handle.stop(Duration::from_secs(30));
        }
    }
    live.report(ctx, handle.job().metrics(), true);
    let tally = live.labels.as_ref().map(|l| l.tally());
    Ok((handle.join()?, tally))
}

/// How often a changed source lag is reported at most (each report saves the run state).
const LAG_REPORT_EVERY: Duration = Duration::from_secs(1);

/// What a running job last reported to `eddy status`: its failover counters, as soon as they
/// change, its sources' lag (when measured) and its label tally (a `delayed-labels` source;
/// also set as the job's `/metrics` gauges), each at most once per [`LAG_REPORT_EVERY`].
#[derive(Default)]
struct LiveCounters {
    failover: [(&'static str, u64); 3],
    lag: Option<(u64, Instant)>,
    labels: Option<Arc<LabelCounters>>,
    tally: Option<(LabelTally, Instant)>,
}

impl LiveCounters {
    /// Reports what changed; `last`: the job finished, report a changed lag now.
    fn report(&mut self, ctx: &NodeCtx, metrics: &MetricsRegistry, last: bool) {
        let job = metrics.job();
        let failover = [
            ("restarts", job.restarts.load(Ordering::Relaxed)),
            ("records_lost", job.records_lost.load(Ordering::Relaxed)),
            (
                "records_replayed",
                job.records_replayed.load(Ordering::Relaxed),
            ),
        ];
        let lag = metrics.lag().filter(|&l| match self.lag {
            None => true,
            Some((r, at)) => l != r && (last || at.elapsed() >= LAG_REPORT_EVERY),
        });
        let tally = self
            .labels
            .as_ref()
            .map(|l| l.tally())
            .filter(|t| match self.tally {
                None => true,
                Some((r, at)) => *t != r && (last || at.elapsed() >= LAG_REPORT_EVERY),
            });
        if let Some(t) = &tally {
            self.tally = Some((*t, Instant::now()));
            for metric in t.exported() {
                job.report(metric);
            }
        }
        let failed_over = failover != self.failover;
        if !failed_over && lag.is_none() && tally.is_none() {
            return;
        }
        self.failover = failover;
        // the failover counters once any moved (a job that never failed over shows none)
        let mut counters = match failover.iter().any(|(_, v)| *v > 0) {
            true => failover.to_vec(),
            false => Vec::new(),
        };
        if let Some(l) = lag {
            self.lag = Some((l, Instant::now()));
            counters.push(("source_lag", l));
        }
        if let Some(t) = tally {
            counters.extend(t.named().iter().map(|(name, _, v)| (*name, *v)));
        }
        if !counters.is_empty() {
            ctx.report(Progress::Failover {
                node: ctx.spec.name.clone(),
                counters,
            });
        }
    }
}

fn train(ctx: &NodeCtx, t: &TrainSpec, stream: bool) -> Result<Outcome> {
    if stream && t.processes.is_some() {
        return super::processes::train(ctx, t);
    }
    let (mut pipeline, mut model, parent) = start(ctx, t)?;
    let epochs = if stream || !t.learner.is_online() {
        1
    } else {
        t.epochs.max(1)
    };
    let mut outcome = None;
    let mut labels = None;
    for epoch in 0..epochs {
        let last = epoch + 1 == epochs;
        let config = config(ctx, t, stream, last, parent)?;
        let (done, tally) = pass(ctx, t, config, pipeline, model)?;
        pipeline = done.trained.pipeline.clone();
        model = Some(done.trained.model.clone());
        outcome = Some(done);
        labels = tally;
    }
    let o = outcome.ok_or_else(|| node_err(ctx, "no pass ran"))?;
    if ctx.stopped() {
        // interrupted, not done: the next run resumes from the last checkpoint
        return Err(node_err(ctx, "stopped"));
    }
    let mut metrics: BTreeMap<String, f64> = metric_map(&o.report.metrics);
    if o.summary.restarts > 0 {
        metrics.insert("restarts".into(), o.summary.restarts as f64);
        metrics.insert("records_lost".into(), o.summary.records_lost as f64);
        metrics.insert("records_replayed".into(), o.summary.records_replayed as f64);
    }
    for (name, _, value) in labels.iter().flat_map(LabelTally::named) {
        metrics.insert(name.into(), value as f64);
    }
    let resumed = o
        .restored
        .map(|e| format!("resumed from checkpoint {e}; "))
        .unwrap_or_default();
    Ok(Outcome {
        rows: o.report.rows,
        metrics,
        version: o.version.as_ref().map(|m| m.version),
        pass: true,
        message: Some(match t.learner.is_online() {
            true => format!(
                "{resumed}{} rows, {} version(s){}",
                o.report.rows,
                o.versions,
                match o.store {
                    Some(_) => format!(", {} worker(s) through a parameter server", t.parallelism),
                    None if t.parallelism > 1 => {
                        format!(", {} worker(s) sharing its weights", t.parallelism)
                    }
                    None => String::new(),
                }
            ),
            false => format!(
                "published v{} ({} on {} rows)",
                o.version.as_ref().map_or(0, |m| m.version),
                t.learner,
                o.report.rows
            ),
        }),
    })
}
