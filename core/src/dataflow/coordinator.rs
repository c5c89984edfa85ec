//! The checkpoint coordinator: triggers checkpoints, collects the tasks' acks, completes a
//! checkpoint once every task acked it or had finished before it (FLIP-147), writes it to the
//! store, and expires the ones that take longer than [`CheckpointConfig::timeout`].
//!
//! A checkpoint fails when it times out or its write fails. Each failure is counted in the job
//! metrics (`checkpoints_failed`, `checkpoints_timed_out`) and logged; more than
//! [`CheckpointConfig::tolerable_failures`] failures in a row fail the job over with
//! [`Error::Checkpoint`] (a completed checkpoint resets the count, as in Flink). Once every
//! task has finished, the coordinator completes a final checkpoint by itself, which commits the
//! two-phase sinks of the finished job.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checkpoint::store::WriteFault;
use crate::checkpoint::{CheckpointStore, CompletedCheckpoint, TaskSnapshot};
use crate::dataflow::checkpointing::CheckpointConfig;
use crate::dataflow::control::{AckStats, CoordinatorMessage, JobControl, TaskAck, TaskFinished};
use crate::dataflow::failover::{FaultKind, FaultPoint, StageFault};
use crate::dataflow::plan::TaskLayout;
use crate::error::{Error, Result};
use crate::message::Epoch;
use crate::metrics::{CheckpointStats, JobMetrics, OperatorMetrics};

/// The coordinator of one job. Runs on its own thread until every ack sender is gone.
pub(crate) struct Coordinator {
    pub(crate) store: CheckpointStore,
    pub(crate) config: CheckpointConfig,
    pub(crate) expected_tasks: usize,
    /// Where each task sits (by name): recorded with its snapshot, for restore by operator id.
    pub(crate) layouts: Arc<HashMap<String, TaskLayout>>,
    /// The job's key groups, recorded in every checkpoint.
    pub(crate) key_groups: u32,
    pub(crate) control: Arc<JobControl>,
    pub(crate) job: Arc<JobMetrics>,
    /// Faults injected into the store's writes.
    pub(crate) faults: StageFault,
}

/// What the coordinator knows of the current attempt.
#[derive(Default)]
struct State {
    /// Acks of checkpoints not complete yet, by epoch.
    pending: BTreeMap<Epoch, Vec<(TaskAck, AckStats)>>,
    /// Tasks that finished, by name.
    finished: BTreeMap<String, TaskFinished>,
    /// The newest checkpoint completed or failed: acks at or below it are stale.
    settled: u64,
    /// Checkpoints failed in a row.
    failures: usize,
    /// The final checkpoint (every task finished) was taken.
    final_taken: bool,
}

impl Coordinator {
    pub(crate) fn run(mut self, acks: Receiver<CoordinatorMessage>) {
        let mut st = State::default();
        let mut next_trigger = self.config.interval.map(|i| Instant::now() + i);
        loop {
            let deadline = [next_trigger, self.expiry()].into_iter().flatten().min();
            let received = match deadline {
                Some(at) => acks.recv_timeout(at.saturating_duration_since(Instant::now())),
                None => acks.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(CoordinatorMessage::Fence(done)) => {
                    // the attempt is over: its partial checkpoints will never complete
                    st = State {
                        settled: st.settled,
                        ..State::default()
                    };
                    self.control.forget_triggers();
                    let _ = done.send(());
                }
                Ok(CoordinatorMessage::Ack(ack, stats)) => {
                    if ack.epoch.0 > st.settled {
                        st.pending.entry(ack.epoch).or_default().push((ack, stats));
                        self.try_complete(&mut st);
                    }
                }
                Ok(CoordinatorMessage::Finished(f)) => {
                    st.finished.insert(f.task.clone(), f);
                    self.try_complete(&mut st);
                    if st.finished.len() >= self.expected_tasks && !st.final_taken {
                        st.final_taken = true;
                        let epoch = self.control.request_checkpoint();
                        self.settle(&mut st, epoch, Vec::new());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.expire(&mut st);
                    if next_trigger.is_some_and(|at| at <= Instant::now()) {
                        if !self.control.is_cancelled() {
                            self.control.request_checkpoint();
                        }
                        next_trigger = self.config.interval.map(|i| Instant::now() + i);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// When the oldest pending checkpoint times out.
    fn expiry(&self) -> Option<Instant> {
        let timeout = self.config.timeout?;
        Some(self.control.oldest_trigger()?.1 + timeout)
    }

    /// Fails every pending checkpoint that has run past the timeout.
    fn expire(&self, st: &mut State) {
        let Some(timeout) = self.config.timeout else {
            return;
        };
        while let Some((epoch, at)) = self.control.oldest_trigger() {
            if at.elapsed() < timeout {
                break;
            }
            self.control.take_trigger_time(epoch);
            let waiting = self.not_acked(st, epoch);
            st.pending = st.pending.split_off(&Epoch(epoch.0 + 1));
            st.settled = st.settled.max(epoch.0);
            let message = format!("timed out after {timeout:?}, waiting for {waiting}");
            self.failed(st, epoch, &message, true);
        }
    }

    /// The tasks that neither acked checkpoint `epoch` nor finished before it, by name.
    fn not_acked(&self, st: &State, epoch: Epoch) -> String {
        let acked = st.pending.get(&epoch);
        let mut waiting: Vec<&str> = self
            .layouts
            .keys()
            .map(String::as_str)
            .filter(|task| !acked.is_some_and(|acks| acks.iter().any(|a| a.0.task == *task)))
            .filter(|task| st.finished.get(*task).is_none_or(|f| f.after >= epoch))
            .collect();
        waiting.sort_unstable();
        waiting.join(", ")
    }

    /// Completes the newest pending checkpoint that every task acked or finished before.
    fn try_complete(&mut self, st: &mut State) {
        let expected = self.expected_tasks;
        let complete = st.pending.iter().rev().find_map(|(epoch, acks)| {
            let finished = st.finished.values().filter(|f| f.after < *epoch).count();
            (acks.len() + finished >= expected).then_some(*epoch)
        });
        if let Some(epoch) = complete {
            // barriers stay in order, so older epochs can no longer complete
            let mut rest = st.pending.split_off(&epoch);
            let acks = rest.remove(&epoch).unwrap_or_default();
            st.pending = rest;
            self.settle(st, epoch, acks);
        }
    }

    /// Writes checkpoint `epoch` (or counts its failure).
    fn settle(&mut self, st: &mut State, epoch: Epoch, acks: Vec<(TaskAck, AckStats)>) {
        st.settled = st.settled.max(epoch.0);
        let finished: Vec<TaskSnapshot> = st
            .finished
            .values()
            .filter(|f| f.after < epoch)
            .map(TaskFinished::snapshot)
            .collect();
        match self.complete(epoch, acks, finished) {
            Ok(()) => st.failures = 0,
            Err(e) => {
                self.control.take_trigger_time(epoch);
                self.failed(st, epoch, &e.to_string(), false);
            }
        }
    }

    /// Counts a failed checkpoint; fails the job over past the tolerable count.
    fn failed(&self, st: &mut State, epoch: Epoch, reason: &str, timed_out: bool) {
        OperatorMetrics::add(&self.job.checkpoints_failed, 1);
        if timed_out {
            OperatorMetrics::add(&self.job.checkpoints_timed_out, 1);
        }
        st.failures += 1;
        let tolerable = self.config.tolerable_failures;
        tracing::warn!(
            %epoch,
            failures_in_a_row = st.failures,
            tolerable,
            "checkpoint failed: {reason}"
        );
        if st.failures > tolerable && !self.control.is_cancelled() {
            tracing::error!(%epoch, "more than {tolerable} checkpoints failed in a row: failing the job over");
            self.control.fail(Error::Checkpoint {
                epoch: epoch.0,
                message: format!("{reason} ({} in a row, {tolerable} tolerated)", st.failures),
            });
            // the attempt is over: what it had pending must not count against the next one
            self.control.forget_triggers();
            st.pending.clear();
            st.failures = 0;
        }
    }

    fn complete(
        &mut self,
        epoch: Epoch,
        acks: Vec<(TaskAck, AckStats)>,
        finished: Vec<TaskSnapshot>,
    ) -> Result<()> {
        let alignment = acks.iter().map(|a| a.1.alignment).max().unwrap_or_default();
        let unaligned = acks.iter().any(|a| a.1.unaligned);
        let job_finished = acks.is_empty();
        let finished_tasks = finished.len();
        let (acks, stats): (Vec<TaskAck>, Vec<AckStats>) = acks.into_iter().unzip();
        let mut checkpoint = CompletedCheckpoint::from_acks(epoch, acks)?;
        for (task, stats) in checkpoint.tasks.iter_mut().zip(stats) {
            task.inflight = stats.inflight;
        }
        checkpoint.tasks.extend(finished);
        self.annotate(&mut checkpoint)?;
        self.write(&checkpoint)?;
        let inflight_bytes: u64 = checkpoint
            .tasks
            .iter()
            .filter_map(|t| t.inflight.as_ref())
            .map(|b| b.len() as u64)
            .sum();
        let bytes = checkpoint
            .tasks
            .iter()
            .flat_map(|t| t.states.iter().flatten())
            .map(|s| s.len() as u64)
            .sum::<u64>()
            + inflight_bytes;
        let duration = self
            .control
            .take_trigger_time(epoch)
            .map(|t| t.elapsed())
            .unwrap_or_default();
        self.job
            .checkpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(CheckpointStats {
                epoch: epoch.0,
                duration,
                bytes,
                alignment,
                inflight_bytes,
                unaligned,
                finished_tasks,
                job_finished,
            });
        self.control
            .completed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(epoch);
        self.control.committed.send_replace(epoch.0);
        tracing::debug!(%epoch, "checkpoint completed");
        Ok(())
    }

    /// Records the key groups and each task's layout (subtask, parallelism, operator ids).
    fn annotate(&self, checkpoint: &mut CompletedCheckpoint) -> Result<()> {
        checkpoint.key_groups = self.key_groups;
        for task in &mut checkpoint.tasks {
            let layout = self.layouts.get(&task.task).ok_or_else(|| {
                Error::Internal(format!(
                    "checkpoint {}: task `{}` is not in the plan",
                    checkpoint.epoch, task.task
                ))
            })?;
            task.subtask = layout.subtask;
            task.parallelism = layout.parallelism;
            task.source = layout.source.as_deref().map(str::to_string);
            task.operators = layout.operators.iter().map(|o| o.to_string()).collect();
        }
        Ok(())
    }

    /// Writes to the store, with the faults injected into it: a store fault errs (a panic
    /// too: the coordinator never unwinds) or delays the write (a hang).
    fn write(&mut self, checkpoint: &CompletedCheckpoint) -> Result<()> {
        let mut fault = None;
        for (point, step) in [
            (FaultPoint::StoreWrite, WriteFault::AfterFirstTaskFile),
            (FaultPoint::ManifestWrite, WriteFault::Manifest),
        ] {
            match self.faults.due(point) {
                Some(FaultKind::Hang(d)) => {
                    let until = d.map(|d| Instant::now() + d);
                    tracing::warn!(epoch = %checkpoint.epoch, "injected hang of the checkpoint write: {d:?}");
                    while !self.control.is_cancelled() && until.is_none_or(|t| Instant::now() < t) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                Some(FaultKind::Error | FaultKind::Panic) => fault = fault.or(Some(step)),
                None => {}
            }
        }
        self.store.write_faulty(checkpoint, fault).map(|_| ())
    }
}
