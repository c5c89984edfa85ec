//! Running tasks: operator chains as tokio tasks over bounded channels, sources on blocking
//! threads; job start, stop, cancel, join and the summary.

use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use tokio::sync::mpsc::error::TrySendError;

use crate::dataflow::builder::Dataflow;
use crate::dataflow::chain::{closed_error, Chain, Pending};
use crate::dataflow::checkpointing::{self, Coordinator};
use crate::dataflow::control::{JobControl, TaskAck};
use crate::dataflow::plan::{build_tasks, Task, TaskInput};
use crate::error::{Error, Result};
use crate::message::{Barrier, Epoch, Message, MAX_WATERMARK};
use crate::metrics::{JobSummary, MetricsRegistry, OperatorMetrics, Progress};
use crate::source::{DeadLetterSink, SourceContext, SourcePoll};

/// A running job.
pub struct JobHandle {
    name: String,
    control: Arc<JobControl>,
    metrics: MetricsRegistry,
    dead_letters: Arc<DeadLetterSink>,
    started: Instant,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl JobHandle {
    /// Live metrics of the job.
    pub fn metrics(&self) -> &MetricsRegistry {
        &self.metrics
    }

    /// Malformed records so far.
    pub fn dead_letters(&self) -> &DeadLetterSink {
        &self.dead_letters
    }

    /// Asks followed sources to finish: they deliver what they have read and end, and the job
    /// drains and finishes normally.
    pub fn stop(&self) {
        self.control.stop_following.store(true, Ordering::SeqCst);
    }

    /// Cancels the job: tasks stop at the next message; `join` returns [`Error::Cancelled`].
    pub fn cancel(&self) {
        self.control.fail(Error::Cancelled);
    }

    /// Whether every task has finished.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Injects a checkpoint barrier at every source; returns its epoch. Acknowledgements arrive
    /// in [`checkpoint_acks`](JobHandle::checkpoint_acks) as tasks pass the barrier.
    pub fn trigger_checkpoint(&self) -> Epoch {
        Epoch(
            self.control
                .checkpoint_requested
                .fetch_add(1, Ordering::SeqCst)
                + 1,
        )
    }

    /// The checkpoints the coordinator completed and wrote so far, oldest first (empty
    /// without [`CheckpointConfig::dir`](crate::dataflow::CheckpointConfig::dir)).
    pub fn completed_checkpoints(&self) -> Vec<Epoch> {
        self.control
            .completed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The checkpoint this job restored on start, if any.
    pub fn restored_checkpoint(&self) -> Option<Epoch> {
        match self.control.restored.load(Ordering::SeqCst) {
            0 => None,
            e => Some(Epoch(e)),
        }
    }

    /// Takes the checkpoint acknowledgements received so far. While a checkpoint coordinator
    /// runs (a checkpoint directory is set), acks go to it instead and this stays empty.
    pub fn checkpoint_acks(&self) -> Vec<TaskAck> {
        std::mem::take(&mut *self.control.acks.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Waits for the job to finish.
    pub fn join(mut self) -> Result<JobSummary> {
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| Error::Internal("job thread panicked".into()))?;
        }
        self.dead_letters.flush()?;
        if let Some(e) = self
            .control
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Err(e);
        }
        Ok(JobSummary {
            name: self.name.clone(),
            elapsed: self.started.elapsed(),
            operators: self.metrics.snapshot(),
            dead_letters: self.dead_letters.count(),
            dead_letter_path: self.dead_letters.path(),
        })
    }
}

impl Dataflow {
    /// Runs the dataflow to completion (bounded inputs) and returns the summary.
    pub fn run(self) -> Result<JobSummary> {
        self.start()?.join()
    }

    /// Starts the dataflow in the background.
    pub fn start(self) -> Result<JobHandle> {
        let g = self.graph.borrow();
        let config = g.config.clone();
        let dead_letters = Arc::new(match &config.dead_letter_path {
            Some(p) => DeadLetterSink::to_file(p, config.on_error)?,
            None => DeadLetterSink::in_memory(config.on_error),
        });
        let mut metrics = MetricsRegistry::default();
        let (mut tasks, _) = build_tasks(&g, &mut metrics)?;
        drop(g);
        let control = Arc::new(JobControl::default());
        let coordinator = match checkpointing::open_store(&config.checkpoint)? {
            Some(store) => {
                if let Some(epoch) = checkpointing::assign_restore(&store, &mut tasks)? {
                    control.restored.store(epoch.0, Ordering::SeqCst);
                    control
                        .checkpoint_requested
                        .store(epoch.0, Ordering::SeqCst);
                }
                let (tx, rx) = std::sync::mpsc::channel();
                *control
                    .coordinator
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(tx);
                let coordinator = Coordinator {
                    store,
                    interval: config.checkpoint.interval,
                    expected_tasks: tasks.len(),
                    control: control.clone(),
                };
                Some((coordinator, rx))
            }
            None => None,
        };
        let mut runtime = tokio::runtime::Builder::new_multi_thread();
        if config.threads > 0 {
            runtime.worker_threads(config.threads);
        }
        let runtime = runtime
            .enable_time()
            .thread_name("eddy-worker")
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the runtime: {e}")))?;

        let mut source_tasks = Vec::new();
        let mut operator_tasks = Vec::new();
        for t in tasks {
            if t.source.is_some() {
                let progress = Arc::new(Progress::default());
                metrics.progress.push(progress.clone());
                source_tasks.push((t, progress));
            } else {
                operator_tasks.push(t);
            }
        }
        let ctl = control.clone();
        let ctl_end = control.clone();
        let coordinator_name = format!("eddy-checkpoints-{}", config.name);
        let dl = dead_letters.clone();
        let thread = std::thread::Builder::new()
            .name(format!("eddy-job-{}", config.name))
            .spawn(move || {
                let coordinator = coordinator.and_then(|(c, rx)| {
                    let spawned = std::thread::Builder::new()
                        .name(coordinator_name)
                        .spawn(move || c.run(rx));
                    match spawned {
                        Ok(t) => Some(t),
                        Err(e) => {
                            ctl.fail(Error::Internal(format!(
                                "cannot start the checkpoint coordinator: {e}"
                            )));
                            None
                        }
                    }
                });
                runtime.block_on(async move {
                    let mut handles = Vec::new();
                    // A task records its own failure the moment it fails, so the root cause
                    // is known before its neighbours notice the disconnection.
                    for t in operator_tasks {
                        let ctl = ctl.clone();
                        let name = t.name.clone();
                        handles.push((
                            name,
                            tokio::spawn(async move {
                                let r = run_operator_task(t, ctl.clone()).await;
                                settle(&ctl, r)
                            }),
                        ));
                    }
                    for (t, progress) in source_tasks {
                        let ctl = ctl.clone();
                        let name = t.name.clone();
                        let ctx_parts = (config.bounds, dl.clone(), progress, config.idle_poll);
                        handles.push((
                            name,
                            tokio::task::spawn_blocking(move || {
                                let r = run_source_task(t, ctx_parts, ctl.clone());
                                settle(&ctl, r)
                            }),
                        ));
                    }
                    let mut echoes = Vec::new();
                    for (name, h) in handles {
                        match h.await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => echoes.push(e),
                            Err(j) => {
                                let message = j
                                    .try_into_panic()
                                    .ok()
                                    .and_then(|p| {
                                        p.downcast_ref::<&str>()
                                            .map(|s| s.to_string())
                                            .or_else(|| p.downcast_ref::<String>().cloned())
                                    })
                                    .unwrap_or_else(|| "task aborted".into());
                                ctl.fail(Error::Panic {
                                    task: name,
                                    message,
                                });
                            }
                        }
                    }
                    // disconnections count only when nothing else explains them
                    for e in echoes {
                        ctl.fail(e);
                    }
                });
                // the last sender goes: the coordinator handles the acks left and stops
                ctl_end
                    .coordinator
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                if let Some(c) = coordinator {
                    if c.join().is_err() {
                        ctl_end.fail(Error::Internal("checkpoint coordinator panicked".into()));
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the job thread: {e}")))?;
        Ok(JobHandle {
            name: config.name.clone(),
            control,
            metrics,
            dead_letters,
            started: Instant::now(),
            thread: Some(thread),
        })
    }
}

/// Records a task's root-cause failure at once; hands back disconnections for later.
fn settle(control: &JobControl, result: Result<()>) -> Result<()> {
    match result {
        Err(e @ Error::Disconnected(_)) => Err(e),
        Err(e) => {
            control.fail(e);
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// Sends queued messages, waiting (and timing the wait) when a channel is full.
async fn flush(chain: &mut Chain, pending: &mut Vec<Pending>) -> Result<()> {
    // Only the edges are borrowed across the await: operators need not be `Sync`.
    let (outputs, metrics) = (&chain.outputs, &chain.head_metrics);
    for p in pending.drain(..) {
        let tx = &outputs[p.edge].senders[p.target];
        match tx.try_send(p.message) {
            Ok(()) => {}
            Err(TrySendError::Full(m)) => {
                let t = Instant::now();
                tx.send(m).await.map_err(|_| closed_error())?;
                OperatorMetrics::add(&metrics.backpressure_ns, t.elapsed().as_nanos() as u64);
            }
            Err(TrySendError::Closed(_)) => return Err(closed_error()),
        }
    }
    Ok(())
}

fn flush_blocking(chain: &Chain, pending: &mut Vec<Pending>) -> Result<()> {
    for p in pending.drain(..) {
        let tx = &chain.outputs[p.edge].senders[p.target];
        match tx.try_send(p.message) {
            Ok(()) => {}
            Err(TrySendError::Full(m)) => {
                let t = Instant::now();
                tx.blocking_send(m).map_err(|_| closed_error())?;
                OperatorMetrics::add(
                    &chain.head_metrics.backpressure_ns,
                    t.elapsed().as_nanos() as u64,
                );
            }
            Err(TrySendError::Closed(_)) => return Err(closed_error()),
        }
    }
    Ok(())
}

/// Receives the next message from any input that is neither ended nor blocked (by barrier
/// alignment), round-robin for fairness. `None` when every open input is closed.
async fn next_input(
    inputs: &mut [TaskInput],
    skip: &[bool],
    cursor: &mut usize,
) -> Option<(usize, Option<Message>)> {
    poll_fn(|cx| {
        let n = inputs.len();
        let mut any_open = false;
        for k in 0..n {
            let i = (*cursor + k) % n;
            if skip[i] {
                continue;
            }
            any_open = true;
            match inputs[i].rx.poll_recv(cx) {
                Poll::Ready(m) => {
                    *cursor = (i + 1) % n;
                    return Poll::Ready(Some((i, m)));
                }
                Poll::Pending => {}
            }
        }
        if any_open {
            Poll::Pending
        } else {
            Poll::Ready(None)
        }
    })
    .await
}

/// What an operator task woke up for.
enum Wake {
    Input(Option<(usize, Option<Message>)>),
    Committed(Epoch),
    CommitsGone,
}

async fn run_operator_task(mut t: Task, control: Arc<JobControl>) -> Result<()> {
    let chain = &mut t.chain;
    chain.start()?;
    checkpointing::restore_task(chain, None, t.restore.take(), t.restored_epoch)?;
    // only a chain that ends in a sink listens for completed checkpoints
    let mut commits = chain.sink.is_some().then(|| control.committed.subscribe());
    let n = t.inputs.len();
    let mut watermarks = vec![i64::MIN; n];
    let mut current_wm = i64::MIN;
    let mut ended = vec![false; n];
    let mut blocked = vec![false; n]; // ended or waiting for barrier alignment
    let mut aligning: Option<Barrier> = None;
    let mut cursor = 0;
    let mut pending = Vec::new();
    loop {
        if control.is_cancelled() {
            return Ok(());
        }
        let wake = match commits.as_mut() {
            Some(rx) => tokio::select! {
                changed = rx.changed() => match changed {
                    Ok(()) => Wake::Committed(Epoch(*rx.borrow_and_update())),
                    Err(_) => Wake::CommitsGone,
                },
                m = next_input(&mut t.inputs, &blocked, &mut cursor) => Wake::Input(m),
            },
            None => Wake::Input(next_input(&mut t.inputs, &blocked, &mut cursor).await),
        };
        let next = match wake {
            Wake::Input(next) => next,
            Wake::Committed(epoch) => {
                chain.commit(epoch)?;
                continue;
            }
            Wake::CommitsGone => {
                commits = None;
                continue;
            }
        };
        let Some((ch, msg)) = next else {
            return Err(Error::Internal(format!("{}: no open input", t.name)));
        };
        let Some(msg) = msg else {
            // upstream is gone without End: the job is failing elsewhere
            return if control.is_cancelled() {
                Ok(())
            } else {
                Err(closed_error())
            };
        };
        match msg {
            Message::Data(batch) => chain.process(0, t.inputs[ch].input, batch, &mut pending)?,
            Message::Watermark(wm) => {
                watermarks[ch] = watermarks[ch].max(wm);
                let min = watermarks
                    .iter()
                    .zip(&ended)
                    .map(|(&w, &e)| if e { MAX_WATERMARK } else { w })
                    .min()
                    .unwrap_or(MAX_WATERMARK);
                if min > current_wm {
                    current_wm = min;
                    chain.watermark(None, min, &mut pending)?;
                }
            }
            Message::Barrier(b) => {
                blocked[ch] = true;
                aligning = Some(b);
            }
            Message::End => {
                ended[ch] = true;
                blocked[ch] = true;
                watermarks[ch] = MAX_WATERMARK;
            }
        }
        if let Some(b) = aligning {
            // aligned when every input that has not ended delivered the barrier
            if blocked.iter().all(|&x| x) {
                let states = chain.barrier(b, &mut pending)?;
                control.ack(TaskAck {
                    epoch: b.epoch,
                    task: t.name.clone(),
                    position: None,
                    states,
                });
                aligning = None;
                blocked.copy_from_slice(&ended);
            }
        }
        if aligning.is_none() && ended.iter().all(|&e| e) {
            chain.end(&mut pending)?;
            flush(chain, &mut pending).await?;
            return Ok(());
        }
        flush(chain, &mut pending).await?;
    }
}

type SourceCtxParts = (
    crate::source::BatchBounds,
    Arc<DeadLetterSink>,
    Arc<Progress>,
    std::time::Duration,
);

fn run_source_task(
    mut t: Task,
    (bounds, dead_letters, progress, idle_poll): SourceCtxParts,
    control: Arc<JobControl>,
) -> Result<()> {
    let (mut source, info, metrics) = t
        .source
        .take()
        .ok_or_else(|| Error::Internal("source task without a source".into()))?;
    let ctx = SourceContext {
        task: info,
        bounds,
        dead_letters,
        progress,
    };
    let chain = &mut t.chain;
    source.open(&ctx)?;
    chain.start()?;
    checkpointing::restore_task(chain, Some(&mut source), t.restore.take(), t.restored_epoch)?;
    let mut commits = chain.sink.is_some().then(|| control.committed.subscribe());
    let mut pending = Vec::new();
    let mut stopped = false;
    // barriers are numbered after the restored checkpoint
    let mut injected = control.restored.load(Ordering::SeqCst);
    loop {
        if control.is_cancelled() {
            return Ok(());
        }
        if !stopped && control.stop_following.load(Ordering::Relaxed) {
            source.stop_following();
            stopped = true;
        }
        if let Some(rx) = commits.as_mut() {
            if rx.has_changed().unwrap_or(false) {
                let epoch = Epoch(*rx.borrow_and_update());
                chain.commit(epoch)?;
            }
        }
        let requested = control.checkpoint_requested.load(Ordering::SeqCst);
        if requested > injected {
            injected = requested;
            let barrier = Barrier {
                epoch: Epoch(requested),
            };
            let position = source.position();
            let states = chain.barrier(barrier, &mut pending)?;
            control.ack(TaskAck {
                epoch: barrier.epoch,
                task: t.name.clone(),
                position: Some(position),
                states,
            });
            flush_blocking(chain, &mut pending)?;
        }
        let start = Instant::now();
        let poll = source.poll_next(&ctx)?;
        OperatorMetrics::add(&metrics.busy_ns, start.elapsed().as_nanos() as u64);
        match poll {
            SourcePoll::Batch(batch) => {
                OperatorMetrics::add(&metrics.records_out, batch.num_rows() as u64);
                OperatorMetrics::add(&metrics.batches_in, 1);
                chain.emit_data(None, batch, &mut pending)?;
            }
            SourcePoll::Watermark(wm) => chain.watermark(None, wm, &mut pending)?,
            SourcePoll::Idle => std::thread::sleep(idle_poll),
            SourcePoll::End => {
                chain.watermark(None, MAX_WATERMARK, &mut pending)?;
                chain.end(&mut pending)?;
                flush_blocking(chain, &mut pending)?;
                return Ok(());
            }
        }
        flush_blocking(chain, &mut pending)?;
    }
}
