//! Sources: where records enter a dataflow.
//!
//! A source runs on its own blocking thread and is polled by the runtime. Every source reports
//! a replayable [`SourcePosition`] and can [`seek`](Source::seek) back to it: that is the
//! contract checkpoints and exactly-once failover are built on.
//!
//! | module | what |
//! |---|---|
//! | [`memory`] | batches held in memory |
//! | [`generator`] | rows produced by a function of the row index |
//! | [`dead_letter`] | the place malformed records go, with counts |
//! | [`kafka`] | a Kafka topic's partitions, offsets as positions |

pub mod dead_letter;
pub mod file;
pub mod generator;
pub mod hybrid;
pub mod kafka;
pub mod memory;
pub mod parquet;

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};
use crate::message::{Epoch, EventTime};
use crate::metrics::Progress;
use crate::operator::TaskInfo;

pub use dead_letter::{DeadLetterSink, ErrorPolicy, Rejected};

/// A replayable read position, opaque to the runtime (JSON so that checkpoints stay readable).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourcePosition(pub serde_json::Value);

impl SourcePosition {
    /// Wraps a serializable position.
    pub fn of<T: Serialize>(value: &T) -> Self {
        SourcePosition(serde_json::to_value(value).unwrap_or(serde_json::Value::Null))
    }

    /// Reads the position back as `T`.
    pub fn get<T: DeserializeOwned>(&self, source: &str) -> Result<T> {
        serde_json::from_value(self.0.clone()).map_err(|e| {
            Error::config(
                format!("{source}.position"),
                format!("cannot read position {}: {e}", self.0),
            )
        })
    }
}

/// What a poll of a source produced.
#[derive(Debug)]
pub enum SourcePoll {
    /// A micro-batch.
    Batch(RecordBatch),
    /// Event time is complete up to here (sources that know their own time).
    Watermark(EventTime),
    /// Nothing available right now (a followed file has no new data): poll again later.
    Idle,
    /// The source is exhausted. Bounded sources end; followed sources end only when told to stop.
    End,
}

/// Micro-batch bounds: a batch is cut at `max_rows`, or when `linger` has passed since its
/// first row while the input is idle (followed files), whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct BatchBounds {
    /// Maximum rows per batch.
    pub max_rows: usize,
    /// Longest time a started batch waits for more rows.
    pub linger: Duration,
}

impl Default for BatchBounds {
    fn default() -> Self {
        BatchBounds {
            max_rows: 8192,
            linger: Duration::from_millis(50),
        }
    }
}

/// What a source sees of the runtime.
#[derive(Clone)]
pub struct SourceContext {
    /// The source subtask's identity.
    pub task: TaskInfo,
    /// Micro-batch bounds.
    pub bounds: BatchBounds,
    /// Where malformed records go.
    pub dead_letters: Arc<DeadLetterSink>,
    /// Progress gauge a bounded source may fill in (bytes read of total, for files).
    pub progress: Arc<Progress>,
}

impl SourceContext {
    /// A context for driving a source by hand (tests, tools): one subtask, default bounds, and a
    /// dead-letter sink that keeps rejected records in memory.
    pub fn standalone(name: &str) -> Self {
        SourceContext {
            task: TaskInfo {
                operator: Arc::from(name),
                subtask: 0,
                parallelism: 1,
                key_groups: crate::keys::DEFAULT_KEY_GROUPS,
            },
            bounds: BatchBounds::default(),
            dead_letters: Arc::new(DeadLetterSink::in_memory(ErrorPolicy::DeadLetter)),
            progress: Arc::new(Progress::default()),
        }
    }

    /// Hands a malformed record to the dead-letter policy: under `fail` this returns the error
    /// naming file, line and column; otherwise the record is written to the dead-letter sink.
    pub fn reject(&self, rejected: Rejected) -> Result<()> {
        self.dead_letters.reject(rejected)
    }
}

/// A source of record batches.
pub trait Source: Send + 'static {
    /// The schema of every batch this source produces.
    fn schema(&self) -> SchemaRef;

    /// Called once before the first poll.
    fn open(&mut self, _ctx: &SourceContext) -> Result<()> {
        Ok(())
    }

    /// Produces the next batch, or says why there is none.
    fn poll_next(&mut self, ctx: &SourceContext) -> Result<SourcePoll>;

    /// The position after the last batch returned: seeking to it resumes right after that batch.
    fn position(&self) -> SourcePosition;

    /// Moves the read position back (or forward) to one returned by [`position`](Source::position).
    fn seek(&mut self, position: &SourcePosition) -> Result<()>;

    /// Asks a following (unbounded) source to finish: it returns [`SourcePoll::End`] once it has
    /// delivered everything it has read. Bounded sources ignore this.
    fn stop_following(&mut self) {}

    /// The checkpoint of `epoch` completed (every task acked it and it is stored), and
    /// `position` is this source's position at its barrier: the source may tell the system it
    /// reads from (Kafka commits its consumer group's offsets there, for lag monitoring, as
    /// Flink's `notifyCheckpointComplete`). Called on the source's own thread between polls, in
    /// increasing epoch order, for barriers this attempt injected; one call covers the epochs
    /// before it. Default: nothing.
    fn on_checkpoint_complete(&mut self, _epoch: Epoch, _position: &SourcePosition) -> Result<()> {
        Ok(())
    }
}

/// Builds one source instance per parallel subtask (each reads its own split).
pub type SourceFactory = Arc<dyn Fn(&TaskInfo) -> Result<Box<dyn Source>> + Send + Sync>;
