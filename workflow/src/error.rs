//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in `eddy-workflow`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A registry metadata file (`meta.json`) does not parse or cannot be written.
    #[error("{path}: invalid version metadata: {source}")]
    Meta {
        /// The metadata file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A stored model file fails its header or checksum check, or does not decode.
    #[error("{path}: model file refused: {source}")]
    ModelFile {
        /// The model file.
        path: PathBuf,
        /// What the model-file reader found.
        #[source]
        source: eddy_algorithms::Error,
    },
    /// A registry file other than the model and metadata (e.g. `PIN`) holds garbage.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A model name is not usable as a registry directory name.
    #[error("invalid model name `{name}`: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The registry has no such version of the model.
    #[error("model `{model}` has no version {version}")]
    UnknownVersion {
        /// The model name.
        model: String,
        /// The version asked for.
        version: u64,
    },
    /// An argument is out of its range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
