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
//! | [`keys`] | stable row hashing and key groups |
//! | [`source`] | the [`Source`](source::Source) contract (position/seek), dead letters, built-in sources |
//! | [`sink`] | the two-phase [`Sink`](sink::Sink) contract and built-in sinks |
//! | [`dataflow`] | builder, chaining plan, runtime, job handle |
//! | [`checkpoint`] | completed checkpoints and the local-directory [`CheckpointStore`](checkpoint::CheckpointStore) |
//! | [`datagen`] | deterministic synthetic streams (`eddy gen ctr`) |
//! | [`metrics`] | per-operator counters and the job summary |
//! | [`error`] | one error enum, classified by domain |

pub mod checkpoint;
pub mod dataflow;
pub mod datagen;
pub mod error;
pub mod keys;
pub mod message;
pub mod metrics;
pub mod operator;
pub mod operators;
pub mod partition;
pub mod sink;
pub mod source;
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
