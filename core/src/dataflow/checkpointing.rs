//! Checkpoint settings and exactly-once restore (ARCHITECTURE §3 "Checkpoints", "Failover");
//! the coordinator itself lives in `coordinator`, finished tasks in `finished`.
//!
//! With [`CheckpointConfig::dir`] set, a job runs a coordinator next to its tasks:
//!
//! 1. it triggers a checkpoint every [`CheckpointConfig::interval`] (and whenever
//!    [`JobHandle::trigger_checkpoint`](crate::dataflow::JobHandle::trigger_checkpoint) is
//!    called): every source injects `Barrier(epoch)` between two batches;
//! 2. it collects the tasks' acks; once every task of the plan (sources and operator chains)
//!    acked an epoch — or had finished before it — it builds a
//!    [`CompletedCheckpoint`](crate::checkpoint::CompletedCheckpoint) and writes it to the
//!    [`CheckpointStore`];
//! 3. only then does it tell the tasks, and every chain that ends in a sink calls
//!    [`Sink::commit`](crate::sink::Sink::commit) with that epoch. `commit(e)` covers every
//!    epoch up to `e` (a task may see only the newest of several completed epochs).
//!
//! On start, the newest checkpoint that verifies is restored: state is matched by **operator
//! id** (and, at another parallelism, key group), each task seeks its source to the recorded
//! position and restores each chained operator's state, after `on_start`/`open` and before the
//! first record. An operator with no recorded state (a new operator) starts fresh. Epochs continue after the
//! restored one. Then every sink gets `commit(restored)` before any record: the **recovery
//! commit**, which tells a two-phase sink to publish what an earlier attempt pre-committed up to
//! that epoch and to abort whatever it staged after it.
//!
//! Barriers travel on each channel's priority lane with their position on the data lane.
//! [`CheckpointMode::Aligned`] tasks process every input up to the barrier before they snapshot;
//! [`CheckpointMode::Unaligned`] tasks (and aligned ones past
//! [`CheckpointConfig::alignment_timeout`]) snapshot at the first barrier and store the input
//! before it they had not processed with the snapshot, replayed first on restore. After a
//! failure the supervisor restores the same way within the running job (see
//! [`failover`](super::failover)).
//!
//! **Finished tasks** (FLIP-147): a task whose input ended tells the coordinator after which
//! barrier it finished; later checkpoints complete without it and record it as finished, and a
//! downstream task treats the ended input as aligned. So a job whose bounded input ends while
//! a live one continues keeps checkpointing. A restore does not run a finished task again (it
//! reconciles its sink and ends its outputs). At its end a task's sink pre-commits its last rows
//! as the epoch after its last barrier; once every task finished, the coordinator takes a
//! **final checkpoint** that commits them, then the sinks close.
//!
//! **Rescaling**: state is matched by operator id and key group, not by task name, so a job
//! restores onto another parallelism where its operators allow it; see
//! [`checkpoint::rescale`](crate::checkpoint::rescale) for the rules and what is refused.
//!
//! **Savepoints**: [`JobHandle::savepoint`](crate::dataflow::JobHandle::savepoint) takes a
//! checkpoint on demand and copies it to `<dir>/savepoints/<name>`, which retention never
//! deletes; a new job, possibly at another parallelism, starts from it with
//! [`CheckpointConfig::restore_from`].
//!
//! **Failed checkpoints**: a checkpoint not written within [`CheckpointConfig::timeout`] of its
//! trigger (a hung task, a stuck store) or whose write fails is dropped, counted in the job
//! metrics (`checkpoints_failed`, `checkpoints_timed_out`) and logged; its sinks' staged
//! output is committed by the next checkpoint that completes. More than
//! [`CheckpointConfig::tolerable_failures`] failures in a row fail the job over
//! ([`Error::Checkpoint`](crate::error::Error::Checkpoint)).

use std::path::PathBuf;
use std::time::Duration;

use crate::checkpoint::rescale::{map_checkpoint, TaskSlot};
use crate::checkpoint::{CheckpointStore, CompletedCheckpoint, TaskSnapshot};
use crate::dataflow::chain::{op_error, Chain};
use crate::dataflow::plan::Task;
use crate::error::{Error, Result};
use crate::message::Epoch;
use crate::source::Source;

/// Checkpointing settings of a job. The default (no `dir`) takes no checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// Directory of the [`CheckpointStore`]. `None` (default): no coordinator, no restore.
    pub dir: Option<PathBuf>,
    /// Time between periodic checkpoints. `None` (default): only on demand.
    pub interval: Option<Duration>,
    /// How many completed checkpoints to keep (default 3, at least 1).
    pub retain: usize,
    /// Aligned (default) or unaligned barriers.
    pub mode: CheckpointMode,
    /// In aligned mode, how long a task may wait for the barrier of every input before it
    /// snapshots unaligned, with the in-flight data (`None`, default: wait as long as it takes).
    pub alignment_timeout: Option<Duration>,
    /// How long a checkpoint may take from its trigger until it is written; one that takes
    /// longer fails (a hung task, a stuck store). `None`: no limit. Default 10 minutes, as in
    /// Flink.
    pub timeout: Option<Duration>,
    /// How many checkpoints may fail in a row (timed out, or their write failed) before the
    /// job fails over. Default 0: the first failure fails the job over, as in Flink.
    pub tolerable_failures: usize,
    /// Start from this savepoint (or any checkpoint directory `chk-<n>`) instead of the
    /// store's newest checkpoint: the job's store is cleared of its checkpoints (savepoints
    /// stay) and the savepoint becomes its only checkpoint, restored onto the job's
    /// parallelism. Needs [`dir`](CheckpointConfig::dir). `None` (default): resume from the
    /// store as usual.
    pub restore_from: Option<PathBuf>,
    /// Every how many deferred snapshots a task writes all its chunks again instead of only
    /// those changed since a completed checkpoint (compaction: a chunk file damaged on disk is
    /// replaced at the latest then). Default 10; 1 makes every snapshot full.
    pub full_every: usize,
}

/// How a task with several inputs, or a backlog, takes its snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointMode {
    /// Process every input up to its barrier, then snapshot: no in-flight data, but under
    /// backpressure the barrier waits behind the queued data.
    #[default]
    Aligned,
    /// Snapshot at the first barrier, which overtakes queued data on the priority lane; the
    /// data it overtook is persisted with the snapshot and replayed first on restore.
    Unaligned,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            dir: None,
            interval: None,
            retain: 3,
            mode: CheckpointMode::Aligned,
            alignment_timeout: None,
            timeout: Some(Duration::from_secs(600)),
            tolerable_failures: 0,
            restore_from: None,
            full_every: 10,
        }
    }
}

/// Opens the store of `config`, if checkpointing is on; with
/// [`restore_from`](CheckpointConfig::restore_from), makes that savepoint the store's only
/// checkpoint (verified before anything is cleared).
pub(crate) fn open_store(config: &CheckpointConfig) -> Result<Option<CheckpointStore>> {
    let store = config
        .dir
        .as_ref()
        .map(|dir| CheckpointStore::open(dir, config.retain))
        .transpose()?;
    if let Some(path) = &config.restore_from {
        let Some(store) = &store else {
            return Err(Error::config(
                "checkpoint.restore-from",
                "starting from a savepoint needs a checkpoint directory",
            ));
        };
        let savepoint = crate::checkpoint::store::load_dir(path, None)?;
        tracing::warn!(
            savepoint = %path.display(),
            dir = %store.dir().display(),
            epoch = %savepoint.epoch,
            "starting from a savepoint: the job's earlier checkpoints are discarded"
        );
        store.clear()?;
        store.write(&savepoint)?;
    }
    Ok(store)
}

/// Loads the newest good checkpoint and hands each task of the job its snapshot, mapped by
/// operator id onto the job's parallelism ([`rescale`](crate::checkpoint::rescale)). Returns
/// the restored epoch, `None` when there is nothing to restore. Final checkpoints up to
/// `earlier` — those of a job that ran before this one — are passed over: a new job resumes
/// from before the end of the last one ([`CheckpointStore::latest_resumable`]); a restart
/// within the job may restore its own final checkpoint.
pub(crate) fn assign_restore(
    store: &CheckpointStore,
    tasks: &mut [Task],
    earlier: Epoch,
) -> Result<Option<Epoch>> {
    restore_latest(store, tasks, earlier, true)
}

/// [`assign_restore`] for some tasks of a running job (an approximate restart of one task):
/// state of the job's other operators is not an orphan.
pub(crate) fn assign_restore_some(
    store: &CheckpointStore,
    tasks: &mut [Task],
    earlier: Epoch,
) -> Result<Option<Epoch>> {
    restore_latest(store, tasks, earlier, false)
}

fn restore_latest(
    store: &CheckpointStore,
    tasks: &mut [Task],
    earlier: Epoch,
    whole_job: bool,
) -> Result<Option<Epoch>> {
    let latest = store.latest_matching(|c| !c.is_final() || c.epoch > earlier)?;
    let Some(checkpoint) = latest else {
        return Ok(None);
    };
    assign_checkpoint(&checkpoint, tasks, whole_job)?;
    tracing::info!(epoch = %checkpoint.epoch, dir = %store.dir().display(), "restoring checkpoint");
    Ok(Some(checkpoint.epoch))
}

/// Hands each task its part of `checkpoint` (see [`rescale`](crate::checkpoint::rescale)).
pub(crate) fn assign_checkpoint(
    checkpoint: &CompletedCheckpoint,
    tasks: &mut [Task],
    whole_job: bool,
) -> Result<()> {
    let key_groups = tasks
        .first()
        .map_or(crate::keys::DEFAULT_KEY_GROUPS, |t| t.layout.key_groups);
    let slots: Vec<TaskSlot<'_>> = tasks
        .iter()
        .map(|t| TaskSlot {
            name: &t.name,
            subtask: t.layout.subtask,
            parallelism: t.layout.parallelism,
            source: t.layout.source.as_deref(),
            operators: t
                .layout
                .operators
                .iter()
                .zip(&t.chain.ops)
                .map(|(id, op)| (&**id, op.op.redistribution()))
                .collect(),
        })
        .collect();
    let snapshots = map_checkpoint(checkpoint, key_groups, &slots, whole_job)?;
    drop(slots);
    for (task, snapshot) in tasks.iter_mut().zip(snapshots) {
        task.restore = snapshot;
        task.restored_epoch = Some(checkpoint.epoch);
    }
    Ok(())
}

/// Applies a task's restore step after `open`/`on_start`, before the first record: seeks the
/// source, restores operator states by stage, and sends the sink its recovery commit.
/// (The sink learnt of the restored epoch already in `Sink::on_checkpointing`.)
pub(crate) fn restore_task(
    chain: &mut Chain,
    source: Option<&mut Box<dyn Source>>,
    snapshot: Option<TaskSnapshot>,
    epoch: Option<Epoch>,
) -> Result<()> {
    if let Some(snapshot) = snapshot {
        if let (Some(source), Some(position)) = (source, &snapshot.position) {
            source.seek(position)?;
        }
        for (stage, state) in snapshot.states.iter().enumerate() {
            if let (Some(state), Some(op)) = (state, chain.ops.get_mut(stage)) {
                op.op.restore(state).map_err(|e| op_error(&op.task, e))?;
            }
        }
    }
    if let Some(epoch) = epoch {
        chain.commit(epoch)?;
    }
    Ok(())
}
