//! The supervisor's status file: what `eddy status` shows of a job of worker processes while
//! it runs and after it ended — per worker its restarts, rows replayed and lost, recovery
//! times, and (exactly-once) the job-wide epochs the job rolled back to.
//!
//! The supervisor rewrites the file (atomically: a temporary file renamed over it) at every
//! event and twice a second, and a last time when every worker has exited (`running` false).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::account::WorkerReport;
use crate::error::{Error, Result};

/// The file's name in the job's checkpoint directory (`eddy learn --processes`).
pub const STATUS_FILE: &str = "supervisor.json";

/// What the status file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SupervisorStatus {
    /// Whether the supervisor was still running its workers when it wrote this.
    pub running: bool,
    /// The supervisor's process id.
    pub pid: u32,
    /// When it was written (Unix milliseconds).
    pub updated_unix_ms: u64,
    /// Seconds since the workers were first started.
    pub seconds: f64,
    /// Exactly-once: the job-wide epochs the job (re)started from, in order.
    pub rollbacks: Vec<u64>,
    /// Per worker, by index (the final report's fields: zeros until a worker finishes).
    pub workers: Vec<WorkerReport>,
}

impl SupervisorStatus {
    /// Writes the status to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let tmp = path.with_extension("json.tmp");
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    }

    /// Reads the status in `path`, `None` without one; a damaged file is an error naming it.
    pub fn read(path: &Path) -> Result<Option<SupervisorStatus>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::InvalidArgument(format!("{}: not a supervisor status: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

/// Milliseconds since the Unix epoch now.
pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
