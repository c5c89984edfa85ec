//! [`PsClient`]: the [`ParamStore`](crate::ParamStore) over gRPC shards.
//!
//! Keys are routed by [`shard_of`]; a call groups its keys by shard and sends one request per
//! shard, all in parallel, then scatters the answers back into key order. Every request has a
//! timeout and is retried (with doubling, jittered backoff: [`eddy_core::backoff`]) on
//! transport errors until `retry_for` has
//! passed, so a shard that is restarted from its snapshot is ridden through. A push is
//! checked whole before any shard sees it.
//!
//! **Exactly-once pushes.** The client picks a random non-zero id when it connects and stamps
//! each shard's part of a push with it and the shard's next sequence number; a retry resends
//! the same stamp, so a part whose first attempt reached the shard is not applied again (the
//! shard acknowledges the duplicate, counted in [`duplicate_acks`](PsClient::duplicate_acks)).
//! Several pushes may be in flight to a shard at once (the client is shared by workers); the
//! client hands out sequence number `n` to a shard only while every push in flight there has
//! a number above `n − PUSH_WINDOW` (a push waits otherwise), so every live attempt
//! stays inside the shard's dedup window ([`PUSH_WINDOW`](crate::local::dedup::PUSH_WINDOW)).
//! A part that fails for good (its retries ran out) may or may not have been applied.
//!
//! **Lost updates.** Each push reply carries the shard's incarnation and how many key updates
//! it has applied (and had at start, from its snapshot). When a shard comes back as a new
//! incarnation, the updates it had acknowledged but its snapshot did not hold are counted in
//! [`lost_updates`](PsClient::lost_updates): at most one snapshot interval's worth.
//!
//! **Job identity.** With a [`job`](PsClientConfig::job) id, `Configure` tells each shard
//! whose tables the client trains, and a shard holding another job's tables refuses unless
//! the [`policy`](PsClientConfig::policy) says to resume them or start fresh. From then on a
//! shard that loses the job's state makes every later call fail with [`Error::ShardLost`]
//! (until [`restore_epoch`](PsClient::restore_epoch) rolls it back): one that comes back
//! empty (never re-declared silently), one that comes back from a snapshot older than the
//! client's last epoch or labelled with another job, and — [`strict`](PsClientConfig::strict),
//! for exactly-once jobs — one that restarted at all (its state since the last epoch is not
//! the job's).
//!
//! **Epoch snapshots.** [`snapshot_epoch`](PsClient::snapshot_epoch) has every shard write a
//! durable snapshot labelled with the job's checkpoint epoch;
//! [`restore_epoch`](PsClient::restore_epoch) rolls every shard back to it.
//!
//! **Clocks** live on shard 0. They are not persisted, so after shard 0 restarts a worker the
//! client registered is registered again (at the slowest clock) when the shard no longer
//! knows it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod job;
pub use job::restore_job_epoch;
mod seq;
mod store;

use eddy_core::backoff::Backoff;
use futures::future::try_join_all;
use tonic::transport::{Channel, Endpoint};
use tonic::{Response, Status};

use super::proto::ps_shard_client::PsShardClient;
pub use super::proto::JobPolicy;
use super::proto::*;
use super::{from_status, shard_of, MAX_MESSAGE_BYTES};
use crate::clock::WorkerId;
use crate::error::{Error, Result};
use crate::local::check_push;
use crate::table::TableConfig;

/// A fresh random job id, `job-<16 hex digits>`: what a run that names no job trains under.
pub fn new_job_id() -> String {
    format!("job-{:016x}", rand::random::<u64>())
}

/// The longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Configuration of a [`PsClient`].
#[derive(Debug, Clone, PartialEq)]
pub struct PsClientConfig {
    /// The shards' addresses (`host:port` or `http://host:port`), shard `i` at index `i`.
    pub shards: Vec<String>,
    /// The tables (declared to every shard on connect).
    pub tables: Vec<TableConfig>,
    /// How long one attempt of a request may take. Default 5 s.
    pub timeout: Duration,
    /// How long a request is retried through transport errors before it fails. Default 60 s.
    pub retry_for: Duration,
    /// The ceiling of the first pause between retries (doubling up to 1 s; each pause is
    /// jittered to between half and all of its ceiling). Default 20 ms.
    pub backoff: Duration,
    /// The job the client trains for (empty: none; shards are not checked). Default empty.
    pub job: String,
    /// What a shard holding another job's tables does. Default [`JobPolicy::Refuse`].
    pub policy: JobPolicy,
    /// Exactly-once: a shard restart loses the job's state (calls fail with
    /// [`Error::ShardLost`] until [`PsClient::restore_epoch`]) instead of being ridden
    /// through with its lost updates counted. Default false.
    pub strict: bool,
    /// Worker ids to lease from shard 0 on connect, unique across every client of the
    /// shards ([`PsClient::worker_base`]); 0: none, the caller picks ids. Default 0.
    pub lease_workers: u32,
}

impl PsClientConfig {
    /// A client of `shards` for `tables`, other fields at their defaults.
    pub fn new(shards: Vec<String>, tables: Vec<TableConfig>) -> Self {
        PsClientConfig {
            shards,
            tables,
            timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(60),
            backoff: Duration::from_millis(20),
            job: String::new(),
            policy: JobPolicy::Refuse,
            strict: false,
            lease_workers: 0,
        }
    }

    /// Checks the tables, connects (lazily) to every shard and declares the tables to each.
    pub async fn connect(&self) -> Result<PsClient> {
        if self.shards.is_empty() {
            return Err(Error::config("", "shards", "name at least one address"));
        }
        if self.timeout.is_zero() {
            return Err(Error::config("", "timeout", "must be > 0"));
        }
        let mut dims = BTreeMap::new();
        let mut tables = self.tables.clone();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        for t in &tables {
            let valid = t.check()?;
            if dims.insert(t.name.clone(), valid.dim()).is_some() {
                return Err(Error::config(&t.name, "name", "declared twice"));
            }
        }
        let tables_json = serde_json::to_string(&tables)
            .map_err(|e| Error::config("", "tables", e.to_string()))?;
        let mut conns = Vec::with_capacity(self.shards.len());
        for (shard, addr) in self.shards.iter().enumerate() {
            let uri = if addr.contains("://") {
                addr.clone()
            } else {
                format!("http://{addr}")
            };
            let endpoint = Endpoint::from_shared(uri).map_err(|e| {
                Error::config("", &format!("shards[{shard}]"), format!("`{addr}`: {e}"))
            })?;
            let channel = endpoint
                .connect_timeout(self.timeout)
                .tcp_nodelay(true)
                .connect_lazy();
            let client = PsShardClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            conns.push(Conn {
                addr: addr.clone(),
                client,
                seen: Mutex::new(None),
                lost: Mutex::new(None),
                seq: seq::Sequencer::new(),
            });
        }
        let client = PsClient {
            id: rand::random::<u64>().max(1),
            duplicates: AtomicU64::new(0),
            cfg: self.clone(),
            conns,
            dims,
            tables_json,
            registered: Mutex::new(BTreeSet::new()),
            lost: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            last_epoch: AtomicU64::new(0),
            job_hash: super::job_hash(&self.job),
            worker_base: 0,
        };
        let lease = self.lease_workers;
        let bases = try_join_all((0..client.conns.len()).map(|s| {
            let lease = if s == 0 { lease } else { 0 };
            client.configure(s, lease)
        }))
        .await?;
        Ok(PsClient {
            worker_base: bases[0],
            ..client
        })
    }
}

/// One shard's connection and what the client last saw of it.
#[derive(Debug)]
struct Conn {
    addr: String,
    client: PsShardClient<Channel>,
    /// `(incarnation, highest applied count acknowledged)`.
    seen: Mutex<Option<(u64, u64)>>,
    /// Why the shard no longer holds the job's state (every call fails until a restore).
    lost: Mutex<Option<String>>,
    /// The push sequence numbers of this shard.
    seq: seq::Sequencer,
}

/// The gRPC [`ParamStore`](crate::ParamStore); build it with [`PsClientConfig::connect`].
#[derive(Debug)]
pub struct PsClient {
    /// The id that stamps this client's pushes (random, non-zero).
    id: u64,
    /// Push parts a shard acknowledged as duplicates.
    duplicates: AtomicU64,
    cfg: PsClientConfig,
    conns: Vec<Conn>,
    dims: BTreeMap<String, usize>,
    tables_json: String,
    registered: Mutex<BTreeSet<u32>>,
    lost: AtomicU64,
    retries: AtomicU64,
    restarts: AtomicU64,
    /// The newest checkpoint epoch snapshotted or restored through this client (0: none).
    last_epoch: AtomicU64,
    /// The tag of the job id its pushes carry.
    job_hash: u64,
    /// The first of the worker ids leased from shard 0.
    worker_base: u32,
}

fn retryable(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unavailable
            | DeadlineExceeded
            | Cancelled
            | Aborted
            | Unknown
            | ResourceExhausted
            | Internal
    )
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        .max(1)
}

impl PsClient {
    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.conns.len()
    }

    /// Key updates that shards acknowledged and then lost by restarting from an older
    /// snapshot (an upper bound; see the module docs).
    pub fn lost_updates(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Requests retried after a transport error or timeout.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Shard restarts observed.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// The random id that stamps this client's pushes.
    pub fn client_id(&self) -> u64 {
        self.id
    }

    /// Push parts a shard acknowledged as duplicates: retries whose earlier attempt had
    /// already been applied (and so were not applied again).
    pub fn duplicate_acks(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    fn dim(&self, table: &str) -> Result<usize> {
        self.dims
            .get(table)
            .copied()
            .ok_or_else(|| Error::UnknownTable(table.to_owned()))
    }

    fn remote(&self, shard: usize, op: &'static str, message: String) -> Error {
        Error::Remote {
            shard,
            addr: self.conns[shard].addr.clone(),
            op,
            message,
        }
    }

    /// The `Configure` request of `shard`.
    fn configure_request(&self, shard: usize) -> ConfigureRequest {
        ConfigureRequest {
            lease_workers: 0,
            tables_json: self.tables_json.clone(),
            shard: shard as u32,
            shards: self.conns.len() as u32,
            job: self.cfg.job.clone(),
            policy: self.cfg.policy as i32,
        }
    }

    /// Declares the tables to `shard` (with retries), leasing `lease` worker ids from it;
    /// returns the first.
    async fn configure(&self, shard: usize, lease: u32) -> Result<u32> {
        let req = ConfigureRequest {
            lease_workers: lease,
            ..self.configure_request(shard)
        };
        let reply = self
            .call(shard, "configure", |mut c| {
                let req = req.clone();
                async move { c.configure(req).await }
            })
            .await?;
        self.observe(shard, reply.health)?;
        Ok(reply.worker_base)
    }

    /// One request to `shard`, retried through transport errors and timeouts (and re-declaring
    /// the tables to a shard that restarted without a snapshot). A shard's refusal is returned
    /// as the typed error it carries.
    async fn call<T, Fut>(
        &self,
        shard: usize,
        op: &'static str,
        f: impl Fn(PsShardClient<Channel>) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        let conn = &self.conns[shard];
        if op != "restore-epoch" {
            self.check_lost(shard)?;
        }
        let deadline = Instant::now() + self.cfg.retry_for;
        let backoff = Backoff::new(self.cfg.backoff, MAX_BACKOFF);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let status = match tokio::time::timeout(self.cfg.timeout, f(conn.client.clone())).await
            {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(s)) => s,
                Err(_) => {
                    Status::deadline_exceeded(format!("no answer within {:?}", self.cfg.timeout))
                }
            };
            match from_status(&status) {
                Some(Error::Unconfigured { .. })
                    if !self.cfg.job.is_empty() && self.knows(shard) =>
                {
                    // it held the job's tables and came back without them: never re-declared
                    return Err(self.mark_lost(
                        shard,
                        "came back empty (no tables, no snapshot): the job's state on it is \
                         lost"
                            .into(),
                    ));
                }
                Some(Error::Unconfigured { .. }) if op != "configure" => {
                    let req = self.configure_request(shard);
                    let mut c = conn.client.clone();
                    match tokio::time::timeout(self.cfg.timeout, c.configure(req)).await {
                        Ok(Ok(r)) => {
                            self.observe(shard, r.into_inner().health)?;
                            continue;
                        }
                        Ok(Err(s)) => {
                            if let Some(e) = from_status(&s) {
                                return Err(e);
                            }
                        }
                        Err(_) => {}
                    }
                }
                Some(e) => return Err(e),
                None => {}
            }
            let wait = backoff.delay(attempts - 1);
            if !retryable(status.code()) || Instant::now() + wait > deadline {
                return Err(self.remote(
                    shard,
                    op,
                    format!(
                        "{:?}: {} (after {attempts} attempts)",
                        status.code(),
                        status.message()
                    ),
                ));
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }

    /// `keys` grouped by shard: the keys and their positions in `keys`.
    fn route(&self, keys: &[u64]) -> (Vec<Vec<u64>>, Vec<Vec<u32>>) {
        let n = self.conns.len();
        if n == 1 {
            return (vec![keys.to_vec()], vec![(0..keys.len() as u32).collect()]);
        }
        let cap = keys.len() / n + keys.len() / (4 * n) + 16;
        let mut per_keys: Vec<Vec<u64>> = (0..n).map(|_| Vec::with_capacity(cap)).collect();
        let mut per_pos: Vec<Vec<u32>> = (0..n).map(|_| Vec::with_capacity(cap)).collect();
        for (i, &k) in keys.iter().enumerate() {
            let s = shard_of(k, n);
            per_keys[s].push(k);
            per_pos[s].push(i as u32);
        }
        (per_keys, per_pos)
    }

    /// [`ParamStore::push`](crate::ParamStore::push) with the rows stamped as pushed at `now` (for expiry).
    pub async fn push_at(
        &self,
        table: &str,
        keys: &[u64],
        grads: &[f32],
        xs: Option<&[f32]>,
        now: SystemTime,
    ) -> Result<()> {
        self.push_parts(table, keys, grads, xs, unix_ms(now)).await
    }

    /// Sends each shard its part of a push, stamped (see the module docs).
    async fn push_parts(
        &self,
        table: &str,
        keys: &[u64],
        grads: &[f32],
        xs: Option<&[f32]>,
        at_ms: u64,
    ) -> Result<()> {
        let dim = self.dim(table)?;
        check_push(table, dim, keys, grads, xs)?;
        let (per_keys, per_pos) = self.route(keys);
        let calls = per_keys
            .into_iter()
            .zip(per_pos)
            .enumerate()
            .filter(|(_, (k, _))| !k.is_empty())
            .map(|(s, (keys, pos))| {
                let gather = |src: &[f32]| {
                    let mut out = Vec::with_capacity(pos.len() * dim);
                    if dim == 1 {
                        out.extend(pos.iter().map(|&i| src[i as usize]));
                    } else {
                        for &i in &pos {
                            let i = i as usize;
                            out.extend_from_slice(&src[i * dim..(i + 1) * dim]);
                        }
                    }
                    out
                };
                let mut req = PushRequest {
                    table: table.to_owned(),
                    grads: gather(grads),
                    xs: xs.map(gather).unwrap_or_default(),
                    keys,
                    at_ms,
                    client: self.id,
                    seq: 0,
                    job_hash: self.job_hash,
                };
                async move {
                    // Held until the part is answered for good: every retry resends this stamp.
                    let seq = self.conns[s].seq.acquire().await;
                    req.seq = seq.seq;
                    let reply = self
                        .call(s, "push", |mut c| {
                            let req = req.clone();
                            async move { c.push(req).await }
                        })
                        .await?;
                    drop(seq);
                    if reply.duplicate {
                        self.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    self.observe(s, reply.health)
                }
            });
        try_join_all(calls).await?;
        Ok(())
    }

    /// Drops expired rows on every shard as of `now`; returns the rows dropped.
    pub async fn expire(&self, now: SystemTime) -> Result<usize> {
        let now_ms = unix_ms(now);
        let dropped = try_join_all((0..self.conns.len()).map(|s| {
            self.call(s, "expire", move |mut c| async move {
                c.expire(ExpireRequest { now_ms }).await
            })
        }))
        .await?;
        Ok(dropped.iter().map(|r| r.dropped as usize).sum())
    }

    /// Stamped pushes the shards answered as duplicates since they started, over all shards
    /// (from every client; see [`duplicate_acks`](PsClient::duplicate_acks) for this one's).
    pub async fn duplicate_pushes(&self) -> Result<u64> {
        let stats = try_join_all((0..self.conns.len()).map(|s| {
            self.call(s, "stats", move |mut c| async move {
                c.stats(StatsRequest {
                    table: String::new(),
                })
                .await
            })
        }))
        .await?;
        Ok(stats.iter().map(|r| r.duplicate_pushes).sum())
    }

    /// Rows in `table` over all shards.
    pub async fn row_count(&self, table: &str) -> Result<usize> {
        self.dim(table)?;
        let stats = try_join_all((0..self.conns.len()).map(|s| {
            self.call(s, "stats", move |mut c| async move {
                c.stats(StatsRequest {
                    table: table.to_owned(),
                })
                .await
            })
        }))
        .await?;
        Ok(stats.iter().map(|r| r.rows as usize).sum())
    }

    /// Runs a clock call on shard 0, registering `worker` again if the shard lost it (it
    /// restarted) and this client had registered it.
    async fn clock_call<T, Fut>(
        &self,
        worker: WorkerId,
        op: &'static str,
        f: impl Fn(PsShardClient<Channel>) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        match self.call(0, op, &f).await {
            Err(Error::UnknownWorker(w)) if w == worker && self.was_registered(worker) => {
                self.register_on_shard(worker).await?;
                self.call(0, op, &f).await
            }
            other => other,
        }
    }

    fn was_registered(&self, worker: WorkerId) -> bool {
        self.registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&worker.0)
    }

    async fn register_on_shard(&self, worker: WorkerId) -> Result<u64> {
        let r = self
            .call(0, "register", |mut c| async move {
                c.register(WorkerRequest { worker: worker.0 }).await
            })
            .await?;
        Ok(r.clock)
    }
}
