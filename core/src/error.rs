//! One error type for the whole crate, classified by domain so that a failover supervisor knows
//! what can be retried (see ARCHITECTURE §3 and issue "checkpoints and failover").

use std::path::PathBuf;

/// Where an error comes from. A supervisor restarts what can recover and fails fast on the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorDomain {
    /// Bad input or configuration from the user: retrying does not help.
    User,
    /// An external system (file system, broker, network) misbehaved: retrying may help.
    External,
    /// A bug or broken invariant inside eddy.
    Internal,
}

/// Errors of the dataflow runtime, its sources, sinks and operators.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A malformed input record under `on-error = "fail"`.
    #[error("{source_name}:{line}:{column}: {reason}")]
    Malformed {
        /// The source (usually a file path).
        source_name: String,
        /// 1-based line (or record) number.
        line: u64,
        /// 1-based column (field) number; 0 when the whole record is at fault.
        column: usize,
        /// What is wrong.
        reason: String,
    },
    /// A schema problem: a missing column, a wrong type.
    #[error("schema error in {context}: {message}")]
    Schema {
        /// Operator, source or sink where it was found.
        context: String,
        /// What is wrong.
        message: String,
    },
    /// Invalid configuration: names the setting.
    #[error("invalid setting `{key}`: {message}")]
    Config {
        /// The offending key, e.g. `window.size`.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// An error raised by user code or an operator, with the operator's name.
    #[error("operator `{operator}` (subtask {subtask}): {message}")]
    Operator {
        /// Operator name as given to the builder.
        operator: String,
        /// Subtask index.
        subtask: usize,
        /// What went wrong.
        message: String,
        /// Where the error originates.
        domain: ErrorDomain,
    },
    /// A Kafka broker or client error (connection, metadata, fetch, produce, transaction).
    #[error("kafka {context}: {message}")]
    Kafka {
        /// The broker address and topic (or partition) concerned.
        context: String,
        /// What failed.
        message: String,
    },
    /// An Arrow kernel or IPC error.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A Parquet error.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A task panicked; the message is the panic payload.
    #[error("task `{task}` panicked: {message}")]
    Panic {
        /// Task name (`operator[subtask]`).
        task: String,
        /// Panic payload, when it is a string.
        message: String,
    },
    /// The job was cancelled.
    #[error("job cancelled")]
    Cancelled,
    /// More checkpoints failed in a row than the job tolerates (`CheckpointConfig`).
    #[error("checkpoint {epoch} failed: {message}")]
    Checkpoint {
        /// The checkpoint that failed last.
        epoch: u64,
        /// Why, and how many failed in a row.
        message: String,
    },
    /// A connected task stopped without finishing its stream: the echo of a failure elsewhere,
    /// reported only when no other cause is known.
    #[error("task `{0}`: a connected task stopped unexpectedly")]
    Disconnected(String),
    /// A broken runtime invariant (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The error's domain, for the failover supervisor.
    pub fn domain(&self) -> ErrorDomain {
        match self {
            Error::Malformed { .. } | Error::Schema { .. } | Error::Config { .. } => {
                ErrorDomain::User
            }
            Error::Io { .. } | Error::Kafka { .. } => ErrorDomain::External,
            Error::Operator { domain, .. } => *domain,
            Error::Arrow(_) | Error::Parquet(_) => ErrorDomain::User,
            Error::Panic { .. } | Error::Internal(_) | Error::Disconnected(_) => {
                ErrorDomain::Internal
            }
            Error::Cancelled | Error::Checkpoint { .. } => ErrorDomain::External,
        }
    }

    /// Whether restarting the failed task may help.
    pub fn is_retryable(&self) -> bool {
        !matches!(self.domain(), ErrorDomain::User)
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A schema error.
    pub fn schema(context: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Schema {
            context: context.into(),
            message: message.into(),
        }
    }

    /// A Kafka error about `context` (broker address, topic, partition).
    pub fn kafka(context: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Kafka {
            context: context.into(),
            message: message.to_string(),
        }
    }

    /// A configuration error naming the key.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
