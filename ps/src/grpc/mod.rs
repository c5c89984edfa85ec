//! Shards as processes over gRPC: [`PsServer`] serves one shard (a [`LocalPs`](crate::LocalPs)
//! holding the keys routed to it), [`PsClient`] is the [`ParamStore`](crate::ParamStore) that
//! routes keys to shards by hash and sends one request per shard per call, in parallel.
//!
//! ```text
//! PsClient ──pull/push (one request per shard, in parallel)──▶ PsServer shard 0 ─▶ LocalPs
//!          └───────────────────────────────────────────────▶ PsServer shard 1 ─▶ LocalPs
//!   clocks (register / clock / wait) live on shard 0
//! ```
//!
//! The wire format (`proto/eddy_ps.proto`) sends keys as packed `fixed64` and values as packed
//! `float`. Errors a shard refuses with carry the typed [`Error`] in the status details, so a
//! remote store fails exactly like a local one (`UnknownTable`, `Shape`, …).
//!
//! **Pushes are idempotent.** The client stamps every push with its random id and a sequence
//! number per shard, and a retry resends the same stamp; the shard applies each stamp once and
//! answers a duplicate as a success, counted in the `Stats` reply (see
//! [`local::dedup`](crate::local::dedup)). The shard's dedup table travels in its snapshots,
//! so a shard restarted from a snapshot still refuses the replay of a push the snapshot holds.
//! Unstamped pushes (client id 0, as old clients send) are applied every time.
//!
//! ## Modules
//! | module | what |
//! |---|---|
//! | [`server`] | [`PsServer`], [`PsServerConfig`]: one shard, periodic snapshots, restore on start; its `job` part: the job label, epoch snapshots, worker-id leases |
//! | [`client`] | [`PsClient`], [`PsClientConfig`]: routing, parallel fan-out, timeouts, retries; its `job` part: job checks on every reply, epoch snapshot and restore |
//! | [`files`] | the shard snapshot files in a data directory: periodic and epoch-labelled |
//!
//! **Job identity and epochs.** A client with a job id ([`PsClientConfig::job`]) is refused
//! by shards holding another job's tables unless its [`JobPolicy`] resumes or clears them;
//! pushes carry the job id's hash, so a stale client cannot write into another job's tables.
//! [`PsClient::snapshot_epoch`] / [`PsClient::restore_epoch`] write and roll back to durable
//! per-epoch shard snapshots; a shard that loses the job's state is [`Error::ShardLost`].

pub mod client;
pub mod files;
pub mod server;

pub use client::{JobPolicy, PsClient, PsClientConfig};
pub use server::{
    PsServer, PsServerConfig, PsShardStats, PsStatsHandle, PsTableStats, PushReplyDelay,
};

use serde::{Deserialize, Serialize};

use crate::clock::WorkerId;
use crate::error::Error;
use crate::local::fold_mul;

/// The generated protobuf messages and gRPC stubs of `proto/eddy_ps.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("eddy.ps.v1");
}

/// The tag of job id `job` that pushes carry: xxh3-64, 0 for no job (never 0 otherwise).
pub(crate) fn job_hash(job: &str) -> u64 {
    if job.is_empty() {
        0
    } else {
        xxhash_rust::xxh3::xxh3_64(job.as_bytes()).max(1)
    }
}

/// The largest message either side accepts (snapshots travel in one message).
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// The shard of `key` among `shards` (a hash independent of the stripes inside a shard).
#[inline(always)]
pub fn shard_of(key: u64, shards: usize) -> usize {
    crate::local::reduce(fold_mul(key, 0xA076_1D64_78BD_642F), shards)
}

/// An [`Error`] as it travels in a status's details.
#[derive(Debug, Serialize, Deserialize)]
enum WireError {
    Config {
        table: String,
        field: String,
        reason: String,
    },
    UnknownTable(String),
    Shape {
        table: String,
        reason: String,
    },
    Snapshot(String),
    UnknownWorker(u32),
    Unconfigured(usize),
    StalePush {
        client: u64,
        seq: u64,
        oldest: u64,
    },
    JobMismatch {
        shard: usize,
        held: String,
        epoch: u64,
        job: String,
    },
    NoEpoch {
        shard: usize,
        job: String,
        epoch: u64,
    },
}

/// The status a shard answers `e` with.
pub(crate) fn to_status(e: Error) -> tonic::Status {
    use tonic::Code;
    let (code, wire) = match e {
        Error::Config {
            table,
            field,
            reason,
        } => (
            Code::InvalidArgument,
            WireError::Config {
                table,
                field,
                reason,
            },
        ),
        Error::UnknownTable(t) => (Code::NotFound, WireError::UnknownTable(t)),
        Error::Shape { table, reason } => {
            (Code::InvalidArgument, WireError::Shape { table, reason })
        }
        Error::Snapshot(m) => (Code::InvalidArgument, WireError::Snapshot(m)),
        Error::UnknownWorker(w) => (Code::FailedPrecondition, WireError::UnknownWorker(w.0)),
        Error::Unconfigured { shard } => (Code::FailedPrecondition, WireError::Unconfigured(shard)),
        Error::StalePush {
            client,
            seq,
            oldest,
        } => (
            Code::FailedPrecondition,
            WireError::StalePush {
                client,
                seq,
                oldest,
            },
        ),
        Error::JobMismatch {
            shard,
            held,
            epoch,
            job,
        } => (
            Code::FailedPrecondition,
            WireError::JobMismatch {
                shard,
                held,
                epoch,
                job,
            },
        ),
        Error::NoEpoch { shard, job, epoch } => {
            (Code::NotFound, WireError::NoEpoch { shard, job, epoch })
        }
        other => return tonic::Status::internal(other.to_string()),
    };
    let message = format!("{code:?}");
    let details = serde_json::to_vec(&wire).unwrap_or_default();
    tonic::Status::with_details(code, message, details.into())
}

/// The typed error a status carries, if a shard refused with one.
pub(crate) fn from_status(s: &tonic::Status) -> Option<Error> {
    let wire: WireError = serde_json::from_slice(s.details()).ok()?;
    Some(match wire {
        WireError::Config {
            table,
            field,
            reason,
        } => Error::Config {
            table,
            field,
            reason,
        },
        WireError::UnknownTable(t) => Error::UnknownTable(t),
        WireError::Shape { table, reason } => Error::Shape { table, reason },
        WireError::Snapshot(m) => Error::Snapshot(m),
        WireError::UnknownWorker(w) => Error::UnknownWorker(WorkerId(w)),
        WireError::Unconfigured(shard) => Error::Unconfigured { shard },
        WireError::StalePush {
            client,
            seq,
            oldest,
        } => Error::StalePush {
            client,
            seq,
            oldest,
        },
        WireError::JobMismatch {
            shard,
            held,
            epoch,
            job,
        } => Error::JobMismatch {
            shard,
            held,
            epoch,
            job,
        },
        WireError::NoEpoch { shard, job, epoch } => Error::NoEpoch { shard, job, epoch },
    })
}

#[cfg(test)]
mod health_tests {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    use super::PsServerConfig;

    /// #14 case 26: the shard's port answers the standard gRPC health check.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shard_answers_the_standard_health_check() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = PsServerConfig::new(0, 1).open().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);
        for service in ["", "eddy.ps.v1.PsShard"] {
            let answer = client
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(answer.status, ServingStatus::Serving as i32, "{service:?}");
        }
        let unknown = client
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
}
