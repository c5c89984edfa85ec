//! Per-key ring buffers for [`WindowedAggregateFeatures`](super::WindowedAggregateFeatures):
//! the key's recent rows with running aggregates, plus key encoding and event-time reading.
//!
//! `eddy_core::window` computes over-window aggregates as a dataflow operator, but its
//! accumulators are private to that crate and always include the current row; this step needs
//! the window *before* the row, queried without mutation, so it keeps its own buffers with the
//! same eviction rule (a window is a suffix of the key's arrival order; out-of-order event times
//! are clamped to the key's newest).

use std::collections::VecDeque;

use arrow::array::{Array, AsArray, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;

use crate::columns::column;
use crate::error::{Error, Result};

/// Running aggregates of a set of rows. NaN and infinities are counted apart, so the sum of the
/// finite values never absorbs them and subtracting stays exact in kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Acc {
    pub rows: u64,
    pub non_null: u64,
    pub sum: f64,
    pub nan: u64,
    pub pos_inf: u64,
    pub neg_inf: u64,
}

impl Acc {
    fn apply(&mut self, v: Option<f64>, sign: f64, step: i64) {
        self.rows = self.rows.wrapping_add_signed(step);
        let Some(v) = v else { return };
        self.non_null = self.non_null.wrapping_add_signed(step);
        if v.is_nan() {
            self.nan = self.nan.wrapping_add_signed(step);
        } else if v == f64::INFINITY {
            self.pos_inf = self.pos_inf.wrapping_add_signed(step);
        } else if v == f64::NEG_INFINITY {
            self.neg_inf = self.neg_inf.wrapping_add_signed(step);
        } else {
            self.sum += sign * v;
        }
    }

    pub fn add(&mut self, v: Option<f64>) {
        self.apply(v, 1.0, 1);
    }

    pub fn sub(&mut self, v: Option<f64>) {
        self.apply(v, -1.0, -1);
    }

    /// The sum of the non-null values: NaN if any is NaN or both infinities occur.
    pub fn total(&self) -> f64 {
        match (self.nan > 0, self.pos_inf > 0, self.neg_inf > 0) {
            (true, _, _) | (_, true, true) => f64::NAN,
            (_, true, false) => f64::INFINITY,
            (_, false, true) => f64::NEG_INFINITY,
            _ => self.sum,
        }
    }
}

/// One key's rows in the window, oldest first: `(event time clamped to the newest, value)`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct KeyWindow {
    #[serde(with = "saved_rows")]
    rows: VecDeque<(i64, Option<f64>)>,
    newest: i64,
    acc: Acc,
}

impl Default for KeyWindow {
    fn default() -> Self {
        KeyWindow {
            rows: VecDeque::new(),
            newest: i64::MIN,
            acc: Acc::default(),
        }
    }
}

/// A view of a window: its aggregates and its latest non-null value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct View {
    pub acc: Acc,
    pub last: Option<f64>,
}

impl KeyWindow {
    fn evict_front(&mut self) {
        if let Some((_, v)) = self.rows.pop_front() {
            self.acc.sub(v);
        }
        if self.rows.is_empty() {
            self.acc = Acc::default();
        }
    }

    /// Folds a row in: the window keeps at most `max_rows` rows, or the rows within `span` ms
    /// of the key's newest time.
    pub fn push(
        &mut self,
        time: i64,
        value: Option<f64>,
        max_rows: Option<usize>,
        span: Option<i64>,
    ) {
        let t = time.max(self.newest);
        self.newest = t;
        self.rows.push_back((t, value));
        self.acc.add(value);
        if let Some(n) = max_rows {
            while self.rows.len() > n {
                self.evict_front();
            }
        }
        if let Some(span) = span {
            let horizon = t.saturating_sub(span);
            while self.rows.front().is_some_and(|r| r.0 <= horizon) {
                self.evict_front();
            }
        }
    }

    /// The window as a row at `time` would see it before being folded in: for time windows,
    /// the rows within `span` of `max(time, newest)`.
    pub fn view(&self, time: i64, span: Option<i64>) -> View {
        let skip = match span {
            Some(span) => {
                let horizon = time.max(self.newest).saturating_sub(span);
                self.rows.partition_point(|r| r.0 <= horizon)
            }
            None => 0,
        };
        let mut acc = self.acc;
        for &(_, v) in self.rows.range(..skip) {
            acc.sub(v);
        }
        if skip == self.rows.len() {
            acc = Acc::default();
        }
        let last = self.rows.range(skip..).rev().find_map(|r| r.1);
        View { acc, last }
    }

    /// Checks a loaded window: times non-decreasing and within reach, running counts matching.
    pub fn check(
        &self,
        max_rows: Option<usize>,
        span: Option<i64>,
    ) -> std::result::Result<(), String> {
        if self
            .rows
            .iter()
            .zip(self.rows.iter().skip(1))
            .any(|(a, b)| a.0 > b.0)
        {
            return Err("event times decrease".into());
        }
        if self.rows.back().is_some_and(|r| r.0 != self.newest) || self.rows.is_empty() {
            return Err("newest time does not match the rows".into());
        }
        if max_rows.is_some_and(|n| self.rows.len() > n) {
            return Err("more rows than the window holds".into());
        }
        if span.is_some_and(|s| {
            self.rows
                .front()
                .is_some_and(|r| r.0 <= self.newest.saturating_sub(s))
        }) {
            return Err("rows older than the window".into());
        }
        let mut acc = Acc::default();
        for &(_, v) in &self.rows {
            acc.add(v);
        }
        let counts = |a: &Acc| (a.rows, a.non_null, a.nan, a.pos_inf, a.neg_inf);
        if counts(&acc) != counts(&self.acc) || !self.acc.sum.is_finite() {
            return Err("running aggregates do not match the rows".into());
        }
        Ok(())
    }
}

/// Rows as saved: JSON has no NaN or infinities, so those are the strings `"NaN"`, `"inf"`
/// and `"-inf"` (a plain `null` is a null value).
mod saved_rows {
    use std::collections::VecDeque;

    use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Value {
        Number(f64),
        Text(String),
    }

    pub fn serialize<S: Serializer>(
        rows: &VecDeque<(i64, Option<f64>)>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let out: Vec<(i64, Option<Value>)> = rows
            .iter()
            .map(|&(t, v)| {
                let v = v.map(|x| match x {
                    x if x.is_finite() => Value::Number(x),
                    x if x.is_nan() => Value::Text("NaN".into()),
                    x if x > 0.0 => Value::Text("inf".into()),
                    _ => Value::Text("-inf".into()),
                });
                (t, v)
            })
            .collect();
        out.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<VecDeque<(i64, Option<f64>)>, D::Error> {
        let rows: Vec<(i64, Option<Value>)> = Vec::deserialize(d)?;
        rows.into_iter()
            .map(|(t, v)| {
                let v = match v {
                    None => None,
                    Some(Value::Number(x)) => Some(x),
                    Some(Value::Text(s)) => Some(match s.as_str() {
                        "NaN" => f64::NAN,
                        "inf" => f64::INFINITY,
                        "-inf" => f64::NEG_INFINITY,
                        other => {
                            return Err(D::Error::custom(format!("`{other}` is not a number")))
                        }
                    }),
                };
                Ok((t, v))
            })
            .collect()
    }
}

/// Writes the key of `row` (its key columns as text) into `out` as unambiguous bytes: per
/// column, `0` for null or `1`, the length (u32 LE) and the bytes.
#[inline]
pub(crate) fn encode_key(
    keys: &[std::borrow::Cow<'_, StringArray>],
    row: usize,
    out: &mut Vec<u8>,
) {
    out.clear();
    for k in keys {
        if k.is_null(row) {
            out.push(0);
        } else {
            let v = k.value(row).as_bytes();
            out.push(1);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
    }
}

/// The event time (ms) of every row of `name` (Int64 ms, or a timestamp of any unit) into `out`;
/// a null time is an error naming the row.
pub(crate) fn event_times(
    batch: &RecordBatch,
    step: &str,
    name: &str,
    out: &mut Vec<i64>,
) -> Result<()> {
    let c = column(batch, step, name)?;
    let ms = match c.data_type() {
        DataType::Int64 => c.clone(),
        // JSON numbers (served rows) arrive as Float64: whole milliseconds are event times
        DataType::Float64 => whole_ms(c, step, name)?,
        DataType::Timestamp(_, _) => cast(c, &DataType::Timestamp(TimeUnit::Millisecond, None))?,
        t => {
            return Err(Error::ColumnType {
                step: step.into(),
                column: name.into(),
                found: t.to_string(),
                expected: "Int64 milliseconds or a timestamp".into(),
            })
        }
    };
    if let Some(row) = (0..ms.len()).find(|&r| ms.is_null(r)) {
        return Err(Error::InvalidValue {
            step: step.into(),
            column: name.into(),
            row,
            message: "event time is null".into(),
        });
    }
    out.clear();
    match ms.data_type() {
        DataType::Int64 => out.extend_from_slice(ms.as_primitive::<Int64Type>().values()),
        _ => out.extend_from_slice(ms.as_primitive::<TimestampMillisecondType>().values()),
    }
    Ok(())
}

/// A Float64 column of whole milliseconds as Int64; a fractional, non-finite or out-of-range
/// value is an error naming the row (nulls stay null).
fn whole_ms(c: &arrow::array::ArrayRef, step: &str, name: &str) -> Result<arrow::array::ArrayRef> {
    let f = c.as_primitive::<arrow::datatypes::Float64Type>();
    let mut b = arrow::array::Int64Builder::with_capacity(f.len());
    for row in 0..f.len() {
        if f.is_null(row) {
            b.append_null();
            continue;
        }
        let v = f.value(row);
        // 2^63 as f64; every whole f64 below it in magnitude fits an i64
        if v.fract() != 0.0 || !v.is_finite() || v.abs() >= 9.223_372_036_854_776e18 {
            return Err(Error::InvalidValue {
                step: step.into(),
                column: name.into(),
                row,
                message: format!("event time {v} is not a whole number of milliseconds"),
            });
        }
        b.append_value(v as i64);
    }
    Ok(std::sync::Arc::new(b.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_time_windows_exclude_the_current_row() {
        let mut w = KeyWindow::default();
        for (t, v) in [(10, Some(1.0)), (20, None), (30, Some(4.0))] {
            w.push(t, v, Some(2), None);
        }
        let v = w.view(40, None);
        assert_eq!(
            (v.acc.rows, v.acc.non_null, v.acc.total(), v.last),
            (2, 1, 4.0, Some(4.0))
        );

        let mut w = KeyWindow::default();
        for (t, v) in [
            (0, Some(1.0)),
            (50, Some(2.0)),
            (90, Some(f64::INFINITY)),
            (80, Some(3.0)),
        ] {
            w.push(t, v, None, Some(100));
        }
        // the row at 80 came late: clamped to 90
        let v = w.view(95, Some(100));
        assert_eq!((v.acc.rows, v.acc.total()), (4, f64::INFINITY));
        let v = w.view(160, Some(100)); // horizon 60: rows at 90, 90
        assert_eq!(
            (v.acc.rows, v.acc.total(), v.last),
            (2, f64::INFINITY, Some(3.0))
        );
        let v = w.view(500, Some(100));
        assert_eq!((v.acc.rows, v.last), (0, None));
        assert!(w.check(None, Some(100)).is_ok());
        let mut bad = w.clone();
        bad.acc.rows += 1;
        assert!(bad.check(None, Some(100)).is_err());
    }
}
