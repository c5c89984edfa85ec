//! The crate's one error type.

/// Errors of feature steps, learners, evaluation and model files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter is out of its documented range; names the parameter.
    #[error("invalid parameter `{param}`: {message}")]
    InvalidParam {
        /// The parameter, e.g. `ftrl.alpha`.
        param: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A required input column is missing.
    #[error("{step}: missing column `{column}`")]
    MissingColumn {
        /// The step that needs it.
        step: String,
        /// The column name.
        column: String,
    },
    /// A column has a type the step cannot use.
    #[error("{step}: column `{column}` has type {found}, expected {expected}")]
    ColumnType {
        /// The step.
        step: String,
        /// The column name.
        column: String,
        /// The type found.
        found: String,
        /// The types accepted.
        expected: String,
    },
    /// A value the step's policy does not accept (an unseen category under `error`, a NaN
    /// where none is allowed); names the row.
    #[error("{step}: column `{column}`, row {row}: {message}")]
    InvalidValue {
        /// The step.
        step: String,
        /// The column name.
        column: String,
        /// Row index within the batch.
        row: usize,
        /// What is wrong.
        message: String,
    },
    /// The step or model was used before it was fitted.
    #[error("{0} is not fitted")]
    NotFitted(String),
    /// Shapes or dimensions do not agree.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A model or pipeline file is corrupt, truncated or of an unknown format.
    #[error("model file {path}: {message}")]
    ModelFile {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An I/O error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The parameter store a learner's weights live in failed (a shard down past its retry
    /// window, a refused push): not the data's fault, so a failover retries it.
    #[error("parameter store: {0}")]
    Store(String),
    /// An Arrow kernel error.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// An error from the dataflow core.
    #[error(transparent)]
    Core(#[from] eddy_core::Error),
}

impl Error {
    /// An invalid-parameter error.
    pub fn param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidParam {
            param: param.into(),
            message: message.into(),
        }
    }

    /// A missing-column error.
    pub fn missing(step: impl Into<String>, column: impl Into<String>) -> Self {
        Error::MissingColumn {
            step: step.into(),
            column: column.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The failover domain of this error when an operator reports it: bad data or params are
    /// the user's (not retried), I/O is external (retried), a core error keeps its own.
    pub fn domain(&self) -> eddy_core::error::ErrorDomain {
        match self {
            Error::Core(inner) => inner.domain(),
            Error::Io { .. } | Error::Store(_) => eddy_core::error::ErrorDomain::External,
            _ => eddy_core::error::ErrorDomain::User,
        }
    }
}
