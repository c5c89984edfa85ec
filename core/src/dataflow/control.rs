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
        self.acks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ack);
    }
}
