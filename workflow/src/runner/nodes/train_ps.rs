//! `stream-train` through a parameter server (a node with `ps`, or `parallelism` > 1; see
//! [`PsSpec`]).
//!
//! The node reads its source and featurizes each batch with one pipeline (so the published
//! pipeline saw every row), then deals the examples to `parallelism` workers (each batch to
//! the one dealt the fewest mini-batches), each a [`PsWorker`] on its own thread that pulls,
//! predicts (progressive validation), pushes gradients and clocks under the node's
//! `consistency`. The network runs on a small tokio
//! runtime the node owns. At every publication point the node *checkpoints* the workers: each
//! learns what it was dealt, then pauses (deregistering from the clocks, so `sync` workers
//! with more mini-batches are not held by idle ones) and reports its metrics; the node then
//! reads the table back with [`ftrl_model`] and publishes it with the merged metrics. With
//! `ps = { shards = N }` the node starts the shards itself and stops them when it ends.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use eddy_algorithms::features::{Examples, Features};
use eddy_algorithms::online::linear::{FtrlLogisticParams, LogisticGradientModel};
use eddy_algorithms::pipeline::Pipeline;
use eddy_algorithms::trained::{OnlineModel, TrainedModel};
use eddy_ps::train::{ftrl_model, ftrl_tables};
use eddy_ps::{
    LocalPsConfig, ParamStore, PsClientConfig, PsServerConfig, PsWorker, PsWorkerConfig, WorkerId,
    WorkerReport,
};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

use super::train::{node_err, template};
use super::{NodeCtx, Outcome, Progress};
use crate::error::{Error, Result};
use crate::model_stream::metric_map;
use crate::runner::data::SourceReader;
use crate::runner::learners;
use crate::spec::{PsSpec, TrainSpec};

/// Trains `t` through `ps`; see the [module docs](self).
pub(crate) fn run(ctx: &NodeCtx, t: &TrainSpec, ps: &PsSpec) -> Result<Outcome> {
    let name = &ctx.spec.name;
    let pipeline = learners::pipeline(&ctx.wf.features[&t.features])?;
    let params: FtrlLogisticParams = learners::spec(name, t)?.decode_with(pipeline.dim(), &[])?;
    params.build()?;
    let tables = ftrl_tables(params.ftrl);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("{name}-ps"))
        .enable_all()
        .build()
        .map_err(|e| node_err(ctx, format!("starting the parameter-server runtime: {e}")))?;
    let ps_err = |e: eddy_ps::Error| node_err(ctx, format!("parameter server: {e}"));
    let job = Job {
        ctx,
        t,
        rt: &rt,
        params,
        pipeline,
    };
    match ps {
        PsSpec::Local => job.train(Arc::new(
            LocalPsConfig::new(tables).build().map_err(ps_err)?,
        )),
        PsSpec::Remote(addrs) => {
            let client = rt
                .block_on(PsClientConfig::new(addrs.clone(), tables).connect())
                .map_err(ps_err)?;
            job.train(Arc::new(client))
        }
        PsSpec::Spawn(n) => {
            let shards = Shards::start(&rt, *n).map_err(|e| node_err(ctx, e))?;
            let trained = rt
                .block_on(PsClientConfig::new(shards.addrs.clone(), tables).connect())
                .map_err(ps_err)
                .and_then(|client| job.train(Arc::new(client)));
            let stopped = shards.stop(&rt).map_err(|e| node_err(ctx, e));
            let outcome = trained?;
            stopped?;
            Ok(outcome)
        }
    }
}

/// Everything a run needs before the store's type is known.
struct Job<'a> {
    ctx: &'a NodeCtx,
    t: &'a TrainSpec,
    rt: &'a Runtime,
    params: FtrlLogisticParams,
    pipeline: Pipeline,
}

impl Job<'_> {
    fn train<S: ParamStore + 'static>(mut self, store: Arc<S>) -> Result<Outcome> {
        let (ctx, t) = (self.ctx, self.t);
        let name = &ctx.spec.name;
        let model = Arc::new(LogisticGradientModel::new(
            self.pipeline.dim(),
            self.params.fit_intercept,
        ));
        let mut workers = Workers::start(ctx, t, self.rt, &store, &model)?;
        let mut reader = SourceReader::open(&ctx.wf, &t.source, ctx.stop.clone(), &ctx.generators)?;
        let mut ex = Examples::new(Features::Sparse(Default::default()), Vec::new(), None)?;
        let (mut rows, mut since_rows, mut versions) = (0u64, 0u64, 0u32);
        let mut last_version = None;
        let mut since = Instant::now();
        while let Some(batch) = reader.next_batch()? {
            if ctx.stopped() {
                return Err(node_err(ctx, "stopped"));
            }
            self.pipeline.learn_examples_into(&batch, &mut ex)?;
            workers.deal(ex.clone())?;
            let n = batch.num_rows() as u64;
            rows += n;
            since_rows += n;
            ctx.report(Progress::Rows {
                node: name.clone(),
                rows,
            });
            let due_rows = t.publish_rows.is_some_and(|r| since_rows >= r);
            let due_time = t.publish_every.is_some_and(|d| since.elapsed() >= d);
            if due_rows || due_time {
                let report = workers.checkpoint()?;
                let v = self.publish(&*store, rows, &report)?;
                last_version = Some(v);
                versions += 1;
                since_rows = 0;
                since = Instant::now();
            }
        }
        let report = workers.finish()?;
        if since_rows > 0 || last_version.is_none() {
            last_version = Some(self.publish(&*store, rows, &report)?);
            versions += 1;
        }
        Ok(Outcome {
            rows,
            metrics: metric_map(&report.metrics),
            version: last_version,
            pass: true,
            message: Some(format!(
                "{rows} rows, {versions} version(s), {} worker(s) through a parameter server",
                t.parallelism
            )),
        })
    }

    /// Reads the store's table back into a model and publishes it.
    fn publish<S: ParamStore>(&self, store: &S, rows: u64, report: &WorkerReport) -> Result<u64> {
        let ftrl = self
            .rt
            .block_on(ftrl_model(store, &self.params))
            .map_err(|e| node_err(self.ctx, format!("reading the model from the store: {e}")))?;
        let trained = TrainedModel {
            pipeline: self.pipeline.clone(),
            model: OnlineModel::Ftrl(ftrl),
        };
        let metrics = metric_map(&report.metrics);
        let mut new = template(self.ctx, self.t, None);
        new.training_rows = rows;
        new.metrics = metrics.clone();
        let meta = self
            .ctx
            .registry
            .publish(&self.ctx.spec.name, &trained.to_bytes()?, new)?;
        self.ctx.report(Progress::Published {
            node: self.ctx.spec.name.clone(),
            version: meta.version,
            rows,
            metrics,
        });
        Ok(meta.version)
    }
}

/// What the node sends a worker.
enum Msg {
    /// Examples to predict then learn.
    Batch(Examples),
    /// Pause and report (see [`PsWorker::checkpoint`]).
    Checkpoint(SyncSender<eddy_ps::Result<WorkerReport>>),
    /// End the pause: register with the clocks again (see [`PsWorker::resume`]).
    Resume(SyncSender<eddy_ps::Result<()>>),
}

/// The node's workers: a channel and a thread each.
struct Workers<'a> {
    ctx: &'a NodeCtx,
    senders: Vec<SyncSender<Msg>>,
    threads: Vec<JoinHandle<eddy_ps::Result<WorkerReport>>>,
    /// Mini-batches dealt to each worker.
    dealt: Vec<u64>,
    /// Rows per mini-batch.
    batch_rows: usize,
}

impl<'a> Workers<'a> {
    fn start<S: ParamStore + 'static>(
        ctx: &'a NodeCtx,
        t: &TrainSpec,
        rt: &Runtime,
        store: &Arc<S>,
        model: &Arc<LogisticGradientModel>,
    ) -> Result<Self> {
        let mut workers = Workers {
            ctx,
            senders: Vec::new(),
            threads: Vec::new(),
            dealt: vec![0; t.parallelism as usize],
            batch_rows: PsWorkerConfig::new(WorkerId(0)).batch_rows,
        };
        for w in 0..t.parallelism {
            let (tx, rx) = sync_channel::<Msg>(2);
            let cfg = PsWorkerConfig {
                consistency: t.consistency,
                ..PsWorkerConfig::new(WorkerId(w))
            };
            let worker = PsWorker::new(store.clone(), model.clone(), cfg);
            let handle = rt.handle().clone();
            let thread = std::thread::Builder::new()
                .name(format!("{}-ps-worker-{w}", ctx.spec.name))
                .spawn(move || work(worker, rx, &handle))
                .map_err(|e| node_err(ctx, format!("starting a worker thread: {e}")))?;
            workers.senders.push(tx);
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Sends `ex` to the worker dealt the fewest mini-batches so far (round-robin while the
    /// batches are the same size). Under `bounded`/`sync` a worker waits for the slowest one,
    /// and a send to a full channel waits for its worker: dealing to the least-dealt worker
    /// means the slowest worker always has work (or no one waits), so the node never stalls.
    fn deal(&mut self, ex: Examples) -> Result<()> {
        let (worker, _) = self
            .dealt
            .iter()
            .enumerate()
            .min_by_key(|(_, steps)| **steps)
            .expect("at least one worker");
        self.dealt[worker] += ex.len().div_ceil(self.batch_rows) as u64;
        if self.senders[worker].send(Msg::Batch(ex)).is_err() {
            return Err(self.failed());
        }
        Ok(())
    }

    /// Waits until every worker learned what it was dealt; their merged reports.
    fn checkpoint(&mut self) -> Result<WorkerReport> {
        let mut replies = Vec::with_capacity(self.senders.len());
        for tx in &self.senders {
            let (reply, rx) = sync_channel(1);
            if tx.send(Msg::Checkpoint(reply)).is_err() {
                return Err(self.failed());
            }
            replies.push(rx);
        }
        let mut merged: Option<WorkerReport> = None;
        for rx in replies {
            let report = match rx.recv() {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(self.ps_error(e)),
                Err(_) => return Err(self.failed()),
            };
            self.merge(&mut merged, report)?;
        }
        let merged = merged.ok_or_else(|| node_err(self.ctx, "no training worker"))?;
        self.resume_all()?;
        Ok(merged)
    }

    /// Re-registers every paused worker before any gets new work, so they all start again at
    /// the same clock, and restarts the dealt counts from there. Lazy re-registration let a
    /// worker that resumed first run ahead alone; one that resumed later joined at that
    /// clock, and the dealt counts no longer matched the clocks: under `sync` the node could
    /// deal to a worker waiting on an idle one and block on its full channel.
    fn resume_all(&mut self) -> Result<()> {
        let mut replies = Vec::with_capacity(self.senders.len());
        for tx in &self.senders {
            let (reply, rx) = sync_channel(1);
            if tx.send(Msg::Resume(reply)).is_err() {
                return Err(self.failed());
            }
            replies.push(rx);
        }
        for rx in replies {
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(self.ps_error(e)),
                Err(_) => return Err(self.failed()),
            }
        }
        self.dealt.iter_mut().for_each(|d| *d = 0);
        Ok(())
    }

    /// Closes the channels and joins the workers; their merged final reports.
    fn finish(mut self) -> Result<WorkerReport> {
        match self.join() {
            (Some(e), _) => Err(e),
            (None, Some(m)) => Ok(m),
            (None, None) => Err(node_err(self.ctx, "no training worker")),
        }
    }

    /// A worker stopped early: join them all and answer the first error.
    fn failed(&mut self) -> Error {
        self.join()
            .0
            .unwrap_or_else(|| node_err(self.ctx, "a training worker stopped"))
    }

    /// Closes the channels and joins every worker: the first error, and the merged reports.
    fn join(&mut self) -> (Option<Error>, Option<WorkerReport>) {
        self.senders.clear();
        let mut merged = None;
        let mut first_error = None;
        for t in std::mem::take(&mut self.threads) {
            let result = match t.join() {
                Ok(Ok(r)) => self.merge(&mut merged, r),
                Ok(Err(e)) => Err(self.ps_error(e)),
                Err(_) => Err(node_err(self.ctx, "a training worker panicked")),
            };
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        (first_error, merged)
    }

    fn merge(&self, merged: &mut Option<WorkerReport>, r: WorkerReport) -> Result<()> {
        match merged {
            Some(m) => m.merge(&r).map_err(|e| self.ps_error(e)),
            None => {
                *merged = Some(r);
                Ok(())
            }
        }
    }

    fn ps_error(&self, e: eddy_ps::Error) -> Error {
        node_err(
            self.ctx,
            format!("training through the parameter server: {e}"),
        )
    }
}

impl Drop for Workers<'_> {
    /// A node that stops early (an error, a stop request) still waits for its workers, so
    /// none outlives the store or the runtime.
    fn drop(&mut self) {
        self.join();
    }
}

/// One worker's thread: learn every batch, answer every checkpoint, until the node closes the
/// channel.
fn work<S: ParamStore>(
    mut worker: PsWorker<S, LogisticGradientModel>,
    rx: Receiver<Msg>,
    rt: &tokio::runtime::Handle,
) -> eddy_ps::Result<WorkerReport> {
    rt.block_on(async move {
        worker.start().await?;
        while let Ok(msg) = rx.recv() {
            match msg {
                Msg::Batch(ex) => worker.process(&ex).await?,
                Msg::Checkpoint(reply) => {
                    // (on an error the node stops and closes the channel)
                    let _ = reply.send(worker.checkpoint().await);
                }
                Msg::Resume(reply) => {
                    let _ = reply.send(worker.resume().await);
                }
            }
        }
        worker.finish().await
    })
}

/// `ps = { shards = N }`: shard servers on loopback ports, running on the node's runtime.
struct Shards {
    addrs: Vec<String>,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<eddy_ps::Result<()>>>,
}

impl Shards {
    fn start(rt: &Runtime, n: u32) -> std::result::Result<Shards, String> {
        let mut shards = Shards {
            addrs: Vec::new(),
            stops: Vec::new(),
            tasks: Vec::new(),
        };
        for i in 0..n {
            let server = PsServerConfig::new(i, n)
                .open()
                .map_err(|e| format!("opening shard {i}/{n}: {e}"))?;
            let listener = rt
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .map_err(|e| format!("shard {i}/{n}: listening on 127.0.0.1: {e}"))?;
            let addr = listener
                .local_addr()
                .map_err(|e| format!("shard {i}/{n}: {e}"))?;
            let (stop, stopped) = oneshot::channel::<()>();
            let shutdown = async move {
                let _ = stopped.await;
            };
            shards.addrs.push(addr.to_string());
            shards.stops.push(stop);
            shards
                .tasks
                .push(rt.spawn(server.serve(listener, shutdown)));
        }
        Ok(shards)
    }

    /// Stops every shard and waits for it.
    fn stop(self, rt: &Runtime) -> std::result::Result<(), String> {
        for stop in self.stops {
            let _ = stop.send(());
        }
        let mut first = Ok(());
        for (i, task) in self.tasks.into_iter().enumerate() {
            let result = match rt.block_on(task) {
                Ok(r) => r.map_err(|e| format!("shard {i}: {e}")),
                Err(e) => Err(format!("shard {i}: {e}")),
            };
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}
