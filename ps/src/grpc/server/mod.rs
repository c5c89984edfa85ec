//! [`PsServer`]: one parameter-server shard over gRPC.
//!
//! The shard is a [`LocalPs`] holding the keys routed to it. It starts without tables unless
//! its data directory holds a snapshot (then it restores the newest good one, tables
//! included); the first client declares the tables with `Configure`, later clients must
//! declare the same ones. Shard 0 also keeps the consistency clocks (they are not persisted:
//! after a restart workers register again). Requests are short, lock-striped memory work, so
//! they run on the reactor; snapshots are copied and written on a blocking thread.
//!
//! Like mini-redis, [`PsServer::serve`] takes a bound listener and a shutdown future, so tests
//! bind port 0 and stop the server when they like; it takes a last snapshot on shutdown.
//! The port also answers the standard health service `grpc.health.v1.Health` (SERVING for
//! `""` and `eddy.ps.v1.PsShard` while the shard serves).
//!
//! **Job identity.** The shard's tables belong to a job: the first client that declares them
//! with a job id labels them, and the label travels in the shard's snapshot files. A client of
//! another job is refused (`JobMismatch`) unless its `Configure` asks to resume the tables
//! (relabel, keep the rows) or to start fresh (clear every row, relabel); a shard that never
//! applied an update is taken over without asking. A client without a job id (old clients)
//! is not checked.
//!
//! **Epoch snapshots.** `SnapshotEpoch{job, epoch}` writes a snapshot labelled with the job's
//! checkpoint epoch (synced and renamed before the answer; without a data directory it is
//! kept in memory, the newest `keep`), and `RestoreEpoch{job, epoch}` rolls the shard back to
//! it. On open the shard restores the newest snapshot file of either kind. Epoch 0 is the
//! job's start: restoring it clears every row.
//!
//! **Epoch barrier** (a job of several worker processes with exactly-once failover, see
//! `barrier`): `SnapshotEpoch{job, epoch, worker, workers}` reports that a worker reached the
//! epoch with its pushes applied; the shard writes the epoch's snapshot once every worker of
//! the job reported it or finished (`finished`), and answers `complete` then (a call waits up
//! to 2 s for it, then answers not yet, and the worker asks again). `RestoreEpoch` with
//! `workers` also resets the barrier to the restored epoch.
//!
//! **Worker ids.** Shard 0 leases blocks of worker ids to clients (`Configure` with
//! `lease_workers`), unique across processes and across its own restarts (the next free id is
//! written to its data directory before it answers), so workers of several processes never
//! collide at the clocks.
//!
//! [`PsServer::stats`] reads the shard's figures (tables and keys, updates, pushes, pulls, the
//! last snapshot) while it serves, for `eddy ps serve --ui`'s `/metrics`.
//!
//! Stamped pushes are applied once per stamp ([`LocalPs::push_stamped`]); the shard's dedup
//! table is part of its store snapshot, and clients idle for `dedup.client-ttl` are forgotten
//! at every snapshot tick. [`PsServerConfig::delay_push_reply`] injects a fault for tests: the
//! reply to one push is held after the push was applied, so a client times out and retries.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::{Request, Response, Status};

use super::files::{self, ShardSnapshot};
use super::proto::ps_shard_server::{PsShard, PsShardServer};
use super::proto::*;
use super::{to_status, MAX_MESSAGE_BYTES};
use crate::clock::WorkerId;
use crate::error::{Error, Result};
use crate::local::{DedupConfig, Delta, LocalPs, LocalPsConfig, PushOutcome, PushStamp};
use crate::table::TableConfig;
use job::Label;
use std::collections::VecDeque;

mod barrier;
mod job;
mod stats;
pub use stats::{PsShardStats, PsStatsHandle, PsTableStats};

/// Configuration of one shard server.
#[derive(Debug, Clone, PartialEq)]
pub struct PsServerConfig {
    /// This shard's index, `0..shards`.
    pub shard: u32,
    /// How many shards the cluster has (>= 1).
    pub shards: u32,
    /// Where snapshots are written and restored from (`None`: never persisted).
    pub data_dir: Option<PathBuf>,
    /// How often a snapshot is taken while updates arrive. Default 5 s.
    pub snapshot_interval: Duration,
    /// Snapshot files kept per shard. Default 3.
    pub keep: usize,
    /// Lock stripes of the shard's store. Default 16.
    pub stripes: usize,
    /// Expiry removals each table remembers for the delta feed
    /// ([`LocalPsConfig::tombstones`]). Default 65536.
    pub tombstones: usize,
    /// The push-dedup table's bounds. Default: [`DedupConfig::default`].
    pub dedup: DedupConfig,
    /// Fault injection (tests): hold the reply to one push. Default `None`.
    pub delay_push_reply: Option<PushReplyDelay>,
}

/// Holds the reply to the `nth` push request a shard receives (1-based, counting every push
/// request in the order they reach the shard) for `delay`, after the push was applied: the
/// client sees a push that reached the shard time out, and retries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushReplyDelay {
    /// Which push request (>= 1).
    pub nth: u64,
    /// How long its reply waits.
    pub delay: Duration,
}

impl PsServerConfig {
    /// Shard `shard` of `shards`, not persisted, other fields at their defaults.
    pub fn new(shard: u32, shards: u32) -> Self {
        PsServerConfig {
            shard,
            shards,
            data_dir: None,
            snapshot_interval: Duration::from_secs(5),
            keep: 3,
            stripes: 16,
            tombstones: crate::local::default_tombstones(),
            dedup: DedupConfig::default(),
            delay_push_reply: None,
        }
    }

    /// Checks the fields and opens the shard, restoring the newest good snapshot of
    /// `data_dir` if there is one.
    pub fn open(&self) -> Result<PsServer> {
        if self.shards == 0 || self.shard >= self.shards {
            return Err(Error::config(
                "",
                "shard",
                format!("{} is not in 0..{}", self.shard, self.shards),
            ));
        }
        if self.snapshot_interval.is_zero() {
            return Err(Error::config("", "snapshot-interval", "must be > 0"));
        }
        self.dedup.check()?;
        if self.delay_push_reply.is_some_and(|d| d.nth == 0) {
            return Err(Error::config("", "delay-push-reply.nth", "must be >= 1"));
        }
        let state = Shared {
            cfg: self.clone(),
            store: OnceLock::new(),
            configure: Mutex::new(()),
            incarnation: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
            applied: AtomicU64::new(0),
            applied_at_start: AtomicU64::new(0),
            snapshotted: AtomicU64::new(0),
            pushes: AtomicU64::new(0),
            pulls: AtomicU64::new(0),
            snapshot_ms: AtomicU64::new(0),
            label: Mutex::new(Label::default()),
            job_hash: AtomicU64::new(0),
            next_worker: AtomicU64::new(0),
            in_memory: Mutex::new(VecDeque::new()),
            barrier: Mutex::new(barrier::Barrier::default()),
            complete: tokio::sync::watch::Sender::new(0),
        };
        let mut restored = None;
        let mut skipped = Vec::new();
        if let Some(dir) = &self.data_dir {
            let (found, bad) = files::latest(dir, self.shard, self.shards)?;
            skipped = bad;
            if let Some((path, snap)) = found {
                let store = state.build(&snap.tables)?;
                store.restore_now(&snap.store)?;
                state.applied.store(snap.applied, Ordering::SeqCst);
                state.applied_at_start.store(snap.applied, Ordering::SeqCst);
                state.snapshotted.store(snap.applied, Ordering::SeqCst);
                state.next_worker.store(snap.next_worker, Ordering::SeqCst);
                state.set_label(Label {
                    job: snap.job,
                    epoch: snap.epoch,
                });
                restored = Some(path);
            }
        }
        Ok(PsServer {
            shared: Arc::new(state),
            restored,
            skipped,
        })
    }
}

/// What the service shares with the snapshot loop.
#[derive(Debug)]
struct Shared {
    cfg: PsServerConfig,
    store: OnceLock<LocalPs>,
    /// Serializes `Configure`, so two clients cannot build two stores.
    configure: Mutex<()>,
    incarnation: u64,
    applied: AtomicU64,
    applied_at_start: AtomicU64,
    /// `applied` at the last snapshot.
    snapshotted: AtomicU64,
    /// Push requests received (for [`PushReplyDelay`]).
    pushes: AtomicU64,
    /// Pull requests received (for the stats, [`PsStatsHandle`]).
    pulls: AtomicU64,
    /// When the last snapshot file was written (ms since the Unix epoch; 0: none yet).
    snapshot_ms: AtomicU64,
    /// The job whose tables the shard holds and its newest epoch snapshot.
    label: Mutex<Label>,
    /// [`job_hash`] of `label.job`, read by every push without a lock.
    job_hash: AtomicU64,
    /// The next worker id shard 0 leases out.
    next_worker: AtomicU64,
    /// Epoch snapshots of a shard without a data directory: `(job, epoch, store bytes)`,
    /// newest last.
    in_memory: Mutex<VecDeque<(String, u64, Vec<u8>)>>,
    /// The epoch barrier of a job of several worker processes.
    barrier: Mutex<barrier::Barrier>,
    /// The newest epoch the barrier completed (its snapshot durable on every report).
    complete: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn build(&self, tables: &[TableConfig]) -> Result<&LocalPs> {
        let store = LocalPsConfig {
            shards: self.cfg.stripes,
            tables: tables.to_vec(),
            tombstones: self.cfg.tombstones,
            dedup: self.cfg.dedup.clone(),
        }
        .build()?;
        Ok(self.store.get_or_init(|| store))
    }

    fn store(&self) -> Result<&LocalPs, Status> {
        self.store.get().ok_or_else(|| {
            to_status(Error::Unconfigured {
                shard: self.cfg.shard as usize,
            })
        })
    }

    fn health(&self) -> Health {
        let label = self.label().clone();
        Health {
            incarnation: self.incarnation,
            applied: self.applied.load(Ordering::SeqCst),
            applied_at_start: self.applied_at_start.load(Ordering::SeqCst),
            job: label.job,
            epoch: label.epoch,
        }
    }

    /// The shard's snapshot now, labelled with its job and newest epoch.
    fn shard_snapshot(&self, store: &LocalPs, label: Label) -> Result<ShardSnapshot> {
        Ok(ShardSnapshot {
            shard: self.cfg.shard,
            shards: self.cfg.shards,
            applied: self.applied.load(Ordering::SeqCst),
            tables: store.tables().map(|t| t.config().clone()).collect(),
            store: store.snapshot_now()?,
            job: label.job,
            epoch: label.epoch,
            next_worker: self.next_worker.load(Ordering::SeqCst),
        })
    }

    /// The periodic upkeep: forgets idle dedup clients, then snapshots.
    fn tick(&self) -> Result<bool> {
        if let Some(store) = self.store.get() {
            store.forget_idle_clients(SystemTime::now());
        }
        self.snapshot_to_disk()
    }

    /// Writes a snapshot if updates arrived since the last one; returns whether it did.
    fn snapshot_to_disk(&self) -> Result<bool> {
        let (Some(dir), Some(store)) = (&self.cfg.data_dir, self.store.get()) else {
            return Ok(false);
        };
        let applied = self.applied.load(Ordering::SeqCst);
        if applied == self.snapshotted.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let label = self.label().clone();
        let snap = self.shard_snapshot(store, label)?;
        files::write(dir, &snap, self.cfg.keep, false)?;
        self.snapshotted.store(snap.applied, Ordering::SeqCst);
        self.snapshot_ms.store(stats::now_ms(), Ordering::Relaxed);
        Ok(true)
    }
}

/// One shard server; build it with [`PsServerConfig::open`].
#[derive(Debug)]
pub struct PsServer {
    shared: Arc<Shared>,
    restored: Option<PathBuf>,
    skipped: Vec<(PathBuf, Error)>,
}

impl PsServer {
    /// The snapshot file the shard was restored from, if any.
    pub fn restored_from(&self) -> Option<&std::path::Path> {
        self.restored.as_deref()
    }

    /// Newer snapshot files that were skipped at open because they did not decode.
    pub fn skipped(&self) -> &[(PathBuf, Error)] {
        &self.skipped
    }

    /// The job whose tables the shard holds (empty: none) and the newest checkpoint epoch it
    /// snapshotted for it (0: none), as restored at open.
    pub fn job(&self) -> (String, u64) {
        let label = self.shared.label().clone();
        (label.job, label.epoch)
    }

    /// A handle that reads the shard's figures while it serves (for a `/metrics` endpoint).
    pub fn stats(&self) -> PsStatsHandle {
        PsStatsHandle(self.shared.clone())
    }

    /// Key updates applied when the shard started (from its snapshot).
    pub fn applied_at_start(&self) -> u64 {
        self.shared.applied_at_start.load(Ordering::SeqCst)
    }

    /// Serves on `listener` until `shutdown` completes, snapshotting to the data directory
    /// every `snapshot_interval` (when updates arrived) and once more on shutdown.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let addr = listener
            .local_addr()
            .map_or_else(|_| "listener".to_string(), |a| a.to_string());
        let shared = self.shared.clone();
        let interval = shared.cfg.snapshot_interval;
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                let s = shared.clone();
                // A failed periodic snapshot is retried on the next tick; the last one, on
                // shutdown, reports its error.
                let _ = tokio::task::spawn_blocking(move || s.tick()).await;
            }
        });
        let service = PsShardServer::new(Service {
            shared: self.shared.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        // The standard health service: SERVING from the first request on (`""` and
        // `eddy.ps.v1.PsShard`), for load balancers and Kubernetes gRPC probes.
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<PsShardServer<Service>>().await;
        let served = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        ticker.abort();
        served.map_err(|e| Error::io(&addr, std::io::Error::other(e)))?;
        let s = self.shared.clone();
        tokio::task::spawn_blocking(move || s.snapshot_to_disk())
            .await
            .map_err(|e| Error::io(&addr, std::io::Error::other(e)))??;
        Ok(())
    }
}

/// The gRPC service over the shared shard state.
struct Service {
    shared: Arc<Shared>,
}

type Reply<T> = std::result::Result<Response<T>, Status>;

impl Service {
    fn store(&self) -> Result<&LocalPs, Status> {
        self.shared.store()
    }

    fn clocks_here(&self) -> Result<&LocalPs, Status> {
        if self.shared.cfg.shard != 0 {
            return Err(to_status(Error::config(
                "",
                "shard",
                format!("clocks live on shard 0, not {}", self.shared.cfg.shard),
            )));
        }
        self.store()
    }
}

fn ok<T>(t: T) -> Reply<T> {
    Ok(Response::new(t))
}

fn at(ms: u64) -> SystemTime {
    if ms == 0 {
        SystemTime::now()
    } else {
        UNIX_EPOCH + Duration::from_millis(ms)
    }
}

#[tonic::async_trait]
impl PsShard for Service {
    async fn configure(&self, req: Request<ConfigureRequest>) -> Reply<ConfigureReply> {
        let req = req.into_inner();
        let cfg = &self.shared.cfg;
        if (req.shard, req.shards) != (cfg.shard, cfg.shards) {
            return Err(to_status(Error::config(
                "",
                "shard",
                format!(
                    "the client routes to shard {} of {}, but this is shard {} of {}",
                    req.shard, req.shards, cfg.shard, cfg.shards
                ),
            )));
        }
        let mut tables: Vec<TableConfig> = serde_json::from_str(&req.tables_json)
            .map_err(|e| to_status(Error::config("", "tables", e.to_string())))?;
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        let _one_at_a_time = self
            .shared
            .configure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let policy = JobPolicy::try_from(req.policy).unwrap_or(JobPolicy::Refuse);
        match self.shared.store.get() {
            None => {
                let store = self.shared.build(&tables).map_err(to_status)?;
                self.shared
                    .adopt(store, &req.job, policy)
                    .map_err(to_status)?;
            }
            Some(store) => {
                let have: Vec<&TableConfig> = store.tables().map(|t| t.config()).collect();
                if have.len() != tables.len() || have.iter().zip(&tables).any(|(a, b)| *a != b) {
                    let name = tables.first().map_or("", |t| t.name.as_str());
                    return Err(to_status(Error::config(
                        name,
                        "tables",
                        format!("shard {} already holds other tables", cfg.shard),
                    )));
                }
                self.shared
                    .adopt(store, &req.job, policy)
                    .map_err(to_status)?;
            }
        }
        let worker_base = match req.lease_workers {
            0 => 0,
            n => self.shared.lease_workers(n).map_err(to_status)?,
        };
        ok(ConfigureReply {
            health: Some(self.shared.health()),
            worker_base,
        })
    }

    async fn pull(&self, req: Request<PullRequest>) -> Reply<PullReply> {
        let req = req.into_inner();
        self.shared.pulls.fetch_add(1, Ordering::Relaxed);
        let mut values = Vec::new();
        self.store()?
            .pull_now(&req.table, &req.keys, &mut values)
            .map_err(to_status)?;
        ok(PullReply { values })
    }

    async fn push(&self, req: Request<PushRequest>) -> Reply<PushReply> {
        let nth = self.shared.pushes.fetch_add(1, Ordering::SeqCst) + 1;
        let req = req.into_inner();
        let xs = (!req.xs.is_empty()).then_some(&req.xs[..]);
        let store = self.store()?;
        if req.job_hash != 0 && req.job_hash != self.shared.job_hash.load(Ordering::SeqCst) {
            let label = self.shared.label().clone();
            return Err(to_status(Error::JobMismatch {
                shard: self.shared.cfg.shard as usize,
                held: label.job,
                epoch: label.epoch,
                job: format!("{:#018x} (a job id's hash)", req.job_hash),
            }));
        }
        let (table, keys, grads, now) = (&req.table, &req.keys, &req.grads, at(req.at_ms));
        let outcome = if req.client == 0 {
            store
                .push_at(table, keys, grads, xs, now)
                .map(|()| PushOutcome::Applied)
        } else {
            let stamp = PushStamp {
                client: req.client,
                seq: req.seq,
            };
            store.push_stamped(table, keys, grads, xs, now, stamp)
        }
        .map_err(to_status)?;
        if outcome == PushOutcome::Applied {
            self.shared
                .applied
                .fetch_add(req.keys.len() as u64, Ordering::SeqCst);
        }
        if let Some(d) = self.shared.cfg.delay_push_reply.filter(|d| d.nth == nth) {
            tokio::time::sleep(d.delay).await;
        }
        ok(PushReply {
            health: Some(self.shared.health()),
            duplicate: outcome == PushOutcome::Duplicate,
        })
    }

    async fn register(&self, req: Request<WorkerRequest>) -> Reply<ClockReply> {
        let worker = WorkerId(req.into_inner().worker);
        let clock = self.clocks_here()?.clocks().register(worker);
        ok(ClockReply { clock })
    }

    async fn deregister(&self, req: Request<WorkerRequest>) -> Reply<ClockReply> {
        let worker = WorkerId(req.into_inner().worker);
        let clocks = self.clocks_here()?.clocks();
        clocks.deregister(worker).map_err(to_status)?;
        ok(ClockReply { clock: 0 })
    }

    async fn clock(&self, req: Request<WorkerRequest>) -> Reply<ClockReply> {
        let worker = WorkerId(req.into_inner().worker);
        let clock = self
            .clocks_here()?
            .clocks()
            .clock(worker)
            .map_err(to_status)?;
        ok(ClockReply { clock })
    }

    async fn wait_bounded(&self, req: Request<WaitRequest>) -> Reply<WaitReply> {
        let req = req.into_inner();
        let clocks = self.clocks_here()?.clocks();
        let wait = clocks.wait_bounded(WorkerId(req.worker), req.staleness);
        let max = Duration::from_millis(u64::from(req.max_wait_ms));
        let ready = match tokio::time::timeout(max, wait).await {
            Ok(r) => {
                r.map_err(to_status)?;
                true
            }
            Err(_) => false,
        };
        ok(WaitReply { ready })
    }

    async fn snapshot(&self, _req: Request<SnapshotRequest>) -> Reply<SnapshotReply> {
        let data = self.store()?.snapshot_now().map_err(to_status)?;
        ok(SnapshotReply { data })
    }

    async fn restore(&self, req: Request<RestoreRequest>) -> Reply<RestoreReply> {
        let req = req.into_inner();
        self.store()?.restore_now(&req.data).map_err(to_status)?;
        // The rows changed without pushes: make the next tick write them.
        self.shared.snapshotted.store(u64::MAX, Ordering::SeqCst);
        ok(RestoreReply {})
    }

    async fn delta(&self, req: Request<DeltaRequest>) -> Reply<DeltaReply> {
        let req = req.into_inner();
        let mut d = Delta::default();
        let version = self
            .store()?
            .delta_since(&req.table, req.since, &mut d)
            .map_err(to_status)?;
        ok(DeltaReply {
            keys: d.keys,
            values: d.values,
            version,
            removed: d.removed,
            resync: d.resync,
        })
    }

    async fn expire(&self, req: Request<ExpireRequest>) -> Reply<ExpireReply> {
        let now = at(req.into_inner().now_ms);
        let dropped = self.store()?.expire(now) as u64;
        ok(ExpireReply { dropped })
    }

    async fn snapshot_epoch(&self, req: Request<EpochRequest>) -> Reply<EpochReply> {
        let req = req.into_inner();
        let s = self.shared.clone();
        let (epoch, barrier) = (req.epoch, req.workers > 0);
        let complete = tokio::task::spawn_blocking(move || {
            if req.workers == 0 {
                return s.snapshot_epoch(&req.job, req.epoch).map(|()| true);
            }
            s.report_epoch(&req.job, req.epoch, req.worker, req.workers, req.finished)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(to_status)?;
        let complete = complete || (barrier && self.shared.wait_complete(epoch).await);
        ok(EpochReply {
            health: Some(self.shared.health()),
            complete,
        })
    }

    async fn restore_epoch(&self, req: Request<EpochRequest>) -> Reply<EpochReply> {
        let req = req.into_inner();
        let s = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            s.restore_epoch(&req.job, req.epoch)?;
            if req.workers > 0 {
                s.reset_barrier(req.epoch, req.workers, &req.finished_workers);
            }
            Ok::<_, Error>(())
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(to_status)?;
        ok(EpochReply {
            health: Some(self.shared.health()),
            complete: true,
        })
    }

    async fn stats(&self, req: Request<StatsRequest>) -> Reply<StatsReply> {
        let req = req.into_inner();
        let store = self.store()?;
        let rows = if req.table.is_empty() {
            0
        } else {
            store.row_count(&req.table).map_err(to_status)? as u64
        };
        ok(StatsReply {
            rows,
            version: store.version(),
            health: Some(self.shared.health()),
            duplicate_pushes: store.duplicate_pushes(),
            dedup_clients: store.dedup_clients() as u64,
        })
    }
}
