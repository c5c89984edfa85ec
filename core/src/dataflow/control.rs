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

#[derive(Debug, Default)]
pub(crate) struct JobControl {
    pub(crate) stop_following: AtomicBool,
    pub(crate) cancelled: AtomicBool,
    pub(crate) failure: Mutex<Option<Error>>,
    pub(crate) checkpoint_requested: AtomicU64,
    pub(crate) acks: Mutex<Vec<TaskAck>>,
    /// Where acks go while a checkpoint coordinator runs (instead of `acks`).
    pub(crate) coordinator: Mutex<Option<std::sync::mpsc::Sender<TaskAck>>>,
    /// The epoch restored on start (0: none); sources number barriers after it.
    pub(crate) restored: AtomicU64,
    /// Checkpoints written to the store, in order.
    pub(crate) completed: Mutex<Vec<Epoch>>,
    /// The newest completed epoch (0: none); chains with a sink commit it.
    pub(crate) committed: tokio::sync::watch::Sender<u64>,
}

impl JobControl {
    /// Records a task's failure and cancels the job. The first root cause wins; a
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
        self.cancelled.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    pub(crate) fn ack(&self, ack: TaskAck) {
        let ack = match &*self.coordinator.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => match tx.send(ack) {
                Ok(()) => return,
                Err(std::sync::mpsc::SendError(ack)) => ack,
            },
            None => ack,
        };
        self.acks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ack);
    }
}
