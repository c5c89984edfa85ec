//! The statistic every stateful numeric step keeps per input column, and the two loops they
//! share: folding a batch into one statistic per column, and merging two steps' statistics.

use arrow::array::Float64Array;
use arrow::record_batch::RecordBatch;

use super::common::{f64_inputs, for_each_finite, merge_mismatch};
use super::impute_state::Surrogate;
use super::sketch::QuantileSketch;
use super::stats::{Extent, Moments};
use crate::error::Result;
use crate::transform::Mergeable;

/// A statistic of one column that follows the stream and merges with a partial one.
pub(crate) trait ColumnStat {
    /// Folds a column's values in.
    fn fold(&mut self, values: &Float64Array);
    /// Merges another partial statistic of the same column in.
    fn combine(&mut self, other: &Self) -> Result<()>;
}

/// Folds every input column of `batch` into its statistic, in order.
pub(crate) fn fold_columns<S: ColumnStat>(
    batch: &RecordBatch,
    kind: &str,
    columns: &[String],
    stats: &mut [S],
) -> Result<()> {
    let cols = f64_inputs(batch, kind, columns)?;
    for (s, arr) in stats.iter_mut().zip(&cols) {
        s.fold(arr);
    }
    Ok(())
}

/// Merges `other`'s statistics into `stats`; the steps' parameters must be equal.
pub(crate) fn combine_columns<S: ColumnStat, P: PartialEq>(
    kind: &str,
    (params, other_params): (&P, &P),
    stats: &mut [S],
    other: &[S],
) -> Result<()> {
    if params != other_params {
        return Err(merge_mismatch(kind));
    }
    for (s, o) in stats.iter_mut().zip(other) {
        s.combine(o)?;
    }
    Ok(())
}

impl ColumnStat for Moments {
    fn fold(&mut self, values: &Float64Array) {
        self.merge(&Moments::of(values));
    }
    fn combine(&mut self, other: &Self) -> Result<()> {
        self.merge(other);
        Ok(())
    }
}

impl ColumnStat for Extent {
    fn fold(&mut self, values: &Float64Array) {
        self.merge(&Extent::of(values));
    }
    fn combine(&mut self, other: &Self) -> Result<()> {
        self.merge(other);
        Ok(())
    }
}

/// The largest absolute finite value seen (max-abs scaler).
impl ColumnStat for Option<f64> {
    fn fold(&mut self, values: &Float64Array) {
        for_each_finite(values, |v| max_into(self, v.abs()));
    }
    fn combine(&mut self, other: &Self) -> Result<()> {
        if let Some(v) = *other {
            max_into(self, v);
        }
        Ok(())
    }
}

fn max_into(acc: &mut Option<f64>, v: f64) {
    *acc = Some(acc.map_or(v, |a| a.max(v)));
}

impl ColumnStat for QuantileSketch {
    fn fold(&mut self, values: &Float64Array) {
        self.insert_array(values);
    }
    fn combine(&mut self, other: &Self) -> Result<()> {
        Mergeable::merge(self, other)
    }
}

impl ColumnStat for Surrogate {
    fn fold(&mut self, values: &Float64Array) {
        self.update(values);
    }
    fn combine(&mut self, other: &Self) -> Result<()> {
        self.merge(other)
    }
}
