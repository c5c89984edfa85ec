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
    /// When its current or last run started (ms since the Unix epoch; retries included).
    pub started_ms: Option<u64>,
    /// When that run finished (ms since the Unix epoch); `None` while it runs.
    pub finished_ms: Option<u64>,
}

impl NodeState {
    /// Whether a run of it is under way (running, or waiting out a retry backoff).
    pub fn active(&self) -> bool {
        matches!(self.status, NodeStatus::Running | NodeStatus::Retrying)
    }

    /// How long its current or last run took (until `now_ms` while it runs).
    pub fn duration_ms(&self, now_ms: u64) -> Option<u64> {
        let start = self.started_ms?;
        Some(self.finished_ms.unwrap_or(now_ms).saturating_sub(start))
    }
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

    /// Notes the time `now_ms` as the start of each node that became active (running or
    /// retrying) and the end of each that stopped being so; the scheduler calls it before
    /// every save, so durations survive the run (`eddy ui` on a finished run shows them).
    pub fn stamp_times(&mut self, now_ms: u64) {
        for n in self.nodes.values_mut() {
            if n.active() {
                if n.started_ms.is_none() || n.finished_ms.is_some() {
                    n.started_ms = Some(now_ms);
                    n.finished_ms = None;
                }
            } else if n.started_ms.is_some() && n.finished_ms.is_none() {
                n.finished_ms = Some(now_ms);
            }
        }
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

/// Milliseconds since the Unix epoch (what [`RunState::stamp_times`] is given).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

    #[test]
    fn stamps_a_start_when_a_node_becomes_active_and_an_end_when_it_stops() {
        let mut s = RunState::default();
        let status = |s: &mut RunState, st| s.nodes.entry("a".into()).or_default().status = st;
        status(&mut s, NodeStatus::Pending);
        s.stamp_times(5);
        assert_eq!(s.nodes["a"].duration_ms(6), None, "never started");
        status(&mut s, NodeStatus::Running);
        s.stamp_times(10);
        status(&mut s, NodeStatus::Retrying);
        s.stamp_times(20);
        assert_eq!(
            s.nodes["a"].duration_ms(25),
            Some(15),
            "a retry is the same run"
        );
        status(&mut s, NodeStatus::Succeeded);
        s.stamp_times(40);
        s.stamp_times(50);
        assert_eq!(s.nodes["a"].duration_ms(99), Some(30));
        status(&mut s, NodeStatus::Running);
        s.stamp_times(60);
        assert_eq!(
            (s.nodes["a"].started_ms, s.nodes["a"].finished_ms),
            (Some(60), None),
            "a new run starts over"
        );
    }
}
