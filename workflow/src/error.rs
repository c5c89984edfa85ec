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
    /// A worker process of a supervised job could not be started, or kept failing.
    #[error("worker {worker}: {message}")]
    Worker {
        /// The worker's index in the job.
        worker: usize,
        /// What went wrong.
        message: String,
    },
    /// Serving: no served model has this name.
    #[error("unknown model `{model}`")]
    UnknownModel {
        /// The model name asked for.
        model: String,
    },
    /// Serving: the model is configured but no version of it could be loaded yet.
    #[error("model `{model}` has no servable version yet")]
    NotReady {
        /// The model name.
        model: String,
    },
    /// Serving: a request body is larger than the server accepts.
    #[error("request body too large: {message}")]
    BodyTooLarge {
        /// What the server's limit said.
        message: String,
    },
    /// Serving: a request body is not the expected JSON (or protobuf) document.
    #[error("malformed request: {message}")]
    BadRequest {
        /// What the parser found.
        message: String,
    },
    /// Serving: a request row lacks a column the model reads, or holds a value of the wrong
    /// type for it.
    #[error("model `{model}`: row {row}: field `{field}`: {message}")]
    InvalidField {
        /// The model the rows were sent to.
        model: String,
        /// The 0-based row index in the request.
        row: usize,
        /// The request field (input column) at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// Serving: a model refused to score rows that passed the input checks.
    #[error("model `{model}` version {version}: {source}")]
    Predict {
        /// The model name.
        model: String,
        /// The version that failed.
        version: u64,
        /// The learner's or pipeline's error (boxed: it is large and rare).
        #[source]
        source: Box<eddy_algorithms::Error>,
    },
    /// Serving: a listener or server failed.
    #[error("serving on {addr}: {message}")]
    Serve {
        /// The address (or `http` / `grpc`).
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// A workflow spec is refused: a TOML syntax error, an unknown key, a wrong type, a
    /// dangling reference, a cycle, ... Rendered as `file:line:column: key: message (hint)`.
    #[error("{}", spec_message(.file, *.line, *.column, .key, .message, .hint))]
    Spec {
        /// The spec file (empty when parsed from a string).
        file: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// 1-based column (in characters) of the offending key or value.
        column: usize,
        /// The dotted TOML key at fault (e.g. `nodes.train.publish-every`), empty if none.
        key: String,
        /// What is wrong.
        message: String,
        /// How to fix it, if there is a suggestion.
        hint: Option<String>,
    },
    /// A workflow node failed while running.
    #[error("node `{node}`: {message}")]
    Node {
        /// The node.
        node: String,
        /// What went wrong.
        message: String,
    },
    /// A learner, pipeline or model file operation failed.
    #[error(transparent)]
    Algorithms(#[from] eddy_algorithms::Error),
    /// The dataflow runtime or a source failed.
    #[error(transparent)]
    Core(#[from] eddy_core::Error),
}

fn spec_message(
    file: &std::path::Path,
    line: usize,
    column: usize,
    key: &str,
    message: &str,
    hint: &Option<String>,
) -> String {
    let mut out = String::new();
    if !file.as_os_str().is_empty() {
        out.push_str(&format!("{}:", file.display()));
    }
    out.push_str(&format!("{line}:{column}: "));
    if !key.is_empty() {
        out.push_str(&format!("`{key}`: "));
    }
    out.push_str(message);
    if let Some(hint) = hint {
        out.push_str(&format!(" (hint: {hint})"));
    }
    out
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
