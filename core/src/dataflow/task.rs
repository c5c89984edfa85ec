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

    /// Notes the schema of the first batch sent on `edge` (approximate mode), and leaves it
    /// with the rewire: a consumer restarted later gets it first on its fresh channel, from
    /// this task or, once it finished, from the rewire — operators that learn their inputs'
    /// schemas from the first batch (the joins) would otherwise wait for rows that may never
    /// come again.
    pub(crate) fn note_schema(&self, chain: &mut Chain, edge: usize, message: &Message) {
        let out = &mut chain.outputs[edge];
        if out.schema.is_some() {
            return;
        }
        if let (Some(rewire), Message::Data(batch)) = (&self.rewire, message) {
            rewire.note_schema((self.index, edge), batch.schema());
            out.schema = Some(batch.schema());
        }
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
        if self.rewire.is_none() {
            return Err(closed_error());
        }
        if self.take_new_channel(chain, edge, target) {
            Ok(Some(message))
        } else {
            if chain.outputs[edge].counted {
                self.lost(message.num_rows());
            }
            Ok(None)
        }
    }

    /// The channel on edge `edge` to `target` closed: installs the fresh channel of the
    /// restarted consumer, if it was reconnected already. Positions on it start at 0.
    fn take_new_channel(&self, chain: &mut Chain, edge: usize, target: usize) -> bool {
        let Some(rewire) = &self.rewire else {
            return false;
        };
        let Some((tx, prio)) = rewire.take_sender((self.index, edge, target)) else {
            return false;
        };
        let out = &mut chain.outputs[edge];
        out.sent[target] = 0;
        if let Some(schema) = &out.schema {
            // a fresh channel has room: the restarted consumer learns the schema first
            let empty = Message::Data(arrow::record_batch::RecordBatch::new_empty(schema.clone()));
            if tx.try_send(empty).is_ok() {
                out.sent[target] += 1;
            }
        }
        out.senders[target] = tx;
        out.prio[target] = prio;
        true
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
            env.note_schema(chain, p.edge, &message);
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
                    let out = &mut chain.outputs[p.edge];
                    out.sent[p.target] += 1;
                    if out.counted {
                        env.ledger.passed(rows);
                    }
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
///
/// In approximate failover a closed priority lane means the consumer failed. If it was
/// restarted already, the barrier goes on its fresh channel (at position 0: nothing was sent
/// there yet) — dropping it would leave the restarted consumer waiting for a barrier of an
/// epoch it did not skip, and under backpressure stall the job. If it is still down, the
/// barrier is dropped: the restarted consumer numbers its epochs after every checkpoint
/// requested before it was reconnected, this one included.
pub(crate) fn prioritize(
    chain: &mut Chain,
    edge: usize,
    target: usize,
    b: Barrier,
    env: &TaskEnv,
) -> Result<()> {
    let positioned = |chain: &Chain| Positioned {
        barrier: b,
        position: chain.outputs[edge].sent[target],
    };
    if chain.outputs[edge].prio[target]
        .send(positioned(chain))
        .is_ok()
    {
        return Ok(());
    }
    if env.rewire.is_none() {
        return Err(closed_error());
    }
    if env.take_new_channel(chain, edge, target) {
        // a fresh channel's consumer was just built: it is there to receive
        let _ = chain.outputs[edge].prio[target].send(positioned(chain));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::builder::Port;
    use crate::dataflow::chain::OutputEdge;
    use crate::message::Epoch;
    use crate::partition::{Edge, Partitioner};
    use crate::source::ErrorPolicy;
    use tokio::sync::mpsc::{channel, unbounded_channel};

    fn approximate_env(rewire: Arc<Rewire>) -> TaskEnv {
        let job = Arc::new(JobMetrics::default());
        let control: Arc<JobControl> = Arc::default();
        TaskEnv {
            writer: Arc::new(crate::dataflow::state_writer::StateWriter::new(
                control.clone(),
                1,
            )),
            control,
            job: job.clone(),
            index: 0,
            rewire: Some(rewire),
            checkpointing: true,
            epoch_base: 0,
            bounds: BatchBounds::default(),
            dead_letters: Arc::new(DeadLetterSink::in_memory(ErrorPolicy::DeadLetter)),
            progress: Arc::default(),
            idle_poll: Duration::from_millis(1),
            checkpoint_mode: CheckpointMode::Aligned,
            alignment_timeout: None,
            ledger: Arc::new(Ledger::new(job, 0)),
        }
    }

    fn barrier(epoch: u64) -> Barrier {
        Barrier {
            epoch: Epoch(epoch),
        }
    }

    /// A producer whose consumer failed and was restarted alone sends its next barrier on the
    /// consumer's fresh channel; dropping it (as a closed lane once did) left the restarted
    /// consumer waiting for a barrier of an epoch it had not skipped.
    #[test]
    fn a_barrier_for_a_restarted_consumer_goes_on_its_fresh_channel() {
        let rewire = Arc::new(Rewire::new(2, 2));
        let env = approximate_env(rewire.clone());
        let (old_tx, old_rx) = channel(2);
        let (old_prio, old_prio_rx) = unbounded_channel();
        let mut chain = Chain {
            ops: Vec::new(),
            sink: None,
            outputs: vec![OutputEdge {
                from: None,
                port: Port::Main,
                partitioner: Partitioner::new(Edge::Rebalance, 1, 0, 128),
                senders: vec![old_tx],
                prio: vec![old_prio],
                sent: vec![7],
                to: vec![(1, 0)],
                counted: true,
                schema: None,
            }],
            head_metrics: Arc::default(),
            deferred: Default::default(),
        };
        // the consumer fails: its ends of the channel are gone
        drop((old_rx, old_prio_rx));
        // still down: the barrier is dropped (the restarted consumer will skip its epoch)
        prioritize(&mut chain, 0, 0, barrier(3), &env).unwrap();
        assert_eq!(chain.outputs[0].sent[0], 7, "no fresh channel yet");
        // restarted and reconnected: the next barrier goes out on the fresh channel, at 0
        let (new_tx, _new_rx) = channel(2);
        let (new_prio, mut new_prio_rx) = unbounded_channel();
        rewire.offer_sender((0, 0, 0), (new_tx, new_prio));
        prioritize(&mut chain, 0, 0, barrier(4), &env).unwrap();
        let got = new_prio_rx
            .try_recv()
            .expect("the barrier reached the fresh channel");
        assert_eq!((got.barrier.epoch, got.position), (Epoch(4), 0));
        assert_eq!(chain.outputs[0].sent[0], 0, "positions start over");
    }
}
