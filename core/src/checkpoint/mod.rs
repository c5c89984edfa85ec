//! Completed checkpoints and where they are kept (ARCHITECTURE §3 "Checkpoints").
//!
//! When a barrier has passed every task, the coordinator holds one [`TaskAck`] per task. Those
//! acks, turned into [`TaskSnapshot`]s, make a [`CompletedCheckpoint`], which a
//! [`CheckpointStore`] writes durably and gives back on restore.
//!
//! ```
//! use eddy_core::checkpoint::{CheckpointStore, CompletedCheckpoint, TaskSnapshot};
//! use eddy_core::message::Epoch;
//! use eddy_core::source::SourcePosition;
//!
//! let dir = tempfile::tempdir()?;
//! let store = CheckpointStore::open(dir.path(), 2)?;
//! let source = TaskSnapshot {
//!     task: "events[0]".into(),
//!     subtask: 0,
//!     parallelism: 1,
//!     source: Some("events".into()),
//!     operators: vec!["parse".into(), "counts".into()],
//!     position: Some(SourcePosition::of(&42u64)),
//!     states: vec![None, Some(b"counts".to_vec())],
//!     inflight: None,
//!     finished: false,
//! };
//! store.write(&CompletedCheckpoint::new(Epoch(1), vec![source]))?;
//! let restored = store.latest()?.expect("one checkpoint was written");
//! assert_eq!(restored.epoch, Epoch(1));
//! assert_eq!(restored.tasks[0].states[1].as_deref(), Some(&b"counts"[..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | module | what |
//! |---|---|
//! | [`store`] | [`CheckpointStore`]: a local directory, write-then-rename, checksummed manifest, retention, savepoints |
//! | `format` | the on-disk layout: `MANIFEST.json` and the per-task state files |
//! | `segments` | segment files of chunked (incremental) states: one per task, stage and checkpoint, written once with one fsync, referenced by later manifests, collected by retention |
//! | [`parts`] | [`StateParts`]: state cut into key groups or list elements, redistributable |
//! | [`rescale`] | restore by operator id: maps a checkpoint onto the job's tasks at any parallelism |
//!
//! ## State by operator id and key group
//! Every snapshot records, besides its task name, its subtask and parallelism and the stable
//! **operator id** of its source and of each chained operator (the builder name, or the id
//! given with [`Stream::uid`](crate::dataflow::Stream::uid)); the checkpoint records the job's
//! number of **key groups** ([`keys`](crate::keys)). A restore matches state by operator id,
//! so a changed chaining does not misplace it, and maps it onto the job's parallelism: at the
//! same parallelism every subtask gets its own snapshot; at another one, the operator's
//! declared [`Redistribution`](crate::operator::Redistribution) decides (key groups, list,
//! union, broadcast), and an operator with state but no rule, a source, in-flight data or a
//! different key-group count is refused with an error naming it. Checkpoints of format 1
//! (state by task name) are refused.

mod format;
pub mod parts;
pub mod rescale;
mod segments;
pub mod store;

pub use parts::StateParts;
pub use store::CheckpointStore;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::dataflow::TaskAck;
use crate::error::{Error, Result};
use crate::message::Epoch;
use crate::source::SourcePosition;

/// What one task reported when the barrier of a checkpoint passed it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskSnapshot {
    /// Task name (`head[subtask]`), unique within a checkpoint.
    pub task: String,
    /// The task's subtask index.
    pub subtask: usize,
    /// The parallelism of the task's chain when the checkpoint was taken.
    pub parallelism: usize,
    /// Operator id of the task's source, if it has one (`position` is that source's).
    pub source: Option<String>,
    /// Operator ids of the chain stages, in order, parallel to `states` (a finished task
    /// records its ids and no states).
    pub operators: Vec<String>,
    /// Source position at the barrier, for source tasks.
    pub position: Option<SourcePosition>,
    /// Operator states by chain stage (`None`: the stage is stateless).
    pub states: Vec<Option<Vec<u8>>>,
    /// In-flight input an unaligned barrier overtook, replayed first on restore (an opaque
    /// encoding of the runtime; `None` for aligned snapshots).
    #[serde(default)]
    pub inflight: Option<Vec<u8>>,
    /// The task had finished (its input ended) before this checkpoint: a restore does not run
    /// it again, it only reconciles its sink and ends its outputs (FLIP-147).
    #[serde(default)]
    pub finished: bool,
}

impl TaskSnapshot {
    /// An empty snapshot of the task named `task`: subtask 0 of 1, no operators, no state.
    pub fn new(task: impl Into<String>) -> Self {
        TaskSnapshot {
            task: task.into(),
            subtask: 0,
            parallelism: 1,
            source: None,
            operators: Vec::new(),
            position: None,
            states: Vec::new(),
            inflight: None,
            finished: false,
        }
    }
}

impl From<TaskAck> for TaskSnapshot {
    fn from(ack: TaskAck) -> Self {
        TaskSnapshot {
            position: ack.position,
            states: ack.states,
            ..TaskSnapshot::new(ack.task)
        }
    }
}

/// A checkpoint whose barrier has passed every task: the unit a [`CheckpointStore`] keeps.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CompletedCheckpoint {
    /// The checkpoint.
    pub epoch: Epoch,
    /// When it completed, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The job's number of key groups ([`keys`](crate::keys)); a restore with another count
    /// is refused.
    pub key_groups: u32,
    /// One snapshot per task.
    pub tasks: Vec<TaskSnapshot>,
}

impl CompletedCheckpoint {
    /// A checkpoint of `epoch` completed now.
    pub fn new(epoch: Epoch, tasks: Vec<TaskSnapshot>) -> Self {
        let created_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        CompletedCheckpoint {
            epoch,
            created_ms,
            key_groups: crate::keys::DEFAULT_KEY_GROUPS,
            tasks,
        }
    }

    /// A checkpoint of `epoch` completed now, from the tasks' acks (the coordinator fills in
    /// each task's layout and the key groups). Fails if an ack belongs to
    /// another epoch (a bug in the coordinator).
    pub fn from_acks(epoch: Epoch, acks: impl IntoIterator<Item = TaskAck>) -> Result<Self> {
        let tasks = acks
            .into_iter()
            .map(|ack| {
                if ack.epoch == epoch {
                    Ok(TaskSnapshot::from(ack))
                } else {
                    Err(Error::Internal(format!(
                        "checkpoint {epoch}: task `{}` acknowledged epoch {}",
                        ack.task, ack.epoch
                    )))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CompletedCheckpoint::new(epoch, tasks))
    }

    /// Whether every task had finished: the final checkpoint of a job that ended, which a new
    /// job does not resume from (see [`CheckpointStore::latest_resumable`]).
    pub fn is_final(&self) -> bool {
        !self.tasks.is_empty() && self.tasks.iter().all(|t| t.finished)
    }

    /// The snapshot of the task named `task`, if it took part.
    pub fn task(&self, task: &str) -> Option<&TaskSnapshot> {
        self.tasks.iter().find(|t| t.task == task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(epoch: u64, task: &str) -> TaskAck {
        TaskAck {
            epoch: Epoch(epoch),
            task: task.into(),
            position: Some(SourcePosition::of(&7u32)),
            states: vec![Some(vec![1, 2]), None],
        }
    }

    #[test]
    fn from_acks_keeps_everything_the_tasks_reported() -> Result<()> {
        let chk = CompletedCheckpoint::from_acks(Epoch(3), [ack(3, "a[0]"), ack(3, "b[1]")])?;
        assert_eq!(chk.epoch, Epoch(3));
        assert!(chk.created_ms > 0);
        let b = chk
            .task("b[1]")
            .ok_or_else(|| Error::Internal("no b[1]".into()))?;
        assert_eq!(b.position, Some(SourcePosition::of(&7u32)));
        assert_eq!(b.states, vec![Some(vec![1, 2]), None]);
        assert!(chk.task("c[0]").is_none());
        Ok(())
    }

    #[test]
    fn from_acks_rejects_an_ack_of_another_epoch() {
        let err = CompletedCheckpoint::from_acks(Epoch(3), [ack(3, "a[0]"), ack(2, "b[1]")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("`b[1]` acknowledged epoch 2"), "{err}");
    }
}
