//! Stream joins on event time.
//!
//! An **interval join** ([`Stream::interval_join`]) pairs every row of the left stream with
//! every row of the right stream that has the same key and whose event time lies in an
//! interval around the left row's: `right.ts ∈ [left.ts + lower, left.ts + upper]` (bounds in
//! milliseconds, inclusive, either may be negative) — the join that turns impressions and the
//! clicks that follow them into training examples. As in Flink's interval join:
//!
//! - both inputs are partitioned by the hash of their key columns (same types on both sides,
//!   in the same order), so equal keys meet in one subtask;
//! - a pair is emitted as soon as its second row arrives: output rows are the left columns
//!   followed by the right columns (a right column whose name the left side has already is
//!   renamed with [`IntervalJoin::right_prefix`]); the output carries no event-time marker
//!   (a pair's time is the caller's choice: assign timestamps downstream);
//! - rows wait in keyed state until the watermark makes a match impossible: a left row leaves
//!   once `left.ts + upper` is behind the watermark, a right row once `right.ts - lower` is;
//! - a row older than the watermark when it arrives is late: it is counted and sent to the
//!   side output [`LATE_LEFT`] or [`LATE_RIGHT`], never joined.
//!
//! With [`JoinOutput::Label`] the join labels the left rows instead of pairing them — the
//! delayed labels of click-through training: every left row (an impression) is emitted once,
//! with [`LABEL`] 1 as soon as a right row (a click) falls in its interval, or 0 when the
//! watermark closes the interval without one, and [`LABEL_DELAY`]: the event time from the
//! left row to its label (the click's time minus the impression's, or the whole wait).
//!
//! A **window join** ([`Stream::window_join`], [`WindowJoin`]) pairs the rows of equal key
//! that fall in the same tumbling or sliding event-time window (Flink's window join; windows are
//! assigned by the window operators' [`WindowSpec`](crate::window::WindowSpec)):
//!
//! - rows wait in keyed state; when the watermark reaches a window's `end - 1`, every left row of
//!   a key in it is paired with every right row of the key in it (a pair in several sliding
//!   windows is emitted once per window); output rows are the left columns, the right columns
//!   (renamed as above), then [`WINDOW_START`] and [`WINDOW_END`] (Int64 ms, end exclusive);
//! - a row leaves the state once its last window has fired;
//! - a row whose windows have all fired when it arrives is late: counted, sent to
//!   [`LATE_LEFT`] or [`LATE_RIGHT`]. Session windows and allowed lateness are refused.
//!
//! A **temporal join** ([`Stream::temporal_join`], [`TemporalJoin`]) looks every left row up in
//! a changing keyed table whose changelog is the right stream (each right row an upsert of its
//! key at its event time; a second version of a key at the same time replaces the first), as of
//! the left row's event time — Flink's event-time `FOR SYSTEM_TIME AS OF` join:
//!
//! - a left row waits until the watermark reaches its time, then is emitted with the latest
//!   version of its key at or before that time; with no such version it is dropped
//!   ([`TemporalKind::Inner`]) or emitted with null right columns ([`TemporalKind::LeftOuter`]);
//! - per key, versions older than the latest one at or before the watermark are dropped, so the
//!   state is one version per key plus the versions newer than the watermark, plus the waiting
//!   left rows;
//! - a left row behind the watermark, or a version at or behind it, is late: counted and sent
//!   to [`LATE_LEFT`] / [`LATE_RIGHT`] (the versions it needed, or the left rows it should have
//!   answered, are gone).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use arrow::array::{AsArray, Int64Array, StringArray};
//! use arrow::datatypes::Int64Type;
//! use arrow::record_batch::RecordBatch;
//! use eddy_core::join::{TemporalJoin, WindowJoin};
//! use eddy_core::prelude::*;
//! use eddy_core::window::WindowSpec;
//!
//! let orders = RecordBatch::try_from_iter([
//!     ("currency", Arc::new(StringArray::from(vec!["EUR", "EUR", "JPY"])) as _),
//!     ("ts", Arc::new(Int64Array::from(vec![1_000, 5_000, 5_000])) as _),
//!     ("amount", Arc::new(Int64Array::from(vec![10, 20, 30])) as _),
//! ])?;
//! let rates = RecordBatch::try_from_iter([
//!     ("currency", Arc::new(StringArray::from(vec!["EUR", "EUR"])) as _),
//!     ("ts", Arc::new(Int64Array::from(vec![0, 3_000])) as _),
//!     ("rate", Arc::new(Int64Array::from(vec![110, 120])) as _),
//! ])?;
//! let converted = MemorySink::new();
//! let same_window = MemorySink::new();
//! let flow = Dataflow::new(DataflowConfig::default());
//! let bound = Duration::from_secs(1);
//! let orders = flow
//!     .source("orders", MemorySource::from_batches(vec![orders])?)
//!     .assign_timestamps("order time", "ts", bound);
//! let rates = flow
//!     .source("rates", MemorySource::from_batches(vec![rates])?)
//!     .assign_timestamps("rate time", "ts", bound);
//! // each order with the EUR rate current at its time; JPY has none: null (left outer)
//! let spec = TemporalJoin::new(["currency"]).left_outer();
//! orders
//!     .temporal_join(&rates, "convert", spec)
//!     .parallelism(2)
//!     .sink("converted", converted.clone());
//! // orders and rate changes of a currency in the same 10 s window
//! let spec = WindowJoin::new(["currency"], WindowSpec::tumbling(Duration::from_secs(10)));
//! orders
//!     .window_join(&rates, "same 10s", spec)
//!     .sink("same window", same_window.clone());
//! flow.run()?;
//! let mut got: Vec<(i64, Option<i64>)> = Vec::new();
//! for b in converted.batches() {
//!     let ts = b.column_by_name("ts").unwrap().as_primitive::<Int64Type>();
//!     let rate = b.column_by_name("rate").unwrap().as_primitive::<Int64Type>();
//!     got.extend(ts.iter().zip(rate.iter()).map(|(t, r)| (t.unwrap(), r)));
//! }
//! got.sort();
//! assert_eq!(got, vec![(1_000, Some(110)), (5_000, None), (5_000, Some(120))]);
//! assert_eq!(same_window.num_rows(), 4); // 2 EUR orders × 2 EUR rates in [0, 10 s)
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Loss accounting** (approximate failover's `records_lost` / `records_replayed`): a labelling
//! join and a temporal join emit one row per left row (a left-outer one; an inner one drops the
//! unmatched), so their right input is a lookup input ([`Stream::lookup_input`]): clicks and
//! table versions are not counted, and `sink + lost − replayed = uninterrupted` holds in left
//! rows. A pair join (interval or window) has no such row identity — a lost right row removes
//! pairs, not rows — so its counts are of rows taken on both sides, a measure of the damage,
//! not an identity.
//!
//! Every join's buffered rows are checkpointed per key group (Arrow IPC batches of each side's
//! rows, with their schema; `state`), so a join restores exactly once and at another
//! parallelism. `buffered_rows()` on each operator gives its state size.
//!
//! | module | what |
//! |---|---|
//! | [`interval`] | [`IntervalJoinOperator`]; its checkpointed state (`interval::state`) |
//! | `interval::label` | the label output |
//! | [`window`] | [`WindowJoin`] and `window_join` (`window::spec`), [`WindowJoinOperator`]; `window::state` |
//! | [`temporal`] | [`TemporalJoin`] and `temporal_join` (`temporal::spec`), [`TemporalJoinOperator`]; `temporal::state` |
//! | `side` | each input's schema, time and key columns, row-format conversion; the pair schema |
//! | `state` | keyed buffered rows (`KeyState`) and the checkpoint format all joins share |
//! | `buffer` | the rows of one key and side waiting for a partner, in one byte arena |

mod buffer;
pub mod interval;
mod side;
mod state;
pub mod temporal;
pub mod window;

use std::sync::Arc;

use crate::dataflow::Stream;

pub use interval::IntervalJoinOperator;
pub use temporal::{TemporalJoin, TemporalJoinOperator, TemporalKind};
pub use window::{WindowJoin, WindowJoinOperator, WINDOW_END, WINDOW_START};

/// Side output of the left rows that arrived behind the watermark.
pub const LATE_LEFT: &str = "late-left";
/// Side output of the right rows that arrived behind the watermark.
pub const LATE_RIGHT: &str = "late-right";

/// Name of the label column of a labelling join.
pub const LABEL: &str = "label";
/// Name of the label-delay column (ms of event time) of a labelling join.
pub const LABEL_DELAY: &str = "label_delay_ms";

/// What an interval join emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JoinOutput {
    /// Every matching pair: the left columns, then the right ones.
    #[default]
    Pairs,
    /// Every left row once: its columns, [`LABEL`] (1: a right row matched, 0: none did before
    /// the interval closed) and [`LABEL_DELAY`].
    Label,
}

/// What an interval join matches (see [the module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalJoin {
    /// Key columns of the left stream.
    pub left_keys: Vec<String>,
    /// Key columns of the right stream, in the same order and of the same types.
    pub right_keys: Vec<String>,
    /// Event-time column of the left stream (`None`: the one `assign_timestamps` marked).
    pub left_time: Option<String>,
    /// Event-time column of the right stream (`None`: the one `assign_timestamps` marked).
    pub right_time: Option<String>,
    /// Lower bound of `right.ts - left.ts`, in milliseconds.
    pub lower_ms: i64,
    /// Upper bound of `right.ts - left.ts`, in milliseconds.
    pub upper_ms: i64,
    /// Prefix of right columns whose names the left side has already.
    pub right_prefix: String,
    /// Pairs, or labels of the left rows.
    pub output: JoinOutput,
}

impl IntervalJoin {
    /// Joins rows with equal `keys` (the same column names on both sides) whose right event
    /// time is within `[left + lower_ms, left + upper_ms]`.
    pub fn new<I, S>(keys: I, lower_ms: i64, upper_ms: i64) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let keys: Vec<String> = keys.into_iter().map(Into::into).collect();
        IntervalJoin {
            left_keys: keys.clone(),
            right_keys: keys,
            left_time: None,
            right_time: None,
            lower_ms,
            upper_ms,
            right_prefix: "right_".into(),
            output: JoinOutput::Pairs,
        }
    }

    /// Labels left rows (impressions) by whether a right row (a click) with equal `keys`
    /// arrives within `delay_ms` after them: [`JoinOutput::Label`] on the interval
    /// `[0, delay_ms]`.
    pub fn labels<I, S>(keys: I, delay_ms: i64) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        IntervalJoin {
            output: JoinOutput::Label,
            ..IntervalJoin::new(keys, 0, delay_ms)
        }
    }

    /// The event-time columns, instead of the ones `assign_timestamps` marked.
    pub fn times(mut self, left: &str, right: &str) -> Self {
        self.left_time = Some(left.into());
        self.right_time = Some(right.into());
        self
    }

    /// Other key columns on the right side (same order and types as the left ones).
    pub fn right_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.right_keys = keys.into_iter().map(Into::into).collect();
        self
    }
}

impl Stream {
    /// Joins this stream (left) with `right` on keys and an event-time interval (see
    /// [`IntervalJoin`]); both are repartitioned by their keys. A spec that cannot work (no
    /// keys, keys of different counts, `lower_ms > upper_ms`) fails the job naming `name`.
    pub fn interval_join(&self, right: &Stream, name: &str, spec: IntervalJoin) -> Stream {
        let left = self.clone().partition_by(spec.left_keys.clone());
        let right = right.clone().partition_by(spec.right_keys.clone());
        let labels = spec.output == JoinOutput::Label;
        let spec = Arc::new(spec);
        let op = name.to_string();
        let factory = crate::window::keyed::keyed_factory(name, move || {
            IntervalJoinOperator::new(&op, spec.clone())
        });
        let joined = left.connect(&[right], name, factory);
        // labels: every left row once, the right rows only label them
        if labels {
            joined.lookup_input(1)
        } else {
            joined
        }
    }
}
