//! A training job of N worker processes, from start to its model: what `eddy learn
//! --processes N` and a `stream-train` node with `processes = N` run.
//!
//! [`ProcessJob::start`] starts N shard processes on loopback when the job names no running
//! shards ([`ShardProcesses`]), then N `eddy worker` processes under a [`Supervisor`]. Every
//! worker gets the job's own arguments plus its part: `--worker-index I --workers N --ps
//! grpc://… --ps-job JOB --checkpoint-dir DIR/worker-I` (and worker 0 `--save`, see below) —
//! the worker command line is this module's contract with `eddy worker`.
//!
//! **The job's directory** `DIR` holds each worker's checkpoints (`worker-I/`), the shards'
//! snapshots when the job started them (`ps/`), the job id (`job-id`: a job started again on
//! the same directory is the same job at the shards, and resumes), and the supervisor's
//! status for `eddy status` ([`STATUS_FILE`]). A job whose input ended clears all but the
//! status; a stopped or failed one keeps them.
//!
//! **The job's model.** The tables are in the shards; the pipeline (its running statistics)
//! is each worker's own. Decision, as for data-parallel subtasks in one process: the job's
//! model is worker 0's pipeline with the shards' tables once every worker finished. With
//! [`ProcessJobConfig::model`] set, worker 0 saves its pipeline and model at its end
//! (`DIR/worker-0.model`) and [`ProcessJob::join`] reads the tables back from the shards
//! ([`shard_model`]) after the last worker finished, before it stops the shards.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eddy_algorithms::learners::LearnerSpec;
use eddy_algorithms::trained::TrainedModel;
use eddy_core::checkpoint::CheckpointStore;
use eddy_ps::grpc::client::restore_job_epoch;

use super::{
    epochs, EpochRecovery, RestoreShards, ShardProcesses, Supervisor, SupervisorConfig,
    SupervisorEvents, SupervisorReport, WorkerCommand, STATUS_FILE,
};
use crate::error::{Error, Result};
use crate::train::{job_id_in, shard_model, JobPolicy, PsConfig, PsSpec};

/// Where worker 0 saves its pipeline and model for [`ProcessJob::join`], in the job's directory.
const WORKER0_MODEL: &str = "worker-0.model";

/// What a [`ProcessJob`] runs.
#[derive(Clone)]
pub struct ProcessJobConfig {
    /// The `eddy` binary the workers (and shards) run.
    pub exe: PathBuf,
    /// Worker processes (at least 1).
    pub processes: usize,
    /// Every worker's arguments, from the subcommand on (`worker …`), without the flags the
    /// job adds per worker (see the [module docs](self)).
    pub worker_args: Vec<OsString>,
    /// The job's directory (see the [module docs](self)).
    pub dir: PathBuf,
    /// Running shards, shard `i` at index `i` (`None`: the job starts as many shard
    /// processes as workers, on loopback, their snapshots in `dir/ps`).
    pub shards: Option<Vec<String>>,
    /// The job id at the shards (`None`: the one kept in `dir/job-id`, new if none).
    pub job: Option<String>,
    /// Exactly-once failover across the processes (else approximate).
    pub exactly_once: bool,
    /// Restarts of one worker before the job fails.
    pub max_restarts: u64,
    /// How long a restarting shard is retried when rolling back (exactly-once) or reading the
    /// model.
    pub retry_for: Duration,
    /// The learner the workers train, when the job's model is wanted (see the [module
    /// docs](self)); `None`: no model (e.g. a benchmark).
    pub model: Option<LearnerSpec>,
    /// A listener for what the supervisor does.
    pub events: Option<SupervisorEvents>,
}

impl ProcessJobConfig {
    /// `processes` workers of `exe` with `worker_args`, their state in `dir`, with the
    /// defaults: shards started on loopback, approximate failover, 10 restarts, 60 s retries,
    /// no model.
    pub fn new(exe: PathBuf, processes: usize, worker_args: Vec<OsString>, dir: PathBuf) -> Self {
        ProcessJobConfig {
            exe,
            processes,
            worker_args,
            dir,
            shards: None,
            job: None,
            exactly_once: false,
            max_restarts: 10,
            retry_for: Duration::from_secs(60),
            model: None,
            events: None,
        }
    }
}

/// How a [`ProcessJob`] ended.
#[derive(Debug)]
pub struct ProcessOutcome {
    /// What the supervisor counted, per worker and merged.
    pub report: SupervisorReport,
    /// The job's model (worker 0's pipeline, the shards' tables), when asked for.
    pub model: Option<TrainedModel>,
    /// Whether it was stopped before its input ended (its state is kept for a resume).
    pub stopped: bool,
    /// The job id at the shards.
    pub job: String,
}

/// A running job of worker processes (see the [module docs](self)).
pub struct ProcessJob {
    supervisor: Supervisor,
    shards: ShardProcesses,
    addrs: Vec<String>,
    job: String,
    config: ProcessJobConfig,
    stopped: AtomicBool,
}

impl ProcessJob {
    /// Starts the shards (if needed) and the workers.
    pub fn start(config: ProcessJobConfig) -> Result<ProcessJob> {
        let n = config.processes;
        if n == 0 {
            return Err(Error::InvalidArgument(
                "a job of worker processes needs at least one".into(),
            ));
        }
        std::fs::create_dir_all(&config.dir).map_err(|e| Error::io(&config.dir, e))?;
        // the job id is kept beside the workers' checkpoints, so a rerun that resumes from
        // them is the same job at the shards
        let job = match &config.job {
            Some(job) => job.clone(),
            None => job_id_in(&config.dir.join("job-id"))?,
        };
        let (shards, addrs) = match &config.shards {
            Some(addrs) => (ShardProcesses::default(), addrs.clone()),
            None => {
                let shards = ShardProcesses::start(&config.exe, n, &config.dir.join("ps"))?;
                let addrs = shards.addrs().to_vec();
                (shards, addrs)
            }
        };
        let uri = format!("grpc://{}", addrs.join(","));
        let workers = (0..n)
            .map(|i| worker_command(&config, i, &uri, &job))
            .collect();
        let mut sup = SupervisorConfig::new(workers);
        sup.max_restarts = config.max_restarts;
        sup.status_file = Some(config.dir.join(STATUS_FILE));
        sup.events = config.events.clone();
        if config.exactly_once {
            sup.exactly_once = Some(EpochRecovery {
                checkpoint_dirs: (0..n).map(|i| worker_dir(&config.dir, i)).collect(),
                restore: shard_restorer(addrs.clone(), &job, n, config.retry_for)?,
            });
        }
        let supervisor = Supervisor::start(sup)?;
        Ok(ProcessJob {
            supervisor,
            shards,
            addrs,
            job,
            config,
            stopped: AtomicBool::new(false),
        })
    }

    /// The job id at the shards.
    pub fn job_id(&self) -> &str {
        &self.job
    }

    /// The shards' addresses, shard `i` at index `i`.
    pub fn shard_addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The process id of each worker now (`None` while one is down).
    pub fn worker_pids(&self) -> Vec<Option<u32>> {
        self.supervisor.pids()
    }

    /// The process id of each shard the job started (empty for running shards).
    pub fn shard_pids(&self) -> Vec<u32> {
        self.shards.pids()
    }

    /// Asks every worker for a last checkpoint and an exit; the job's state is kept.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.supervisor.stop();
    }

    /// Whether every worker has finished.
    pub fn is_finished(&self) -> bool {
        self.supervisor.is_finished()
    }

    /// Waits for every worker, reads the job's model back (when asked for), stops the shards
    /// the job started, and clears the job's state if its input ended.
    pub fn join(self) -> Result<ProcessOutcome> {
        let ProcessJob {
            supervisor,
            shards,
            addrs,
            job,
            config,
            stopped,
        } = self;
        let report = supervisor.join()?;
        let model = match &config.model {
            Some(learner) => Some(final_model(&config, learner, &addrs, &job)?),
            None => None,
        };
        drop(shards);
        let stopped = stopped.load(Ordering::SeqCst);
        if !stopped {
            clear(&config)?;
        }
        Ok(ProcessOutcome {
            report,
            model,
            stopped,
            job,
        })
    }
}

/// Worker `i`'s checkpoint directory.
fn worker_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("worker-{i}"))
}

/// Worker `i`'s command: the job's arguments plus its own.
fn worker_command(config: &ProcessJobConfig, i: usize, uri: &str, job: &str) -> WorkerCommand {
    let mut args = config.worker_args.clone();
    for (flag, value) in [
        ("--worker-index", i.to_string()),
        ("--workers", config.processes.to_string()),
        ("--ps", uri.to_string()),
        ("--ps-job", job.to_string()),
    ] {
        args.push(flag.into());
        args.push(value.into());
    }
    args.push("--checkpoint-dir".into());
    args.push(worker_dir(&config.dir, i).into_os_string());
    if i == 0 && config.model.is_some() {
        args.push("--save".into());
        args.push(config.dir.join(WORKER0_MODEL).into_os_string());
    }
    WorkerCommand {
        program: config.exe.clone(),
        args,
    }
}

/// Worker 0's pipeline with the tables the shards hold now.
fn final_model(
    config: &ProcessJobConfig,
    learner: &LearnerSpec,
    addrs: &[String],
    job: &str,
) -> Result<TrainedModel> {
    let path = config.dir.join(WORKER0_MODEL);
    let mut trained = TrainedModel::load(&path)?;
    let ps = PsConfig {
        job: Some(job.to_string()),
        existing: JobPolicy::Resume,
        retry_for: config.retry_for,
        ..PsConfig::new(PsSpec::Remote(addrs.to_vec()))
    };
    trained.model = shard_model(&ps, learner, trained.pipeline.dim())?;
    Ok(trained)
}

/// Clears what a finished job leaves: its shards' snapshots (if it started them), every
/// worker's checkpoints, worker 0's model file and the job id.
fn clear(config: &ProcessJobConfig) -> Result<()> {
    let dir = &config.dir;
    if config.shards.is_none() {
        let _ = std::fs::remove_dir_all(dir.join("ps"));
    }
    // exactly-once workers keep their checkpoints until the whole job ended
    for i in 0..config.processes {
        let wdir = worker_dir(dir, i);
        CheckpointStore::open(&wdir, 1)?.clear()?;
        epochs::clear(&wdir)?;
        let _ = std::fs::remove_dir(&wdir);
    }
    let _ = std::fs::remove_file(dir.join(WORKER0_MODEL));
    let _ = std::fs::remove_file(dir.join("job-id"));
    Ok(())
}

/// How the supervisor rolls the shards at `addrs` back to a job-wide epoch of job `job` with
/// `n` worker processes (retrying a restarting shard for `retry_for`).
fn shard_restorer(
    addrs: Vec<String>,
    job: &str,
    n: usize,
    retry_for: Duration,
) -> Result<RestoreShards> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::InvalidArgument(format!("starting a network runtime: {e}")))?;
    let workers = u32::try_from(n)
        .map_err(|_| Error::InvalidArgument(format!("{n} worker processes: too many")))?;
    let job = job.to_string();
    Ok(Arc::new(move |epoch: u64, finished: &[u32]| {
        tracing::info!(epoch, "rolling every shard back");
        runtime
            .block_on(restore_job_epoch(
                &addrs, &job, epoch, workers, finished, retry_for,
            ))
            .map_err(|e| {
                Error::InvalidArgument(format!(
                    "parameter server: rolling back to epoch {epoch}: {e}"
                ))
            })
    }))
}
