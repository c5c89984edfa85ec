//! `stream-train` with `processes = N`: the node trains in N worker processes under its own
//! supervisor ([`ProcessJob`]) instead of in the run's process.
//!
//! **The node's side** ([`train`]): it starts the job in `<run dir>/checkpoints/<node>/`
//! (worker checkpoints, the shards' snapshots when it starts the shards, the supervisor's
//! status), under the job id kept in `<run dir>/ps-jobs/<node>` — so a retry or a restarted run
//! is the same job and its workers resume from their checkpoints — waits for the workers (a
//! stopped run stops them: each takes a last checkpoint), then publishes the job's version:
//! worker 0's pipeline with the shards' tables, with every worker's rows, their merged
//! progressive metrics and the job's restarts and replayed rows. A dead worker's restarts reach
//! `eddy status` as the node's failover counters.
//!
//! **Versions while training.** With `publish-every` / `publish-rows`, worker 0 publishes, as
//! subtask 0 does in one process: the shards' tables read back with its pipeline, counted in
//! its own rows and metrics, to the run's registry (and once more when its input ends). The
//! node sees each new version in the registry and passes it on to the run, so
//! `on-new-version` gates and deploys follow a job of worker processes as they follow any
//! training node.
//!
//! **A worker's side** ([`node_worker`]): `eddy node-worker --workflow FILE --node NAME` (plus
//! the flags every worker gets, see [`supervise::job`](crate::train::supervise::job)) loads
//! the same spec and builds its job from the node: its learner and features, its share of the
//! Kafka topic's partitions, checkpoints every `checkpoint-every`, the shards the job names.
//! The same command runs a worker of a StatefulSet on Kubernetes (`deploy/k8s/workers.yaml`);
//! there the node has `supervision = "external"`: it starts nothing and passes worker 0's
//! versions on to the run until the run is stopped.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eddy_algorithms::pipeline::Pipeline;
use eddy_core::dataflow::{FailoverMode, Stream};

use super::train::{node_err, template, template_of};
use super::{NodeCtx, Outcome, Progress};
use crate::error::{Error, Result};
use crate::model_stream::{ModelStream, PublishEvery};
use crate::registry::Registry;
use crate::runner::{learners, sources};
use crate::spec::{NodeKind, TrainSpec, Workflow};
use crate::train::supervise::{
    ProcessJob, ProcessJobConfig, SupervisorEvent, SupervisorEvents, WorkerRole,
};
use crate::train::{job_id_in, PsConfig, PsSpec, PublishTo, TrainConfig, TrainJob};

/// Runs the node's job of worker processes to its end and publishes its model.
pub(super) fn train(ctx: &NodeCtx, t: &TrainSpec) -> Result<Outcome> {
    if t.external_workers {
        return follow_external(ctx);
    }
    let name = &ctx.spec.name;
    let n = t.processes.unwrap_or(1) as usize;
    let program = ctx.program.clone().unwrap_or_else(|| PathBuf::from("eddy"));
    let exactly_once = t.failover == FailoverMode::ExactlyOnce;
    let mut args: Vec<OsString> = vec![
        "node-worker".into(),
        "--workflow".into(),
        ctx.spec_path.clone().into_os_string(),
        "--node".into(),
        name.into(),
    ];
    if exactly_once {
        args.extend(["--failover".into(), "exactly-once".into()]);
    }
    let periodic = t.publish_every.is_some() || t.publish_rows.is_some();
    if periodic {
        args.extend([
            "--registry".into(),
            ctx.registry.root().as_os_str().to_owned(),
        ]);
    }
    let dir = ctx.run_dir.join("checkpoints").join(name);
    let mut config = ProcessJobConfig::new(program, n, args, dir);
    config.shards = match &t.ps {
        Some(PsSpec::Remote(addrs)) => Some(addrs.clone()),
        _ => None,
    };
    config.job = Some(job_id_in(&ctx.run_dir.join("ps-jobs").join(name))?);
    config.exactly_once = exactly_once;
    config.model = Some(learners::spec(name, t)?);
    config.events = Some(failover_counters(ctx));
    let job = ProcessJob::start(config).map_err(|e| node_err(ctx, e.to_string()))?;
    let mut stopping = false;
    let mut relay = Relay::new(ctx)?;
    while !job.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
        if ctx.stopped() && !stopping {
            stopping = true;
            job.stop();
        }
        relay.poll(ctx)?;
    }
    let outcome = job.join()?;
    relay.poll_now(ctx)?;
    if outcome.stopped {
        // interrupted, not done: the next run resumes from the workers' checkpoints
        return Err(node_err(ctx, "stopped"));
    }
    let report = outcome.report;
    let model = outcome
        .model
        .ok_or_else(|| node_err(ctx, "the job of worker processes returned no model"))?;
    let mut metrics: BTreeMap<String, f64> = report.metrics.clone();
    let sum = |f: fn(&crate::train::supervise::WorkerReport) -> u64| {
        report.workers.iter().map(f).sum::<u64>() as f64
    };
    let restarts = sum(|w| w.restarts);
    metrics.insert("processes".into(), n as f64);
    metrics.insert("restarts".into(), restarts);
    metrics.insert("records_replayed".into(), sum(|w| w.records_replayed));
    metrics.insert("records_lost".into(), sum(|w| w.records_lost));
    let every = PublishEvery::rows(u64::MAX);
    let parent = relay.last;
    let mut stream = ModelStream::new(ctx.registry.clone(), name, every, template(ctx, t, parent))?;
    let meta = stream.publish(&model, report.rows, metrics.clone())?;
    ctx.report(Progress::Published {
        node: name.clone(),
        version: meta.version,
        rows: report.rows,
        metrics: metrics.clone(),
    });
    Ok(Outcome {
        rows: report.rows,
        metrics,
        version: Some(meta.version),
        pass: true,
        message: Some(format!(
            "{} rows, {n} worker process(es) through shards (job {}), {restarts} restart(s), \
             rolled back {} time(s)",
            report.rows,
            outcome.job,
            report.rollbacks.len().saturating_sub(1)
        )),
    })
}

/// `supervision = "external"`: someone else runs the workers; the node passes worker 0's
/// versions on to the run until the run is stopped.
fn follow_external(ctx: &NodeCtx) -> Result<Outcome> {
    let mut relay = Relay::new(ctx)?;
    while !ctx.stopped() {
        std::thread::sleep(Duration::from_millis(20));
        relay.poll(ctx)?;
    }
    relay.poll_now(ctx)?;
    Err(node_err(ctx, "stopped"))
}

/// How often the node looks for versions worker 0 published.
const RELAY_EVERY: Duration = Duration::from_millis(250);

/// Passes the versions worker 0 publishes (another process) on to the run, as a training
/// node's own publications are.
struct Relay {
    /// The newest version of the node's model seen.
    last: Option<u64>,
    polled: std::time::Instant,
}

impl Relay {
    fn new(ctx: &NodeCtx) -> Result<Relay> {
        let last = ctx.registry.latest(&ctx.spec.name)?.map(|m| m.version);
        Ok(Relay {
            last,
            polled: std::time::Instant::now(),
        })
    }

    /// [`poll_now`](Self::poll_now), at most every [`RELAY_EVERY`].
    fn poll(&mut self, ctx: &NodeCtx) -> Result<()> {
        if self.polled.elapsed() < RELAY_EVERY {
            return Ok(());
        }
        self.poll_now(ctx)
    }

    /// Reports every version newer than the last seen.
    fn poll_now(&mut self, ctx: &NodeCtx) -> Result<()> {
        self.polled = std::time::Instant::now();
        let after = self.last.unwrap_or(0);
        for v in ctx.registry.versions(&ctx.spec.name)? {
            if v.version > after {
                self.last = Some(v.version);
                ctx.report(Progress::Published {
                    node: ctx.spec.name.clone(),
                    version: v.version,
                    rows: v.training_rows,
                    metrics: v.metrics,
                });
            }
        }
        Ok(())
    }
}

/// Reports the job's restarts to the run state as they happen (`eddy status`).
fn failover_counters(ctx: &NodeCtx) -> SupervisorEvents {
    let progress = ctx.progress.clone();
    let node = ctx.spec.name.clone();
    let restarts = std::sync::atomic::AtomicU64::new(0);
    Arc::new(move |event: &SupervisorEvent| {
        if !matches!(event, SupervisorEvent::Died { .. }) {
            return;
        }
        let count = restarts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        // the scheduler outlives every node task; a send can only fail during shutdown
        let _ = progress.send(Progress::Failover {
            node: node.clone(),
            counters: vec![("restarts", count)],
        });
    })
}

/// What one worker process of a `stream-train` node with `processes` trains: its job, its
/// input (its share of the topic) and the node's pipeline.
pub struct NodeWorker {
    /// The training job, configured as the worker's.
    pub job: TrainJob,
    /// Its input stream in the job's dataflow.
    pub input: Stream,
    /// The node's feature pipeline.
    pub pipeline: Pipeline,
}

/// Worker `role` of node `node` of `wf`: trains through the shards at `shards` under job id
/// `job`, checkpointing in `checkpoint_dir` (see the [module docs](self)). The role's
/// failover must be the node's (`--failover exactly-once` for an exactly-once node). Worker 0
/// of a node with `publish-every` / `publish-rows` publishes to `registry` (the run's; the
/// other workers ignore it).
pub fn node_worker(
    wf: &Workflow,
    node: &str,
    role: &WorkerRole,
    shards: Vec<String>,
    job: &str,
    checkpoint_dir: &Path,
    registry: Option<&Path>,
) -> Result<NodeWorker> {
    let t = worker_spec(wf, node)?;
    let processes = t.processes.unwrap_or(1) as usize;
    if role.workers != processes {
        return Err(Error::InvalidArgument(format!(
            "node `{node}` trains in {processes} worker process(es), but this worker was \
             started as one of {}",
            role.workers
        )));
    }
    let exactly_once = t.failover == FailoverMode::ExactlyOnce;
    if role.exactly_once != exactly_once {
        return Err(Error::InvalidArgument(format!(
            "node `{node}` fails over {}, but this worker was started {}: every worker of the \
             job fails over as the node says",
            mode(exactly_once),
            mode(role.exactly_once)
        )));
    }
    let mut config = TrainConfig::new(node, learners::spec(node, t)?);
    config.ps = Some(PsConfig {
        consistency: t.consistency,
        job: Some(job.to_string()),
        existing: t.ps_existing,
        ..PsConfig::new(PsSpec::Remote(shards))
    });
    config.checkpoint.interval = t.checkpoint_every;
    config.checkpoint.dir = Some(checkpoint_dir.to_path_buf());
    let every = PublishEvery {
        interval: t.publish_every,
        rows: t.publish_rows,
    };
    if let (0, Some(dir), false) = (role.index, registry, every == PublishEvery::default()) {
        let registry = Registry::open(dir)?;
        let parent = registry.latest(node)?.map(|m| m.version);
        config.publish = Some(PublishTo {
            registry,
            name: node.to_string(),
            every,
            template: template_of(wf, node, t, parent),
        });
    }
    role.configure(&mut config)?;
    let member = Some((role.index, role.workers));
    let source = sources::kafka_source(&t.source, &wf.sources[&t.source], member)?;
    config.batch_rows = Some(source.batch_rows);
    let job = TrainJob::new(config)?;
    let input = job.flow().source_with(&t.source, source.factory);
    let pipeline = learners::pipeline(&wf.features[&t.features])?;
    Ok(NodeWorker {
        job,
        input,
        pipeline,
    })
}

fn mode(exactly_once: bool) -> &'static str {
    match exactly_once {
        true => "exactly-once",
        false => "approximately",
    }
}

/// Node `node` of `wf`, when it is a `stream-train` node with `processes`.
fn worker_spec<'a>(wf: &'a Workflow, node: &str) -> Result<&'a TrainSpec> {
    let spec = wf.nodes.iter().find(|n| n.name == node).ok_or_else(|| {
        Error::InvalidArgument(format!("the workflow `{}` has no node `{node}`", wf.name))
    })?;
    match &spec.kind {
        NodeKind::StreamTrain(t) if t.processes.is_some() => Ok(t),
        _ => Err(Error::InvalidArgument(format!(
            "node `{node}` is not a `stream-train` node with `processes`: it has no worker \
             processes"
        ))),
    }
}
