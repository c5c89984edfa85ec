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
    /// The worker is not registered with the clocks.
    #[error("unknown worker {0}")]
    UnknownWorker(WorkerId),
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
