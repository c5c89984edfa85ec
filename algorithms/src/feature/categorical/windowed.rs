//! [`WindowedAggregateFeatures`]: per-key count / sum / mean / last of a column over the key's
//! previous rows, appended as feature columns.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Builder, Int64Builder};
use arrow::record_batch::RecordBatch;

use super::window_state::{encode_key, event_times, KeyWindow, View};
use super::{check_columns, save_json};
use crate::columns::{f64_column, str_column, with_columns};
use crate::error::{Error, Result};
use crate::transform::{Estimator, FeatureStep, OnlineEstimator, Params, Transformer};

pub(crate) const KIND: &str = "windowed-aggregates";

/// An aggregate of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowAgg {
    /// Rows in the window (null values included), `Int64`.
    Count,
    /// Sum of the non-null values (0 for none), `Float64`.
    Sum,
    /// Mean of the non-null values (null for none), `Float64`.
    Mean,
    /// The latest non-null value (null for none), `Float64`.
    Last,
}

impl WindowAgg {
    fn name(self) -> &'static str {
        match self {
            WindowAgg::Count => "count",
            WindowAgg::Sum => "sum",
            WindowAgg::Mean => "mean",
            WindowAgg::Last => "last",
        }
    }
}

/// How far back a window reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowRange {
    /// The key's last N rows before the current one (N ≥ 1).
    Rows(usize),
    /// The key's rows with event time in `(t - T, t]`, `t` being the later of the current
    /// row's time and the key's newest; T in milliseconds (≥ 1).
    TimeMs(i64),
}

/// Parameters of [`WindowedAggregateFeatures`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct WindowedAggregateParams {
    /// The key columns (any type, by text form). Required.
    pub keys: Vec<String>,
    /// The numeric column aggregated. Required.
    pub column: String,
    /// The aggregates, in output order. Default: count, sum, mean, last.
    pub aggs: Vec<WindowAgg>,
    /// The window. Default: the last 10 rows.
    pub window: WindowRange,
    /// The event-time column (Int64 ms, a timestamp, or Float64 whole ms as JSON request
    /// numbers arrive); required for time windows.
    pub time_column: Option<String>,
    /// Outputs are `{prefix}_{agg}`. Default (empty): `{column}_last{N}` for row windows,
    /// `{column}_{T}ms` for time windows.
    pub prefix: String,
}

impl Default for WindowedAggregateParams {
    fn default() -> Self {
        WindowedAggregateParams {
            keys: Vec::new(),
            column: String::new(),
            aggs: vec![
                WindowAgg::Count,
                WindowAgg::Sum,
                WindowAgg::Mean,
                WindowAgg::Last,
            ],
            window: WindowRange::Rows(10),
            time_column: None,
            prefix: String::new(),
        }
    }
}

/// Checked [`WindowedAggregateParams`].
#[derive(Debug, Clone, PartialEq)]
pub struct WindowedAggregateValidParams {
    params: WindowedAggregateParams,
    outputs: Vec<String>,
}

impl WindowedAggregateValidParams {
    /// The parameters.
    pub fn params(&self) -> &WindowedAggregateParams {
        &self.params
    }
}

impl Params for WindowedAggregateParams {
    type Valid = WindowedAggregateValidParams;

    fn check(&self) -> Result<WindowedAggregateValidParams> {
        check_columns(&format!("{KIND}.keys"), &self.keys, false)?;
        if self.column.is_empty() {
            return Err(Error::param(format!("{KIND}.column"), "is required"));
        }
        if self.aggs.is_empty() {
            return Err(Error::param(
                format!("{KIND}.aggs"),
                "needs at least one aggregate",
            ));
        }
        if let Some(a) = self
            .aggs
            .iter()
            .enumerate()
            .find_map(|(i, a)| self.aggs[..i].contains(a).then_some(a))
        {
            return Err(Error::param(
                format!("{KIND}.aggs"),
                format!("`{}` is listed twice", a.name()),
            ));
        }
        let prefix = match self.window {
            WindowRange::Rows(0) => {
                return Err(Error::param(
                    format!("{KIND}.window.rows"),
                    "must be at least 1",
                ))
            }
            WindowRange::TimeMs(t) if t < 1 => {
                return Err(Error::param(
                    format!("{KIND}.window.time-ms"),
                    "must be at least 1",
                ))
            }
            WindowRange::TimeMs(_) if self.time_column.is_none() => {
                return Err(Error::param(
                    format!("{KIND}.time-column"),
                    "a time window needs an event-time column",
                ))
            }
            WindowRange::Rows(n) => format!("{}_last{n}", self.column),
            WindowRange::TimeMs(t) => format!("{}_{t}ms", self.column),
        };
        let prefix = if self.prefix.is_empty() {
            prefix
        } else {
            self.prefix.clone()
        };
        let outputs = self
            .aggs
            .iter()
            .map(|a| format!("{prefix}_{}", a.name()))
            .collect();
        Ok(WindowedAggregateValidParams {
            params: self.clone(),
            outputs,
        })
    }
}

/// Appends, to every row, aggregates of `column` over its key's rows **before** it: the last N
/// rows, or the last T of event time (see [`WindowRange`]). `transform` reads the state as left
/// by `update` and never changes it, so serving (where the row's label is unknown and the row
/// is never folded in) sees exactly what training saw; rows of one batch do not see each other
/// — transform a batch, then `update` with it.
///
/// A null value is a row (counted) without a value (not summed); NaN and ±inf are kept apart:
/// a window holding a NaN (or both infinities) has a NaN sum and mean, one holding an infinity
/// an infinite sum. A null key is a key of its own; an empty string is a key. A key never seen
/// has an empty window: count 0, sum 0, null mean and last. A null event time is an error
/// naming the row; an event time older than the key's newest is treated as the newest. State is
/// per key and kept for the step's lifetime; it is not mergeable (key-partition the stream so
/// each key's rows meet one step).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Saved", into = "Saved")]
pub struct WindowedAggregateFeatures {
    valid: WindowedAggregateValidParams,
    windows: HashMap<Vec<u8>, KeyWindow>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    params: WindowedAggregateParams,
    windows: Vec<(Vec<u8>, KeyWindow)>,
}

impl TryFrom<Saved> for WindowedAggregateFeatures {
    type Error = Error;

    fn try_from(s: Saved) -> Result<Self> {
        let mut step = WindowedAggregateFeatures::new(s.params.check()?);
        let (rows, span) = step.reach();
        for (key, w) in s.windows {
            w.check(rows, span)
                .map_err(|m| Error::param(format!("{KIND}.windows"), m))?;
            if step.windows.insert(key, w).is_some() {
                return Err(Error::param(
                    format!("{KIND}.windows"),
                    "a key is listed twice",
                ));
            }
        }
        Ok(step)
    }
}

impl From<WindowedAggregateFeatures> for Saved {
    fn from(w: WindowedAggregateFeatures) -> Saved {
        let mut windows: Vec<(Vec<u8>, KeyWindow)> = w.windows.into_iter().collect();
        windows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Saved {
            params: w.valid.params,
            windows,
        }
    }
}

impl WindowedAggregateFeatures {
    /// A step with no history.
    pub fn new(valid: WindowedAggregateValidParams) -> Self {
        WindowedAggregateFeatures {
            valid,
            windows: HashMap::new(),
        }
    }

    /// The parameters.
    pub fn params(&self) -> &WindowedAggregateParams {
        &self.valid.params
    }

    /// The output column names, in order.
    pub fn outputs(&self) -> &[String] {
        &self.valid.outputs
    }

    /// The number of keys holding state.
    pub fn keys_held(&self) -> usize {
        self.windows.len()
    }

    fn reach(&self) -> (Option<usize>, Option<i64>) {
        match self.valid.params.window {
            WindowRange::Rows(n) => (Some(n), None),
            WindowRange::TimeMs(t) => (None, Some(t)),
        }
    }

    /// Calls `f(row, key bytes, time, value)` for every row of `batch`. The value column is
    /// read only `with_values` (folding): transforming reads keys and times alone, so a served
    /// row need not carry the aggregated column — often the label, unknown when serving.
    fn rows(
        &self,
        batch: &RecordBatch,
        with_values: bool,
        mut f: impl FnMut(usize, &[u8], i64, Option<f64>),
    ) -> Result<()> {
        let p = &self.valid.params;
        let keys = p
            .keys
            .iter()
            .map(|k| str_column(batch, KIND, k))
            .collect::<Result<Vec<_>>>()?;
        let values = match with_values {
            true => Some(f64_column(batch, KIND, &p.column)?),
            false => None,
        };
        let mut times = Vec::new();
        if let Some(t) = &p.time_column {
            event_times(batch, KIND, t, &mut times)?;
        }
        let mut key = Vec::new();
        for row in 0..batch.num_rows() {
            encode_key(&keys, row, &mut key);
            let v = values
                .as_ref()
                .and_then(|v| v.is_valid(row).then(|| v.value(row)));
            f(row, &key, times.get(row).copied().unwrap_or(0), v);
        }
        Ok(())
    }

    fn fold(&mut self, batch: &RecordBatch) -> Result<()> {
        let (rows, span) = self.reach();
        // `rows` fails only before its first row, so an error leaves the state untouched.
        let mut windows = std::mem::take(&mut self.windows);
        let r = self.rows(batch, true, |_, key, t, v| match windows.get_mut(key) {
            Some(w) => w.push(t, v, rows, span),
            None => {
                let mut w = KeyWindow::default();
                w.push(t, v, rows, span);
                windows.insert(key.to_vec(), w);
            }
        });
        self.windows = windows;
        r
    }
}

impl Transformer for WindowedAggregateFeatures {
    fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let span = self.reach().1;
        let mut views = Vec::with_capacity(n);
        self.rows(batch, false, |_, key, t, _| {
            views.push(
                self.windows
                    .get(key)
                    .map_or(View::default(), |w| w.view(t, span)),
            );
        })?;
        let mut columns = Vec::with_capacity(self.valid.outputs.len());
        for (agg, name) in self.valid.params.aggs.iter().zip(&self.valid.outputs) {
            let array: ArrayRef = match agg {
                WindowAgg::Count => {
                    let mut b = Int64Builder::with_capacity(n);
                    views.iter().for_each(|v| b.append_value(v.acc.rows as i64));
                    Arc::new(b.finish())
                }
                _ => {
                    let mut b = Float64Builder::with_capacity(n);
                    for v in &views {
                        b.append_option(match agg {
                            WindowAgg::Sum => Some(v.acc.total()),
                            WindowAgg::Mean => {
                                (v.acc.non_null > 0).then(|| v.acc.total() / v.acc.non_null as f64)
                            }
                            _ => v.last,
                        });
                    }
                    Arc::new(b.finish())
                }
            };
            columns.push((name.clone(), array));
        }
        with_columns(batch, columns)
    }
}

impl OnlineEstimator for WindowedAggregateFeatures {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        self.fold(batch)
    }
}

impl Estimator for WindowedAggregateParams {
    type Fitted = WindowedAggregateFeatures;

    fn fit(&self, batches: &[RecordBatch]) -> Result<WindowedAggregateFeatures> {
        let mut step = WindowedAggregateFeatures::new(self.check()?);
        for b in batches {
            step.fold(b)?;
        }
        Ok(step)
    }
}

impl FeatureStep for WindowedAggregateFeatures {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn save(&self) -> Result<serde_json::Value> {
        save_json(KIND, self)
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        self.fold(batch)
    }

    fn transforms_before_update(&self) -> bool {
        true
    }

    fn clone_box(&self) -> Box<dyn FeatureStep> {
        Box::new(self.clone())
    }
}
