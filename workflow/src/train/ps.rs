//! Training through a parameter server: the learner's weights live in a store — an in-process
//! [`LocalPs`](eddy_ps::LocalPs), running shards over gRPC, or shards the job starts on
//! loopback ([`PsSpec`]) — and each subtask of the `learn` operator trains them as a
//! [`PsLearner`] (pull, predict, gradients, push, in mini-batches of
//! [`PsConfig::batch_rows`] rows, under the [`Consistency`] bound).
//!
//! [`Backend`] is what the subtasks share: the store, the gradient form of the learner, the
//! network runtime, and how to read the store back into a local model (to publish, save and
//! serve it like one trained in process). FTRL and FM have a gradient form.
//!
//! **Remote shards** ([`PsSpec::Remote`]) train under a job id ([`PsConfig::job`], random by
//! default): a shard holding another job's tables refuses the job unless
//! [`PsConfig::existing`] says to resume them or start fresh, and a shard that loses the
//! job's state fails the job's calls instead of being silently re-declared (see
//! [`eddy_ps::grpc::client`]). Their checkpoints hold no table bytes: at the barrier of epoch
//! E, every shard writes a durable snapshot labelled (job, E), and the checkpoint holds that
//! label; a restore rolls every shard back to it. With exactly-once failover any shard
//! restart fails the job's calls, so the job rolls back to its last checkpoint — every shard
//! and the source together.
//!
//! A job of several worker processes ([`super::supervise`]) with approximate failover sets
//! [`PsConfig::tables_in_checkpoints`] false: each worker's checkpoint then holds no label and
//! a restarted worker rolls nothing back (the tables are its peers' too). With exactly-once
//! failover each worker sets [`PsConfig::barrier`] instead: its checkpoints are job-wide epochs
//! taken at a barrier through the shards, and its restore leaves the shards to the
//! supervisor, which rolled them back for every worker ([`EpochBarrier`]).
//!
//! Without a store, data-parallel FTRL shares its weights in memory instead
//! ([`SharedFtrl`], Hogwild: lock-free, asynchronous): each subtask steps the one weight array
//! with the local learner's own code, at the local learner's speed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_algorithms::learner::{GradientModel, OnlineLearner, Predictor, Task};
use eddy_algorithms::learners::{LearnerKind, LearnerSpec};
use eddy_algorithms::online::fm::{FactorizationMachine, FmGradientModel, FmParams, FmValidParams};
use eddy_algorithms::online::linear::{FtrlLogisticParams, LogisticGradientModel, SharedFtrl};
use eddy_algorithms::trained::OnlineModel;
use eddy_algorithms::transform::Params;
use eddy_ps::train::{fm_model, fm_tables, ftrl_model, ftrl_tables};
pub use eddy_ps::JobPolicy;
use eddy_ps::{
    AnyStore, Consistency, LocalPsConfig, ParamStore, PsClient, PsClientConfig, PsLearner,
    PsServerConfig, PsWorker, PsWorkerConfig, StoreCounters, TableConfig, WorkerId,
};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
pub use crate::spec::PsSpec;

/// A learner subtask's view of the store.
pub(crate) type StoreLearner = PsLearner<AnyStore, dyn GradientModel>;

/// How a job trains through a parameter server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsConfig {
    /// Which store.
    pub store: PsSpec,
    /// How far the subtasks may drift apart (default `async`).
    pub consistency: Consistency,
    /// Rows per pull/push mini-batch (default 32).
    pub batch_rows: usize,
    /// How long a request to a shard is retried before training fails (default 60 s).
    pub retry_for: Duration,
    /// The job id at remote shards (`None`: a random `job-<hex>` per run, so a rerun never
    /// trains on an earlier run's tables without [`existing`](PsConfig::existing) saying so).
    /// Jobs resumed from a checkpoint name the job that wrote it.
    pub job: Option<String>,
    /// What remote shards holding another job's tables do: refuse (the default), resume
    /// them, or clear them first.
    pub existing: JobPolicy,
    /// Whether the job's checkpoints hold the store's tables (default true: a restore rolls
    /// the store back with the job). False for one worker process of a job of several
    /// ([`supervise`](super::supervise)): the store is every worker's, so a worker's checkpoint
    /// holds only its own state (source positions, pipeline statistics, evaluator) and a
    /// restarted worker trains on from the store as its peers left it.
    pub tables_in_checkpoints: bool,
    /// The job-wide epoch barrier of one worker process of a job of several with
    /// exactly-once failover (default `None`; see [`EpochBarrier`]).
    pub barrier: Option<EpochBarrier>,
}

/// One worker process's part in the job-wide checkpoint epochs of a job of several worker
/// processes (exactly-once across processes, see [`supervise`](super::supervise)): its n-th
/// checkpoint is job epoch n (the count is restored with the checkpoint); at it the worker
/// reports n to every shard and waits until every shard snapshotted n (which it does once
/// every worker of the job reported n or finished); its checkpoint holds the label of those
/// snapshots, and [`record`](EpochBarrier::record) maps n to the local checkpoint. A restore
/// does not roll the shards back: the job's coordinator did that for every worker before it
/// restarted them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochBarrier {
    /// This worker's index.
    pub worker: u32,
    /// The job's worker processes.
    pub workers: u32,
    /// How long a worker waits at the barrier for its peers before it fails.
    pub wait: Duration,
    /// The checkpoint directory where `job epoch → local checkpoint` is recorded
    /// ([`supervise::epochs`](super::supervise::epochs)); `None`: not recorded.
    pub record: Option<std::path::PathBuf>,
}

impl PsConfig {
    /// Training through `store` with the defaults above.
    pub fn new(store: PsSpec) -> Self {
        PsConfig {
            store,
            consistency: Consistency::Async,
            batch_rows: 32,
            retry_for: Duration::from_secs(60),
            job: None,
            existing: JobPolicy::Refuse,
            tables_in_checkpoints: true,
            barrier: None,
        }
    }
}

/// The job id kept in the file `path`: read back if it exists, else a fresh random id written
/// there (atomically). A workflow node keeps its id in its run directory, so a retry or a
/// restarted run (which resume from the node's checkpoints) is the same job at the shards,
/// and a new run directory is a new job, refused by shards holding the old one's tables.
pub fn job_id_in(path: &std::path::Path) -> Result<String> {
    let io = |e: std::io::Error| Error::InvalidArgument(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let id = eddy_ps::grpc::client::new_job_id();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &id).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(id)
}

/// How the store's tables become a local model again.
enum Export {
    Ftrl(FtrlLogisticParams),
    Fm(FmValidParams),
}

/// What every learner subtask of a job shares (see the [module docs](self)): a parameter
/// store, or FTRL weights shared in memory.
pub(crate) struct Backend {
    kind: Kind,
    /// Whether the weights were restored from a snapshot in this job: a job resumed from a
    /// checkpoint restores them once; a subtask restarting alone (approximate failover) does
    /// not roll back what its peers learned.
    restored: AtomicBool,
    /// Whether checkpoints hold the weights ([`PsConfig::tables_in_checkpoints`]).
    in_checkpoints: bool,
}

enum Kind {
    Store(Box<Store>),
    Shared(SharedFtrl),
}

/// A subtask's learner: through the store, or a handle on the shared weights.
pub(crate) enum SubtaskLearner {
    Store(Box<StoreLearner>),
    Shared(SharedFtrl),
}

impl SubtaskLearner {
    /// The learner to predict and learn with.
    pub(crate) fn learner(&mut self) -> &mut dyn OnlineLearner {
        match self {
            SubtaskLearner::Store(l) => &mut **l,
            SubtaskLearner::Shared(l) => l,
        }
    }

    /// Leaves the store's clocks at the end of the subtask's input.
    pub(crate) fn finish(self) -> Result<()> {
        match self {
            SubtaskLearner::Store(l) => l.finish().map(drop).map_err(ps_error),
            SubtaskLearner::Shared(_) => Ok(()),
        }
    }
}

/// The kind written in the header of shared FTRL weights in a snapshot.
const SHARED_KIND: &str = "eddy-shared-ftrl";

impl Backend {
    /// The weights `config` trains: through the store it names, or — without one, for FTRL
    /// — `model`'s weights shared in memory (any other learner: the in-process store).
    /// `exactly_once`: a remote shard's restart fails the job's calls (it rolls back).
    pub(crate) fn open(
        config: Option<&PsConfig>,
        learner: &LearnerSpec,
        dim: u64,
        model: &OnlineModel,
        exactly_once: bool,
    ) -> Result<Backend> {
        let kind = match (config, model) {
            (None, OnlineModel::Ftrl(m)) => Kind::Shared(SharedFtrl::new(m)),
            (None, _) => {
                let local = PsConfig::new(PsSpec::Local);
                Kind::Store(Box::new(Store::open(&local, learner, dim, false)?))
            }
            (Some(c), _) => Kind::Store(Box::new(Store::open(c, learner, dim, exactly_once)?)),
        };
        Ok(Backend {
            kind,
            restored: AtomicBool::new(false),
            in_checkpoints: config.is_none_or(|c| c.tables_in_checkpoints),
        })
    }

    /// Subtask `subtask`'s learner.
    pub(crate) fn learner(&self, subtask: usize) -> Result<SubtaskLearner> {
        Ok(match &self.kind {
            Kind::Store(s) => SubtaskLearner::Store(Box::new(s.learner(subtask)?)),
            Kind::Shared(w) => SubtaskLearner::Shared(w.handle()),
        })
    }

    /// The trained weights as a local model.
    pub(crate) fn model(&self) -> Result<OnlineModel> {
        match &self.kind {
            Kind::Store(s) => s.model(),
            Kind::Shared(w) => Ok(OnlineModel::Ftrl(w.to_local())),
        }
    }

    /// A self-checking snapshot of the weights at checkpoint epoch `epoch` (remote shards:
    /// the label of the shards' durable snapshot of that epoch); `None` when checkpoints do
    /// not hold them ([`PsConfig::tables_in_checkpoints`]).
    pub(crate) fn snapshot(&self, epoch: u64) -> Result<Option<Vec<u8>>> {
        if !self.in_checkpoints {
            return Ok(None);
        }
        match &self.kind {
            Kind::Store(s) => s.snapshot(epoch).map(Some),
            Kind::Shared(w) => Ok(Some(eddy_algorithms::model::encode(SHARED_KIND, w)?)),
        }
    }

    /// Restores the weights from `bytes` unless this job restored them already and `always`
    /// is false (exactly-once: every restore rolls the whole job back, the weights included).
    pub(crate) fn restore(&self, bytes: &[u8], always: bool) -> Result<()> {
        if self.restored.swap(true, Ordering::SeqCst) && !always {
            return Ok(());
        }
        match &self.kind {
            Kind::Store(s) => s.restore(bytes),
            Kind::Shared(w) => {
                let model = eddy_algorithms::model::decode(bytes, SHARED_KIND)?;
                Ok(w.load(&model)?)
            }
        }
    }

    /// A worker process of a job of several pushed its last rows: the shards' epoch barrier
    /// no longer waits for it ([`PsConfig::barrier`]; nothing without one).
    pub(crate) fn finish_barrier(&self) -> Result<()> {
        match &self.kind {
            Kind::Store(s) => s.finish_barrier(),
            Kind::Shared(_) => Ok(()),
        }
    }

    /// Through a store, its client's counters (zeros for the in-process store).
    pub(crate) fn counters(&self) -> Option<StoreCounters> {
        match &self.kind {
            Kind::Store(s) => Some(s.counters()),
            Kind::Shared(_) => None,
        }
    }

    /// Stops the shards the job started, if any.
    pub(crate) fn close(&self) -> Result<()> {
        match &self.kind {
            Kind::Store(s) => s.close(),
            Kind::Shared(_) => Ok(()),
        }
    }
}

/// The model the tables of `config`'s running shards hold for `learner` over `dim` features,
/// read back into a local model (FTRL or FM): the final model of a job of worker processes
/// ([`supervise::ProcessJob`](super::supervise::ProcessJob)), whose workers are done with
/// the tables. `config` names the job (its [`PsConfig::existing`] should be `Resume`).
pub fn shard_model(config: &PsConfig, learner: &LearnerSpec, dim: u64) -> Result<OnlineModel> {
    Store::open(config, learner, dim, false)?.model()
}

/// Worker ids a job leases from running shards: its subtasks' ids, unique across processes.
const WORKER_LEASE: u32 = 1024;

/// The kind written in the header of a remote store's checkpoint label.
const EPOCH_KIND: &str = "eddy-ps-epoch";

/// How a parameter-store snapshot's bytes begin (`eddy_ps::snapshot`).
const PS_MAGIC: &[u8] = b"EDDY-PS\0";

/// What a checkpoint holds of remote shards: whose and which epoch snapshots to roll back to.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct EpochLabel {
    job: String,
    epoch: u64,
    shards: u32,
}

/// A parameter store and what the subtasks need to train through it.
struct Store {
    runtime: Runtime,
    store: Arc<AnyStore>,
    model: Arc<dyn GradientModel>,
    export: Export,
    worker: PsWorkerConfig,
    shards: Mutex<Option<Shards>>,
    /// Remote shards that outlive the job (their snapshots are checkpointed by label).
    durable: bool,
    /// The job-wide epoch barrier, for a worker process of several.
    barrier: Option<EpochBarrier>,
    /// With a barrier: the job epoch of the worker's newest checkpoint.
    round: std::sync::atomic::AtomicU64,
}

impl Store {
    /// Opens the store `config` names for `learner` over `dim` features (`strict`: see
    /// [`PsClientConfig::strict`]).
    fn open(config: &PsConfig, learner: &LearnerSpec, dim: u64, strict: bool) -> Result<Store> {
        let (model, tables, export, task): (Arc<dyn GradientModel>, _, _, _) = match learner.kind {
            LearnerKind::Ftrl => {
                let p: FtrlLogisticParams = learner.decode_with(dim, &[])?;
                p.build()?;
                let model = LogisticGradientModel::new(dim, p.fit_intercept);
                let tables = ftrl_tables(p.ftrl);
                (
                    Arc::new(model),
                    tables,
                    Export::Ftrl(p),
                    Task::BinaryClassification,
                )
            }
            LearnerKind::Fm => {
                let p: FmParams = learner.decode_with(dim, &[])?;
                let valid = p.check()?;
                let model = FmGradientModel::new(valid);
                let task = Predictor::task(&FactorizationMachine::new(valid));
                (Arc::new(model), fm_tables(&p), Export::Fm(valid), task)
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "a parameter server trains ftrl or fm (learners with a gradient form), \
                     not `{other}`"
                )))
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("eddy-ps-net")
            .enable_all()
            .build()
            .map_err(|e| ps_error(format!("starting the network runtime: {e}")))?;
        let (store, shards) = connect(&runtime, config, tables, strict)?;
        let worker = PsWorkerConfig {
            consistency: config.consistency,
            batch_rows: config.batch_rows.max(1),
            task,
            ..PsWorkerConfig::new(WorkerId(0))
        };
        Ok(Store {
            runtime,
            store: Arc::new(store),
            model,
            export,
            worker,
            shards: Mutex::new(shards),
            durable: matches!(config.store, PsSpec::Remote(_)),
            barrier: config.barrier.clone(),
            round: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Subtask `subtask`'s learner (registered with the clocks under `bounded`/`sync`), with
    /// worker id `subtask` past the client's leased base (remote shards: unique across
    /// processes).
    fn learner(&self, subtask: usize) -> Result<StoreLearner> {
        let base = match &*self.store {
            AnyStore::Remote(c) if c.worker_base() > 0 || !c.job().is_empty() => {
                if subtask >= WORKER_LEASE as usize {
                    return Err(ps_error(format!(
                        "subtask {subtask}: at most {WORKER_LEASE} subtasks train through \
                         running shards"
                    )));
                }
                c.worker_base()
            }
            _ => 0,
        };
        let cfg = PsWorkerConfig {
            worker: WorkerId(base + subtask as u32),
            ..self.worker
        };
        let worker = PsWorker::new(self.store.clone(), self.model.clone(), cfg);
        PsLearner::start(worker, self.runtime.handle().clone()).map_err(ps_error)
    }

    /// The store's tables read back into a local model.
    fn model(&self) -> Result<OnlineModel> {
        let store = &*self.store;
        Ok(match &self.export {
            Export::Ftrl(p) => {
                OnlineModel::Ftrl(self.block(ftrl_model(store, p)).map_err(ps_error)?)
            }
            Export::Fm(p) => OnlineModel::Fm(self.block(fm_model(store, *p)).map_err(ps_error)?),
        })
    }

    /// A self-checking snapshot of every table; of remote shards, the label of their
    /// durable snapshots of checkpoint epoch `epoch`.
    fn snapshot(&self, epoch: u64) -> Result<Vec<u8>> {
        match &*self.store {
            AnyStore::Remote(client) if self.durable => {
                let epoch = match &self.barrier {
                    Some(b) => self.barrier_epoch(client, b, epoch)?,
                    None => {
                        self.block(client.snapshot_epoch(epoch)).map_err(ps_error)?;
                        epoch
                    }
                };
                let label = EpochLabel {
                    job: client.job().to_owned(),
                    epoch,
                    shards: client.shards() as u32,
                };
                Ok(eddy_algorithms::model::encode(EPOCH_KIND, &label)?)
            }
            _ => self.block(self.store.snapshot()).map_err(ps_error),
        }
    }

    /// Replaces every table with a snapshot's, or rolls remote shards back to the epoch a
    /// label names.
    fn restore(&self, bytes: &[u8]) -> Result<()> {
        if bytes.starts_with(PS_MAGIC) {
            return self.block(self.store.restore(bytes)).map_err(ps_error);
        }
        let label: EpochLabel = eddy_algorithms::model::decode(bytes, EPOCH_KIND)?;
        let AnyStore::Remote(client) = &*self.store else {
            return Err(ps_error(format!(
                "the checkpoint names the epoch-{} snapshots of remote shards (job `{}`); \
                 this job trains an in-process store",
                label.epoch, label.job
            )));
        };
        if label.job != client.job() || label.shards as usize != client.shards() {
            return Err(ps_error(format!(
                "the checkpoint names the epoch-{} snapshots of job `{}` on {} shard(s); this \
                 job is `{}` on {} shard(s): pass the job id that wrote it (--ps-job / \
                 ps-job)",
                label.epoch,
                label.job,
                label.shards,
                client.job(),
                client.shards()
            )));
        }
        if self.barrier.is_some() {
            // the coordinator rolled every shard back before it restarted the workers; the
            // worker's count of job epochs goes on from the checkpoint's
            self.round.store(label.epoch, Ordering::SeqCst);
            return Ok(());
        }
        self.block(client.restore_epoch(label.epoch))
            .map_err(ps_error)
    }

    /// The job-wide barrier at local checkpoint `local`: the worker's next job epoch,
    /// reported and complete at every shard, and recorded; returns it.
    fn barrier_epoch(&self, client: &PsClient, b: &EpochBarrier, local: u64) -> Result<u64> {
        let epoch = self.round.load(Ordering::SeqCst) + 1;
        self.block(client.barrier_epoch(epoch, b.worker, b.workers, b.wait))
            .map_err(ps_error)?;
        self.round.store(epoch, Ordering::SeqCst);
        if let Some(dir) = &b.record {
            super::supervise::epochs::record(dir, epoch, local)?;
        }
        Ok(epoch)
    }

    /// A worker process of several ends: the shards' epoch barrier no longer waits for it.
    fn finish_barrier(&self) -> Result<()> {
        let (Some(b), AnyStore::Remote(client)) = (&self.barrier, &*self.store) else {
            return Ok(());
        };
        let epoch = self.round.load(Ordering::SeqCst);
        self.block(client.finish_barrier(epoch, b.worker, b.workers))
            .map_err(ps_error)
    }

    /// The remote client's counters (zeros for the local store).
    fn counters(&self) -> StoreCounters {
        self.store.counters()
    }

    /// Stops the shards the job started, if any.
    fn close(&self) -> Result<()> {
        let shards = self.shards.lock().unwrap_or_else(|p| p.into_inner()).take();
        match shards {
            Some(s) => s.stop(&self.runtime).map_err(ps_error),
            None => Ok(()),
        }
    }

    /// Runs a store future from synchronous code (an operator's thread or the caller's).
    fn block<F: std::future::Future>(&self, future: F) -> F::Output {
        tokio::task::block_in_place(|| self.runtime.block_on(future))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// A parameter-server failure as this crate's error (training and serving alike).
pub(crate) fn ps_error(message: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("parameter server: {message}"))
}

/// The store `config` names: built, connected, or started (with its shards).
fn connect(
    runtime: &Runtime,
    config: &PsConfig,
    tables: Vec<TableConfig>,
    strict: bool,
) -> Result<(AnyStore, Option<Shards>)> {
    let job = config
        .job
        .clone()
        .unwrap_or_else(eddy_ps::grpc::client::new_job_id);
    let remote = |addrs: Vec<String>, tables, job: String| {
        let lease_workers = if job.is_empty() { 0 } else { WORKER_LEASE };
        let cfg = PsClientConfig {
            retry_for: config.retry_for,
            job,
            policy: config.existing,
            strict,
            lease_workers,
            ..PsClientConfig::new(addrs.clone(), tables)
        };
        runtime
            .block_on(cfg.connect())
            .map(AnyStore::Remote)
            .map_err(|e| ps_error(format!("connecting to {}: {e}", addrs.join(","))))
    };
    match &config.store {
        PsSpec::Local => Ok((
            AnyStore::Local(LocalPsConfig::new(tables).build().map_err(ps_error)?),
            None,
        )),
        PsSpec::Remote(addrs) => Ok((remote(addrs.clone(), tables, job)?, None)),
        PsSpec::Spawn(n) => {
            let shards = Shards::start(runtime, *n).map_err(ps_error)?;
            // the job's own shards, gone with it: no job to check
            match remote(shards.addrs.clone(), tables, String::new()) {
                Ok(store) => Ok((store, Some(shards))),
                Err(e) => {
                    let _ = shards.stop(runtime);
                    Err(e)
                }
            }
        }
    }
}

/// `ps = { shards = N }`: shard servers on loopback ports, running on the job's network runtime.
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
            let result = match tokio::task::block_in_place(|| rt.block_on(task)) {
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
