//! One worker process's side of a supervised job: how its training job is set up and run.
//! `eddy worker` calls it whether the job is described by `eddy learn`'s flags or by a
//! workflow's `stream-train` node (`--workflow FILE --node NAME`).
//!
//! A worker is the one training engine ([`TrainJob`]) at parallelism 1, training through
//! running shards. [`WorkerRole::configure`] turns a job's [`TrainConfig`] into worker `I` of
//! `N`'s: approximate failover keeps the tables out of its checkpoints (they are every
//! worker's); exactly-once joins the job-wide epoch barrier at the shards and starts from the
//! local checkpoint of the epoch the supervisor rolled the job back to. Its training events
//! become [`WorkerLine`]s on stdout. [`run`] runs the job to its end and prints the final
//! report; when the job asks for it, the worker saves its pipeline and model at its end (the
//! job's final model is worker 0's pipeline with the shards' tables, see
//! [`ProcessJob`](super::ProcessJob)).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eddy_algorithms::pipeline::Pipeline;
use eddy_core::checkpoint::CheckpointStore;
use eddy_core::dataflow::{FailoverMode, Stream};
use eddy_core::message::Epoch;

use super::{epochs, WorkerLine};
use crate::error::{Error, Result};
use crate::train::{EpochBarrier, PsSpec, TrainConfig, TrainEvent, TrainJob};

/// How long an exactly-once worker waits at the epoch barrier for its peers before it fails
/// (a peer that never reaches the epoch has died: the supervisor rolls the job back first).
const BARRIER_WAIT: Duration = Duration::from_secs(600);

/// How long a stopped worker may take for its last checkpoint.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Which worker of the job this process is, and how the job fails over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRole {
    /// This worker's index, `0..workers`.
    pub index: usize,
    /// The job's worker processes.
    pub workers: usize,
    /// Exactly-once across the processes (else approximate: a dead worker restarts alone).
    pub exactly_once: bool,
    /// Exactly-once: the local checkpoint to start from, set by the supervisor (0: from the
    /// start of the input, every checkpoint discarded).
    pub restore_epoch: Option<u64>,
}

impl WorkerRole {
    /// Refuses a role no job has.
    pub fn check(&self) -> Result<()> {
        if self.index >= self.workers {
            return Err(Error::InvalidArgument(format!(
                "worker index {} of {} workers: the index must be below the count",
                self.index, self.workers
            )));
        }
        if self.restore_epoch.is_some() && !self.exactly_once {
            return Err(Error::InvalidArgument(
                "a restore epoch is for workers with exactly-once failover".into(),
            ));
        }
        Ok(())
    }

    /// Makes `config` (a job at parallelism 1 through running shards, with its checkpoint
    /// directory set) this worker's: failover, the epoch barrier, where it starts from, and
    /// its events as protocol lines on stdout.
    pub fn configure(&self, config: &mut TrainConfig) -> Result<()> {
        self.check()?;
        config.name = format!("worker-{}", self.index);
        config.parallelism = 1;
        let ps = match config.ps.as_mut() {
            Some(ps) if matches!(ps.store, PsSpec::Remote(_)) => ps,
            _ => {
                return Err(Error::InvalidArgument(
                    "a worker process trains through running shards".into(),
                ))
            }
        };
        if self.exactly_once {
            // the job-wide epoch barrier at the shards; any failure ends the process and the
            // supervisor rolls every worker and shard back together
            ps.barrier = Some(EpochBarrier {
                worker: u32::try_from(self.index).map_err(too_many)?,
                workers: u32::try_from(self.workers).map_err(too_many)?,
                wait: BARRIER_WAIT,
                record: config.checkpoint.dir.clone(),
            });
            config.failover.mode = FailoverMode::ExactlyOnce;
            config.failover.restart.max_restarts = 0;
            config.keep_checkpoints = true;
            if let (Some(epoch), Some(dir)) = (self.restore_epoch, &config.checkpoint.dir) {
                let store = CheckpointStore::open(dir, config.checkpoint.retain.max(1))?;
                if epoch == 0 {
                    store.clear()?;
                    epochs::clear(dir)?;
                } else {
                    config.checkpoint.restore_from = Some(store.checkpoint_dir(Epoch(epoch)));
                }
            }
        } else {
            config.failover.mode = FailoverMode::Approximate;
            ps.tables_in_checkpoints = false;
        }
        config.events = Some(Arc::new(|event: &TrainEvent| {
            let line = match event {
                TrainEvent::Rows(rows) => WorkerLine::Rows { rows: *rows },
                TrainEvent::Restored { rows, .. } => WorkerLine::Restored { rows: *rows },
                TrainEvent::Published { .. } => return,
            };
            // a closed stdout means the supervisor is gone; training goes on to its checkpoint
            let _ = line.write_to(&mut std::io::stdout().lock());
        }));
        Ok(())
    }

    /// Says on stdout that this process started (the supervisor's first line from it).
    pub fn announce(&self) -> Result<()> {
        let line = WorkerLine::Started {
            worker: self.index,
            pid: std::process::id(),
        };
        line.write_to(&mut std::io::stdout().lock())
            .map_err(|source| Error::Io {
                path: PathBuf::from("<stdout>"),
                source,
            })
    }
}

fn too_many(e: std::num::TryFromIntError) -> Error {
    Error::InvalidArgument(format!("worker index or count: {e}"))
}

/// Runs a worker's job on `input` with `pipeline` to its end: its input ended, or `stop` was
/// set (a last checkpoint first). Then saves the trained pipeline and model to `save`, if
/// given, and prints the final [`WorkerLine::Finished`].
pub fn run(
    job: TrainJob,
    input: Stream,
    pipeline: Pipeline,
    stop: &AtomicBool,
    save: Option<&Path>,
) -> Result<()> {
    let handle = job.start(input, pipeline, None)?;
    let mut stopping = false;
    while !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(10));
        if stop.load(Ordering::SeqCst) && !stopping {
            stopping = true;
            handle.stop(STOP_WAIT);
        }
    }
    let outcome = handle.join()?;
    if let Some(path) = save {
        outcome.trained.save(path)?;
    }
    let summary = &outcome.summary;
    let finished = WorkerLine::Finished {
        rows: outcome.report.rows,
        records_lost: summary.records_lost,
        records_replayed: summary.records_replayed,
        restarts: summary.restarts,
        metrics: outcome
            .report
            .metrics
            .iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    };
    finished
        .write_to(&mut std::io::stdout().lock())
        .map_err(|source| Error::Io {
            path: PathBuf::from("<stdout>"),
            source,
        })
}
