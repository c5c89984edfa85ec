//! Worker processes of one training job under a local supervisor: approximate or exactly-once
//! failover across processes.
//!
//! ## Process model
//! A job of N workers is N `eddy worker --worker-index I --workers N` processes (any command
//! speaking the [`protocol`] will do) training one model held by parameter-server shards
//! (`eddy ps serve`, over gRPC). Each worker is the one training engine
//! ([`TrainJob`](super::TrainJob)) at parallelism 1 over its own input; there is no second
//! training loop. [`Supervisor`] starts the N processes, restarts a dead one alone after an
//! [`eddy_core::backoff`] wait, and, when asked to stop, sends every worker SIGTERM (they take a
//! last checkpoint and exit 0) and waits. On Kubernetes the same workers run as a StatefulSet
//! and the kubelet restarts them; nothing in a worker depends on this supervisor.
//!
//! ## Identity
//! A worker is its index I of N, given on its command line, never discovered: it owns the
//! Kafka partitions `p` with `p % N == I` (static membership,
//! [`KafkaSourceOptions::member`](eddy_core::source::kafka::KafkaSourceOptions::member)), so
//! a restart moves no partition and its peers never pause for a rebalance. Every worker of the
//! job names the same job id at the shards; the ids its learner uses at the shards' clocks are
//! leased anew by each process start (unique across processes and restarts).
//!
//! ## What a worker checkpoints
//! Its own checkpoint directory holds its source positions (the next offset of each owned
//! partition, and the bounded read's end), its pipeline statistics, its progressive evaluator
//! and its count of trained rows — not the model: the tables live in the shards, shared by
//! every worker ([`PsConfig::tables_in_checkpoints`](super::PsConfig::tables_in_checkpoints)
//! is false), so a restarted worker trains on from the model as its peers left it.
//!
//! ## What is lost or replayed
//! A restarted worker re-reads its partitions from its last checkpointed offsets: the rows it
//! had trained since that checkpoint are trained again (their gradients reach the shards
//! twice). Nothing is lost: the rows that arrive while it is down wait in Kafka. The
//! supervisor counts the replay exactly from the protocol (see [`account`]): the dead
//! process's last reported count minus the count its successor restored. The result is
//! approximate, as Flink's region failover with a shared store: the model differs from a
//! fault-free run's by the replayed gradients and by the order of updates.
//!
//! ## Exactly-once across processes
//! With [`SupervisorConfig::exactly_once`] (`--failover exactly-once`) a job-wide checkpoint
//! epoch is every worker's offsets plus a snapshot of every shard at the same cut, and any
//! failure rolls all of them back to the newest complete epoch. Decision: the barrier goes
//! through the shards (no coordinator process of its own); the supervisor only restores.
//! - **Epochs.** A worker's n-th checkpoint is job epoch n ([`EpochBarrier`](super::EpochBarrier);
//!   the count is restored with its checkpoint). The local checkpoint numbers are not used:
//!   a source injects only the newest of several requested barriers, so they drift apart.
//! - **The barrier.** At its checkpoint a worker reports epoch n to every shard with its pushes
//!   applied (a push returns once applied) and then pushes nothing until every shard answers
//!   that n is complete. A shard snapshots n (a synced file labelled (job, n)) once every
//!   worker of the job reported n or finished its input. So the snapshot holds each worker's
//!   pushes up to its own checkpoint n and nothing after it.
//! - **What each side stores.** A worker's checkpoint holds its offsets, pipeline
//!   statistics, evaluator and the label (job, n). [`epochs`] records n → local checkpoint
//!   beside it. A worker keeps its checkpoints when its input ends: a peer may still roll it
//!   back. A shard keeps its newest epoch snapshots (`--keep`).
//! - **A failure.** A worker dies, or a shard restarts: every worker's next call fails (the
//!   client is strict), so they exit. The supervisor kills the remaining workers and picks
//!   epoch E: the oldest of the job epochs of the running workers' newest checkpoints (a shard
//!   completes n+1 only after every worker committed n, so every worker holds E). Then it
//!   rolls every shard back to E ([`EpochRecovery::restore`]: `RestoreEpoch`, which also resets
//!   the barrier; 0 clears the tables). Last it restarts each worker from its checkpoint of E
//!   (`--restore-epoch`). A worker that had finished before E stays finished: its rows are in
//!   E. Workers that were running or that finished after E start again. A fresh start is the
//!   same procedure: every worker from E (0 for a new job).
//! - **What is reported.** [`SupervisorReport::rollbacks`] lists the epochs the job started
//!   from. Per worker, its restarts and the rows it trains again (counted as in approximate
//!   mode) are reported; nothing is lost.
//!
//! | module | what |
//! |---|---|
//! | [`protocol`] | [`WorkerLine`]: what a worker prints on stdout, one JSON object a line |
//! | [`account`] | per-worker counts: restarts, replay, recovery time, peers' throughput |
//! | [`status`] | [`SupervisorStatus`]: the status file `eddy status` reads, while the job runs and after |
//! | [`epochs`] | a worker's map of job-wide epochs to its local checkpoints (exactly-once) |
//! | [`job`] | [`ProcessJob`]: shards, supervised workers and the job's final model, start to end |
//! | [`shards`] | [`ShardProcesses`]: `eddy ps serve` shard processes on loopback |
//! | [`worker`] | a worker process's side: [`WorkerRole`] and its run to the final report |

pub mod account;
pub mod epochs;
pub mod job;
pub mod protocol;
mod run;
pub mod shards;
pub mod status;
pub mod worker;

pub use account::WorkerReport;
pub use job::{ProcessJob, ProcessJobConfig, ProcessOutcome};
pub use protocol::WorkerLine;
pub use shards::ShardProcesses;
pub use status::{SupervisorStatus, STATUS_FILE};
pub use worker::WorkerRole;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use eddy_core::backoff::Backoff;
use serde::Serialize;

use crate::error::{Error, Result};

/// How to start one worker process (a fresh [`std::process::Command`] per start).
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    /// The program (e.g. the `eddy` binary).
    pub program: PathBuf,
    /// Its arguments (e.g. `worker --worker-index 0 --workers 2 …`).
    pub args: Vec<OsString>,
}

impl WorkerCommand {
    fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.program);
        c.args(&self.args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        c
    }
}

/// Something the supervisor did, for logs and progress lines.
#[derive(Debug, Clone, PartialEq)]
pub enum SupervisorEvent {
    /// Worker `worker` started as process `pid` (its `incarnation`-th start, from 0).
    Started {
        /// The worker's index.
        worker: usize,
        /// The process id.
        pid: u32,
        /// Starts before this one.
        incarnation: u32,
    },
    /// Worker `worker`'s process `pid` died (`status`: how); it restarts after `after`.
    Died {
        /// The worker's index.
        worker: usize,
        /// The dead process.
        pid: u32,
        /// Its exit status, as the OS says it.
        status: String,
        /// The backoff wait before the restart.
        after: Duration,
    },
    /// Worker `worker`'s process (its `incarnation`-th start) trained its first rows.
    Training {
        /// The worker's index.
        worker: usize,
        /// Starts before this one.
        incarnation: u32,
    },
    /// Worker `worker` trained again `after` its process died.
    Recovered {
        /// The worker's index.
        worker: usize,
        /// Process exit → first trained rows.
        after: Duration,
    },
    /// Worker `worker` finished (its input ended, or it was stopped) and exited 0.
    Finished {
        /// The worker's index.
        worker: usize,
    },
    /// Exactly-once: the job rolled back to job-wide epoch `epoch` (every shard restored,
    /// `restarting` workers started again from their checkpoint of it) after worker
    /// `worker`'s process died.
    RolledBack {
        /// The worker whose failure caused it.
        worker: usize,
        /// The job-wide epoch restored (0: the job's start).
        epoch: u64,
        /// The workers started again.
        restarting: Vec<usize>,
    },
}

/// A listener for [`SupervisorEvent`]s (called on the supervisor's thread; keep it quick).
pub type SupervisorEvents = Arc<dyn Fn(&SupervisorEvent) + Send + Sync>;

/// Configuration of a [`Supervisor`].
#[derive(Clone)]
pub struct SupervisorConfig {
    /// Worker `i`'s command at index `i`.
    pub workers: Vec<WorkerCommand>,
    /// The wait before restart `n` of a worker that has not trained since its last start.
    /// Default 50 ms doubling to 2 s.
    pub backoff: Backoff,
    /// Restarts of one worker before the job fails (its peers are stopped). Default 10.
    pub max_restarts: u64,
    /// After a stop, how long workers may take to checkpoint and exit before they are killed.
    /// Default 60 s.
    pub stop_grace: Duration,
    /// Where each worker's protocol lines are also appended, `worker-I.jsonl` (default none).
    pub log_dir: Option<PathBuf>,
    /// A listener for what the supervisor does.
    pub events: Option<SupervisorEvents>,
    /// Exactly-once failover across the processes (default `None`: approximate, a dead
    /// worker restarts alone). See [`EpochRecovery`].
    pub exactly_once: Option<EpochRecovery>,
    /// Where the supervisor keeps its [`SupervisorStatus`] (default none).
    pub status_file: Option<PathBuf>,
}

/// Rolls the parameter server back to a job-wide epoch: `(epoch, finished workers)`, called
/// with every worker process stopped (epoch 0: the job's start, every row cleared).
pub type RestoreShards = Arc<dyn Fn(u64, &[u32]) -> Result<()> + Send + Sync>;

/// What the supervisor needs for exactly-once failover across processes (see the [module
/// docs](self)): where each worker keeps its checkpoints, and how to roll the shards back.
#[derive(Clone)]
pub struct EpochRecovery {
    /// Worker `i`'s checkpoint directory at index `i`.
    pub checkpoint_dirs: Vec<PathBuf>,
    /// Rolls every shard back to an epoch.
    pub restore: RestoreShards,
}

impl SupervisorConfig {
    /// Supervising `workers` with the defaults above.
    pub fn new(workers: Vec<WorkerCommand>) -> Self {
        SupervisorConfig {
            workers,
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(2)),
            max_restarts: 10,
            stop_grace: Duration::from_secs(60),
            log_dir: None,
            events: None,
            exactly_once: None,
            status_file: None,
        }
    }
}

/// What a supervised job did.
#[derive(Debug, Clone, Serialize)]
pub struct SupervisorReport {
    /// Per worker, by index.
    pub workers: Vec<WorkerReport>,
    /// Wall time from the first start to the last exit.
    pub seconds: f64,
    /// Rows in the workers' final evaluations, summed.
    pub rows: u64,
    /// Row-weighted means of the workers' mean metrics (log loss, accuracy, MAE, MSE).
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Exactly-once: the job-wide epochs the job rolled back to, in order (the first is where
    /// it started: 0 for a fresh job).
    pub rollbacks: Vec<u64>,
}

/// Worker processes running under supervision (see the [module docs](self)).
pub struct Supervisor {
    thread: JoinHandle<Result<SupervisorReport>>,
    stop: Arc<AtomicBool>,
    pids: Arc<Mutex<Vec<Option<u32>>>>,
}

impl Supervisor {
    /// Starts every worker and supervises them on a thread of its own.
    pub fn start(config: SupervisorConfig) -> Result<Supervisor> {
        if config.workers.is_empty() {
            return Err(Error::InvalidArgument(
                "a supervised job needs a worker".into(),
            ));
        }
        if let Some(e) = &config.exactly_once {
            if e.checkpoint_dirs.len() != config.workers.len() {
                return Err(Error::InvalidArgument(format!(
                    "exactly-once: {} checkpoint directories for {} workers",
                    e.checkpoint_dirs.len(),
                    config.workers.len()
                )));
            }
        }
        if let Some(dir) = &config.log_dir {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let pids = Arc::new(Mutex::new(vec![None; config.workers.len()]));
        let mut state = run::State::start(config, stop.clone(), pids.clone())?;
        let thread = std::thread::Builder::new()
            .name("eddy-supervisor".into())
            .spawn(move || state.run())
            .map_err(|e| Error::InvalidArgument(format!("starting the supervisor: {e}")))?;
        Ok(Supervisor { thread, stop, pids })
    }

    /// The process id of each worker now (`None` while one is down).
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.pids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Asks every worker to stop (SIGTERM: a last checkpoint, then exit 0); no restarts after.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether every worker has finished.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for every worker to finish and returns what they did.
    pub fn join(self) -> Result<SupervisorReport> {
        self.thread
            .join()
            .map_err(|_| Error::InvalidArgument("the supervisor thread panicked".into()))?
    }
}
