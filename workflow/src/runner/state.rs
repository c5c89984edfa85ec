//! The run state kept in `<run-dir>/state.json` (written atomically after every change), so a
//! restarted run knows which nodes completed, which versions each gate already judged, and what
//! every node produced; `eddy status` reads it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The state file's name inside the run directory.
pub const STATE_FILE: &str = "state.json";

/// Where a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeStatus {
    /// Not run yet (or waiting for its next trigger).
    #[default]
    Pending,
    /// Running now (a run that was killed stays here; a restart re-runs it).
    Running,
    /// Waiting out a retry backoff.
    Retrying,
    /// Its last run succeeded.
    Succeeded,
    /// It failed (after its retries), or an upstream node did.
    Failed,
    /// Stopped by Ctrl-C before it finished.
    Interrupted,
    /// Never triggered: what it waits for finished without passing (e.g. a gate rejected
    /// every version).
    Skipped,
}

impl NodeStatus {
    /// A short word for status lines.
    pub fn word(self) -> &'static str {
        match self {
            NodeStatus::Pending => "pending",
            NodeStatus::Running => "running",
            NodeStatus::Retrying => "retrying",
            NodeStatus::Succeeded => "succeeded",
            NodeStatus::Failed => "failed",
            NodeStatus::Interrupted => "interrupted",
            NodeStatus::Skipped => "skipped",
        }
    }
}

/// What one node did, over all its runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct NodeState {
    /// Where it stands.
    pub status: NodeStatus,
    /// Completed runs (successful or not, not counting retries).
    pub runs: u32,
    /// Attempts of the current or last run (1 + retries used).
    pub attempts: u32,
    /// Whether a run has succeeded and passed at least once (so its dependents may run; a gate
    /// that rejected every version has not).
    pub succeeded_once: bool,
    /// Rows read by its last run.
    pub rows: u64,
    /// Metrics of its last run (training or evaluation metrics).
    pub metrics: BTreeMap<String, f64>,
    /// Model versions it published.
    pub versions: Vec<u64>,
    /// The model version its last successful run produced or acted on.
    pub last_version: Option<u64>,
    /// Versions an `on-new-version` node has handled (so a restart does not redo them).
    pub handled_versions: Vec<u64>,
    /// A line about the last run (a gate's verdict, a command's exit).
    pub message: Option<String>,
    /// The error that failed it.
    pub error: Option<String>,
}

/// The whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct RunState {
    /// The workflow's name.
    pub workflow: String,
    /// The spec file the run executes.
    pub spec: PathBuf,
    /// A hash of the spec text: a run directory belongs to one spec.
    pub spec_hash: String,
    /// Times the run was started (1 + restarts).
    pub starts: u32,
    /// Whether every node finished.
    pub finished: bool,
    /// Where the model is served (the predict URL), if a serving node runs.
    pub serving: Option<String>,
    /// A ready-to-paste `curl` predict request for the served model.
    pub serving_example: Option<String>,
    /// Whether every node but the serving ones has finished.
    pub settled: bool,
    /// Node states by name.
    pub nodes: BTreeMap<String, NodeState>,
}

impl RunState {
    /// Reads `<dir>/state.json`; `None` if there is none.
    pub fn load(dir: &Path) -> Result<Option<RunState>> {
        let path = dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                path,
                message: format!("run state does not parse: {e}"),
            })
    }

    /// Writes `<dir>/state.json` through a temporary file, fsync and rename, so a reader (or a
    /// crash) sees the old state or the new one, never half of one.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Corrupt {
            path: path.clone(),
            message: format!("cannot encode the run state: {e}"),
        })?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| Error::io(&path, e))
    }
}

/// A stable hash of the spec text (FNV-1a, hex), to recognise the run directory's spec.
pub fn spec_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trips_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RunState::load(dir.path()).unwrap(), None);
        let mut s = RunState {
            workflow: "w".into(),
            ..Default::default()
        };
        s.nodes.insert(
            "a".into(),
            NodeState {
                status: NodeStatus::Succeeded,
                versions: vec![1, 2],
                ..Default::default()
            },
        );
        s.save(dir.path()).unwrap();
        assert_eq!(RunState::load(dir.path()).unwrap(), Some(s));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(STATE_FILE)]);
        assert_ne!(spec_hash("a"), spec_hash("b"));
    }
}
