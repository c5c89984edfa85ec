//! `assign_timestamps`: reads event time from a column and emits watermarks with Flink's
//! bounded-out-of-orderness semantics.
//!
//! After each batch the operator emits `max_ts_seen - bound - 1` when that advanced: records may
//! arrive up to `bound` late and still be on time. Upstream watermarks are swallowed (this operator
//! is the stream's time authority) except [`MAX_WATERMARK`], which is forwarded so that bounded
//! inputs still close every window. The output batches carry the column's name in their schema
//! metadata under [`EVENT_TIME_METADATA`], which is how window operators find event time.
//!
//! Event time is an Int64 column of milliseconds or an Arrow `Timestamp` of any unit (converted
//! to milliseconds, rounding toward negative infinity). A record whose event time is null
//! cannot be placed in any window: `assign_timestamps` sends it to the dead-letter sink (or
//! fails the job under `on-error = fail`), naming the column and the record's number in the
//! operator's input. (File sources told the column is required dead-letter such records
//! already; Parquet files and generators reach this.)

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow::record_batch::RecordBatch;

use crate::dataflow::Stream;
use crate::error::{Error, Result};
use crate::message::{Epoch, EventTime, MAX_WATERMARK};
use crate::operator::{Collector, Operator};

/// Schema metadata key naming the event-time column (set by `assign_timestamps`).
pub const EVENT_TIME_METADATA: &str = "eddy.event_time";

/// Reads the event times of column `index` of `batch`, in milliseconds, into `out`.
pub(crate) fn read_event_times(
    batch: &RecordBatch,
    index: usize,
    operator: &str,
    out: &mut Vec<i64>,
) -> Result<()> {
    let column = batch.column(index);
    let name = batch.schema().field(index).name().clone();
    if column.null_count() > 0 {
        return Err(Error::schema(
            operator,
            format!("event-time column `{name}` has null values"),
        ));
    }
    out.clear();
    match column.data_type() {
        DataType::Int64 => out.extend_from_slice(column.as_primitive::<Int64Type>().values()),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            out.extend_from_slice(column.as_primitive::<TimestampMillisecondType>().values())
        }
        DataType::Timestamp(TimeUnit::Second, _) => out.extend(
            column
                .as_primitive::<TimestampSecondType>()
                .values()
                .iter()
                .map(|s| s.saturating_mul(1000)),
        ),
        DataType::Timestamp(TimeUnit::Microsecond, _) => out.extend(
            column
                .as_primitive::<TimestampMicrosecondType>()
                .values()
                .iter()
                .map(|us| us.div_euclid(1000)),
        ),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => out.extend(
            column
                .as_primitive::<TimestampNanosecondType>()
                .values()
                .iter()
                .map(|ns| ns.div_euclid(1_000_000)),
        ),
        other => {
            return Err(Error::schema(
                operator,
                format!(
                    "event-time column `{name}` has type {other}; expected Int64 (ms) or Timestamp"
                ),
            ))
        }
    }
    Ok(())
}

/// The index of the event-time column: `explicit` when given, otherwise the column that
/// `assign_timestamps` marked in the schema metadata.
pub(crate) fn time_column(
    schema: &Schema,
    explicit: Option<&str>,
    operator: &str,
) -> Result<usize> {
    let name = match explicit {
        Some(n) => n,
        None => schema.metadata().get(EVENT_TIME_METADATA).map(String::as_str).ok_or_else(|| {
            Error::schema(
                operator,
                "the stream has no event time: call `assign_timestamps` upstream or name the time column in the spec",
            )
        })?,
    };
    schema.index_of(name).map_err(|_| {
        Error::schema(
            operator,
            format!("event-time column `{name}` is not in the stream"),
        )
    })
}

/// Reads event time from a column and emits bounded-out-of-orderness watermarks.
#[derive(Debug, Clone)]
pub struct AssignTimestampsOperator {
    name: String,
    column: String,
    bound_ms: i64,
    max_seen: Option<EventTime>,
    emitted: Option<EventTime>,
    schemas: Option<(SchemaRef, SchemaRef)>,
    times: Vec<i64>,
    /// Records seen (numbering dead letters; not checkpointed, as a source's line is not).
    records: u64,
}

impl AssignTimestampsOperator {
    /// `batch` without its rows whose event time (column `index`) is null, which go to the
    /// dead-letter sink numbered from `first`.
    fn timed_rows(
        &self,
        batch: RecordBatch,
        index: usize,
        first: u64,
        out: &Collector,
    ) -> Result<RecordBatch> {
        let column = batch.column(index);
        if column.null_count() == 0 {
            return Ok(batch);
        }
        for row in (0..batch.num_rows()).filter(|&r| column.is_null(r)) {
            out.reject(crate::source::Rejected {
                source: format!("{} (record {} of its input)", self.name, first + row as u64),
                line: first + row as u64,
                column: index + 1,
                raw: crate::source::Rejected::row_json(&batch, row),
                reason: format!("event-time column `{}` is null", self.column),
            })?;
        }
        let timed = arrow::compute::is_not_null(column)?;
        Ok(arrow::compute::filter_record_batch(&batch, &timed)?)
    }

    /// Event time from `column`, with records up to `max_out_of_orderness` out of order.
    pub fn new(name: &str, column: &str, max_out_of_orderness: Duration) -> Self {
        AssignTimestampsOperator {
            name: name.to_string(),
            column: column.to_string(),
            bound_ms: i64::try_from(max_out_of_orderness.as_millis()).unwrap_or(i64::MAX),
            max_seen: None,
            emitted: None,
            schemas: None,
            times: Vec::new(),
            records: 0,
        }
    }

    /// The schema of the output: the input's, with the event-time column in the metadata.
    fn output_schema(&mut self, input: &SchemaRef) -> SchemaRef {
        if let Some((i, o)) = &self.schemas {
            if Arc::ptr_eq(i, input) || i == input {
                return o.clone();
            }
        }
        let mut metadata = input.metadata().clone();
        metadata.insert(EVENT_TIME_METADATA.to_string(), self.column.clone());
        let out = Arc::new(Schema::new_with_metadata(input.fields().clone(), metadata));
        self.schemas = Some((input.clone(), out.clone()));
        out
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TimestampState {
    max_seen: Option<EventTime>,
    emitted: Option<EventTime>,
}

impl Operator for AssignTimestampsOperator {
    fn process(&mut self, _input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        let schema = batch.schema();
        let index = time_column(&schema, Some(&self.column), &self.name)?;
        let first = self.records + 1;
        self.records += batch.num_rows() as u64;
        let batch = self.timed_rows(batch, index, first, out)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        read_event_times(&batch, index, &self.name, &mut self.times)?;
        if let Some(&m) = self.times.iter().max() {
            self.max_seen = Some(self.max_seen.map_or(m, |s| s.max(m)));
        }
        let output = self.output_schema(&schema);
        out.emit(batch.with_schema(output)?);
        if let Some(m) = self.max_seen {
            let wm = m.saturating_sub(self.bound_ms).saturating_sub(1);
            if self.emitted.is_none_or(|e| wm > e) {
                self.emitted = Some(wm);
                out.emit_watermark(wm);
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Collector) -> Result<()> {
        if watermark == MAX_WATERMARK && self.emitted != Some(MAX_WATERMARK) {
            self.emitted = Some(MAX_WATERMARK);
            out.emit_watermark(MAX_WATERMARK);
        }
        Ok(())
    }

    fn snapshot(&mut self, _epoch: Epoch) -> Result<Option<Vec<u8>>> {
        let state = TimestampState {
            max_seen: self.max_seen,
            emitted: self.emitted,
        };
        super::snapshot::encode("assign-timestamps", &state).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> Result<()> {
        let s: TimestampState = super::snapshot::decode("assign-timestamps", &self.name, state)?;
        self.max_seen = s.max_seen;
        self.emitted = s.emitted;
        Ok(())
    }
}

impl Stream {
    /// Reads event time from `column` (Int64 ms or Timestamp) and emits watermarks that trail
    /// the largest time seen by `max_out_of_orderness` (see [`crate::window::timestamps`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use arrow::array::Int64Array;
    /// use arrow::record_batch::RecordBatch;
    /// use eddy_core::operator::{Collector, Operator, Output};
    /// use eddy_core::window::AssignTimestampsOperator;
    ///
    /// let mut op = AssignTimestampsOperator::new("time", "ts", Duration::from_millis(100));
    /// let batch = RecordBatch::try_from_iter([("ts", Arc::new(Int64Array::from(vec![1_000, 900])) as _)])?;
    /// let mut out = Collector::default();
    /// op.process(0, batch, &mut out)?;
    /// let watermarks: Vec<i64> = out
    ///     .drain()
    ///     .filter_map(|o| match o { Output::Watermark(w) => Some(w), _ => None })
    ///     .collect();
    /// assert_eq!(watermarks, vec![899]); // 1000 - 100 - 1
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn assign_timestamps(
        &self,
        name: &str,
        column: &str,
        max_out_of_orderness: Duration,
    ) -> Stream {
        self.operator(
            name,
            AssignTimestampsOperator::new(name, column, max_out_of_orderness),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::Output;
    use arrow::array::{Int64Array, TimestampMicrosecondArray};

    fn run(op: &mut AssignTimestampsOperator, batch: RecordBatch) -> (usize, Vec<i64>) {
        let mut out = Collector::default();
        op.process(0, batch, &mut out).unwrap();
        let mut rows = 0;
        let mut wms = Vec::new();
        for o in out.drain() {
            match o {
                Output::Data(b) => {
                    assert_eq!(
                        b.schema().metadata().get(EVENT_TIME_METADATA).unwrap(),
                        "ts"
                    );
                    rows += b.num_rows();
                }
                Output::Watermark(w) => wms.push(w),
                Output::Side(..) => panic!("no side output expected"),
            }
        }
        (rows, wms)
    }

    #[test]
    fn watermarks_trail_the_max_and_only_advance() {
        let mut op = AssignTimestampsOperator::new("t", "ts", Duration::from_millis(10));
        let b = |v: Vec<i64>| {
            RecordBatch::try_from_iter([("ts", Arc::new(Int64Array::from(v)) as _)]).unwrap()
        };
        assert_eq!(run(&mut op, b(vec![100, 50])), (2, vec![89]));
        assert_eq!(run(&mut op, b(vec![95])), (1, vec![]));
        assert_eq!(run(&mut op, b(vec![120])), (1, vec![109]));
        let mut out = Collector::default();
        op.on_watermark(500, &mut out).unwrap();
        assert_eq!(out.drain().count(), 0, "upstream watermarks are swallowed");
        op.on_watermark(MAX_WATERMARK, &mut out).unwrap();
        assert!(matches!(
            out.drain().next(),
            Some(Output::Watermark(MAX_WATERMARK))
        ));
        // state survives a snapshot
        let state = op.snapshot(Epoch(1)).unwrap().unwrap();
        let mut fresh = AssignTimestampsOperator::new("t", "ts", Duration::from_millis(10));
        fresh.restore(&state).unwrap();
        assert_eq!(fresh.max_seen, Some(120));
    }

    #[test]
    fn records_without_event_time_are_dead_letters() {
        use crate::source::{DeadLetterSink, ErrorPolicy};
        let mut op = AssignTimestampsOperator::new("t", "ts", Duration::from_millis(10));
        let b = |v: Vec<Option<i64>>| {
            RecordBatch::try_from_iter([("ts", Arc::new(Int64Array::from(v)) as _)]).unwrap()
        };
        let sink = Arc::new(DeadLetterSink::in_memory(ErrorPolicy::DeadLetter));
        let mut out = Collector::with_dead_letters(sink.clone());
        op.process(0, b(vec![Some(100), None, Some(120)]), &mut out)
            .unwrap();
        op.process(0, b(vec![None]), &mut out).unwrap();
        let rows: usize = out.take_data().iter().map(|b| b.num_rows()).sum();
        assert_eq!(
            (rows, sink.count()),
            (2, 2),
            "rows kept + dead letters = rows in"
        );
        let lines: Vec<u64> = sink.records().iter().map(|r| r.line).collect();
        assert_eq!(
            lines,
            vec![2, 4],
            "numbered by record in the operator's input"
        );
        // under `fail`, the first one fails the job, naming the column
        let mut out =
            Collector::with_dead_letters(Arc::new(DeadLetterSink::in_memory(ErrorPolicy::Fail)));
        let e = op.process(0, b(vec![None]), &mut out).unwrap_err();
        assert!(e.to_string().contains("`ts` is null"), "{e}");
    }

    #[test]
    fn timestamps_convert_and_nulls_are_rejected() {
        let ts = TimestampMicrosecondArray::from(vec![1_500_999, -1]);
        let batch = RecordBatch::try_from_iter([("ts", Arc::new(ts) as _)]).unwrap();
        let mut v = Vec::new();
        read_event_times(&batch, 0, "t", &mut v).unwrap();
        assert_eq!(v, vec![1_500, -1]);
        let nulls = RecordBatch::try_from_iter([(
            "ts",
            Arc::new(Int64Array::from(vec![Some(1), None])) as _,
        )])
        .unwrap();
        let e = read_event_times(&nulls, 0, "t", &mut v).unwrap_err();
        assert!(e.to_string().contains("`ts`"), "{e}");
    }
}
