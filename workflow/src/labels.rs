//! Delayed labels as a training source: impressions ⋈ clicks in label mode, handed to the
//! learner in event-time order.
//!
//! [`labelled_stream`] builds, on a training job's dataflow:
//!
//! ```text
//! impressions ─ assign_timestamps ─┐
//!                                  ├─ interval_join (labels, `wait`) ─ order (1 subtask) ─▶ learner
//! clicks ────── assign_timestamps ─┘        └ late rows (side outputs) ─┘
//! ```
//!
//! - Each side reads event time from the `time` column with bounded out-of-orderness (as `eddy
//!   agg --out-of-orderness`): the watermark trails the largest time seen by that much.
//! - The join ([`IntervalJoin::labels`]) emits every impression once: label 1 at its first
//!   click within `wait` (clicks with the same key, at or after the impression), label 0 when
//!   the watermark passes `ts + wait` with none, and the label delay (the click's time minus the
//!   impression's; `wait` for a negative). Its state is checkpointed per key group.
//! - The **order** operator (`labelled`, one subtask) holds labelled rows until the watermark
//!   has passed `ts + wait` — from then on no row at or before `ts` can still come — and hands
//!   them on sorted by event time (ties by the rows' values), cut into batches of
//!   `batch_rows`. So the learner sees the same rows in the same order and the same batches
//!   however the two inputs interleaved, which is what makes training on this source
//!   reproducible and exactly-once restores byte-exact. The cost: a row reaches the learner
//!   `wait` (plus the out-of-orderness) after its impression, and a partial batch waits for
//!   the next rows or the end of the input.
//! - Late rows (behind the watermark when they arrive) cannot be labelled: the order operator
//!   counts them (`late_impressions`, `late_clicks`), never silently.
//!
//! **Which click.** The join labels an impression with the first click to reach it (the
//! earliest buffered one when the impression comes after its clicks): when one impression has
//! several clicks within the wait that arrive out of event-time order, the label is the same
//! but `label_delay_ms` may be a later click's, so the delay statistics are then upper bounds.
//!
//! The order operator also counts what it hands on — positives, negatives, the sum and maximum
//! of the positives' label delays — in its checkpointed state, and publishes the counts to a
//! shared [`LabelCounters`] that `eddy status` and `/metrics` read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::compute::{
    cast, concat_batches, filter_record_batch, lexsort_to_indices, take_record_batch, SortColumn,
};
use arrow::datatypes::{DataType, Int64Type, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use eddy_core::dataflow::Stream;
use eddy_core::join::{IntervalJoin, LABEL, LABEL_DELAY, LATE_LEFT, LATE_RIGHT};
use eddy_core::message::{Epoch, EventTime, MAX_WATERMARK};
use eddy_core::metrics::{MetricKind, OwnedMetric};
use eddy_core::operator::{Collector, Operator, OperatorFactory};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The join's operator name in the dataflow.
pub const JOIN_OPERATOR: &str = "delayed labels";
/// The order operator's name in the dataflow.
pub const ORDER_OPERATOR: &str = "labelled";

/// How a delayed-labels source is built (the checked `[sources.<name>]` keys, and the batch
/// size the learner is fed).
#[derive(Debug, Clone, PartialEq)]
pub struct DelayedLabels {
    /// Columns an impression and its clicks share.
    pub key: Vec<String>,
    /// The event-time column of both inputs (Int64 ms or a timestamp).
    pub time: String,
    /// How long after an impression a click still counts.
    pub wait: Duration,
    /// How far each input's event time may run out of order.
    pub out_of_orderness: Duration,
    /// Subtasks of the join.
    pub parallelism: usize,
    /// Rows per batch handed to the learner.
    pub batch_rows: usize,
}

/// What the order operator has handed on (and the late rows it counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelTally {
    /// Rows labelled 1.
    pub positive: u64,
    /// Rows labelled 0.
    pub negative: u64,
    /// Sum of the positives' label delays, ms of event time.
    pub delay_sum_ms: u64,
    /// Largest label delay of a positive, ms of event time.
    pub delay_max_ms: u64,
    /// Impressions that arrived behind the watermark (never labelled).
    pub late_impressions: u64,
    /// Clicks that arrived behind the watermark (never counted).
    pub late_clicks: u64,
}

impl LabelTally {
    /// Mean label delay of the positives, ms of event time (0 with none).
    pub fn delay_mean_ms(&self) -> u64 {
        self.delay_sum_ms.checked_div(self.positive).unwrap_or(0)
    }

    /// The tally as named values (node metrics, `eddy status`, `/metrics` gauges), with the
    /// help text of each.
    pub fn named(&self) -> [(&'static str, &'static str, u64); 6] {
        [
            (
                "labels_positive",
                "Examples labelled 1 (clicked within the wait).",
                self.positive,
            ),
            (
                "labels_negative",
                "Examples labelled 0 (no click within the wait).",
                self.negative,
            ),
            (
                "label_delay_mean_ms",
                "Mean event time from an impression to its click, over the positives.",
                self.delay_mean_ms(),
            ),
            (
                "label_delay_max_ms",
                "Longest event time from an impression to its click.",
                self.delay_max_ms,
            ),
            (
                "late_impressions",
                "Impressions behind the watermark: not labelled.",
                self.late_impressions,
            ),
            (
                "late_clicks",
                "Clicks behind the watermark: not counted.",
                self.late_clicks,
            ),
        ]
    }

    /// The tally as `/metrics` shows it, by the Prometheus conventions: the cumulative counts
    /// as counters (`eddy_job_labels_positive_total`, …), the delays as gauges in seconds
    /// (`eddy_job_label_delay_mean_seconds`, `eddy_job_label_delay_max_seconds`).
    pub fn exported(&self) -> [OwnedMetric; 6] {
        let metric = |name, help, kind, value| OwnedMetric {
            name,
            help,
            kind,
            value,
        };
        let [positive, negative, mean, max, late_impressions, late_clicks] = self.named();
        let count = |(name, help, v): (&'static str, &'static str, u64)| {
            metric(name, help, MetricKind::Counter, v as f64)
        };
        let seconds = |name, (_, help, ms): (&str, &'static str, u64)| {
            metric(name, help, MetricKind::Gauge, ms as f64 / 1000.0)
        };
        [
            count(positive),
            count(negative),
            seconds("label_delay_mean_seconds", mean),
            seconds("label_delay_max_seconds", max),
            count(late_impressions),
            count(late_clicks),
        ]
    }
}

/// The order operator's tally, readable while the job runs (restored with its checkpoint).
#[derive(Debug, Default)]
pub struct LabelCounters {
    values: [AtomicU64; 6],
}

impl LabelCounters {
    fn set(&self, t: &LabelTally) {
        let v = [
            t.positive,
            t.negative,
            t.delay_sum_ms,
            t.delay_max_ms,
            t.late_impressions,
            t.late_clicks,
        ];
        for (slot, v) in self.values.iter().zip(v) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    /// The tally now.
    pub fn tally(&self) -> LabelTally {
        let v = |i: usize| self.values[i].load(Ordering::Relaxed);
        LabelTally {
            positive: v(0),
            negative: v(1),
            delay_sum_ms: v(2),
            delay_max_ms: v(3),
            late_impressions: v(4),
            late_clicks: v(5),
        }
    }
}

/// Labels `impressions` by `clicks` (see the [module docs](self)); returns the labelled,
/// ordered stream and its counters.
pub fn labelled_stream(
    impressions: &Stream,
    clicks: &Stream,
    spec: &DelayedLabels,
) -> Result<(Stream, Arc<LabelCounters>)> {
    let wait_ms = i64::try_from(spec.wait.as_millis())
        .ok()
        .filter(|w| *w > 0)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "delayed labels: wait {:?} must be between 1 ms and i64::MAX ms",
                spec.wait
            ))
        })?;
    let left = impressions.assign_timestamps("impressions time", &spec.time, spec.out_of_orderness);
    let right = clicks.assign_timestamps("clicks time", &spec.time, spec.out_of_orderness);
    let join = IntervalJoin::labels(spec.key.clone(), wait_ms).times(&spec.time, &spec.time);
    let joined = left
        .interval_join(&right, JOIN_OPERATOR, join)
        .parallelism(spec.parallelism.max(1));
    let counters = Arc::new(LabelCounters::default());
    let (shared, time, batch_rows) = (counters.clone(), spec.time.clone(), spec.batch_rows);
    let factory: OperatorFactory = Arc::new(move |_| {
        Box::new(OrderOperator::new(
            &time,
            wait_ms,
            batch_rows,
            shared.clone(),
        ))
    });
    let ordered = joined
        .clone()
        .rebalance()
        .connect(
            &[
                joined.side_output(LATE_LEFT).rebalance(),
                joined.side_output(LATE_RIGHT).rebalance(),
            ],
            ORDER_OPERATOR,
            factory,
        )
        .parallelism(1);
    Ok((ordered, counters))
}

/// The kind of an order operator snapshot (a checksummed frame).
const SNAPSHOT_KIND: &str = "eddy-delayed-labels-order";

/// An order operator snapshot: the tally, the watermark, and the rows held and released.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    tally: LabelTally,
    watermark: EventTime,
    /// Arrow IPC stream of the rows waiting for the watermark (empty: none).
    held: Vec<u8>,
    /// Arrow IPC stream of the released rows short of a batch (empty: none).
    ready: Vec<u8>,
}

/// Holds labelled rows until they are final, then hands them on in event-time order (see the
/// [module docs](self)).
struct OrderOperator {
    time: String,
    wait_ms: i64,
    batch_rows: usize,
    counters: Arc<LabelCounters>,
    schema: Option<SchemaRef>,
    held: Vec<RecordBatch>,
    /// Smallest event time among the held rows.
    held_min: i64,
    ready: Vec<RecordBatch>,
    ready_rows: usize,
    watermark: EventTime,
    tally: LabelTally,
}

impl OrderOperator {
    fn new(time: &str, wait_ms: i64, batch_rows: usize, counters: Arc<LabelCounters>) -> Self {
        OrderOperator {
            time: time.to_string(),
            wait_ms,
            batch_rows: batch_rows.max(1),
            counters,
            schema: None,
            held: Vec::new(),
            held_min: i64::MAX,
            ready: Vec::new(),
            ready_rows: 0,
            watermark: i64::MIN,
            tally: LabelTally::default(),
        }
    }

    fn error(&self, message: impl Into<String>) -> eddy_core::Error {
        eddy_core::Error::schema(ORDER_OPERATOR, message)
    }

    /// The Int64 values of column `name` of `batch`.
    fn int64<'b>(&self, batch: &'b RecordBatch, name: &str) -> eddy_core::Result<&'b [i64]> {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| self.error(format!("the labelled rows have no column `{name}`")))?;
        match column.as_primitive_opt::<Int64Type>() {
            Some(a) if a.null_count() == 0 => Ok(&a.values()[..]),
            _ => Err(self.error(format!(
                "column `{name}` of the labelled rows must be Int64 without nulls, is {}",
                column.data_type()
            ))),
        }
    }

    /// One batch of the held rows (after a restore or a release, held is at most one batch).
    fn held_batch(&self) -> eddy_core::Result<Option<RecordBatch>> {
        match (&self.schema, self.held.len()) {
            (_, 0) | (None, _) => Ok(None),
            (_, 1) => Ok(Some(self.held[0].clone())),
            (Some(schema), _) => Ok(Some(concat_batches(schema, &self.held)?)),
        }
    }

    /// Moves the held rows whose interval the watermark `wm` has closed (`ts + wait < wm`) to
    /// `ready`, sorted, and emits every full batch; `flush`: the partial one too.
    fn release(
        &mut self,
        wm: EventTime,
        flush: bool,
        out: &mut Collector,
    ) -> eddy_core::Result<()> {
        if self.held_min.saturating_add(self.wait_ms) < wm {
            if let Some(all) = self.held_batch()? {
                let (done, min) = {
                    let times = event_times(&all, &self.time, self)?;
                    let done: arrow::array::BooleanArray = times
                        .iter()
                        .map(|t| Some(t.saturating_add(self.wait_ms) < wm))
                        .collect();
                    let min = times
                        .iter()
                        .filter(|t| t.saturating_add(self.wait_ms) >= wm)
                        .min()
                        .copied();
                    (done, min)
                };
                let kept = filter_record_batch(&all, &arrow::compute::not(&done)?)?;
                let released = filter_record_batch(&all, &done)?;
                self.held = if kept.num_rows() > 0 {
                    vec![kept]
                } else {
                    Vec::new()
                };
                self.held_min = min.unwrap_or(i64::MAX);
                let sorted = self.sorted(&released)?;
                self.count(&sorted)?;
                self.ready_rows += sorted.num_rows();
                self.ready.push(sorted);
            }
        }
        self.emit_ready(flush, out)
    }

    /// `batch` sorted by event time, then by every column (a total order of distinct rows).
    fn sorted(&self, batch: &RecordBatch) -> eddy_core::Result<RecordBatch> {
        let time = batch
            .schema()
            .index_of(&self.time)
            .map_err(|_| self.error(format!("the labelled rows have no column `{}`", self.time)))?;
        let mut columns = vec![SortColumn {
            values: batch.column(time).clone(),
            options: None,
        }];
        columns.extend(batch.columns().iter().map(|c| SortColumn {
            values: c.clone(),
            options: None,
        }));
        let order = lexsort_to_indices(&columns, None)?;
        Ok(take_record_batch(batch, &order)?)
    }

    /// Counts the labels and delays of rows handed on.
    fn count(&mut self, batch: &RecordBatch) -> eddy_core::Result<()> {
        let labels = self.int64(batch, LABEL)?;
        let delays = self.int64(batch, LABEL_DELAY)?;
        for (&label, &delay) in labels.iter().zip(delays) {
            if label == 1 {
                let delay = delay.max(0) as u64;
                self.tally.positive += 1;
                self.tally.delay_sum_ms = self.tally.delay_sum_ms.saturating_add(delay);
                self.tally.delay_max_ms = self.tally.delay_max_ms.max(delay);
            } else {
                self.tally.negative += 1;
            }
        }
        self.counters.set(&self.tally);
        Ok(())
    }

    /// Emits `ready` in batches of `batch_rows` (the rest stays, unless `flush`).
    fn emit_ready(&mut self, flush: bool, out: &mut Collector) -> eddy_core::Result<()> {
        if self.ready_rows == 0 || (self.ready_rows < self.batch_rows && !flush) {
            return Ok(());
        }
        let Some(schema) = self.schema.clone() else {
            return Ok(());
        };
        let all = concat_batches(&schema, &self.ready)?;
        let mut start = 0;
        while all.num_rows() - start >= self.batch_rows {
            out.emit(all.slice(start, self.batch_rows));
            start += self.batch_rows;
        }
        let rest = all.num_rows() - start;
        if flush && rest > 0 {
            out.emit(all.slice(start, rest));
            start += rest;
        }
        self.ready = match all.num_rows() - start {
            0 => Vec::new(),
            n => vec![all.slice(start, n)],
        };
        self.ready_rows = all.num_rows() - start;
        Ok(())
    }
}

/// The event times of `batch`'s column `time`, in ms (Int64 ms, or a timestamp of any unit).
fn event_times(batch: &RecordBatch, time: &str, op: &OrderOperator) -> eddy_core::Result<Vec<i64>> {
    let column = batch
        .column_by_name(time)
        .ok_or_else(|| op.error(format!("the labelled rows have no column `{time}`")))?;
    let ms = match column.data_type() {
        DataType::Int64 => column.clone(),
        DataType::Timestamp(_, _) => cast(
            &cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))?,
            &DataType::Int64,
        )?,
        other => {
            return Err(op.error(format!(
                "event-time column `{time}` has type {other}; expected Int64 (ms) or Timestamp"
            )))
        }
    };
    Ok(ms.as_primitive::<Int64Type>().values().to_vec())
}

impl Operator for OrderOperator {
    fn process(
        &mut self,
        input: usize,
        batch: RecordBatch,
        _: &mut Collector,
    ) -> eddy_core::Result<()> {
        let rows = batch.num_rows() as u64;
        match input {
            0 if rows > 0 => {
                if self.schema.is_none() {
                    self.schema = Some(batch.schema());
                }
                let min = event_times(&batch, &self.time, self)?.iter().min().copied();
                self.held_min = self.held_min.min(min.unwrap_or(i64::MAX));
                self.held.push(batch);
            }
            1 => self.tally.late_impressions += rows,
            2 => self.tally.late_clicks += rows,
            _ => {}
        }
        self.counters.set(&self.tally);
        Ok(())
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Collector) -> eddy_core::Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.release(watermark, watermark == MAX_WATERMARK, out)?;
        }
        out.emit_watermark(watermark);
        Ok(())
    }

    fn on_end(&mut self, out: &mut Collector) -> eddy_core::Result<()> {
        self.release(MAX_WATERMARK, true, out)
    }

    fn snapshot(&mut self, _epoch: Epoch) -> eddy_core::Result<Option<Vec<u8>>> {
        let held = ipc(self.held_batch()?)?;
        let ready = match (&self.schema, self.ready.len()) {
            (Some(schema), n) if n > 0 => ipc(Some(concat_batches(schema, &self.ready)?))?,
            _ => Vec::new(),
        };
        let snapshot = Snapshot {
            tally: self.tally,
            watermark: self.watermark,
            held,
            ready,
        };
        let bytes = eddy_algorithms::model::encode(SNAPSHOT_KIND, &snapshot)
            .map_err(|e| self.error(format!("cannot encode the snapshot: {e}")))?;
        Ok(Some(bytes))
    }

    fn restore(&mut self, state: &[u8]) -> eddy_core::Result<()> {
        let refused = |e: &dyn std::fmt::Display| self.error(format!("snapshot refused: {e}"));
        let s: Snapshot =
            eddy_algorithms::model::decode(state, SNAPSHOT_KIND).map_err(|e| refused(&e))?;
        let (held, ready) = (read_ipc(&s.held)?, read_ipc(&s.ready)?);
        self.schema = held.as_ref().or(ready.as_ref()).map(RecordBatch::schema);
        self.held_min = match &held {
            Some(b) => event_times(b, &self.time, self)?
                .iter()
                .min()
                .copied()
                .unwrap_or(i64::MAX),
            None => i64::MAX,
        };
        self.held = held.into_iter().collect();
        self.ready_rows = ready.as_ref().map_or(0, RecordBatch::num_rows);
        self.ready = ready.into_iter().collect();
        self.tally = s.tally;
        self.watermark = s.watermark;
        self.counters.set(&self.tally);
        Ok(())
    }
}

/// `batch` as an Arrow IPC stream (empty for none).
fn ipc(batch: Option<RecordBatch>) -> eddy_core::Result<Vec<u8>> {
    let Some(batch) = batch else {
        return Ok(Vec::new());
    };
    let mut bytes = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut bytes, &batch.schema())?;
    w.write(&batch)?;
    w.finish()?;
    drop(w);
    Ok(bytes)
}

/// The one batch of an IPC stream written by [`ipc`].
fn read_ipc(bytes: &[u8]) -> eddy_core::Result<Option<RecordBatch>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    match batches.as_slice() {
        [] => Ok(None),
        [b] => Ok(Some(b.clone())),
        _ => Ok(Some(concat_batches(&batches[0].schema(), &batches)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array};
    use eddy_core::operator::Output;

    /// Labelled rows `(ts, label, delay)` with an `id` = ts.
    fn rows(v: &[(i64, i64, i64)]) -> RecordBatch {
        let col = |f: fn(&(i64, i64, i64)) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from(v.iter().map(f).collect::<Vec<_>>()))
        };
        RecordBatch::try_from_iter([
            ("id", col(|r| r.0)),
            ("ts", col(|r| r.0)),
            (LABEL, col(|r| r.1)),
            (LABEL_DELAY, col(|r| r.2)),
        ])
        .unwrap()
    }

    fn op(counters: &Arc<LabelCounters>) -> OrderOperator {
        OrderOperator::new("ts", 10, 2, counters.clone())
    }

    /// The event times of the batches `out` emitted, batch by batch.
    fn emitted(out: &mut Collector) -> Vec<Vec<i64>> {
        out.drain()
            .filter_map(|o| match o {
                Output::Data(b) => Some(b.column(1).as_primitive::<Int64Type>().values().to_vec()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn rows_leave_in_event_time_order_in_whole_batches_once_final() {
        let counters = Arc::new(LabelCounters::default());
        let mut o = op(&counters);
        let mut out = Collector::default();
        o.process(0, rows(&[(5, 1, 3), (1, 0, 10), (3, 0, 10)]), &mut out)
            .unwrap();
        o.process(1, rows(&[(0, 0, 0)]), &mut out).unwrap();
        // 1 and 3 are final at 14 (ts + 10 < 14), 5 is not: one whole batch, nothing held back
        o.on_watermark(14, &mut out).unwrap();
        assert_eq!(emitted(&mut out), vec![vec![1, 3]]);
        o.process(0, rows(&[(4, 1, 2)]), &mut out).unwrap();
        // 4 and 5 are final; a snapshot here, restored into a fresh operator, goes on alike
        let state = o.snapshot(Epoch(1)).unwrap().unwrap();
        let mut restored = op(&Arc::new(LabelCounters::default()));
        restored.restore(&state).unwrap();
        for o in [&mut o, &mut restored] {
            o.on_watermark(16, &mut out).unwrap();
            assert_eq!(emitted(&mut out), vec![vec![4, 5]]);
            o.on_end(&mut out).unwrap();
            assert!(emitted(&mut out).is_empty());
        }
        let tally = counters.tally();
        assert_eq!((tally.positive, tally.negative), (2, 2));
        assert_eq!((tally.delay_sum_ms, tally.delay_max_ms), (5, 3));
        assert_eq!(tally.late_impressions, 1);
        assert_eq!(restored.tally, o.tally);
    }

    #[test]
    fn a_partial_batch_leaves_at_the_end_and_a_corrupt_snapshot_is_refused() {
        let counters = Arc::new(LabelCounters::default());
        let mut o = op(&counters);
        let mut out = Collector::default();
        o.process(0, rows(&[(7, 0, 10), (2, 1, 1), (9, 0, 10)]), &mut out)
            .unwrap();
        o.on_watermark(50, &mut out).unwrap();
        assert_eq!(emitted(&mut out), vec![vec![2, 7]]);
        o.on_end(&mut out).unwrap();
        assert_eq!(emitted(&mut out), vec![vec![9]]);
        let mut state = o.snapshot(Epoch(1)).unwrap().unwrap();
        let last = state.len() - 1;
        state[last] ^= 1;
        assert!(op(&counters).restore(&state).is_err());
    }
}
