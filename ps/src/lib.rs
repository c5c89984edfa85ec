//! # eddy-ps — the sharded parameter server
//!
//! [`ParamStore`] with server-side update rules, and [`LocalPs`] (in-process, lock-striped
//! shards). It depends on `eddy-algorithms` for the update rules it applies on the server, so
//! local learners and shards train identically.
//!
//! ```
//! use eddy_ps::{LocalPsConfig, ParamStore, TableConfig};
//! # fn main() -> eddy_ps::Result<()> {
//! let ps = LocalPsConfig::new(vec![TableConfig::new("w", 2)]).build()?;
//! let mut rows = Vec::new();
//! ps.pull_now("w", &[7, 9], &mut rows)?; // unseen keys: the initializer's values
//! assert_eq!(rows, vec![0.0; 4]);
//! ps.push_now("w", &[7], &[0.5, -0.5], None)?; // the table's rule runs on the server
//! assert_eq!(ps.row_updates("w", 7)?, Some(1));
//! # Ok(())
//! # }
//! ```
//!
//! ## Modules
//! | module | what |
//! |---|---|
//! | [`store`] | [`ParamStore`]: pull / push / clocks / snapshot, the contract every store keeps |
//! | [`any`] | [`AnyStore`]: the local store or a gRPC client, chosen at run time; [`StoreCounters`] |
//! | [`table`] | [`TableConfig`] → [`ValidTableConfig`]: dim, rule, [`Initializer`], admission, expiry |
//! | [`local`] | [`LocalPs`], [`LocalPsConfig`]: the in-process store |
//! | [`local::delta`] | the [`Delta`] feed: changed rows, keys removed by expiry, resyncs; [`LocalPs::expire`] |
//! | [`local::dedup`] | idempotent pushes: [`PushStamp`], per-client dedup windows, [`DedupConfig`] |
//! | [`clock`] | [`Clocks`], [`Consistency`], [`WorkerId`]: `async` / `bounded(s)` (SSP) / `sync` |
//! | [`grpc`] | [`PsServer`] / [`PsClient`]: shards as processes over gRPC, snapshots on disk |
//! | [`train`] | [`PsWorker`]: PS-backed online training with progressive validation; [`PsLearner`], a worker as a synchronous `OnlineLearner` (the training engine's); [`train::ftrl_model`] / [`train::fm_model`] read a store back into a local model |
//! | [`snapshot`] | the versioned, checksummed snapshot frame |
//! | [`error`] | [`Error`], [`Result`] |
//!
//! ## Semantics worth knowing
//! - **Pushes through [`PsClient`] are applied once.** Each shard's part of a push is stamped
//!   with the client's random id and a per-shard sequence number; a retry (after a timeout or a
//!   broken connection) resends the stamp, and the shard answers a stamp it already applied as
//!   a success without applying it again (`duplicate_pushes` in its `Stats`). A shard
//!   remembers the last [`PUSH_WINDOW`](local::dedup::PUSH_WINDOW) sequence numbers per client
//!   (pushes from one client arrive out of order), at most [`DedupConfig::max_clients`]
//!   clients, each forgotten after [`DedupConfig::client_ttl`] of silence; the table is in the
//!   shard's snapshots, so a restarted shard still refuses a replay its snapshot holds.
//!   Unstamped pushes ([`LocalPs::push_now`], old clients) are applied every time.
//! - **The delta feed reports removals.** Keys dropped by expiry come back in
//!   [`Delta::removed`]; a key re-admitted since is a changed row instead. Each table remembers
//!   [`LocalPsConfig::tombstones`] removals; a cursor older than a forgotten removal, a restore
//!   or the store's start (a fresh cursor too) gets a full resync ([`Delta::resync`]: every
//!   row, drop the rest) — never a delta that silently misses removals.
//! - **Snapshots are versioned** ([`snapshot::VERSION`] = 3: 2 added the dedup table, 3 the
//!   job id and epoch of a shard file); older snapshots still load (with an empty dedup table,
//!   no job), unknown versions are refused.
//! - **Shards know their job.** A [`PsClient`] connecting with a job id
//!   ([`PsClientConfig::job`]) to a shard that holds another job's tables is refused
//!   ([`Error::JobMismatch`]) unless it asks to resume them or start fresh
//!   ([`JobPolicy`]); a shard that comes back empty, or from a snapshot older than the job's
//!   last checkpoint epoch, is [`Error::ShardLost`], never silently re-declared.
//! - **Epoch snapshots.** [`PsClient::snapshot_epoch`] makes every shard write a snapshot
//!   labelled with the job's checkpoint epoch and answers once they are durable;
//!   [`PsClient::restore_epoch`] rolls every shard back to it. The training engine's
//!   checkpoints hold these labels instead of the tables' bytes. Worker processes of one job
//!   meet at an epoch barrier ([`PsClient::barrier_epoch`]): a shard snapshots an epoch once
//!   every worker reported it, and [`grpc::client::restore_job_epoch`] rolls every shard back
//!   for the job's supervisor.

pub mod any;
pub mod clock;
pub mod error;
pub mod grpc;
pub mod local;
pub mod snapshot;
pub mod store;
pub mod table;
pub mod train;

pub use any::{AnyStore, StoreCounters};
pub use clock::{Clocks, Consistency, WorkerId};
pub use error::{Error, Result};
pub use grpc::{JobPolicy, PsClient, PsClientConfig, PsServer, PsServerConfig, PushReplyDelay};
pub use local::{DedupConfig, Delta, DeltaCursor, LocalPs, LocalPsConfig, PushOutcome, PushStamp};
pub use store::ParamStore;
pub use table::{Initializer, TableConfig, ValidTableConfig};
pub use train::{PsLearner, PsWorker, PsWorkerConfig, WorkerReport};
