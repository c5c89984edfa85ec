//! A chain: the operators fused into one task (forward edges of equal parallelism), an optional
//! sink at its end, and the edges that leave it. All of it is synchronous; the task loop around
//! it moves the messages it queues onto channels.

use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use tokio::sync::mpsc::{Sender, UnboundedSender};

use crate::dataflow::builder::Port;
use crate::dataflow::failover::{self, FaultPoint, StageFault};
use crate::dataflow::inflight::Positioned;
use crate::error::{Error, Result};
use crate::message::{Barrier, Epoch, EventTime, Message};
use crate::metrics::OperatorMetrics;
use crate::operator::{Collector, DeferredState, Operator, Output, StateSnapshot, TaskInfo};
use crate::partition::Partitioner;
use crate::sink::Sink;

pub(crate) struct ChainOp {
    pub(crate) task: TaskInfo,
    pub(crate) op: Box<dyn Operator>,
    pub(crate) metrics: Arc<OperatorMetrics>,
    pub(crate) collector: Collector,
    pub(crate) fault: Option<StageFault>,
}

pub(crate) struct ChainSink {
    pub(crate) task: TaskInfo,
    pub(crate) sink: Box<dyn Sink>,
    pub(crate) metrics: Arc<OperatorMetrics>,
    pub(crate) fault: Option<StageFault>,
}

/// An edge leaving the chain from stage `from` (`None`: the chain's source).
pub(crate) struct OutputEdge {
    pub(crate) from: Option<usize>,
    pub(crate) port: Port,
    pub(crate) partitioner: Partitioner,
    pub(crate) senders: Vec<Sender<Message>>,
    /// The priority lane of each target (barriers only).
    pub(crate) prio: Vec<UnboundedSender<Positioned>>,
    /// Data-lane messages sent to each target on its current channel.
    pub(crate) sent: Vec<u64>,
    /// The consumer of each target: (task index, input index in that task).
    pub(crate) to: Vec<(usize, usize)>,
    /// Rows sent here are the job's rows, counted by loss accounting (not a lookup input's).
    pub(crate) counted: bool,
    /// The schema of the data sent here (noted in approximate failover: a restarted consumer
    /// gets it first on its fresh channel).
    pub(crate) schema: Option<arrow::datatypes::SchemaRef>,
}

/// A message waiting to go out on `edge` to subtask `target`.
pub(crate) struct Pending {
    pub(crate) edge: usize,
    pub(crate) target: usize,
    pub(crate) message: Message,
}

pub(crate) struct Chain {
    pub(crate) ops: Vec<ChainOp>,
    pub(crate) sink: Option<ChainSink>,
    pub(crate) outputs: Vec<OutputEdge>,
    /// Metrics of the chain's head for backpressure accounting.
    pub(crate) head_metrics: Arc<OperatorMetrics>,
    /// The deferred states of the newest barrier, until the task acknowledges it.
    pub(crate) deferred: Deferred,
}

/// The deferred states ([`StateSnapshot::Deferred`]) a barrier left, by chain stage; their
/// stages hold an empty placeholder in the states the barrier returned.
pub(crate) struct Deferred {
    pub(crate) epoch: Epoch,
    pub(crate) states: Vec<(usize, Box<dyn DeferredState>)>,
}

impl Default for Deferred {
    fn default() -> Self {
        Deferred {
            epoch: Epoch(0),
            states: Vec::new(),
        }
    }
}

impl Chain {
    /// The deferred states of barrier `epoch` (none if it left none).
    pub(crate) fn take_deferred(&mut self, epoch: Epoch) -> Deferred {
        if self.deferred.epoch == epoch {
            std::mem::take(&mut self.deferred)
        } else {
            Deferred {
                epoch,
                states: Vec::new(),
            }
        }
    }
}

pub(crate) fn op_error(task: &TaskInfo, e: Error) -> Error {
    match e {
        Error::Operator { .. } => e,
        Error::Malformed { .. } | Error::Schema { .. } | Error::Config { .. } => e,
        other => Error::Operator {
            operator: task.operator.to_string(),
            subtask: task.subtask,
            domain: other.domain(),
            message: other.to_string(),
        },
    }
}

/// Runs `f`, turning a panic into [`Error::Panic`] naming `task`: a panicking operator fails
/// its task like an error does, so the task can clean up and be restarted.
pub(crate) fn guard<T>(task: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(Error::Panic {
            task: task.to_string(),
            message: payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into()),
        }),
    }
}

impl Chain {
    /// Starts operators (handing them the job's dead-letter sink) and opens the sink;
    /// `checkpointing` is `Some(restored)` in a job that takes checkpoints (the sink then
    /// stages its output per epoch).
    pub(crate) fn start(
        &mut self,
        checkpointing: Option<Option<crate::message::Epoch>>,
        dead_letters: &std::sync::Arc<crate::source::DeadLetterSink>,
    ) -> Result<()> {
        for op in &mut self.ops {
            op.collector.dead_letters = Some(dead_letters.clone());
            op.op
                .on_start(&op.task)
                .map_err(|e| op_error(&op.task, e))?;
        }
        if let Some(s) = &mut self.sink {
            if let Some(restored) = checkpointing {
                s.sink
                    .on_checkpointing(restored)
                    .map_err(|e| op_error(&s.task, e))?;
            }
            s.sink.open(&s.task).map_err(|e| op_error(&s.task, e))?;
        }
        Ok(())
    }

    /// A batch produced at `stage` (`None`: the source) on the main output.
    pub(crate) fn emit_data(
        &mut self,
        stage: Option<usize>,
        batch: RecordBatch,
        pending: &mut Vec<Pending>,
    ) -> Result<()> {
        let next = stage.map_or(0, |s| s + 1);
        if next < self.ops.len() {
            return self.process(next, 0, batch, pending);
        }
        if let Some(s) = &mut self.sink {
            if let Some(f) = &mut s.fault {
                f.on_batch()?;
            }
            let t = Instant::now();
            OperatorMetrics::add(&s.metrics.records_in, batch.num_rows() as u64);
            OperatorMetrics::add(&s.metrics.batches_in, 1);
            s.sink.write(&batch).map_err(|e| op_error(&s.task, e))?;
            OperatorMetrics::add(&s.metrics.busy_ns, t.elapsed().as_nanos() as u64);
            return Ok(());
        }
        self.route(stage, &Port::Main, batch, pending)
    }

    fn route(
        &mut self,
        stage: Option<usize>,
        port: &Port,
        batch: RecordBatch,
        pending: &mut Vec<Pending>,
    ) -> Result<()> {
        for (edge, out) in self.outputs.iter_mut().enumerate() {
            if out.from == stage && &out.port == port {
                out.partitioner.partition(&batch, |target, piece| {
                    pending.push(Pending {
                        edge,
                        target,
                        message: Message::Data(piece),
                    })
                })?;
            }
        }
        Ok(())
    }

    /// Sends a control message on every edge leaving `stage`.
    fn broadcast_from(&self, stage: Option<usize>, msg: &Message, pending: &mut Vec<Pending>) {
        for (edge, out) in self.outputs.iter().enumerate() {
            if out.from == stage {
                for target in 0..out.senders.len() {
                    pending.push(Pending {
                        edge,
                        target,
                        message: msg.clone(),
                    });
                }
            }
        }
    }

    /// Sends a control message on every edge of the chain.
    pub(crate) fn broadcast_all(&self, msg: &Message, pending: &mut Vec<Pending>) {
        for (edge, out) in self.outputs.iter().enumerate() {
            for target in 0..out.senders.len() {
                pending.push(Pending {
                    edge,
                    target,
                    message: msg.clone(),
                });
            }
        }
    }

    /// Feeds `batch` to the operator at `stage`.
    pub(crate) fn process(
        &mut self,
        stage: usize,
        input: usize,
        batch: RecordBatch,
        pending: &mut Vec<Pending>,
    ) -> Result<()> {
        if stage >= self.ops.len() {
            // a chain that is only a sink: the batch goes straight to it
            return self.emit_data(stage.checked_sub(1), batch, pending);
        }
        let op = &mut self.ops[stage];
        if let Some(f) = &mut op.fault {
            f.on_batch()?;
        }
        let t = Instant::now();
        OperatorMetrics::add(&op.metrics.records_in, batch.num_rows() as u64);
        OperatorMetrics::add(&op.metrics.batches_in, 1);
        let r = op.op.process(input, batch, &mut op.collector);
        OperatorMetrics::add(&op.metrics.busy_ns, t.elapsed().as_nanos() as u64);
        r.map_err(|e| op_error(&op.task, e))?;
        self.drain(stage, pending)
    }

    /// Event time advanced to `wm` for the operator at `stage` (`None`: the source emitted it).
    pub(crate) fn watermark(
        &mut self,
        stage: Option<usize>,
        wm: EventTime,
        pending: &mut Vec<Pending>,
    ) -> Result<()> {
        let next = stage.map_or(0, |s| s + 1);
        self.broadcast_from(stage, &Message::Watermark(wm), pending);
        if next < self.ops.len() {
            let op = &mut self.ops[next];
            let t = Instant::now();
            let r = op.op.on_watermark(wm, &mut op.collector);
            OperatorMetrics::add(&op.metrics.busy_ns, t.elapsed().as_nanos() as u64);
            r.map_err(|e| op_error(&op.task, e))?;
            self.drain(next, pending)?;
        }
        Ok(())
    }

    /// Moves what the operator at `stage` emitted down the chain or onto edges.
    fn drain(&mut self, stage: usize, pending: &mut Vec<Pending>) -> Result<()> {
        let mut outputs = std::mem::take(&mut self.ops[stage].collector.outputs);
        let mut result = Ok(());
        for out in outputs.drain(..) {
            let r = match out {
                Output::Data(b) => {
                    OperatorMetrics::add(&self.ops[stage].metrics.records_out, b.num_rows() as u64);
                    self.emit_data(Some(stage), b, pending)
                }
                Output::Side(tag, b) => {
                    OperatorMetrics::add(
                        &self.ops[stage].metrics.records_side,
                        b.num_rows() as u64,
                    );
                    self.route(Some(stage), &Port::Side(tag), b, pending)
                }
                Output::Watermark(wm) => self.watermark(Some(stage), wm, pending),
            };
            if let Err(e) = r {
                result = Err(e);
                break;
            }
        }
        outputs.clear();
        self.ops[stage].collector.outputs = outputs;
        result
    }

    /// A barrier has been aligned: every operator sees it in chain order (and may emit before
    /// it), then snapshots; the sink pre-commits. Returns the operator states by stage; a
    /// deferred state ([`Operator::snapshot_async`]) is an empty placeholder there and waits in
    /// [`Chain::deferred`] for the task's background writer.
    pub(crate) fn barrier(
        &mut self,
        barrier: Barrier,
        pending: &mut Vec<Pending>,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let mut states = Vec::with_capacity(self.ops.len());
        let mut deferred = Vec::new();
        for stage in 0..self.ops.len() {
            let op = &mut self.ops[stage];
            op.op
                .on_barrier(barrier.epoch, &mut op.collector)
                .map_err(|e| op_error(&op.task, e))?;
            self.drain(stage, pending)?;
            let op = &mut self.ops[stage];
            failover::at(&mut op.fault, FaultPoint::Snapshot)?;
            let state = op
                .op
                .snapshot_async(barrier.epoch)
                .map_err(|e| op_error(&op.task, e))?;
            states.push(match state {
                None => None,
                Some(StateSnapshot::Ready(bytes)) => Some(bytes),
                Some(StateSnapshot::Deferred(handle)) => {
                    deferred.push((stage, handle));
                    Some(Vec::new())
                }
            });
        }
        self.deferred = Deferred {
            epoch: barrier.epoch,
            states: deferred,
        };
        if let Some(s) = &mut self.sink {
            failover::at(&mut s.fault, FaultPoint::PreCommit)?;
            s.sink
                .pre_commit(barrier.epoch)
                .map_err(|e| op_error(&s.task, e))?;
        }
        self.broadcast_all(&Message::Barrier(barrier), pending);
        Ok(states)
    }

    /// Checkpoint `epoch` (and every one before it) completed: the sink publishes it.
    pub(crate) fn commit(&mut self, epoch: Epoch) -> Result<()> {
        match &mut self.sink {
            Some(s) => {
                failover::at(&mut s.fault, FaultPoint::Commit)?;
                s.sink.commit(epoch).map_err(|e| op_error(&s.task, e))
            }
            None => Ok(()),
        }
    }

    /// Every input ended: operators flush in chain order, the sink closes, End goes out.
    pub(crate) fn end(&mut self, pending: &mut Vec<Pending>) -> Result<()> {
        self.end_operators(pending)?;
        if let Some(s) = &mut self.sink {
            s.sink.close().map_err(|e| op_error(&s.task, e))?;
        }
        self.broadcast_all(&Message::End, pending);
        Ok(())
    }

    /// Every input ended in a checkpointed job, after barrier `last`: operators flush, the
    /// sink pre-commits the rest as epoch `last + 1` (published once a checkpoint covers the
    /// finished task, see [`Chain::close_committed`]), End goes out.
    pub(crate) fn finish(&mut self, last: Epoch, pending: &mut Vec<Pending>) -> Result<()> {
        self.end_operators(pending)?;
        if let Some(s) = &mut self.sink {
            failover::at(&mut s.fault, FaultPoint::PreCommit)?;
            s.sink
                .pre_commit(Epoch(last.0 + 1))
                .map_err(|e| op_error(&s.task, e))?;
        }
        self.broadcast_all(&Message::End, pending);
        Ok(())
    }

    /// A checkpoint covering this finished task completed: the sink publishes up to `epoch`
    /// and closes.
    pub(crate) fn close_committed(&mut self, epoch: Epoch) -> Result<()> {
        self.commit(epoch)?;
        if let Some(s) = &mut self.sink {
            s.sink.close().map_err(|e| op_error(&s.task, e))?;
        }
        Ok(())
    }

    /// A task restored as finished: only its sink runs, to reconcile what an earlier attempt
    /// left (`on_checkpointing`, `open`, the recovery commit of `restored`) and close.
    pub(crate) fn reconcile_finished(&mut self, restored: Epoch) -> Result<()> {
        if let Some(s) = &mut self.sink {
            s.sink
                .on_checkpointing(Some(restored))
                .map_err(|e| op_error(&s.task, e))?;
            s.sink.open(&s.task).map_err(|e| op_error(&s.task, e))?;
        }
        self.close_committed(restored)
    }

    /// Operators flush in chain order (`on_end`).
    fn end_operators(&mut self, pending: &mut Vec<Pending>) -> Result<()> {
        for stage in 0..self.ops.len() {
            let op = &mut self.ops[stage];
            let t = Instant::now();
            let r = op.op.on_end(&mut op.collector);
            OperatorMetrics::add(&op.metrics.busy_ns, t.elapsed().as_nanos() as u64);
            r.map_err(|e| op_error(&op.task, e))?;
            self.drain(stage, pending)?;
        }
        Ok(())
    }
}

/// A send failed because the receiving task is gone: the job is failing elsewhere.
pub(crate) fn closed_error() -> Error {
    Error::Disconnected("downstream".into())
}
