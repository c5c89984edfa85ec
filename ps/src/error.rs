//! The crate's one error type.

use crate::clock::WorkerId;

/// Everything that can go wrong in the parameter server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A table or store configuration is invalid; `field` names the offending key.
    #[error("table `{table}`: {field}: {reason}")]
    Config {
        /// The table (empty when the name itself is the problem).
        table: String,
        /// The offending field, e.g. `dim` or `rule` or `init.std`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No table of that name is declared.
    #[error("unknown table `{0}`")]
    UnknownTable(String),
    /// A request does not fit the table (e.g. gradients not `dim` floats per key).
    #[error("table `{table}`: {reason}")]
    Shape {
        /// The table.
        table: String,
        /// What does not fit.
        reason: String,
    },
    /// A snapshot is corrupt, truncated, of an unknown version or for other tables.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// A stamped push older than its client's dedup window: the store cannot tell whether it
    /// was applied, so it refuses it (applying nothing). A [`PsClient`](crate::PsClient) never
    /// has a push that old in flight (see [`local::dedup`](crate::local::dedup)).
    #[error(
        "push {seq} of client {client:#018x} is older than the dedup window (oldest tracked: \
         {oldest}); refused, not applied"
    )]
    StalePush {
        /// The pushing client.
        client: u64,
        /// The push's sequence number.
        seq: u64,
        /// The oldest sequence number the store still tracks for the client.
        oldest: u64,
    },
    /// The worker is not registered with the clocks.
    #[error("unknown worker {0}")]
    UnknownWorker(WorkerId),
    /// A shard server has no tables yet (a client declares them with its first call).
    #[error("shard {shard}: not configured (no tables declared yet)")]
    Unconfigured {
        /// The shard's index.
        shard: usize,
    },
    /// A shard holds the tables of another job (or of an unnamed earlier run): training on
    /// them would silently continue someone else's state. Resume or start fresh explicitly.
    #[error(
        "shard {shard}: holds the tables of job `{held}` (epoch {epoch}), not of job `{job}`; \
         resume them explicitly (--ps-resume / ps-existing = \"resume\") or clear them \
         (--ps-fresh / ps-existing = \"fresh\")"
    )]
    JobMismatch {
        /// The shard's index.
        shard: usize,
        /// The job whose tables the shard holds (empty: a run without a job id).
        held: String,
        /// The epoch of the shard's newest epoch snapshot (0: none).
        epoch: u64,
        /// The job that asked.
        job: String,
    },
    /// A shard lost the job's state: it came back empty, or restarted from a snapshot older
    /// than the job's last completed epoch, or (exactly-once) restarted at all, so what it
    /// holds is no longer the job's consistent state.
    #[error("shard {shard} at {addr}: {reason}")]
    ShardLost {
        /// The shard's index.
        shard: usize,
        /// The shard's address.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// A shard has no snapshot of the job's epoch to roll back to.
    #[error("shard {shard}: no snapshot of job `{job}` at epoch {epoch}")]
    NoEpoch {
        /// The shard's index.
        shard: usize,
        /// The job.
        job: String,
        /// The epoch asked for.
        epoch: u64,
    },
    /// A call to a remote shard failed: refused by the shard, or still failing when the
    /// client's retries ran out.
    #[error("shard {shard} at {addr}: {op}: {message}")]
    Remote {
        /// The shard's index.
        shard: usize,
        /// The shard's address.
        addr: String,
        /// The call, e.g. `pull` or `push`.
        op: &'static str,
        /// What went wrong (the gRPC status).
        message: String,
    },
    /// The model of a training worker failed (bad features or shapes).
    #[error("worker {worker}: {source}")]
    Model {
        /// The worker.
        worker: WorkerId,
        /// The learner's error.
        #[source]
        source: eddy_algorithms::Error,
    },
    /// Reading, writing or listening on a path or address failed.
    #[error("{place}: {source}")]
    Io {
        /// The file, directory or address.
        place: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A [`Error::Config`] error.
    pub(crate) fn config(table: &str, field: &str, reason: impl Into<String>) -> Self {
        Error::Config {
            table: table.to_owned(),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Io`] error at `place`.
    pub(crate) fn io(place: impl std::fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            place: place.to_string(),
            source,
        }
    }

    /// A [`Error::Shape`] error.
    pub(crate) fn shape(table: &str, reason: impl Into<String>) -> Self {
        Error::Shape {
            table: table.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
