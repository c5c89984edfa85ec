//! # eddy-core — the streaming dataflow runtime
//!
//! Records flow as Arrow [`RecordBatch`](arrow::record_batch::RecordBatch) micro-batches
//! between operators joined by **bounded** channels, so backpressure is structural. Control
//! travels in-band: [`Message`](message::Message) is `Data | Watermark | Barrier | End`.
//! There is no machine learning in here.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{Int64Array, StringArray};
//! use arrow::record_batch::RecordBatch;
//! use eddy_core::prelude::*;
//!
//! let batch = RecordBatch::try_from_iter([
//!     ("user", Arc::new(StringArray::from(vec!["a", "b", "a"])) as _),
//!     ("clicks", Arc::new(Int64Array::from(vec![1, 2, 3])) as _),
//! ])?;
//! let out = MemorySink::new();
//! let flow = Dataflow::new(DataflowConfig::default());
//! flow.source("events", MemorySource::from_batches(vec![batch])?)
//!     .partition_by(["user"])
//!     .project("clicks only", ["clicks"])
//!     .parallelism(2)
//!     .sink("out", out.clone());
//! flow.run()?;
//! assert_eq!(out.num_rows(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Layers
//! | module | what |
//! |---|---|
//! | [`message`] | in-band messages, event time, epochs |
//! | [`operator`] | the [`Operator`](operator::Operator) trait with defaulted hooks, the [`Collector`](operator::Collector) |
//! | [`operators`] | stateless operators: map, filter, flat_map, project, with_column, union |
//! | [`partition`] | the edge contract: forward, rebalance, hash, broadcast |
//! | [`window`] | event time (timestamps, watermarks), keyed windows (tumbling, sliding, session) and over-aggregates, state per key group |
//! | [`join`] | joins of two keyed streams on event time: interval, window (tumbling/sliding) and temporal (as-of lookup in a keyed changelog); buffered rows per key group |
//! | [`keys`] | stable row hashing; key groups (per job, default 128) and their contiguous subtask ranges |
//! | [`source`] | the [`Source`](source::Source) contract (position/seek), dead letters, built-in sources (files, Parquet, Kafka, generators) |
//! | [`sink`] | the two-phase [`Sink`](sink::Sink) contract and built-in sinks |
//! | [`dataflow`] | builder, chaining plan, runtime, job handle, barrier alignment, failover supervisor |
//! | [`dataflow::failover`] | exactly-once / approximate failover, restart policy, fault injection, exact loss accounting |
//! | [`checkpoint`] | completed checkpoints, the local-directory [`CheckpointStore`](checkpoint::CheckpointStore) and its savepoints, state by operator id and key group, rescaled restore |
//! | [`state`] | large state: copy-on-write [`ChunkedTable`](state::ChunkedTable)s, snapshotted asynchronously and incrementally |
//! | [`backoff`] | retry backoff with jitter, the one helper of every retry loop |
//! | [`duration`] | `500ms` / `10s` / `2h` durations, one parser for configs and flags |
//! | [`datagen`] | deterministic synthetic streams (`eddy gen ctr`) |
//! | [`nexmark`] | the Nexmark benchmark: its event generator and queries as dataflow programs |
//! | [`metrics`] | per-operator counters, source progress and lag gauges, the job summary |
//! | [`error`] | one error enum, classified by domain |
//!
//! ## Checkpoints and failover: the decisions
//! - **Two lanes per channel.** Data, watermarks and `End` travel in order on the bounded data
//!   lane; barriers travel on a small priority lane and carry their *position* (data-lane
//!   messages sent before them), so a consumer knows where a barrier belongs without reading up
//!   to it. Aligned checkpoints process each input up to that position; unaligned ones snapshot
//!   at once and persist the unprocessed messages before it (the in-flight data), which a
//!   restore processes first. `alignment_timeout` turns a slow aligned checkpoint unaligned.
//! - **Two-phase files.** In a checkpointed job the CSV and JSON-lines sinks write one part file
//!   per epoch and subtask, published by rename on commit (`DIR/part-<subtask>-<epoch>.<ext>`);
//!   a restart reconciles the files with the restored checkpoint. Without checkpoints they keep
//!   writing one plain file per subtask.
//! - **A supervisor decides restarts** from the error's domain: user errors fail fast, others
//!   restart with a doubling backoff until the policy's budget per window is spent, and then the
//!   root cause is reported. Exactly-once restarts every task from the last checkpoint;
//!   approximate restarts the failed task alone, reconnecting it to peers that never stopped, and
//!   counts exactly what never reaches the sinks (`records_lost`: rows routed to it while down,
//!   rolled back with its state, withdrawn from its sink) and what a restarted source sends
//!   twice (`records_replayed`).
//! - **State by operator id and key group.** Snapshots are recorded under stable operator ids
//!   (the builder name, or [`Stream::uid`](dataflow::Stream::uid)); keyed state is written per
//!   key group ([`keys`]), so a checkpoint or a savepoint
//!   ([`JobHandle::savepoint`](dataflow::JobHandle::savepoint),
//!   [`CheckpointConfig::restore_from`](dataflow::CheckpointConfig::restore_from)) restores at
//!   another parallelism. Non-keyed state declares a
//!   [`Redistribution`](operator::Redistribution) rule or the restore is refused, naming the
//!   operator; so are another key-group count, a rescaled source, in-flight data on a changed
//!   topology and checkpoints of the old format ([`checkpoint::rescale`]).
//! - **Faults are injected by configuration** ([`dataflow::FaultInjection`]), per job, never
//!   through a global.

pub mod backoff;
pub mod checkpoint;
pub mod dataflow;
pub mod datagen;
pub mod duration;
pub mod error;
pub mod join;
pub mod keys;
pub mod message;
pub mod metrics;
pub mod nexmark;
pub mod operator;
pub mod operators;
pub mod partition;
pub mod sink;
pub mod source;
pub mod state;
pub mod window;

pub use error::{Error, ErrorDomain, Result};

/// The names most programs need.
pub mod prelude {
    pub use crate::dataflow::{Dataflow, DataflowConfig, JobHandle, Stream};
    pub use crate::error::{Error, Result};
    pub use crate::message::{Epoch, EventTime, Message};
    pub use crate::operator::{Collector, Operator, TaskInfo};
    pub use crate::sink::memory::MemorySink;
    pub use crate::sink::Sink;
    pub use crate::source::memory::MemorySource;
    pub use crate::source::{Source, SourceContext, SourcePoll, SourcePosition};
}
