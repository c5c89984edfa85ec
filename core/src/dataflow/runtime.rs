//! Starting a job and the handle to it: start, stop, cancel, join and the summary. The tasks
//! themselves run in `task`, supervised by `supervisor`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::checkpoint::CheckpointStore;
use crate::dataflow::builder::Dataflow;
use crate::dataflow::checkpointing;
use crate::dataflow::control::{JobControl, TaskAck};
use crate::dataflow::coordinator::Coordinator;
use crate::dataflow::failover::{ArmedFault, RestartTracker, StageFault};
use crate::dataflow::plan::build_tasks;
use crate::dataflow::supervisor::Supervisor;
use crate::error::{Error, Result};
use crate::message::Epoch;
use crate::metrics::{JobSummary, MetricsRegistry, Progress};
use crate::source::DeadLetterSink;

/// A running job.
pub struct JobHandle {
    name: String,
    control: Arc<JobControl>,
    metrics: MetricsRegistry,
    dead_letters: Arc<DeadLetterSink>,
    started: Instant,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The checkpoint store (savepoints) and how long a checkpoint may take.
    store: Option<CheckpointStore>,
    checkpoint_timeout: Option<Duration>,
}

impl JobHandle {
    /// Live metrics of the job.
    pub fn metrics(&self) -> &MetricsRegistry {
        &self.metrics
    }

    /// Malformed records so far.
    pub fn dead_letters(&self) -> &DeadLetterSink {
        &self.dead_letters
    }

    /// Asks followed sources to finish: they deliver what they have read and end, and the job
    /// drains and finishes normally.
    pub fn stop(&self) {
        self.control.stop_following.store(true, Ordering::SeqCst);
    }

    /// Cancels the job: tasks stop at the next message; `join` returns [`Error::Cancelled`].
    pub fn cancel(&self) {
        self.control.cancel();
    }

    /// Whether every task has finished.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Injects a checkpoint barrier at every source; returns its epoch. Acknowledgements arrive
    /// in [`checkpoint_acks`](JobHandle::checkpoint_acks) as tasks pass the barrier.
    pub fn trigger_checkpoint(&self) -> Epoch {
        self.control.request_checkpoint()
    }

    /// The checkpoints the coordinator completed and wrote so far, oldest first (empty
    /// without [`CheckpointConfig::dir`](crate::dataflow::CheckpointConfig::dir)).
    pub fn completed_checkpoints(&self) -> Vec<Epoch> {
        self.control
            .completed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The checkpoint this job restored from most recently (on start, or on an exactly-once
    /// restart), if any.
    pub fn restored_checkpoint(&self) -> Option<Epoch> {
        match self.control.restored.load(Ordering::SeqCst) {
            0 => None,
            e => Some(Epoch(e)),
        }
    }

    /// Takes the checkpoint acknowledgements received so far. While a checkpoint coordinator
    /// runs (a checkpoint directory is set), acks go to it instead and this stays empty.
    pub fn checkpoint_acks(&self) -> Vec<TaskAck> {
        std::mem::take(&mut *self.control.acks.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Triggers a checkpoint and waits until one from it on is written (sources inject only
    /// the newest of several requested barriers, so a periodic checkpoint requested just
    /// after may complete in its place); returns the epoch written. Gives up after `wait`
    /// (or the job's checkpoint timeout when `None`; with neither, waits as long as the job
    /// runs) and when the job ends first.
    pub fn checkpoint_now(&self, wait: Option<Duration>) -> Result<Epoch> {
        let requested = self.trigger_checkpoint();
        let deadline = wait.or(self.checkpoint_timeout).map(|t| Instant::now() + t);
        loop {
            if let Some(&e) = self
                .completed_checkpoints()
                .iter()
                .find(|&&e| e >= requested)
            {
                return Ok(e);
            }
            if self.is_finished() || deadline.is_some_and(|d| Instant::now() > d) {
                return Err(Error::Checkpoint {
                    epoch: requested.0,
                    message: format!(
                        "no checkpoint from {requested} on completed{}",
                        if self.is_finished() {
                            " (the job ended)"
                        } else {
                            ""
                        }
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Takes a **savepoint**: a checkpoint ([`checkpoint_now`](Self::checkpoint_now)) copied
    /// to `<checkpoint dir>/savepoints/<name>`, where retention never deletes it; returns its
    /// directory. A new job starts from it with
    /// [`CheckpointConfig::restore_from`](crate::dataflow::CheckpointConfig::restore_from),
    /// possibly at another parallelism. Fails without a checkpoint directory, when the
    /// checkpoint fails or times out, or when the job ends first.
    pub fn savepoint(&self, name: &str) -> Result<PathBuf> {
        let Some(store) = &self.store else {
            return Err(Error::config(
                "checkpoint.dir",
                "a savepoint needs a checkpoint directory",
            ));
        };
        let epoch = self.checkpoint_now(None).map_err(|e| match e {
            Error::Checkpoint { epoch, message } => Error::Checkpoint {
                epoch,
                message: format!("savepoint `{name}`: {message}"),
            },
            other => other,
        })?;
        let dir = store.save_as(epoch, name)?;
        tracing::info!(%epoch, dir = %dir.display(), "savepoint taken");
        Ok(dir)
    }

    /// Waits for the job to finish.
    pub fn join(mut self) -> Result<JobSummary> {
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| Error::Internal("job thread panicked".into()))?;
        }
        self.dead_letters.flush()?;
        if let Some(e) = self
            .control
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Err(e);
        }
        Ok(JobSummary {
            name: self.name.clone(),
            elapsed: self.started.elapsed(),
            operators: self.metrics.snapshot(),
            dead_letters: self.dead_letters.count(),
            dead_letter_path: self.dead_letters.path(),
            restarts: self.metrics.job.restarts.load(Ordering::SeqCst),
            records_lost: self.metrics.job.records_lost.load(Ordering::SeqCst),
            records_replayed: self.metrics.job.records_replayed.load(Ordering::SeqCst),
            checkpoints_failed: self.metrics.job.checkpoints_failed.load(Ordering::SeqCst),
            checkpoints_timed_out: self
                .metrics
                .job
                .checkpoints_timed_out
                .load(Ordering::SeqCst),
            checkpoints: self.metrics.job.checkpoints(),
        })
    }
}

impl Dataflow {
    /// Runs the dataflow to completion (bounded inputs) and returns the summary.
    pub fn run(self) -> Result<JobSummary> {
        self.start()?.join()
    }

    /// Starts the dataflow in the background.
    pub fn start(self) -> Result<JobHandle> {
        let graph = self.graph.borrow().clone();
        let config = graph.config.clone();
        let dead_letters = Arc::new(match &config.dead_letter_path {
            Some(p) => DeadLetterSink::to_file(p, config.on_error)?,
            None => DeadLetterSink::in_memory(config.on_error),
        });
        let mut metrics = MetricsRegistry::default();
        let control = Arc::new(JobControl::default());
        let faults = ArmedFault::arm(&config.faults, &control);
        let (mut tasks, _) = build_tasks(&graph, &mut metrics, &faults)?;
        let store = checkpointing::open_store(&config.checkpoint)?;
        let savepoint_store = store.clone();
        let coordinator = match &store {
            Some(store) => {
                // new epochs follow every checkpoint in the store (a final one passed over too)
                let newest = store.list()?.last().copied().unwrap_or(Epoch(0));
                control.earlier.store(newest.0, Ordering::SeqCst);
                if let Some(epoch) = checkpointing::assign_restore(store, &mut tasks, newest)? {
                    control.restored.store(epoch.0, Ordering::SeqCst);
                }
                let restored = control.restored.load(Ordering::SeqCst);
                control
                    .checkpoint_requested
                    .store(newest.0.max(restored), Ordering::SeqCst);
                let (tx, rx) = std::sync::mpsc::channel();
                *control
                    .coordinator
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(tx);
                let coordinator = Coordinator {
                    store: store.clone(),
                    config: config.checkpoint.clone(),
                    expected_tasks: tasks.len(),
                    layouts: Arc::new(
                        tasks
                            .iter()
                            .map(|t| (t.name.clone(), t.layout.clone()))
                            .collect(),
                    ),
                    key_groups: config.key_groups,
                    control: control.clone(),
                    job: metrics.job.clone(),
                    faults: StageFault::store(&faults),
                };
                Some((coordinator, rx))
            }
            None => None,
        };
        let mut runtime = tokio::runtime::Builder::new_multi_thread();
        if config.threads > 0 {
            runtime.worker_threads(config.threads);
        }
        let runtime = runtime
            .enable_time()
            .thread_name("eddy-worker")
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the runtime: {e}")))?;

        let mut progress = Vec::with_capacity(tasks.len());
        for t in &tasks {
            let p = Arc::new(Progress::default());
            if t.source.is_some() {
                metrics.progress.push(p.clone());
            }
            progress.push(p);
        }
        let supervisor = Arc::new(Supervisor {
            graph,
            config: config.clone(),
            control: control.clone(),
            metrics: Mutex::new(metrics.clone()),
            job: metrics.job.clone(),
            faults,
            store,
            dead_letters: dead_letters.clone(),
            progress,
            tracker: Mutex::new(RestartTracker::new(config.failover.restart.clone())),
        });
        // read before any trigger of the caller's: the first attempt's barriers follow it
        let epoch_base = control.checkpoint_requested.load(Ordering::SeqCst);
        let ctl = control.clone();
        let coordinator_name = format!("eddy-checkpoints-{}", config.name);
        let thread = std::thread::Builder::new()
            .name(format!("eddy-job-{}", config.name))
            .spawn(move || {
                let coordinator = coordinator.and_then(|(c, rx)| {
                    let spawned = std::thread::Builder::new()
                        .name(coordinator_name)
                        .spawn(move || c.run(rx));
                    match spawned {
                        Ok(t) => Some(t),
                        Err(e) => {
                            ctl.fail(Error::Internal(format!(
                                "cannot start the checkpoint coordinator: {e}"
                            )));
                            None
                        }
                    }
                });
                supervisor.run(&runtime, tasks, epoch_base);
                // the last sender goes: the coordinator handles the acks left and stops
                ctl.coordinator
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                if let Some(c) = coordinator {
                    if c.join().is_err() {
                        ctl.fail(Error::Internal("checkpoint coordinator panicked".into()));
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the job thread: {e}")))?;
        Ok(JobHandle {
            name: config.name.clone(),
            control,
            metrics,
            dead_letters,
            started: Instant::now(),
            thread: Some(thread),
            store: savepoint_store,
            checkpoint_timeout: config.checkpoint.timeout,
        })
    }
}
