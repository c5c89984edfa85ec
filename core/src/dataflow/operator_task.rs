//! The loop of an operator task: takes messages from its input lanes, aligns barriers (see
//! `barrier_align`), processes, and sends what the chain produced.

use std::future::poll_fn;
use std::task::Poll;

use tokio::sync::mpsc::error::TryRecvError;

use crate::dataflow::barrier_align::{Alignment, Lane};
use crate::dataflow::chain::{closed_error, guard, Chain, Pending};
use crate::dataflow::checkpointing::{self, CheckpointMode};
use crate::dataflow::control::{AckStats, TaskAck};
use crate::dataflow::finished;
use crate::dataflow::inflight;
use crate::dataflow::plan::{Task, TaskInput};
use crate::dataflow::rewire::Inlet;
use crate::dataflow::task::{announce_skipped, flush, TaskEnv};
use crate::error::{Error, Result};
use crate::message::{Epoch, Message, MAX_WATERMARK};

/// What an operator task woke up for.
enum Wake {
    Data(usize, Option<Message>),
    Priority,
    Committed(Epoch),
    CommitsGone,
    Reconnect,
    AlignmentTimeout,
}

/// The chain input a lane feeds, and whether its rows count in loss accounting.
#[derive(Debug, Clone, Copy)]
struct LaneInput {
    input: usize,
    counted: bool,
}

/// Runs an operator task; in approximate failover a failed task counts what was routed to it
/// and never processed: the batch that failed, what it had queued, what its channels held.
pub(crate) async fn run_operator_task(mut t: Task, env: &TaskEnv) -> Result<()> {
    let mut lanes: Vec<Lane> = t.inputs.iter().map(|_| Lane::new()).collect();
    let mut in_flight = 0;
    let r = operator_loop(&mut t, &mut lanes, env, &mut in_flight).await;
    if r.is_err() && env.rewire.is_some() {
        let mut lost = in_flight;
        for (input, lane) in t.inputs.iter_mut().zip(&lanes) {
            let mut rows = lane.queue.iter().map(|(_, m)| m.num_rows()).sum::<usize>();
            // `recv` until `None`, not `try_recv` until empty: a send that had its slot
            // before the close still lands, and `try_recv` does not wait for it (it was lost
            // uncounted, about once in 200 restarts under load)
            input.rx.close();
            while let Some(m) = input.rx.recv().await {
                rows += m.num_rows();
            }
            if input.counted {
                lost += rows;
            }
        }
        env.lost(lost);
    }
    r
}

/// Polls the priority lanes first, then the data lanes not in `skip`, round-robin.
fn poll_lanes<'a>(
    inputs: &'a mut [TaskInput],
    lanes: &'a mut [Lane],
    skip: &'a [bool],
    cursor: &'a mut usize,
) -> impl std::future::Future<Output = Wake> + 'a {
    poll_fn(move |cx| {
        for (input, lane) in inputs.iter_mut().zip(lanes.iter_mut()) {
            if lane.prio_closed {
                continue;
            }
            match input.prio.poll_recv(cx) {
                Poll::Ready(Some(p)) => {
                    lane.barriers.push_back(p);
                    return Poll::Ready(Wake::Priority);
                }
                Poll::Ready(None) => lane.prio_closed = true,
                Poll::Pending => {}
            }
        }
        let n = inputs.len();
        for k in 0..n {
            let i = (*cursor + k) % n;
            if skip[i] {
                continue;
            }
            if let Poll::Ready(m) = inputs[i].rx.poll_recv(cx) {
                *cursor = (i + 1) % n;
                return Poll::Ready(Wake::Data(i, m));
            }
        }
        Poll::Pending
    })
}

/// Moves `message` from lane `i`'s channel into its queue.
fn take(lanes: &mut [Lane], align: &mut Option<Alignment>, i: usize, message: Message) {
    let lane = &mut lanes[i];
    lane.taken += 1;
    if matches!(message, Message::End) {
        lane.end_taken = true;
    }
    if let Some(a) = align.as_mut() {
        a.taken(i, lane.taken, &message);
    }
    lane.queue.push_back((Some(lane.taken), message));
}

/// Lane `i` takes the fresh channel of its restarted producer (approximate failover); an
/// alignment in progress places it again on the new channel.
fn reconnect(
    input: &mut TaskInput,
    lane: &mut Lane,
    align: &mut Option<Alignment>,
    i: usize,
    (rx, prio): Inlet,
) {
    input.rx = rx;
    input.prio = prio;
    lane.reconnected();
    if let Some(a) = align.as_mut() {
        a.lane_reconnected(i);
    }
}

struct Loop<'a> {
    env: &'a TaskEnv,
    name: String,
    last_barrier: Epoch,
    current_wm: i64,
    pending: Vec<Pending>,
}

impl Loop<'_> {
    fn ack(&self, chain: &mut Chain, align: Alignment, states: Vec<Option<Vec<u8>>>) -> Result<()> {
        let epoch = align.barrier.epoch;
        let unaligned = align.unaligned();
        let alignment = align.alignment;
        // an unaligned snapshot that overtook nothing persists no in-flight file
        let logs = if unaligned {
            align.into_logs()
        } else {
            Vec::new()
        };
        let inflight = if logs.iter().any(|log| !log.is_empty()) {
            Some(inflight::encode(&logs)?)
        } else {
            None
        };
        self.env.ack(
            chain,
            TaskAck {
                epoch,
                task: self.name.clone(),
                position: None,
                states,
            },
            AckStats {
                alignment: alignment.unwrap_or_default(),
                unaligned,
                inflight,
            },
        );
        Ok(())
    }

    /// Handles one processed message of lane `i`, which feeds `input`.
    fn handle(
        &mut self,
        chain: &mut Chain,
        input: LaneInput,
        lanes: &mut [Lane],
        i: usize,
        message: Message,
        in_flight: &mut usize,
    ) -> Result<()> {
        match message {
            Message::Data(batch) => {
                // a lookup input's rows are not the job's: never counted as taken or lost
                *in_flight = if input.counted { batch.num_rows() } else { 0 };
                let pending = &mut self.pending;
                guard(&self.name, || chain.process(0, input.input, batch, pending))?;
                self.env.ledger.taken(*in_flight);
                *in_flight = 0;
            }
            Message::Watermark(wm) => {
                lanes[i].watermark = lanes[i].watermark.max(wm);
                let min = lanes
                    .iter()
                    .map(|l| if l.ended { MAX_WATERMARK } else { l.watermark })
                    .min()
                    .unwrap_or(MAX_WATERMARK);
                if min > self.current_wm {
                    self.current_wm = min;
                    let pending = &mut self.pending;
                    guard(&self.name, || chain.watermark(None, min, pending))?;
                }
            }
            Message::End => {
                lanes[i].ended = true;
                lanes[i].watermark = MAX_WATERMARK;
            }
            Message::Barrier(_) => {
                return Err(Error::Internal(format!(
                    "{}: a barrier on a data lane",
                    self.name
                )))
            }
        }
        Ok(())
    }
}

async fn operator_loop(
    t: &mut Task,
    lanes: &mut [Lane],
    env: &TaskEnv,
    in_flight: &mut usize,
) -> Result<()> {
    let control = &env.control;
    let name = t.name.clone();
    let chain = &mut t.chain;
    let checkpointing = env.checkpointing.then_some(t.restored_epoch);
    guard(&name, || chain.start(checkpointing, &env.dead_letters))?;
    let mut restore = t.restore.take();
    if let Some(bytes) = restore.as_mut().and_then(|s| s.inflight.take()) {
        // in-flight data of an unaligned snapshot is processed before anything new
        for (lane, log) in lanes.iter_mut().zip(inflight::decode(&bytes)?) {
            lane.queue.extend(log.into_iter().map(|m| (None, m)));
        }
    }
    let restored = t.restored_epoch;
    guard(&name, || {
        checkpointing::restore_task(chain, None, restore, restored)
    })?;
    env.ledger
        .start(chain.sink.as_ref().map(|s| s.metrics.clone()));
    announce_skipped(chain, env)?;
    // only a chain that ends in a sink listens for completed checkpoints
    let mut commits = chain.sink.is_some().then(|| control.committed.subscribe());
    let n = t.inputs.len();
    let mut st = Loop {
        env,
        name: name.clone(),
        last_barrier: Epoch(env.epoch_base),
        current_wm: i64::MIN,
        pending: Vec::new(),
    };
    let mut align: Option<Alignment> = None;
    let mut skip = vec![false; n];
    let (mut cursor, mut pick) = (0, 0);
    loop {
        if control.is_cancelled() {
            return Ok(());
        }
        // barriers: drop the ones handled already, align the oldest
        for (input, lane) in t.inputs.iter_mut().zip(lanes.iter_mut()) {
            while let Ok(p) = input.prio.try_recv() {
                lane.barriers.push_back(p);
            }
            lane.barriers.retain(|p| p.barrier.epoch > st.last_barrier);
        }
        if align.is_none() {
            align = Alignment::next(lanes).map(|b| Alignment::new(b, n));
        }
        if let Some(a) = align.as_mut() {
            a.place(lanes);
            let timed_out = env
                .alignment_timeout
                .is_some_and(|limit| a.started.elapsed() >= limit);
            // unaligned mode snapshots on the first barrier, even with nothing in flight, so every
            // checkpoint of the mode is unaligned; aligned mode turns unaligned on the timeout
            let unaligned_mode = env.checkpoint_mode == CheckpointMode::Unaligned;
            if !a.unaligned() && (unaligned_mode || (timed_out && !a.aligned(lanes))) {
                let pending = &mut st.pending;
                let states = guard(&name, || chain.barrier(a.barrier, pending))?;
                env.snapshotted(a.barrier.epoch, &states, pending);
                a.snapshot_taken(states, lanes);
                flush(chain, &mut st.pending, env).await?;
            }
        }
        if align.as_ref().is_some_and(Alignment::unaligned) {
            // take what precedes the barrier eagerly, without processing it
            for i in 0..n {
                while align.as_ref().is_some_and(|a| a.wants(i, &lanes[i])) {
                    match t.inputs[i].rx.try_recv() {
                        Ok(m) => take(lanes, &mut align, i, m),
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
            }
        }
        if let Some(a) = align.take() {
            let done = if a.unaligned() {
                a.captured(lanes)
            } else {
                a.aligned(lanes)
            };
            if done {
                let epoch = a.barrier.epoch;
                let states = match a.states.clone() {
                    Some(states) => states,
                    None => {
                        let pending = &mut st.pending;
                        let states = guard(&name, || chain.barrier(a.barrier, pending))?;
                        env.snapshotted(a.barrier.epoch, &states, pending);
                        states
                    }
                };
                let mut a = a;
                a.alignment.get_or_insert_with(|| a.started.elapsed());
                st.ack(chain, a, states)?;
                st.last_barrier = epoch;
                flush(chain, &mut st.pending, env).await?;
                continue;
            }
            align = Some(a);
        }
        if align.is_none() && lanes.iter().all(|l| l.ended) {
            if env.checkpointing {
                // FLIP-147: later checkpoints go on without this task (see `finished`)
                return finished::finish_operator_task(chain, &name, st.last_barrier, env).await;
            }
            let pending = &mut st.pending;
            guard(&name, || chain.end(pending))?;
            flush(chain, &mut st.pending, env).await?;
            return Ok(());
        }
        // process the next queued message of a lane that may proceed, round-robin
        let ready = (0..n).map(|k| (pick + k) % n).find(|&i| {
            !lanes[i].queue.is_empty()
                && !lanes[i].beyond_next_barrier()
                && !align.as_ref().is_some_and(|a| a.holds(i, &lanes[i]))
        });
        if let Some(i) = ready {
            pick = (i + 1) % n;
            if let Some((position, message)) = lanes[i].queue.pop_front() {
                if let Some(p) = position {
                    lanes[i].processed = p;
                }
                let input = LaneInput {
                    input: t.inputs[i].input,
                    counted: t.inputs[i].counted,
                };
                st.handle(chain, input, lanes, i, message, in_flight)?;
            }
            flush(chain, &mut st.pending, env).await?;
            continue;
        }
        // nothing to process: wait for input, a barrier, a commit, a reconnect, a timeout
        for (i, s) in skip.iter_mut().enumerate() {
            let l = &lanes[i];
            *s = l.ended
                || l.end_taken
                || l.down
                || !l.queue.is_empty()
                || align.as_ref().is_some_and(|a| a.holds(i, l));
        }
        let any_down = lanes.iter().any(|l| l.down);
        let deadline = match (&align, env.alignment_timeout) {
            (Some(a), Some(limit)) if !a.unaligned() => Some(a.started + limit),
            _ => None,
        };
        let timer = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let woken = async {
            match &env.rewire {
                Some(rw) if any_down => rw.woken(env.index).await,
                _ => std::future::pending().await,
            }
        };
        let commit_change = async {
            match commits.as_mut() {
                Some(rx) => match rx.changed().await {
                    Ok(()) => Wake::Committed(Epoch(*rx.borrow_and_update())),
                    Err(_) => Wake::CommitsGone,
                },
                None => std::future::pending().await,
            }
        };
        let wake = tokio::select! {
            w = poll_lanes(&mut t.inputs, lanes, &skip, &mut cursor) => w,
            w = commit_change => w,
            () = woken => Wake::Reconnect,
            () = timer => Wake::AlignmentTimeout,
        };
        match wake {
            Wake::Data(i, Some(m)) => take(lanes, &mut align, i, m),
            Wake::Data(i, None) => {
                // upstream is gone without End: the job is failing elsewhere, or (approximate
                // failover) the producer is down and will be back on a new channel
                if control.is_cancelled() {
                    return Ok(());
                }
                let Some(rw) = &env.rewire else {
                    return Err(closed_error());
                };
                match rw.take_receiver((env.index, i)) {
                    Some(inlet) => reconnect(&mut t.inputs[i], &mut lanes[i], &mut align, i, inlet),
                    None => lanes[i].down = true,
                }
            }
            Wake::Committed(epoch) => guard(&name, || chain.commit(epoch))?,
            Wake::CommitsGone => commits = None,
            Wake::Reconnect => {
                if let Some(rw) = &env.rewire {
                    for (i, lane) in lanes.iter_mut().enumerate() {
                        if lane.down {
                            if let Some(inlet) = rw.take_receiver((env.index, i)) {
                                reconnect(&mut t.inputs[i], lane, &mut align, i, inlet);
                            }
                        }
                    }
                }
            }
            Wake::Priority | Wake::AlignmentTimeout => {}
        }
    }
}
