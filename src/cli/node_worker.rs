//! `eddy node-worker`: one worker process of a workflow's `stream-train` node with
//! `processes = N` — what the node starts N of under its supervisor, and what a StatefulSet
//! runs on Kubernetes (`deploy/k8s/workers.yaml`). It is `eddy worker` with the job described
//! by the workflow's node instead of by `eddy learn`'s flags: the same worker
//! ([`eddy_workflow::train::supervise::worker`]), the same protocol on stdout. The job is
//! built by [`eddy_workflow::runner::node_worker`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use eddy_core::dataflow::FailoverMode;
use eddy_workflow::runner::node_worker;
use eddy_workflow::spec::Workflow;
use eddy_workflow::train::supervise::{self, WorkerRole};

use super::learn::parse_failover;
use super::learn_parallel::shard_list;

/// Arguments of `eddy node-worker`.
#[derive(Debug, Args)]
pub struct NodeWorkerArgs {
    /// The workflow (TOML) whose node this worker trains.
    #[arg(long)]
    pub workflow: PathBuf,
    /// The `stream-train` node with `processes`.
    #[arg(long)]
    pub node: String,
    /// This worker's index, `0..N`: it reads the partitions `p` of the topic with
    /// `p % N == index`.
    #[arg(long)]
    pub worker_index: usize,
    /// The job's worker processes N (the node's `processes`).
    #[arg(long)]
    pub workers: usize,
    /// The shards the job trains through: `grpc://HOST:PORT,HOST:PORT` (shard i at the i-th).
    #[arg(long)]
    pub ps: String,
    /// The job id at the shards (every worker of the job names the same).
    #[arg(long)]
    pub ps_job: String,
    /// This worker's checkpoint directory (its offsets, pipeline statistics, evaluator).
    #[arg(long)]
    pub checkpoint_dir: PathBuf,
    /// The node's failover: `approximate` or `exactly-once` (must match the node's).
    #[arg(long, default_value = "approximate", value_parser = parse_failover)]
    pub failover: FailoverMode,
    /// Exactly-once (set by the supervisor): start from this local checkpoint (0: from the
    /// start of its partitions).
    #[arg(long)]
    pub restore_epoch: Option<u64>,
    /// Save this worker's pipeline and model at its end (the supervisor asks worker 0).
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// The run's model registry: worker 0 of a node with `publish-every` / `publish-rows`
    /// publishes versions there while it trains (the other workers ignore it).
    #[arg(long)]
    pub registry: Option<PathBuf>,
}

/// Runs `eddy node-worker`.
pub fn run(args: NodeWorkerArgs) -> anyhow::Result<()> {
    let role = WorkerRole {
        index: args.worker_index,
        workers: args.workers,
        exactly_once: args.failover == FailoverMode::ExactlyOnce,
        restore_epoch: args.restore_epoch,
    };
    role.check()?;
    role.announce()?;
    let wf = Workflow::load(&args.workflow)
        .with_context(|| format!("loading {}", args.workflow.display()))?;
    let shards = shard_list(&args.ps)?;
    let worker = node_worker(
        &wf,
        &args.node,
        &role,
        shards,
        &args.ps_job,
        &args.checkpoint_dir,
        args.registry.as_deref(),
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    super::shutdown::on_signal(move || flag.store(true, Ordering::SeqCst), false)?;
    supervise::worker::run(
        worker.job,
        worker.input,
        worker.pipeline,
        &stop,
        args.save.as_deref(),
    )?;
    Ok(())
}
