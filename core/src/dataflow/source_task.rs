//! The loop of a source task: polls the source on a blocking thread, drives its chain, injects
//! checkpoint barriers, and sends what the chain produced.
//!
//! A source blocked by backpressure cannot inject a barrier between two batches. In unaligned
//! mode it does not wait: while a send waits for room it checks for a requested checkpoint,
//! snapshots at once and sends the barrier on the priority lanes; what it had produced but not
//! yet sent (its output in flight) is persisted with the snapshot and sent first on restore.
//! In aligned mode it does the same once the checkpoint has waited `alignment_timeout`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::{SendTimeoutError, TrySendError};

use crate::dataflow::chain::{guard, Chain, Pending};
use crate::dataflow::checkpointing::{self, CheckpointMode};
use crate::dataflow::control::{AckStats, TaskAck};
use crate::dataflow::failover::{self, FaultPoint, StageFault};
use crate::dataflow::finished;
use crate::dataflow::inflight;
use crate::dataflow::plan::Task;
use crate::dataflow::task::{announce_skipped, prioritize, TaskEnv};
use crate::error::{Error, Result};
use crate::message::{Barrier, Epoch, Message, MAX_WATERMARK};
use crate::metrics::OperatorMetrics;
use crate::source::{Source, SourceContext, SourcePoll};

/// How long a blocked send waits before it looks for a checkpoint request again.
const BLOCKED_POLL: Duration = Duration::from_millis(1);

struct Injector<'a> {
    env: &'a TaskEnv,
    name: String,
    injected: u64,
    source: Box<dyn Source>,
    /// Faults aimed at the source itself.
    fault: Option<StageFault>,
    /// The source ended and its End is queued: it injects no more barriers (it reports
    /// itself finished after the last one it injected instead).
    ended: bool,
    /// The source's position at each barrier injected and not yet covered by a completed
    /// checkpoint, oldest first.
    positions: VecDeque<(Epoch, crate::source::SourcePosition)>,
}

impl Injector<'_> {
    /// A checkpoint was requested and not injected yet.
    fn due(&self) -> Option<Barrier> {
        let requested = self.env.control.checkpoint_requested.load(Ordering::SeqCst);
        (!self.ended && requested > self.injected).then_some(Barrier {
            epoch: Epoch(requested),
        })
    }

    /// The checkpoint of `epoch` completed: the source hears of the newest of its barriers it
    /// covers ([`Source::on_checkpoint_complete`](crate::source::Source::on_checkpoint_complete)).
    fn completed(&mut self, epoch: Epoch) -> Result<()> {
        let mut newest = None;
        while self.positions.front().is_some_and(|(e, _)| *e <= epoch) {
            newest = self.positions.pop_front();
        }
        match newest {
            Some((e, position)) => guard(&self.name, || {
                self.source.on_checkpoint_complete(e, &position)
            }),
            None => Ok(()),
        }
    }

    /// Snapshots between two batches: nothing is in flight.
    fn inject(&mut self, chain: &mut Chain, b: Barrier, pending: &mut Vec<Pending>) -> Result<()> {
        self.injected = b.epoch.0;
        guard(&self.name, || {
            failover::at(&mut self.fault, FaultPoint::Snapshot)
        })?;
        let position = self.source.position();
        self.positions.push_back((b.epoch, position.clone()));
        let states = guard(&self.name, || chain.barrier(b, pending))?;
        self.env.snapshotted(b.epoch, &states, pending);
        self.ack(chain, b, position, states, AckStats::default());
        Ok(())
    }

    /// Snapshots while blocked: the barrier overtakes `queue`, which is persisted.
    fn inject_unaligned(
        &mut self,
        chain: &mut Chain,
        b: Barrier,
        queue: &mut VecDeque<Pending>,
    ) -> Result<()> {
        self.injected = b.epoch.0;
        guard(&self.name, || {
            failover::at(&mut self.fault, FaultPoint::Snapshot)
        })?;
        let position = self.source.position();
        self.positions.push_back((b.epoch, position.clone()));
        let mut emitted = Vec::new();
        let states = guard(&self.name, || chain.barrier(b, &mut emitted))?;
        // what it emitted goes out with the in-flight data, which a restart sends again
        self.env.snapshotted(b.epoch, &states, &[]);
        for p in emitted {
            match p.message {
                Message::Barrier(b) => prioritize(chain, p.edge, p.target, b, self.env)?,
                _ => queue.push_back(p),
            }
        }
        let offsets = lane_offsets(chain);
        let mut logs = vec![Vec::new(); offsets.last().copied().unwrap_or(0)];
        for p in queue.iter() {
            if matches!(p.message, Message::Data(_) | Message::Watermark(_)) {
                logs[offsets[p.edge] + p.target].push(p.message.clone());
            }
        }
        let stats = AckStats {
            alignment: Duration::ZERO,
            unaligned: true,
            inflight: Some(inflight::encode(&logs)?),
        };
        self.ack(chain, b, position, states, stats);
        Ok(())
    }

    fn ack(
        &self,
        chain: &mut Chain,
        b: Barrier,
        position: crate::source::SourcePosition,
        states: Vec<Option<Vec<u8>>>,
        stats: AckStats,
    ) {
        self.env.ack(
            chain,
            TaskAck {
                epoch: b.epoch,
                task: self.name.clone(),
                position: Some(position),
                states,
            },
            stats,
        );
    }
}

/// Where each output edge's targets start in the flattened list of output channels; the last
/// entry is the total.
fn lane_offsets(chain: &Chain) -> Vec<usize> {
    let mut offsets = Vec::with_capacity(chain.outputs.len() + 1);
    let mut next = 0;
    for out in &chain.outputs {
        offsets.push(next);
        next += out.senders.len();
    }
    offsets.push(next);
    offsets
}

/// Sends queued messages; while a channel is full, waits in short steps and, in unaligned
/// mode, injects a requested barrier ahead of what is still queued.
fn flush_source(
    chain: &mut Chain,
    pending: &mut Vec<Pending>,
    inj: &mut Injector<'_>,
) -> Result<()> {
    let env = inj.env;
    let unaligned = env.checkpoint_mode == CheckpointMode::Unaligned;
    // in aligned mode, a checkpoint blocked longer than the alignment timeout turns unaligned
    let overdue = |b: &Barrier| {
        unaligned
            || env.alignment_timeout.is_some_and(|limit| {
                env.control
                    .trigger_time(b.epoch)
                    .is_some_and(|at| at.elapsed() >= limit)
            })
    };
    let runtime = tokio::runtime::Handle::current();
    let mut queue: VecDeque<Pending> = pending.drain(..).collect();
    while let Some(p) = queue.pop_front() {
        let mut message = p.message;
        loop {
            if let Message::Barrier(b) = message {
                prioritize(chain, p.edge, p.target, b, env)?;
                break;
            }
            env.note_schema(chain, p.edge, &message);
            let rows = message.num_rows();
            let tx = chain.outputs[p.edge].senders[p.target].clone();
            let closed = match tx.try_send(message) {
                Ok(()) => None,
                Err(TrySendError::Closed(m)) => Some(m),
                Err(TrySendError::Full(m)) => {
                    if let Some(b) = inj.due().filter(overdue) {
                        queue.push_front(Pending {
                            edge: p.edge,
                            target: p.target,
                            message: m,
                        });
                        inj.inject_unaligned(chain, b, &mut queue)?;
                        break;
                    }
                    let t = Instant::now();
                    let sent = runtime.block_on(tx.send_timeout(m, BLOCKED_POLL));
                    OperatorMetrics::add(
                        &chain.head_metrics.backpressure_ns,
                        t.elapsed().as_nanos() as u64,
                    );
                    match sent {
                        Ok(()) => None,
                        Err(SendTimeoutError::Timeout(m)) => {
                            if env.control.is_cancelled() {
                                return Ok(());
                            }
                            message = m;
                            continue;
                        }
                        Err(SendTimeoutError::Closed(m)) => Some(m),
                    }
                }
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

pub(crate) fn run_source_task(mut t: Task, env: &TaskEnv) -> Result<()> {
    let control = &env.control;
    let name = t.name.clone();
    let (mut source, info, metrics) = t
        .source
        .take()
        .ok_or_else(|| Error::Internal("source task without a source".into()))?;
    let ctx = SourceContext {
        task: info,
        bounds: env.bounds,
        dead_letters: env.dead_letters.clone(),
        progress: env.progress.clone(),
    };
    let chain = &mut t.chain;
    guard(&name, || source.open(&ctx))?;
    let checkpointing = env.checkpointing.then_some(t.restored_epoch);
    guard(&name, || chain.start(checkpointing, &env.dead_letters))?;
    let mut restore = t.restore.take();
    let mut pending = Vec::new();
    if let Some(bytes) = restore.as_mut().and_then(|s| s.inflight.take()) {
        // output in flight at an unaligned snapshot goes out before anything new
        let offsets = lane_offsets(chain);
        for (k, log) in inflight::decode(&bytes)?.into_iter().enumerate() {
            let edge = offsets.partition_point(|&o| o <= k).saturating_sub(1);
            if edge >= chain.outputs.len() {
                return Err(Error::Internal(format!(
                    "{name}: in-flight data for output channel {k} of {}",
                    offsets.last().copied().unwrap_or(0)
                )));
            }
            let target = k - offsets[edge];
            pending.extend(log.into_iter().map(|message| Pending {
                edge,
                target,
                message,
            }));
        }
    }
    let restored = t.restored_epoch;
    guard(&name, || {
        checkpointing::restore_task(chain, Some(&mut source), restore, restored)
    })?;
    env.ledger
        .start(chain.sink.as_ref().map(|s| s.metrics.clone()));
    announce_skipped(chain, env)?;
    let mut commits = env.checkpointing.then(|| control.committed.subscribe());
    let mut inj = Injector {
        env,
        name: name.clone(),
        injected: env.epoch_base,
        source,
        fault: t.source_fault.take(),
        ended: false,
        positions: VecDeque::new(),
    };
    flush_source(chain, &mut pending, &mut inj)?;
    let mut stopped = false;
    loop {
        if control.is_cancelled() {
            return Ok(());
        }
        if !stopped && control.stop_following.load(Ordering::Relaxed) {
            inj.source.stop_following();
            stopped = true;
        }
        if let Some(rx) = commits.as_mut() {
            if rx.has_changed().unwrap_or(false) {
                let epoch = Epoch(*rx.borrow_and_update());
                if chain.sink.is_some() {
                    guard(&name, || chain.commit(epoch))?;
                }
                inj.completed(epoch)?;
            }
        }
        if let Some(b) = inj.due() {
            inj.inject(chain, b, &mut pending)?;
            flush_source(chain, &mut pending, &mut inj)?;
        }
        let start = Instant::now();
        let poll = guard(&name, || inj.source.poll_next(&ctx))?;
        OperatorMetrics::add(&metrics.busy_ns, start.elapsed().as_nanos() as u64);
        match poll {
            SourcePoll::Batch(batch) => {
                guard(&name, || failover::at(&mut inj.fault, FaultPoint::Batch))?;
                OperatorMetrics::add(&metrics.records_out, batch.num_rows() as u64);
                OperatorMetrics::add(&metrics.batches_in, 1);
                let rows = batch.num_rows();
                guard(&name, || chain.emit_data(None, batch, &mut pending))?;
                env.ledger.taken(rows);
            }
            SourcePoll::Watermark(wm) => guard(&name, || chain.watermark(None, wm, &mut pending))?,
            SourcePoll::Idle => std::thread::sleep(env.idle_poll),
            SourcePoll::End => {
                guard(&name, || chain.watermark(None, MAX_WATERMARK, &mut pending))?;
                if !env.checkpointing {
                    guard(&name, || chain.end(&mut pending))?;
                    flush_source(chain, &mut pending, &mut inj)?;
                    return Ok(());
                }
                // FLIP-147: later checkpoints go on without this task (see `finished`)
                let last = Epoch(inj.injected);
                // a barrier injected while End waits for room would be acked after `last`
                inj.ended = true;
                guard(&name, || chain.finish(last, &mut pending))?;
                flush_source(chain, &mut pending, &mut inj)?;
                finished::report(env, &name, last, Some(inj.source.position()));
                if chain.sink.is_some() {
                    if let Some(epoch) = finished::wait_commit_blocking(control, Epoch(last.0 + 1))
                    {
                        guard(&name, || chain.close_committed(epoch))?;
                    }
                }
                return Ok(());
            }
        }
        flush_source(chain, &mut pending, &mut inj)?;
    }
}
