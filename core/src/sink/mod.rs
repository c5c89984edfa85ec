//! Sinks: where records leave a dataflow.
//!
//! A sink is the last operator of its chain. It is two-phase for end-to-end exactly-once:
//! [`pre_commit`](Sink::pre_commit) makes an epoch's output durable but invisible,
//! [`commit`](Sink::commit) publishes it once the checkpoint completed.
//!
//! | module | what |
//! |---|---|
//! | [`memory`] | collects batches in a shared vector |
//! | [`csv`] | CSV files, one per subtask or per epoch |
//! | [`jsonl`] | JSON-lines files, one per subtask or per epoch |
//! | [`kafka`] | one JSON message per row to a Kafka topic, at-least-once or exactly-once (epochs staged, produced at commit) |
//! | [`parquet`] | snappy Parquet files, one per subtask (published on close) or per epoch |
//! | [`stdout`] | CSV text on standard output, with an optional row limit (the CLI) |
//! | [`split_parts`] | the part files of a data-parallel job over one input, joined in input order |
//! | `file_target` | per-subtask file names, durable flushes, errors naming the file |
//! | `epoch_parts` | one part file per epoch, published on commit (checkpointed jobs; the exactly-once Kafka sink's staging) |
//! | `text_output` | a text sink's output: one file per subtask, or epoch parts |
//!
//! ## Two-phase file output
//! In a job without checkpoints the CSV, JSON-lines and Parquet sinks write one file per
//! subtask, as described in their options. In a checkpointed job the runtime calls
//! [`on_checkpointing`](Sink::on_checkpointing) before [`open`](Sink::open), and they switch to
//! **epoch parts**: the rows between two barriers go to a hidden in-progress file,
//! `pre_commit(epoch)` flushes, fsyncs and renames it to a hidden pending name, and
//! `commit(epoch)` renames it to `DIR/part-<subtask>-<epoch>.<ext>`, where `DIR` is the sink's
//! path without its extension (`out/data.csv` → `out/data/part-00000-0000000003.csv`). The
//! output of the job is the set of part files; a restart discards pending files of epochs after
//! the restored checkpoint and publishes those up to it. A Parquet part is a complete file
//! (footer written at `pre_commit`). When a task's input ends, the runtime pre-commits its
//! last rows as one more epoch and commits it through a checkpoint (the final one, for a job
//! that ends) before `close`, so `close` publishes nothing unchecked.
pub mod csv;
mod epoch_parts;
mod file_target;
pub mod jsonl;
pub mod kafka;
pub mod memory;
pub mod parquet;
pub mod split_parts;
pub mod stdout;
mod text_output;

pub use text_output::Durable;

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::message::Epoch;
use crate::operator::TaskInfo;

/// A destination for record batches.
pub trait Sink: Send + 'static {
    /// Whether, in a job that takes checkpoints, rows written since the last
    /// [`pre_commit`](Sink::pre_commit) stay invisible until [`commit`](Sink::commit), and
    /// staged rows a recovery commit does not cover are deleted (a two-phase sink: the file
    /// sinks). Approximate failover counts such withdrawn rows in `records_lost`; a sink that
    /// publishes on `write` keeps them. The default: `false`.
    fn withdraws_uncommitted(&self) -> bool {
        false
    }

    /// Called once before [`open`](Sink::open) when the job takes checkpoints: the sink
    /// should stage its output per epoch and publish it on [`commit`](Sink::commit).
    /// `restored` is the checkpoint this task restarts from (`None`: a fresh start), so that a
    /// sink can reconcile what an earlier attempt left behind. The default ignores it.
    fn on_checkpointing(&mut self, _restored: Option<Epoch>) -> Result<()> {
        Ok(())
    }

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
