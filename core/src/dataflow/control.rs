//! Job control shared by every task: stop/cancel flags, the first failure, checkpoint triggers
//! and the acknowledgements tasks send back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::Error;
use crate::message::Epoch;
use crate::source::SourcePosition;

/// What one task reports when a checkpoint barrier passed it.
#[derive(Debug, Clone)]
pub struct TaskAck {
    /// The checkpoint.
    pub epoch: Epoch,
    /// Task name (`head[subtask]`).
    pub task: String,
    /// Source position at the barrier, for source tasks.
    pub position: Option<SourcePosition>,
    /// Operator states by chain stage (`None`: stateless).
    pub states: Vec<Option<Vec<u8>>>,
}

/// What a task measured while passing a barrier, for the checkpoint statistics.
#[derive(Debug, Clone, Default)]
pub(crate) struct AckStats {
    /// From the first barrier of the epoch on one input to the snapshot.
    pub(crate) alignment: std::time::Duration,
    /// The task snapshotted before all its inputs were aligned.
    pub(crate) unaligned: bool,
    /// Its in-flight data (unaligned snapshots).
    pub(crate) inflight: Option<Vec<u8>>,
}

/// A task that reached the end of its input (FLIP-147): later checkpoints complete without
/// it and record it as finished, so that a restore does not run it again.
#[derive(Debug, Clone)]
pub(crate) struct TaskFinished {
    /// Task name (`head[subtask]`).
    pub(crate) task: String,
    /// The last barrier it passed: it takes part in checkpoints after this one as finished.
    pub(crate) after: Epoch,
    /// Its source's final position, for source tasks.
    pub(crate) position: Option<SourcePosition>,
}

impl TaskFinished {
    /// Its entry in a checkpoint.
    pub(crate) fn snapshot(&self) -> crate::checkpoint::TaskSnapshot {
        crate::checkpoint::TaskSnapshot {
            position: self.position.clone(),
            finished: true,
            ..crate::checkpoint::TaskSnapshot::new(self.task.clone())
        }
    }
}

/// What the checkpoint coordinator receives.
#[derive(Debug)]
pub(crate) enum CoordinatorMessage {
    /// A task passed a barrier.
    Ack(TaskAck, AckStats),
    /// A task finished.
    Finished(TaskFinished),
    /// The supervisor is about to restore: finish every ack received so far, forget partial
    /// checkpoints of the failed attempt, then answer.
    Fence(std::sync::mpsc::Sender<()>),
}

#[derive(Debug, Default)]
pub(crate) struct JobControl {
    pub(crate) stop_following: AtomicBool,
    /// The user cancelled the job.
    pub(crate) cancelled: AtomicBool,
    /// The current attempt is being torn down (a task failed); reset before a restart.
    pub(crate) aborted: AtomicBool,
    pub(crate) failure: Mutex<Option<Error>>,
    pub(crate) checkpoint_requested: AtomicU64,
    pub(crate) acks: Mutex<Vec<TaskAck>>,
    /// Where acks go while a checkpoint coordinator runs (instead of `acks`).
    pub(crate) coordinator: Mutex<Option<std::sync::mpsc::Sender<CoordinatorMessage>>>,
    /// The epoch restored most recently (0: none).
    pub(crate) restored: AtomicU64,
    /// The newest checkpoint in the store when the job started (0: none): final checkpoints up
    /// to it belong to an earlier job and are not restored.
    pub(crate) earlier: AtomicU64,
    /// When each pending checkpoint was triggered, by epoch.
    pub(crate) triggered: Mutex<std::collections::BTreeMap<u64, std::time::Instant>>,
    /// Checkpoints written to the store, in order.
    pub(crate) completed: Mutex<Vec<Epoch>>,
    /// The newest completed epoch (0: none); chains with a sink commit it.
    pub(crate) committed: tokio::sync::watch::Sender<u64>,
}

impl JobControl {
    /// Records a task's failure and tears the attempt down. The first root cause wins; a
    /// [`Error::Disconnected`] (the echo of a failure elsewhere) never displaces one.
    pub(crate) fn fail(&self, e: Error) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        match (&*f, &e) {
            (None, _) => *f = Some(e),
            (Some(Error::Disconnected(_)), other) if !matches!(other, Error::Disconnected(_)) => {
                *f = Some(e)
            }
            _ => {}
        }
        self.aborted.store(true, Ordering::SeqCst);
    }

    /// Requests a checkpoint: every source injects a barrier of the returned epoch.
    pub(crate) fn request_checkpoint(&self) -> Epoch {
        let mut triggered = self.triggered.lock().unwrap_or_else(|p| p.into_inner());
        let epoch = self.checkpoint_requested.fetch_add(1, Ordering::SeqCst) + 1;
        triggered.insert(epoch, std::time::Instant::now());
        Epoch(epoch)
    }

    /// When checkpoint `epoch` was triggered, if it is pending.
    pub(crate) fn trigger_time(&self, epoch: Epoch) -> Option<std::time::Instant> {
        let triggered = self.triggered.lock().unwrap_or_else(|p| p.into_inner());
        triggered.get(&epoch.0).copied()
    }

    /// When checkpoint `epoch` was triggered; forgets it and every older one.
    pub(crate) fn take_trigger_time(&self, epoch: Epoch) -> Option<std::time::Instant> {
        let mut triggered = self.triggered.lock().unwrap_or_else(|p| p.into_inner());
        let at = triggered.get(&epoch.0).copied();
        *triggered = triggered.split_off(&(epoch.0 + 1));
        at
    }

    /// The oldest pending checkpoint and when it was triggered.
    pub(crate) fn oldest_trigger(&self) -> Option<(Epoch, std::time::Instant)> {
        let triggered = self.triggered.lock().unwrap_or_else(|p| p.into_inner());
        triggered.first_key_value().map(|(e, at)| (Epoch(*e), *at))
    }

    /// Forgets every pending checkpoint (an attempt ended: they will never complete).
    pub(crate) fn forget_triggers(&self) {
        self.triggered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Tells the coordinator (if any) that a task finished.
    pub(crate) fn finished(&self, finished: TaskFinished) {
        if let Some(tx) = &*self.coordinator.lock().unwrap_or_else(|p| p.into_inner()) {
            // a closed coordinator has nothing left to checkpoint
            let _ = tx.send(CoordinatorMessage::Finished(finished));
        }
    }

    /// The newest checkpoint in the store when the job started (field `earlier`).
    pub(crate) fn earlier(&self) -> Epoch {
        Epoch(self.earlier.load(Ordering::SeqCst))
    }

    /// Cancels the job on the user's request.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.fail(Error::Cancelled);
    }

    /// Whether tasks should stop: the job was cancelled or the attempt is being torn down.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.aborted.load(Ordering::Relaxed)
    }

    /// Takes the attempt's failure and clears the abort flag, for a restart.
    pub(crate) fn take_failure(&self) -> Option<Error> {
        let e = self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.aborted.store(false, Ordering::SeqCst);
        e
    }

    /// Waits until the coordinator handled every ack sent so far and dropped partial
    /// checkpoints (no-op without a coordinator).
    pub(crate) fn fence_coordinator(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        let sent = match &*self.coordinator.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(c) => c.send(CoordinatorMessage::Fence(tx)).is_ok(),
            None => false,
        };
        if sent {
            // an error means the coordinator is gone, which settles it as well
            let _ = rx.recv();
        }
    }

    pub(crate) fn ack(&self, ack: TaskAck, stats: AckStats) {
        let ack = match &*self.coordinator.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => match tx.send(CoordinatorMessage::Ack(ack, stats)) {
                Ok(()) => return,
                Err(std::sync::mpsc::SendError(CoordinatorMessage::Ack(ack, _))) => ack,
                Err(_) => return,
            },
            None => ack,
        };
        self.acks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ack);
    }
}
