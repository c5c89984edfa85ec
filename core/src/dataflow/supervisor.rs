//! The failover supervisor: runs a job's tasks, and when one fails decides — by the error's
//! domain and the [`RestartPolicy`](crate::dataflow::RestartPolicy) — whether to restart and
//! what (ARCHITECTURE §3 "Failover"; strategies in [`failover`](super::failover)).
//!
//! Exactly-once: an attempt is the whole set of tasks. The first failure aborts the attempt
//! (every task stops at its next message, the failure's echoes — closed channels — are not
//! root causes); the supervisor waits for every task, lets the checkpoint coordinator finish
//! the acks it has (a fence), then rebuilds every task from the plan and restores the last
//! completed checkpoint. Barriers of the new attempt are numbered after every epoch requested
//! so far, so acks of the two attempts never mix.
//!
//! Approximate: every task has its own slot that restarts it alone, from its own snapshot in
//! the last completed checkpoint, with fresh channels to its running peers (see `rewire`).
//! An operator task's peers do not rewind, so the input its unaligned snapshot had in flight is
//! not replayed (it was delivered already). A stateless operator task's two-phase sink keeps
//! everything it pre-committed before the failure (its recovery epoch is the newest one
//! requested); a task with state recovers its sink at the restored checkpoint, consistent
//! with its state. A restarted source task seeks back to its snapshot, with the output it had
//! in flight there, and its sink recovers at that checkpoint: what it read since is read and
//! sent again. What each restart loses and sends twice is settled from the failed attempt's
//! ledger (see `accounting` and [`failover`](super::failover)).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::checkpoint::CheckpointStore;
use crate::dataflow::accounting::{Ledger, Rollback};
use crate::dataflow::builder::{DataflowConfig, Graph};
use crate::dataflow::checkpointing;
use crate::dataflow::control::JobControl;
use crate::dataflow::failover::{ArmedFault, FailoverMode, RestartTracker};
use crate::dataflow::plan::{build_tasks, Task};
use crate::dataflow::rewire::Rewire;
use crate::dataflow::task::{self, TaskEnv};
use crate::error::{Error, Result};
use crate::metrics::{JobMetrics, MetricsRegistry, Progress};
use crate::source::DeadLetterSink;

pub(crate) struct Supervisor {
    pub(crate) graph: Graph,
    pub(crate) config: DataflowConfig,
    pub(crate) control: Arc<JobControl>,
    pub(crate) metrics: Mutex<MetricsRegistry>,
    pub(crate) job: Arc<JobMetrics>,
    pub(crate) faults: Vec<Arc<ArmedFault>>,
    pub(crate) store: Option<CheckpointStore>,
    pub(crate) dead_letters: Arc<DeadLetterSink>,
    /// The progress gauge of each task (sources fill theirs in).
    pub(crate) progress: Vec<Arc<Progress>>,
    pub(crate) tracker: Mutex<RestartTracker>,
}

impl Supervisor {
    fn env(&self, index: usize, epoch_base: u64, rewire: Option<Arc<Rewire>>) -> TaskEnv {
        TaskEnv {
            control: self.control.clone(),
            job: self.job.clone(),
            index,
            rewire,
            checkpointing: self.store.is_some(),
            epoch_base,
            bounds: self.config.bounds,
            dead_letters: self.dead_letters.clone(),
            progress: self.progress[index].clone(),
            idle_poll: self.config.idle_poll,
            checkpoint_mode: self.config.checkpoint.mode,
            alignment_timeout: self.config.checkpoint.alignment_timeout,
            ledger: Arc::new(Ledger::new(self.job.clone(), 0)),
            writer: Arc::new(crate::dataflow::state_writer::StateWriter::new(
                self.control.clone(),
                self.config.checkpoint.full_every,
            )),
        }
    }

    fn rebuild(&self) -> Result<Vec<Task>> {
        let mut metrics = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
        Ok(build_tasks(&self.graph, &mut metrics, &self.faults)?.0)
    }

    /// The backoff before restarting after `e`, or `None` when the job must fail.
    fn restart_after(&self, e: &Error) -> Option<std::time::Duration> {
        if !e.is_retryable() || self.control.cancelled.load(Ordering::SeqCst) {
            return None;
        }
        let backoff = self
            .tracker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .on_failure(Instant::now());
        match backoff {
            Some(ceiling) => {
                let b = crate::backoff::jitter(ceiling);
                tracing::warn!("restarting in {b:?} after: {e}");
                self.job.restarts.fetch_add(1, Ordering::SeqCst);
                Some(b)
            }
            None => {
                tracing::error!("not restarting: {e}");
                None
            }
        }
    }

    /// Runs the job to its end on `runtime`, restarting as the policy allows; the final
    /// failure, if any, is left in the job control. The first attempt numbers its barriers after
    /// `epoch_base` (every checkpoint in the store, restored or not).
    pub(crate) fn run(
        self: Arc<Self>,
        runtime: &tokio::runtime::Runtime,
        first: Vec<Task>,
        epoch_base: u64,
    ) {
        let mut tasks = first;
        let mut epoch_base = epoch_base;
        loop {
            let this = self.clone();
            runtime.block_on(this.attempt(tasks, epoch_base));
            let Some(e) = self.control.take_failure() else {
                return;
            };
            let Some(backoff) = (match self.config.failover.mode {
                FailoverMode::ExactlyOnce => self.restart_after(&e),
                FailoverMode::Approximate => None,
            }) else {
                self.control.fail(e);
                return;
            };
            std::thread::sleep(backoff);
            match self.prepare_restart() {
                Ok((t, base)) => {
                    tasks = t;
                    epoch_base = base;
                }
                Err(e2) => {
                    self.control.fail(e2);
                    return;
                }
            }
            if self.control.cancelled.load(Ordering::SeqCst) {
                self.control.fail(Error::Cancelled);
                return;
            }
        }
    }

    /// Exactly-once restart: settles the coordinator, rebuilds and restores every task.
    fn prepare_restart(&self) -> Result<(Vec<Task>, u64)> {
        self.control.fence_coordinator();
        let mut tasks = self.rebuild()?;
        if let Some(store) = &self.store {
            if let Some(epoch) =
                checkpointing::assign_restore(store, &mut tasks, self.control.earlier())?
            {
                self.control.restored.store(epoch.0, Ordering::SeqCst);
            }
        }
        let base = self.control.checkpoint_requested.load(Ordering::SeqCst);
        Ok((tasks, base))
    }

    /// One attempt: every task in its slot, until all finished.
    async fn attempt(self: Arc<Self>, tasks: Vec<Task>, epoch_base: u64) {
        let rewire = (self.config.failover.mode == FailoverMode::Approximate)
            .then(|| Arc::new(Rewire::new(tasks.len(), self.config.channel_capacity)));
        let mut handles = Vec::with_capacity(tasks.len());
        for (index, t) in tasks.into_iter().enumerate() {
            let env = self.env(index, epoch_base, rewire.clone());
            let this = self.clone();
            handles.push(tokio::spawn(this.slot(index, t, env)));
        }
        let mut echoes = Vec::new();
        for h in handles {
            match h.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => echoes.push(e),
                Err(j) => self
                    .control
                    .fail(Error::Internal(format!("task slot failed: {j}"))),
            }
        }
        // disconnections count only when nothing else explains them
        for e in echoes {
            self.control.fail(e);
        }
    }

    /// Runs task `index`; in approximate mode restarts it alone while the policy allows.
    /// A root cause is recorded at once (so it is known before the neighbours notice the
    /// disconnection); disconnections are handed back.
    async fn slot(self: Arc<Self>, index: usize, first: Task, mut env: TaskEnv) -> Result<()> {
        let mut task = first;
        loop {
            let e = match task::run(task, env.clone()).await {
                Ok(()) => return Ok(()),
                Err(e @ Error::Disconnected(_)) => return Err(e),
                Err(e) => e,
            };
            let backoff = match &env.rewire {
                Some(_) if !self.control.is_cancelled() => self.restart_after(&e),
                _ => None,
            };
            let Some(backoff) = backoff else {
                self.control.fail(e);
                return Ok(());
            };
            tokio::time::sleep(backoff).await;
            if self.control.is_cancelled() {
                return Ok(());
            }
            task = match self.restart_one(index, &mut env) {
                Ok((t, replay)) => {
                    env.ledger = Arc::new(Ledger::new(self.job.clone(), replay));
                    t
                }
                Err(e) => {
                    self.control.fail(e);
                    return Ok(());
                }
            };
        }
    }

    /// Approximate restart of task `index`: rebuilt, restored from its own snapshot, and
    /// reconnected to its peers. Settles the failed attempt's ledger (`env.ledger`): counts
    /// what it lost, and returns how many rows the restarted task sends again.
    ///
    /// The restarted task numbers its barriers after every epoch requested until it was
    /// reconnected (`env.epoch_base`): those barriers went, or will go, to its failed attempt's
    /// closed channels and are dropped; a barrier requested later reaches its fresh channels
    /// (see `task::prioritize`), so it waits for no barrier that never comes.
    fn restart_one(&self, index: usize, env: &mut TaskEnv) -> Result<(Task, u64)> {
        // the failed attempt's sink pre-committed at most the epochs requested so far
        let requested = self.control.checkpoint_requested.load(Ordering::SeqCst);
        let mut tasks = self.rebuild()?;
        if index >= tasks.len() {
            return Err(Error::Internal(format!("no task {index} to restart")));
        }
        let mut task = tasks.swap_remove(index);
        drop(tasks);
        let source = task.source.is_some();
        let mut restored = None;
        if let Some(store) = &self.store {
            restored = checkpointing::assign_restore_some(
                store,
                std::slice::from_mut(&mut task),
                self.control.earlier(),
            )?;
        }
        let stateless = env.ledger.stateless()
            || task
                .restore
                .as_ref()
                .is_some_and(|s| s.states.iter().all(Option::is_none));
        let kind = match (source, stateless) {
            (true, _) => Rollback::Source,
            (false, false) => Rollback::Restored,
            (false, true) => Rollback::Stateless,
        };
        if self.store.is_some() {
            if let (Rollback::Restored | Rollback::Stateless, Some(snapshot)) =
                (kind, task.restore.as_mut())
            {
                // An operator task's peers did not rewind: the input its snapshot had in
                // flight was delivered already (processed, or counted as lost), so it is not
                // replayed. A source task rewinds: its output in flight goes out again.
                snapshot.inflight = None;
            }
            task.restored_epoch = match kind {
                // The task redoes (a source) or gives up (restored state) everything after
                // the checkpoint, so its sink withdraws what it staged after it.
                Rollback::Source | Rollback::Restored => restored,
                // A stateless task keeps everything its sink pre-committed before the failure
                // (every epoch up to the newest requested); only the in-progress part goes.
                Rollback::Stateless => Some(crate::message::Epoch(requested)),
            };
        }
        let withdraws = self.store.is_some()
            && task
                .chain
                .sink
                .as_ref()
                .is_some_and(|s| s.sink.withdraws_uncommitted());
        let settled = env.ledger.settle(kind, restored, withdraws);
        if let Some(rw) = &env.rewire {
            rw.reconnect(index, &mut task);
        }
        env.epoch_base = self.control.checkpoint_requested.load(Ordering::SeqCst);
        tracing::info!(
            task = %task.name,
            ?kind,
            rolled_back = settled.rolled_back,
            withdrawn = settled.withdrawn,
            replay = settled.replay,
            "restarting task alone (approximate failover)"
        );
        Ok((task, settled.replay))
    }
}
