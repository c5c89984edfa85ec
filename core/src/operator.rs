//! The operator contract: many defaulted hooks, so simple operators stay tiny.
//!
//! An operator receives micro-batches through [`Operator::process`] and emits through the
//! [`Collector`]. The runtime merges watermarks of several inputs (the minimum) before calling
//! [`Operator::on_watermark`], aligns barriers before [`Operator::snapshot`], and calls
//! [`Operator::on_end`] once every input has ended (after a final [`MAX_WATERMARK`]).
//!
//! State is snapshotted synchronously by [`Operator::snapshot`], or — for large state kept in
//! [`ChunkedTable`](crate::state::ChunkedTable)s — asynchronously by
//! [`Operator::snapshot_async`]: a cheap handle taken at the barrier, written off the data path
//! (see [`state`](crate::state)).
//!
//! [`MAX_WATERMARK`]: crate::message::MAX_WATERMARK

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::message::{Epoch, EventTime};
use crate::source::{DeadLetterSink, ErrorPolicy, Rejected};

/// Identity of one parallel instance of an operator.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    /// Operator name as given to the builder.
    pub operator: Arc<str>,
    /// This instance's index, `0..parallelism`.
    pub subtask: usize,
    /// Number of parallel instances.
    pub parallelism: usize,
    /// The job's number of key groups ([`keys`](crate::keys)): keyed operators write their
    /// state per key group of this count.
    pub key_groups: u32,
}

impl TaskInfo {
    /// Subtask `subtask` of `parallelism` of `operator`, with the default key groups.
    pub fn new(operator: &str, subtask: usize, parallelism: usize) -> Self {
        TaskInfo {
            operator: Arc::from(operator),
            subtask,
            parallelism,
            key_groups: crate::keys::DEFAULT_KEY_GROUPS,
        }
    }

    /// `name[subtask]`, for logs and errors.
    pub fn task_name(&self) -> String {
        format!("{}[{}]", self.operator, self.subtask)
    }
}

/// How an operator's state is spread over its subtasks when a job is restored at another
/// parallelism (rescaled). At the parallelism it was checkpointed at, every subtask gets its own
/// snapshot back whatever the rule; stateless operators (whose snapshots are `None`) rescale
/// freely.
///
/// The rules other than [`Refuse`](Redistribution::Refuse) and
/// [`Broadcast`](Redistribution::Broadcast) read the snapshot as
/// [`StateParts`](crate::checkpoint::StateParts), which the operator must write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Redistribution {
    /// The state cannot be redistributed: a restore at another parallelism is refused with an
    /// error naming the operator (the default, e.g. a learner's model).
    #[default]
    Refuse,
    /// Keyed state, one part per key group: each new subtask gets the key groups it owns
    /// ([`keys::key_group_range`](crate::keys::key_group_range)) from every old subtask,
    /// plus every old subtask's meta entry (tagged with the old subtask index).
    KeyGroups,
    /// List state: the parts of all old subtasks, in subtask order, are dealt round robin
    /// (part `i` to new subtask `i % parallelism`).
    List,
    /// Union list state: every new subtask gets the parts of every old subtask.
    Union,
    /// Every subtask holds the same state: every new subtask gets old subtask 0's snapshot.
    Broadcast,
}

/// One output of an operator call.
#[derive(Debug, Clone)]
pub enum Output {
    /// Records for the main output.
    Data(RecordBatch),
    /// Records for a named side output (e.g. late data of a window).
    Side(&'static str, RecordBatch),
    /// A watermark for downstream.
    Watermark(EventTime),
}

/// Where an operator puts what it emits. The runtime drains it after each call and passes the
/// outputs down the chain or onto the channels; the buffer is reused, so emitting allocates nothing.
///
/// A record the operator cannot process (an invalid label, say) goes to the job's dead-letter
/// sink through [`reject`](Collector::reject), counted in the job summary like the sources'
/// malformed records; it is never dropped silently.
#[derive(Debug, Default)]
pub struct Collector {
    pub(crate) outputs: Vec<Output>,
    /// The job's dead-letter sink (set by the runtime; `None` when driven by hand).
    pub(crate) dead_letters: Option<Arc<DeadLetterSink>>,
}

impl Collector {
    /// A collector whose rejected records go to `dead_letters` (for driving an operator by
    /// hand; the runtime gives every operator the job's sink).
    pub fn with_dead_letters(dead_letters: Arc<DeadLetterSink>) -> Self {
        Collector {
            outputs: Vec::new(),
            dead_letters: Some(dead_letters),
        }
    }

    /// Sends one record the operator cannot process to the job's dead-letter sink, under the
    /// job's [`ErrorPolicy`](crate::source::ErrorPolicy): with `fail` (or with no sink: an
    /// operator driven by hand) this is the error that fails the job, naming the record.
    pub fn reject(&self, rejected: Rejected) -> Result<()> {
        match &self.dead_letters {
            Some(sink) => sink.reject(rejected),
            None => DeadLetterSink::in_memory(ErrorPolicy::Fail).reject(rejected),
        }
    }

    /// Emits a batch on the main output. Empty batches are dropped here.
    pub fn emit(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.outputs.push(Output::Data(batch));
        }
    }

    /// Emits a batch on the side output `tag`.
    pub fn emit_side(&mut self, tag: &'static str, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.outputs.push(Output::Side(tag, batch));
        }
    }

    /// Emits a watermark.
    pub fn emit_watermark(&mut self, watermark: EventTime) {
        self.outputs.push(Output::Watermark(watermark));
    }

    /// Takes everything emitted so far (used by tests that drive one operator by hand).
    pub fn drain(&mut self) -> std::vec::Drain<'_, Output> {
        self.outputs.drain(..)
    }

    /// The main-output batches emitted so far, leaving side outputs and watermarks in place.
    pub fn take_data(&mut self) -> Vec<RecordBatch> {
        let mut data = Vec::new();
        self.outputs.retain(|o| match o {
            Output::Data(b) => {
                data.push(b.clone());
                false
            }
            _ => true,
        });
        data
    }
}

/// A streaming operator over Arrow micro-batches.
///
/// Only [`process`](Operator::process) is required. State that must survive a failure is
/// returned by [`snapshot`](Operator::snapshot) and given back to [`restore`](Operator::restore)
/// before the first record after a restart.
pub trait Operator: Send + 'static {
    /// Called once before the first message, with the task identity.
    fn on_start(&mut self, _task: &TaskInfo) -> Result<()> {
        Ok(())
    }

    /// Processes one micro-batch that arrived on input `input` (0 for single-input operators).
    fn process(&mut self, input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()>;

    /// Event time has advanced to `watermark` on every input. The default forwards it.
    fn on_watermark(&mut self, watermark: EventTime, out: &mut Collector) -> Result<()> {
        out.emit_watermark(watermark);
        Ok(())
    }

    /// A checkpoint barrier has been aligned on every input; state is about to be snapshotted.
    fn on_barrier(&mut self, _epoch: Epoch, _out: &mut Collector) -> Result<()> {
        Ok(())
    }

    /// Serializes the operator state for checkpoint `epoch`. Stateless operators return `None`.
    fn snapshot(&mut self, _epoch: Epoch) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// The state of checkpoint `epoch` as bytes now, or as a handle that writes them later, off
    /// the data path ([`StateSnapshot::Deferred`]): an operator with large state takes a
    /// handle that costs O(number of pages) here (a [`TableSnapshot`](crate::state::TableSnapshot))
    /// and leaves serialization to the task's background writer. The task acknowledges the
    /// checkpoint only once the handle wrote. The default is [`snapshot`](Operator::snapshot).
    fn snapshot_async(&mut self, epoch: Epoch) -> Result<Option<StateSnapshot>> {
        Ok(self.snapshot(epoch)?.map(StateSnapshot::Ready))
    }

    /// Restores state written by [`snapshot`](Operator::snapshot) (after a rescale: state
    /// redistributed by [`redistribution`](Operator::redistribution)). Called after
    /// [`on_start`](Operator::on_start), before the first record.
    fn restore(&mut self, _state: &[u8]) -> Result<()> {
        Ok(())
    }

    /// How this operator's state is redistributed when the job is restored at another
    /// parallelism. The default refuses such a restore (see [`Redistribution`]).
    fn redistribution(&self) -> Redistribution {
        Redistribution::Refuse
    }

    /// Every input has ended. Flush what is left.
    fn on_end(&mut self, _out: &mut Collector) -> Result<()> {
        Ok(())
    }
}

/// An operator's state at a barrier: bytes, or a handle that writes them later.
pub enum StateSnapshot {
    /// The state, serialized at the barrier.
    Ready(Vec<u8>),
    /// A handle taken at the barrier, written by the task's background writer.
    Deferred(Box<dyn DeferredState>),
}

impl std::fmt::Debug for StateSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateSnapshot::Ready(b) => write!(f, "Ready({} bytes)", b.len()),
            StateSnapshot::Deferred(_) => f.write_str("Deferred"),
        }
    }
}

/// State frozen at a barrier, serialized later off the data path.
pub trait DeferredState: Send + 'static {
    /// Serializes the state (the bytes [`Operator::restore`] gets back). A failure fails the
    /// checkpoint, not the task.
    fn write(self: Box<Self>, ctx: &WriteContext) -> Result<Vec<u8>>;
}

/// What a deferred write knows of the checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteContext {
    /// The checkpoint being written.
    pub epoch: Epoch,
    /// The newest checkpoint known complete when the write began: chunks written by a
    /// snapshot of this task at or before it are in the store and may be referenced.
    pub durable: Epoch,
    /// Write every chunk again (compaction, every
    /// [`CheckpointConfig::full_every`](crate::dataflow::CheckpointConfig::full_every)
    /// snapshots).
    pub full: bool,
}

/// Builds one operator instance per parallel subtask.
pub type OperatorFactory = Arc<dyn Fn(&TaskInfo) -> Box<dyn Operator> + Send + Sync>;

/// Makes a factory from a cloneable operator: every subtask gets its own clone.
pub fn factory_from_clone<O: Operator + Clone + Sync>(op: O) -> OperatorFactory {
    Arc::new(move |_| Box::new(op.clone()))
}
