//! The task's background writer of deferred states (see [`state`](crate::state)).
//!
//! A task whose chain returned a [`DeferredState`](crate::operator::DeferredState) at a
//! barrier hands its acknowledgement to this writer instead of sending it: one thread per task
//! attempt, started with the first deferred state, writes each state in barrier order and then
//! sends the ack. Once it runs, every later ack of the task goes through it too, so the acks
//! stay in order. A write that fails is acknowledged as a *declined* state
//! ([`blob::declined`](crate::state::blob::declined)): the store refuses that checkpoint, which
//! counts as a failed checkpoint; the task goes on.

use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::dataflow::chain::Deferred;
use crate::dataflow::control::{AckStats, JobControl, TaskAck};
use crate::message::Epoch;
use crate::operator::WriteContext;

/// One acknowledgement waiting for its deferred states.
struct Job {
    ack: TaskAck,
    deferred: Deferred,
    stats: AckStats,
    full: bool,
}

/// The background writer of one task attempt.
pub(crate) struct StateWriter {
    control: Arc<JobControl>,
    /// Every `full_every`-th deferred snapshot writes every chunk (compaction).
    full_every: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    worker: Option<(Sender<Job>, JoinHandle<()>)>,
    /// Deferred snapshots handed over so far.
    snapshots: usize,
}

impl StateWriter {
    /// A writer for a task of the job `control`; nothing runs until a state is deferred.
    pub(crate) fn new(control: Arc<JobControl>, full_every: usize) -> Self {
        StateWriter {
            control,
            full_every: full_every.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Acknowledges `ack` (whose deferred stages hold placeholders) once `deferred` is written:
    /// at once when nothing is deferred and no write is pending.
    pub(crate) fn ack(&self, ack: TaskAck, deferred: Deferred, stats: AckStats) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if deferred.states.is_empty() && inner.worker.is_none() {
            drop(inner);
            self.control.ack(ack, stats);
            return;
        }
        let full = if deferred.states.is_empty() {
            false
        } else {
            inner.snapshots += 1;
            (inner.snapshots - 1) % self.full_every == 0
        };
        let job = Job {
            ack,
            deferred,
            stats,
            full,
        };
        let job = match &inner.worker {
            Some((tx, _)) => match tx.send(job) {
                Ok(()) => return,
                Err(e) => e.0,
            },
            None => job,
        };
        let (tx, rx) = channel::<Job>();
        let control = self.control.clone();
        let spawned = std::thread::Builder::new()
            .name("eddy-state-writer".into())
            .spawn(move || {
                for job in rx {
                    write(&control, job);
                }
            });
        match spawned {
            Ok(handle) => {
                // a fresh channel's receiver is alive: the send cannot fail
                let _ = tx.send(job);
                inner.worker = Some((tx, handle));
            }
            Err(e) => {
                tracing::warn!("cannot start a state writer thread ({e}): writing in place");
                write(&self.control, job);
            }
        }
    }

    /// Waits until every handed-over state is written and acknowledged (a task that ended
    /// well: its last acks go out before the job ends).
    pub(crate) fn finish(&self) {
        let worker = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .worker
            .take();
        if let Some((tx, handle)) = worker {
            drop(tx);
            let _ = handle.join();
        }
    }
}

/// Writes a job's deferred states into its ack, then sends it.
fn write(control: &JobControl, job: Job) {
    let Job {
        mut ack,
        deferred,
        stats,
        full,
    } = job;
    let ctx = WriteContext {
        epoch: ack.epoch,
        durable: Epoch(*control.committed.borrow()),
        full,
    };
    for (stage, state) in deferred.states {
        let bytes = match state.write(&ctx) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(epoch = %ack.epoch, task = %ack.task, stage, "deferred state write failed: {e}");
                crate::state::blob::declined(&format!("stage {stage}: {e}"))
            }
        };
        if let Some(slot) = ack.states.get_mut(stage) {
            *slot = Some(bytes);
        }
    }
    control.ack(ack, stats);
}
