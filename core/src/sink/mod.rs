//! Sinks: where records leave a dataflow.
//!
//! A sink is the last operator of its chain. It is two-phase for end-to-end exactly-once:
//! [`pre_commit`](Sink::pre_commit) makes an epoch's output durable but invisible,
//! [`commit`](Sink::commit) publishes it once the checkpoint completed.
//!
//! | module | what |
//! |---|---|
//! | [`memory`] | collects batches in a shared vector |
//! | [`csv`] | CSV files, one per subtask |
//! | [`jsonl`] | JSON-lines files, one per subtask |
//! | [`parquet`] | snappy Parquet files, published by rename on close |
//! | [`stdout`] | CSV text on standard output, with an optional row limit (the CLI) |
//! | `file_target` | per-subtask file names, durable flushes, errors naming the file |

pub mod csv;
mod file_target;
pub mod jsonl;
pub mod memory;
pub mod parquet;
pub mod stdout;

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::message::Epoch;
use crate::operator::TaskInfo;

/// A destination for record batches.
pub trait Sink: Send + 'static {
    /// Called once before the first batch.
    fn open(&mut self, _task: &TaskInfo) -> Result<()> {
        Ok(())
    }

    /// Writes one batch.
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;

    /// Makes everything written for `epoch` durable (but not yet visible, for two-phase sinks).
    fn pre_commit(&mut self, _epoch: Epoch) -> Result<()> {
        Ok(())
    }

    /// Publishes what was pre-committed for `epoch`: the checkpoint is complete.
    fn commit(&mut self, _epoch: Epoch) -> Result<()> {
        Ok(())
    }

    /// The input has ended: flush and close.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Builds one sink instance per parallel subtask.
pub type SinkFactory = Arc<dyn Fn(&TaskInfo) -> Result<Box<dyn Sink>> + Send + Sync>;
