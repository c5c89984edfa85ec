//! Event time, watermarks, keyed streams and windows.
//!
//! A stream gets event time from [`assign_timestamps`](crate::dataflow::Stream::assign_timestamps),
//! which reads a timestamp column and emits bounded-out-of-orderness watermarks (Flink's
//! semantics). [`key_by`](crate::dataflow::Stream::key_by) hash-partitions the stream and returns a
//! [`KeyedStream`], on which [`window`](KeyedStream::window) aggregates tumbling, sliding and
//! session windows in event time, and [`over`](KeyedStream::over) appends per-row aggregates over
//! the last N rows or the last T of event time of the row's key.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use arrow::array::{Int64Array, StringArray};
//! use arrow::record_batch::RecordBatch;
//! use eddy_core::prelude::*;
//! use eddy_core::window::{Agg, WindowSpec, LATE};
//!
//! let batch = RecordBatch::try_from_iter([
//!     ("user", Arc::new(StringArray::from(vec!["a", "b", "a", "a"])) as _),
//!     ("ts", Arc::new(Int64Array::from(vec![1_000, 1_500, 9_000, 12_000])) as _),
//!     ("amount", Arc::new(Int64Array::from(vec![5, 7, 1, 2])) as _),
//! ])?;
//! let out = MemorySink::new();
//! let late = MemorySink::new();
//! let flow = Dataflow::new(DataflowConfig::default());
//! let windows = flow
//!     .source("events", MemorySource::from_batches(vec![batch])?)
//!     .assign_timestamps("time", "ts", Duration::from_secs(1))
//!     .key_by(["user"])
//!     .window(
//!         "per 10s",
//!         WindowSpec::tumbling(Duration::from_secs(10)),
//!         vec![Agg::count("n"), Agg::sum("amount", "total")],
//!     )
//!     .parallelism(2);
//! windows.sink("out", out.clone());
//! windows.side_output(LATE).sink("late", late.clone());
//! flow.run()?;
//! // (a, [0, 10s)), (b, [0, 10s)) and (a, [10s, 20s))
//! assert_eq!(out.num_rows(), 3);
//! assert_eq!(late.num_rows(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Semantics
//! - **Watermarks** say "no record at or before this time will follow". A window `[start, end)`
//!   fires when the watermark reaches `end - 1`, and its state is kept until the watermark reaches
//!   `end - 1 + allowed_lateness`. A record for a fired but kept window updates it and the window
//!   fires again at the end of that batch (the newer row supersedes the older one for the same
//!   key and window). A record all of whose windows are purged is **late**: it goes, whole and
//!   in its original schema, to the side output [`LATE`], and is counted
//!   ([`EventWindowOperator::late_records`]).
//! - **Output rows** of window operators: the key columns, `window_start` and `window_end`
//!   (Int64 ms), then one column per aggregate. Within one watermark, rows come by window end,
//!   then in the order in which their (key, window) first appeared. At `MAX_WATERMARK` (end of
//!   bounded input) everything fires. Window output carries no event-time marker: a window
//!   downstream of another names its time column (e.g. `window_start`) in its spec.
//! - **Event time** is Int64 milliseconds or an Arrow `Timestamp` of any unit (converted to ms).
//!   A null event time is an error that names the column.
//!
//! ## Modules
//! | module | what |
//! |---|---|
//! | [`timestamps`] | `assign_timestamps`: event-time column, bounded-out-of-orderness watermarks |
//! | [`keyed`] | `key_by` and [`KeyedStream`] |
//! | [`aggregate`] | [`Agg`] specs, their input and output types |
//! | `accumulator` | window accumulators (mergeable, serializable) and output builders |
//! | `key_codec` | key columns as comparable bytes, hashed once per batch |
//! | `key_table` | key → per-key state (sessions, over windows) |
//! | `binding` | key codec, event-time column, aggregates and output schema of one input schema |
//! | [`assigner`] | [`WindowSpec`]: tumbling, sliding, session; window assignment |
//! | `window_table` | (key, window) → state, with no allocation for existing keys |
//! | [`event_window`] | [`EventWindowOperator`]: keyed tumbling and sliding windows |
//! | [`session`] | [`SessionWindowOperator`]: keyed session windows |
//! | [`over`] | [`OverSpec`], [`OverOperator`]: per-row aggregates over the last N rows / T ms |
//! | `over_acc` | sliding accumulators: monotonic deques, add/subtract, value counts |
//! | `snapshot` | the versioned state format shared by the window operators |
//! | `tests` | operator-level unit tests: firing, lateness, merging, eviction, snapshot/restore |

mod accumulator;
pub mod aggregate;
pub mod assigner;
mod binding;
pub mod event_window;
mod key_codec;
mod key_table;
pub mod keyed;
pub mod over;
mod over_acc;
pub mod session;
pub(crate) mod snapshot;
#[cfg(test)]
mod tests;
pub mod timestamps;
mod window_table;

pub use aggregate::{Agg, AggKind};
pub use assigner::{WindowKind, WindowSpec};
pub use event_window::EventWindowOperator;
pub use keyed::KeyedStream;
pub use over::{OverOperator, OverRange, OverSpec};
pub use session::SessionWindowOperator;
pub use timestamps::{AssignTimestampsOperator, EVENT_TIME_METADATA};

/// The side-output tag of late records (see [`Stream::side_output`](crate::dataflow::Stream::side_output)).
pub const LATE: &str = "late";
