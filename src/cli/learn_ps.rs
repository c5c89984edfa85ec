//! `eddy learn --ps local|grpc://A,B --workers N --consistency async|bounded:S|sync`: the
//! learner's weights live in a parameter server and `N` workers train them together.
//!
//! The file is read by the dataflow runtime and dealt round-robin to `N` sink subtasks; each
//! featurizes its batches (with its own copy of the pipeline, so running statistics such as
//! the scaler's are per worker) and hands them over a bounded channel to its worker, a
//! [`PsWorker`] on its own thread that pulls, predicts (progressive validation), computes
//! gradients and pushes in mini-batches of `--ps-batch` rows. The network runs on a separate
//! tokio runtime. The printed JSON line is `eddy learn`'s plus `workers`, and for gRPC the
//! client's `retries`, `duplicate_pushes` (retried pushes the shards had applied already and
//! did not apply again), `shard_restarts` and `lost_updates` (key updates a restarted shard had
//! acknowledged but its snapshot did not hold). A shard restart is also said on stderr as the
//! client notices it, while training goes on.
//!
//! `--model ftrl` trains [`LogisticGradientModel`] under FTRL-Proximal and `--model fm` trains
//! [`FmGradientModel`], with their params from the learner registry (`--param`, `--alpha`, …).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use arrow::record_batch::RecordBatch;
use clap::Args;
use eddy_algorithms::eval::Report;
use eddy_algorithms::features::{Examples, Features};
use eddy_algorithms::learner::GradientModel;
use eddy_algorithms::learners::LearnerKind;
use eddy_algorithms::online::fm::{FmGradientModel, FmParams};
use eddy_algorithms::online::linear::{FtrlLogisticParams, LogisticGradientModel};
use eddy_algorithms::pipeline::Pipeline;
use eddy_algorithms::transform::Params;
use eddy_core::dataflow::{Dataflow, DataflowConfig};
use eddy_core::operator::TaskInfo;
use eddy_core::sink::Sink;
use eddy_ps::train::{fm_tables, ftrl_tables};
use eddy_ps::{
    Consistency, LocalPsConfig, ParamStore, PsClient, PsClientConfig, PsWorker, PsWorkerConfig,
    TableConfig, WorkerId, WorkerReport,
};

use super::learn::LearnArgs;
use super::{io, progress};

/// The parameter-server options of `eddy learn`.
#[derive(Debug, Clone, Args)]
pub struct PsArgs {
    /// Train through a parameter server: `local` (in-process) or `grpc://HOST:PORT,HOST:PORT`
    /// (shard i at the i-th address, started with `eddy ps serve --shard i/N`).
    #[arg(long)]
    pub ps: Option<String>,
    /// Training workers sharing the model (with --ps).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// How far workers may drift apart: `async`, `bounded:S` or `sync` (with --ps).
    #[arg(long, default_value = "async", value_parser = parse_consistency)]
    pub consistency: Consistency,
    /// Rows per pull/push mini-batch (with --ps).
    #[arg(long, default_value_t = 32)]
    pub ps_batch: usize,
    /// How long a request to a shard is retried before training fails (with --ps grpc://).
    #[arg(long, default_value = "60s", value_parser = super::duration::parse)]
    pub ps_retry_for: Duration,
}

/// Parses `async`, `sync` or `bounded:S`.
fn parse_consistency(text: &str) -> Result<Consistency, String> {
    match text.trim() {
        "async" => Ok(Consistency::Async),
        "sync" => Ok(Consistency::Sync),
        other => other
            .strip_prefix("bounded:")
            .and_then(|s| s.parse::<u64>().ok())
            .map(Consistency::Bounded)
            .ok_or_else(|| format!("`{text}`: expected async, bounded:S or sync")),
    }
}

/// The sink of one subtask: featurize, then hand the examples to this subtask's worker.
struct FeedSink {
    pipeline: Pipeline,
    examples: Examples,
    tx: Option<SyncSender<Examples>>,
}

impl Sink for FeedSink {
    fn write(&mut self, batch: &RecordBatch) -> eddy_core::Result<()> {
        let op_error = |message: String| eddy_core::Error::Operator {
            operator: "learn-ps".into(),
            subtask: 0,
            message,
            domain: eddy_core::error::ErrorDomain::User,
        };
        self.pipeline
            .learn_examples_into(batch, &mut self.examples)
            .map_err(|e| op_error(e.to_string()))?;
        let tx = self.tx.as_ref().ok_or_else(|| op_error("closed".into()))?;
        tx.send(self.examples.clone())
            .map_err(|_| op_error("the training worker stopped (see its error)".into()))
    }

    fn close(&mut self) -> eddy_core::Result<()> {
        self.tx = None;
        Ok(())
    }
}

/// Runs `eddy learn` with `--ps`.
pub fn run(args: &LearnArgs) -> anyhow::Result<()> {
    let spec = args.ps.ps.as_deref().unwrap_or("local");
    if args.ps.workers == 0 || args.ps.ps_batch == 0 {
        bail!("--workers and --ps-batch must be at least 1");
    }
    if args.save.is_some() || args.tail90 || args.publish.registry.is_some() {
        bail!(
            "--save, --tail90 and --registry are not supported with --ps \
             (the model lives in the store)"
        );
    }
    let learner = args.learner()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the network runtime")?;
    let format = args.format.unwrap_or_else(|| io::format_of(&args.data));
    let schema_override = args.schema.as_deref().map(io::parse_schema).transpose()?;
    let flow = Dataflow::new(DataflowConfig {
        name: "learn-ps".into(),
        threads: args.ps.workers,
        dead_letter_path: args.dead_letter.clone(),
        on_error: args.on_error,
        ..DataflowConfig::default()
    });
    let (source, schema) = io::source(&flow, &args.data, Some(format), schema_override, false, 1)?;
    let pipeline = args.pipeline(&schema)?;
    let dim = pipeline.dim();
    let job = Job {
        args,
        flow,
        source,
        pipeline,
        rt: &rt,
    };
    match learner.kind {
        LearnerKind::Ftrl => {
            let p: FtrlLogisticParams = learner.decode_with(dim, &[])?;
            let model = LogisticGradientModel::new(dim, p.fit_intercept);
            job.with_store(spec, model, ftrl_tables(p.ftrl))
        }
        LearnerKind::Fm => {
            let params: FmParams = learner.decode_with(dim, &[])?;
            let model = FmGradientModel::new(params.check()?);
            job.with_store(spec, model, fm_tables(&params))
        }
        other => bail!("--ps trains --model ftrl or fm, not {other}"),
    }
}

/// Everything a run needs before the store and model types are known.
struct Job<'a> {
    args: &'a LearnArgs,
    flow: Dataflow,
    source: eddy_core::dataflow::Stream,
    pipeline: Pipeline,
    rt: &'a tokio::runtime::Runtime,
}

impl Job<'_> {
    fn with_store<M: GradientModel + 'static>(
        self,
        spec: &str,
        model: M,
        tables: Vec<TableConfig>,
    ) -> anyhow::Result<()> {
        if spec == "local" {
            let store = Arc::new(LocalPsConfig::new(tables).build()?);
            return self.train(store, model, |_| Vec::new());
        }
        let Some(list) = spec.strip_prefix("grpc://") else {
            bail!("--ps `{spec}`: expected `local` or `grpc://HOST:PORT,HOST:PORT`");
        };
        let addrs: Vec<String> = list.split(',').map(|a| a.trim().to_string()).collect();
        let cfg = PsClientConfig {
            retry_for: self.args.ps.ps_retry_for,
            ..PsClientConfig::new(addrs, tables)
        };
        let client = self
            .rt
            .block_on(cfg.connect())
            .with_context(|| format!("connecting to {spec}"))?;
        self.train(Arc::new(client), model, |c: &PsClient| {
            vec![
                ("retries", c.retries() as f64),
                ("duplicate_pushes", c.duplicate_acks() as f64),
                ("shard_restarts", c.restarts() as f64),
                ("lost_updates", c.lost_updates() as f64),
            ]
        })
    }

    fn train<S, M>(
        self,
        store: Arc<S>,
        model: M,
        extra: impl Fn(&S) -> Vec<(&'static str, f64)>,
    ) -> anyhow::Result<()>
    where
        S: ParamStore + 'static,
        M: GradientModel + 'static,
    {
        let workers = self.args.ps.workers;
        let model = Arc::new(model);
        let mut senders = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel::<Examples>(2);
            senders.push(tx);
            let cfg = PsWorkerConfig {
                consistency: self.args.ps.consistency,
                batch_rows: self.args.ps.ps_batch,
                ..PsWorkerConfig::new(WorkerId(w as u32))
            };
            let worker = PsWorker::new(store.clone(), model.clone(), cfg);
            let handle = self.rt.handle().clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("eddy-ps-worker-{w}"))
                    .spawn(move || work(worker, rx, &handle))
                    .context("starting a worker thread")?,
            );
        }
        let senders = Arc::new(Mutex::new(senders));
        let feeds = senders.clone();
        let pipeline = self.pipeline;
        let empty = Examples::new(Features::Sparse(Default::default()), Vec::new(), None)?;
        self.source
            .rebalance()
            .sink_with(
                "learn-ps",
                Arc::new(move |task: &TaskInfo| {
                    let tx = feeds
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(task.subtask)
                        .cloned();
                    Ok(Box::new(FeedSink {
                        pipeline: pipeline.clone(),
                        examples: empty.clone(),
                        tx,
                    }) as Box<dyn Sink>)
                }),
            )
            .parallelism(workers);
        let start = Instant::now();
        let handle = self.flow.start()?;
        let bar = progress::byte_bar(0);
        let mut said = ShardHealth::default();
        while !handle.is_finished() {
            std::thread::sleep(Duration::from_millis(10));
            let (done, total) = handle.metrics().progress();
            bar.set_length(total);
            bar.set_position(done);
            said.report(&extra(&store), &bar);
        }
        said.report(&extra(&store), &bar);
        bar.finish_and_clear();
        let flow_result = handle.join();
        // The sinks are gone: drop the last senders so the workers see the end.
        senders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let mut merged: Option<WorkerReport> = None;
        let mut first_error = None;
        for t in threads {
            match t
                .join()
                .map_err(|_| anyhow!("a training worker panicked"))?
            {
                Ok(r) => match &mut merged {
                    Some(m) => m.merge(&r)?,
                    None => merged = Some(r),
                },
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(anyhow!(e).context("training through the parameter server"));
        }
        let summary = flow_result?;
        let seconds = start.elapsed().as_secs_f64();
        if summary.dead_letters > 0 {
            eprintln!("malformed records: {}", summary.dead_letters);
        }
        let r = merged.ok_or_else(|| anyhow!("no worker ran"))?;
        let mut metrics = r.metrics.clone();
        metrics.push("workers", workers as f64);
        for (name, v) in extra(&store) {
            metrics.push(name, v);
        }
        println!("{}", Report::new(r.rows, seconds, metrics).to_json_line());
        Ok(())
    }
}

/// What has been said on stderr about the shards while training runs.
#[derive(Default)]
struct ShardHealth {
    restarts: f64,
}

impl ShardHealth {
    /// Says on stderr, as it happens, that a shard restarted (and how many acknowledged updates
    /// its snapshot did not hold), from the client's counters in `counters`.
    fn report(&mut self, counters: &[(&'static str, f64)], bar: &indicatif::ProgressBar) {
        let get = |name: &str| {
            counters
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0.0, |(_, v)| *v)
        };
        let (restarts, lost) = (get("shard_restarts"), get("lost_updates"));
        if restarts > self.restarts {
            bar.suspend(|| {
                eprintln!(
                    "parameter server: a shard restarted ({restarts} restart(s) so far); \
                     {lost} acknowledged key update(s) lost with it; training goes on"
                )
            });
            self.restarts = restarts;
        }
    }
}

/// One worker's thread: train on every batch its sink sends until the sink closes.
fn work<S: ParamStore, M: GradientModel>(
    mut worker: PsWorker<S, M>,
    rx: Receiver<Examples>,
    rt: &tokio::runtime::Handle,
) -> eddy_ps::Result<WorkerReport> {
    rt.block_on(async move {
        worker.start().await?;
        while let Ok(examples) = rx.recv() {
            worker.process(&examples).await?;
        }
        worker.finish().await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_spec() {
        assert_eq!(parse_consistency("async"), Ok(Consistency::Async));
        assert_eq!(parse_consistency("sync"), Ok(Consistency::Sync));
        assert_eq!(parse_consistency("bounded:3"), Ok(Consistency::Bounded(3)));
        assert!(parse_consistency("bounded:").is_err());
        assert!(parse_consistency("eventually").is_err());
    }
}
