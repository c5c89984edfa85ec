//! `batch-train` and `stream-train`.
//!
//! A batch node reads its whole source and publishes one version: a linfa fit, or `epochs`
//! progressive passes of an online learner. A stream node learns its source batch by batch with
//! progressive validation (predict, then learn) and publishes a version every `publish-every`
//! and/or every `publish-rows` rows, and once more at the end. Each version's
//! `training-rows` counts the source rows it has seen, so a resumed stream node (a retry with
//! `failover = "resume"`, or a restarted run) loads its latest version and skips those rows.
//! A stream node with a parameter server trains in `train_ps`.

use std::collections::BTreeMap;
use std::time::Instant;

use eddy_algorithms::eval::{MetricSet, ProgressiveConfig, ProgressiveValidation};
use eddy_algorithms::features::{Examples, Features};
use eddy_algorithms::learner::Predictor;
use eddy_algorithms::trained::{TrainedModel, TRAINED_MODEL_KIND};

use super::{NodeCtx, Outcome, Progress};
use crate::error::{Error, Result};
use crate::registry::{Lineage, NewVersion};
use crate::runner::data::{describe, SourceReader};
use crate::runner::learners;
use crate::spec::{Failover, NodeKind, TrainSpec};

pub(crate) fn run(ctx: &NodeCtx) -> Result<Outcome> {
    match &ctx.spec.kind {
        NodeKind::BatchTrain(t) if !t.learner.is_online() => batch_fit(ctx, t),
        NodeKind::BatchTrain(t) => online(ctx, t, false),
        NodeKind::StreamTrain(t) => match &t.ps {
            Some(ps) => super::train_ps::run(ctx, t, ps),
            None => online(ctx, t, true),
        },
        _ => unreachable!("train::run on a non-training node"),
    }
}

pub(super) fn node_err(ctx: &NodeCtx, message: impl Into<String>) -> Error {
    Error::Node {
        node: ctx.spec.name.clone(),
        message: message.into(),
    }
}

pub(super) fn to_map(values: &eddy_algorithms::eval::MetricValues) -> BTreeMap<String, f64> {
    values
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

pub(super) fn publish(
    ctx: &NodeCtx,
    t: &TrainSpec,
    model: &TrainedModel,
    rows: u64,
    metrics: BTreeMap<String, f64>,
    parent: Option<u64>,
) -> Result<u64> {
    let bytes = model.to_bytes()?;
    let meta = ctx.registry.publish(
        &ctx.spec.name,
        &bytes,
        NewVersion {
            producer: format!("{}/{}", ctx.wf.name, ctx.spec.name),
            training_rows: rows,
            metrics: metrics.clone(),
            lineage: Lineage {
                data: Some(describe(&ctx.wf, &t.source)),
                parent,
            },
            ..Default::default()
        },
    )?;
    ctx.report(Progress::Published {
        node: ctx.spec.name.clone(),
        version: meta.version,
        rows,
        metrics,
    });
    Ok(meta.version)
}

/// The newest loadable version of `model` as a trained model, with its metadata.
fn latest(
    ctx: &NodeCtx,
    model: &str,
) -> Result<Option<(crate::registry::VersionMeta, TrainedModel)>> {
    let Some((meta, bytes)) = ctx.registry.latest_loadable(model)? else {
        return Ok(None);
    };
    let trained = eddy_algorithms::model::decode::<TrainedModel>(&bytes, TRAINED_MODEL_KIND)?;
    Ok(Some((meta, trained)))
}

fn batch_fit(ctx: &NodeCtx, t: &TrainSpec) -> Result<Outcome> {
    let features = &ctx.wf.features[&t.features];
    let mut pipeline = learners::pipeline(features)?;
    let batches =
        SourceReader::open(&ctx.wf, &t.source, ctx.stop.clone(), &ctx.generators)?.read_all()?;
    let ex = learners::examples(&mut pipeline, &batches)?;
    let rows = ex.features.rows() as u64;
    ctx.report(Progress::Rows {
        node: ctx.spec.name.clone(),
        rows,
    });
    let trained = learners::fit_batch(&ctx.spec.name, t, &pipeline, &ex)?;
    let task = trained.model.task();
    let mut metrics = BTreeMap::new();
    if !t.learner.is_clustering() {
        let mut preds = Vec::new();
        trained.model.predict(&ex.features, &mut preds)?;
        let mut set = MetricSet::for_task(task);
        set.update_batch(&preds, &ex.labels, None)?;
        metrics = to_map(&set.values())
            .into_iter()
            .map(|(k, v)| (format!("train_{k}"), v))
            .collect();
    }
    let version = publish(ctx, t, &trained, rows, metrics.clone(), None)?;
    Ok(Outcome {
        rows,
        metrics,
        version: Some(version),
        pass: true,
        message: Some(format!(
            "published v{version} ({} on {rows} rows)",
            t.learner.name()
        )),
    })
}

fn online(ctx: &NodeCtx, t: &TrainSpec, stream: bool) -> Result<Outcome> {
    let name = &ctx.spec.name;
    let features = &ctx.wf.features[&t.features];
    // where to start: our own latest version (resume), a warm start, or fresh
    let own = if stream && ctx.resumed && t.failover == Failover::Resume {
        latest(ctx, name)?
    } else {
        None
    };
    let resumed_from = own.as_ref().map(|(meta, _)| meta.version);
    let (mut trained, skip, parent) = if let Some((meta, m)) = own {
        (m, meta.training_rows, Some(meta.version))
    } else if let Some(w) = &t.warm_start {
        let (meta, parent) = latest(ctx, w)?
            .ok_or_else(|| node_err(ctx, format!("warm start: `{w}` has published no version")))?;
        let model = learners::warm_started(name, t, parent.pipeline.dim(), &parent.model)?;
        (
            TrainedModel {
                pipeline: parent.pipeline,
                model,
            },
            0,
            Some(meta.version),
        )
    } else {
        let pipeline = learners::pipeline(features)?;
        let model = learners::online(name, t, pipeline.dim())?;
        (TrainedModel { pipeline, model }, 0, None)
    };
    let mut eval: ProgressiveValidation =
        ProgressiveConfig::default().build(trained.model.task())?;
    let mut ex = Examples::new(Features::Sparse(Default::default()), Vec::new(), None)?;
    let mut rows = skip;
    let mut versions = 0u32;
    let mut last_version = None;
    let epochs = if stream { 1 } else { t.epochs };
    let mut since_rows = 0u64;
    for _ in 0..epochs {
        let mut reader = SourceReader::open(&ctx.wf, &t.source, ctx.stop.clone(), &ctx.generators)?;
        let mut pending = if skip > 0 && stream {
            reader.skip(skip)?
        } else {
            None
        };
        let mut since = Instant::now();
        loop {
            if ctx.stopped() {
                return Err(node_err(ctx, "stopped"));
            }
            let batch = match pending.take() {
                Some(b) => b,
                None => match reader.next_batch()? {
                    Some(b) => b,
                    None => break,
                },
            };
            trained.pipeline.learn_examples_into(&batch, &mut ex)?;
            eval.process(&mut trained.model, &ex)?;
            let n = batch.num_rows() as u64;
            rows += n;
            since_rows += n;
            ctx.report(Progress::Rows {
                node: name.clone(),
                rows,
            });
            let due_rows = t.publish_rows.is_some_and(|r| since_rows >= r);
            let due_time = t.publish_every.is_some_and(|d| since.elapsed() >= d);
            if stream && (due_rows || due_time) {
                let v = publish(ctx, t, &trained, rows, to_map(&eval.cumulative()), parent)?;
                last_version = Some(v);
                versions += 1;
                since_rows = 0;
                since = Instant::now();
            }
        }
    }
    let metrics = to_map(&eval.cumulative());
    // the final version: rows learned since the last one (a batch pass publishes only this)
    if since_rows > 0 || (last_version.is_none() && resumed_from.is_none()) {
        let v = publish(ctx, t, &trained, rows, metrics.clone(), parent)?;
        last_version = Some(v);
        versions += 1;
    }
    Ok(Outcome {
        rows,
        metrics,
        version: last_version.or(resumed_from),
        pass: true,
        message: Some(match skip {
            0 => format!("{rows} rows, {versions} version(s)"),
            s => format!("resumed after {s} rows; {rows} rows, {versions} version(s)"),
        }),
    })
}
