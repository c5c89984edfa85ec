//! One task attempt: its environment, how it runs (an operator chain reading its input lanes on
//! a tokio task, see `operator_task`; a source driving its chain on a blocking thread, see
//! `source_task`), and how it sends: data on bounded channels, waiting when one is full
//! (backpressure), barriers on the priority lanes.
//!
//! In approximate failover ([`TaskEnv::rewire`] set) a closed channel is not fatal: a send to
//! a consumer that is down drops the records and counts them in `records_lost` (or goes to the
//! consumer's new channel once it restarted), an input whose producer is down is skipped —
//! the task keeps consuming its other inputs — until the producer is back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;

use crate::dataflow::accounting::Ledger;
use crate::dataflow::chain::{closed_error, Chain, Pending};
use crate::dataflow::checkpointing::CheckpointMode;
use crate::dataflow::control::{AckStats, JobControl, TaskAck};
use crate::dataflow::finished;
use crate::dataflow::inflight::Positioned;
use crate::dataflow::operator_task::run_operator_task;
use crate::dataflow::plan::Task;
use crate::dataflow::rewire::Rewire;
use crate::dataflow::source_task::run_source_task;
use crate::dataflow::state_writer::StateWriter;
use crate::error::{Error, Result};
use crate::message::{Barrier, Message};
use crate::metrics::{JobMetrics, OperatorMetrics, Progress};
use crate::source::{BatchBounds, DeadLetterSink};

/// What a task attempt needs from its job.
#[derive(Clone)]
pub(crate) struct TaskEnv {
    pub(crate) control: Arc<JobControl>,
    pub(crate) job: Arc<JobMetrics>,
    /// The task's index in the plan.
    pub(crate) index: usize,
    /// Set in approximate failover.
    pub(crate) rewire: Option<Arc<Rewire>>,
    /// Whether the job takes checkpoints (sinks stage their output per epoch).
    pub(crate) checkpointing: bool,
    /// Barriers this attempt injects are numbered after this epoch.
    pub(crate) epoch_base: u64,
    pub(crate) bounds: BatchBounds,
    pub(crate) dead_letters: Arc<DeadLetterSink>,
    pub(crate) progress: Arc<Progress>,
    pub(crate) idle_poll: Duration,
    pub(crate) checkpoint_mode: CheckpointMode,
    pub(crate) alignment_timeout: Option<Duration>,
    /// What this attempt took in, passed on and sank (approximate failover's accounting).
    pub(crate) ledger: Arc<Ledger>,
    /// Writes the attempt's deferred states off the data path, then acknowledges them.
    pub(crate) writer: Arc<StateWriter>,
}

impl TaskEnv {
    pub(crate) fn lost(&self, rows: usize) {
        OperatorMetrics::add(&self.job.records_lost, rows as u64);
    }

    /// The chain snapshotted its state `states` for `epoch`; the data in `pending` (emitted
    /// before the barrier, not sent yet) counts as passed on before it.
    pub(crate) fn snapshotted(
        &self,
        epoch: crate::message::Epoch,
        states: &[Option<Vec<u8>>],
        pending: &[Pending],
    ) {
        let queued = pending.iter().map(|p| p.message.num_rows()).sum();
        let completed = *self.control.committed.borrow();
        self.ledger.snapshot(epoch, states, queued, completed);
    }

    /// Acknowledges the chain's snapshot `ack` of barrier `ack.epoch`: at once, or — when the
    /// barrier left deferred states — once the background writer wrote them.
    pub(crate) fn ack(&self, chain: &mut Chain, ack: TaskAck, stats: AckStats) {
        let deferred = chain.take_deferred(ack.epoch);
        self.writer.ack(ack, deferred, stats);
    }

    /// A send on edge `edge` to `target` found the channel closed, holding `message`. Returns
    /// the message back with a replacement sender installed, or `None` once it is dropped
    /// (counted) — or the error when the failover mode does not tolerate it.
    pub(crate) fn on_closed(
        &self,
        chain: &mut Chain,
        edge: usize,
        target: usize,
        message: Message,
    ) -> Result<Option<Message>> {
        let Some(rewire) = &self.rewire else {
            return Err(closed_error());
        };
        match rewire.take_sender((self.index, edge, target)) {
            Some((tx, prio)) => {
                let out = &mut chain.outputs[edge];
                out.senders[target] = tx;
                out.prio[target] = prio;
                out.sent[target] = 0;
                Ok(Some(message))
            }
            None => {
                self.lost(message.num_rows());
                Ok(None)
            }
        }
    }
}

/// Runs one attempt of `task` to its end; the error is the task's root cause.
pub(crate) async fn run(task: Task, env: TaskEnv) -> Result<()> {
    let name = task.name.clone();
    let finished = task.restore.as_ref().is_some_and(|s| s.finished);
    let joined = if finished {
        let env = env.clone();
        tokio::spawn(async move { finished::run_restored(task, &env).await }).await
    } else if task.source.is_some() {
        let env = env.clone();
        tokio::task::spawn_blocking(move || run_source_task(task, &env)).await
    } else {
        let env = env.clone();
        tokio::spawn(async move { run_operator_task(task, &env).await }).await
    };
    let result = match joined {
        Ok(r) => r,
        Err(j) => Err(Error::Panic {
            task: name,
            message: j
                .try_into_panic()
                .ok()
                .and_then(|p| {
                    p.downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                })
                .unwrap_or_else(|| "task aborted".into()),
        }),
    };
    if result.is_ok() {
        // the last acks go out before the task counts as done
        let writer = env.writer.clone();
        let _ = tokio::task::spawn_blocking(move || writer.finish()).await;
        if let Some(rw) = &env.rewire {
            rw.finished(env.index);
        }
    }
    result
}

/// Sends queued messages, waiting (and timing the wait) when a channel is full. Barriers go on
/// the priority lane, with their position on the data lane.
pub(crate) async fn flush(
    chain: &mut Chain,
    pending: &mut Vec<Pending>,
    env: &TaskEnv,
) -> Result<()> {
    for p in pending.drain(..) {
        let mut message = p.message;
        loop {
            if let Message::Barrier(b) = message {
                prioritize(chain, p.edge, p.target, b, env)?;
                break;
            }
            let rows = message.num_rows();
            // Only the edge is borrowed across the await: operators need not be `Sync`.
            let tx = &chain.outputs[p.edge].senders[p.target];
            let closed = match tx.try_send(message) {
                Ok(()) => None,
                Err(TrySendError::Full(m)) => {
                    let t = Instant::now();
                    let sent = tx.send(m).await;
                    OperatorMetrics::add(
                        &chain.head_metrics.backpressure_ns,
                        t.elapsed().as_nanos() as u64,
                    );
                    sent.err().map(|e| e.0)
                }
                Err(TrySendError::Closed(m)) => Some(m),
            };
            match closed {
                None => {
                    chain.outputs[p.edge].sent[p.target] += 1;
                    env.ledger.passed(rows);
                    break;
                }
                Some(m) => match env.on_closed(chain, p.edge, p.target, m)? {
                    Some(m) => message = m,
                    None => break,
                },
            }
        }
    }
    Ok(())
}

/// A barrier overtakes the data queued on its channel: it goes on the priority lane.
pub(crate) fn prioritize(
    chain: &mut Chain,
    edge: usize,
    target: usize,
    b: Barrier,
    env: &TaskEnv,
) -> Result<()> {
    let out = &chain.outputs[edge];
    let positioned = Positioned {
        barrier: b,
        position: out.sent[target],
    };
    if out.prio[target].send(positioned).is_err() && env.rewire.is_none() {
        return Err(closed_error());
    }
    Ok(())
}

/// A task restarted alone (approximate failover) skips every checkpoint requested before its
/// restart (`epoch_base`): their barriers went to its failed attempt, and it numbers its own
/// after them. It says so at once with a barrier of `epoch_base` at position 0 of every output
/// channel, so that a consumer aligning one of those checkpoints is aligned on this input
/// right away — instead of holding its other inputs for a barrier that never comes, which
/// under backpressure also keeps the sources from injecting the next one. A consumer past
/// that epoch drops it.
pub(crate) fn announce_skipped(chain: &mut Chain, env: &TaskEnv) -> Result<()> {
    if env.rewire.is_none() || env.epoch_base == 0 {
        return Ok(());
    }
    let b = Barrier {
        epoch: crate::message::Epoch(env.epoch_base),
    };
    for edge in 0..chain.outputs.len() {
        for target in 0..chain.outputs[edge].senders.len() {
            prioritize(chain, edge, target, b, env)?;
        }
    }
    Ok(())
}
