//! `imputer`: replaces missing values with a per-column surrogate.
//!
//! **Missing** means null, or NaN (in float columns; integer columns cannot hold NaN). `±inf`
//! is a value, not missing: it is kept as is and does not enter the statistics. Surrogates:
//! - `mean` — the mean of the finite values (exact, online, mergeable);
//! - `median` — from a [`QuantileSketch`] (the lower median; exact below `sketch_size`
//!   values, else within the sketch's rank bound);
//! - `most-frequent` — the most frequent finite value, ties to the smallest (exact counts, so
//!   memory grows with the number of distinct values: meant for low-cardinality columns);
//! - `constant(v)` — the given finite value; needs no statistics.
//!
//! Output columns are `Float64` without nulls. A column whose strategy needs statistics but
//! has seen no finite value makes `transform` fail with `Error::NotFitted`.

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, Float64Array};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::column_stat::{combine_columns, fold_columns};
use super::common::{
    check_cols, check_sketch_size, corrupt, feature_step, not_fitted, outputs, valid_params,
};
use super::impute_state::Surrogate;
use super::sketch::DEFAULT_SKETCH_SIZE;
use crate::columns::{f64_column, with_columns};
use crate::error::{Error, Result};
use crate::transform::{Estimator, Mergeable, OnlineEstimator, Params, Transformer};

/// How an [`Imputer`] fills a column's missing values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImputeStrategy {
    /// The mean of the finite values seen.
    Mean,
    /// The (lower) median of the finite values seen, from a quantile sketch.
    Median,
    /// The most frequent finite value seen (ties: the smallest).
    MostFrequent,
    /// A fixed finite value; JSON `{"constant": 0.0}`.
    Constant(f64),
}

/// Parameters of [`Imputer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImputerParams {
    /// Numeric columns to impute. Required, non-empty, distinct.
    pub input_cols: Vec<String>,
    /// One output name per input column. Default `None`: replace the inputs in place.
    pub output_cols: Option<Vec<String>>,
    /// The strategy of every column not named in `per_column`. Default `mean`.
    pub strategy: ImputeStrategy,
    /// Strategies for single input columns, overriding `strategy`. Default empty.
    pub per_column: BTreeMap<String, ImputeStrategy>,
    /// Capacity `k` of the median sketch (even, 8..=65536). Default 1024.
    pub sketch_size: usize,
}

impl Default for ImputerParams {
    fn default() -> Self {
        ImputerParams {
            input_cols: Vec::new(),
            output_cols: None,
            strategy: ImputeStrategy::Mean,
            per_column: BTreeMap::new(),
            sketch_size: DEFAULT_SKETCH_SIZE,
        }
    }
}

valid_params! {
    /// Checked [`ImputerParams`].
    ImputerValidParams(ImputerParams)
}

impl ImputerParams {
    /// The strategy of input column `name`.
    pub fn strategy_of(&self, name: &str) -> ImputeStrategy {
        self.per_column.get(name).copied().unwrap_or(self.strategy)
    }
}

impl Params for ImputerParams {
    type Valid = ImputerValidParams;

    fn check(&self) -> Result<ImputerValidParams> {
        let kind = Imputer::KIND;
        check_cols(kind, &self.input_cols, self.output_cols.as_deref())?;
        check_sketch_size(kind, self.sketch_size)?;
        if matches!(self.strategy, ImputeStrategy::Constant(v) if !v.is_finite()) {
            return Err(Error::param(
                format!("{kind}.strategy"),
                "constant must be finite",
            ));
        }
        for (col, s) in &self.per_column {
            if !self.input_cols.contains(col) {
                return Err(Error::param(
                    format!("{kind}.per_column.{col}"),
                    "is not one of input_cols",
                ));
            }
            if matches!(s, ImputeStrategy::Constant(v) if !v.is_finite()) {
                return Err(Error::param(
                    format!("{kind}.per_column.{col}"),
                    "constant must be finite",
                ));
            }
        }
        Ok(ImputerValidParams(self.clone()))
    }
}

impl Estimator for ImputerParams {
    type Fitted = Imputer;

    fn fit(&self, batches: &[RecordBatch]) -> Result<Imputer> {
        let mut s = Imputer::new(self.check()?);
        for b in batches {
            s.update(b)?;
        }
        Ok(s)
    }
}

/// An imputer: fitted or following the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ImputerState")]
pub struct Imputer {
    params: ImputerValidParams,
    states: Vec<Surrogate>,
    /// The fill value per column, derived from `states` after every change.
    #[serde(skip)]
    fills: Vec<Option<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImputerState {
    params: ImputerParams,
    states: Vec<Surrogate>,
}

impl TryFrom<ImputerState> for Imputer {
    type Error = Error;

    fn try_from(s: ImputerState) -> Result<Self> {
        let params = s.params.check()?;
        let consistent = s.states.len() == params.input_cols.len()
            && params
                .input_cols
                .iter()
                .zip(&s.states)
                .all(|(c, st)| st.is_valid(params.strategy_of(c), params.sketch_size));
        if !consistent {
            return Err(corrupt(Imputer::KIND, "states do not match the columns"));
        }
        let mut imp = Imputer {
            params,
            states: s.states,
            fills: Vec::new(),
        };
        imp.refresh();
        Ok(imp)
    }
}

impl Imputer {
    /// The kind name in pipeline files.
    pub const KIND: &'static str = "imputer";

    /// An imputer with no statistics yet.
    pub fn new(params: ImputerValidParams) -> Self {
        let states = params
            .input_cols
            .iter()
            .map(|c| Surrogate::new(params.strategy_of(c), params.sketch_size))
            .collect();
        let mut imp = Imputer {
            params,
            states,
            fills: Vec::new(),
        };
        imp.refresh();
        imp
    }

    /// The parameters.
    pub fn params(&self) -> &ImputerValidParams {
        &self.params
    }

    /// The current fill value per input column (`None` before any finite value).
    pub fn fill_values(&self) -> &[Option<f64>] {
        &self.fills
    }

    fn refresh(&mut self) {
        self.fills = self.states.iter().map(Surrogate::value).collect();
    }
}

/// `arr` with every null and NaN replaced by `fill`, in one pass.
fn fill_missing(arr: &Float64Array, fill: f64) -> ArrayRef {
    let values = arr.values();
    let out: Vec<f64> = match arr.nulls() {
        None => values
            .iter()
            .map(|&v| if v.is_nan() { fill } else { v })
            .collect(),
        Some(nulls) => values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if nulls.is_null(i) || v.is_nan() {
                    fill
                } else {
                    v
                }
            })
            .collect(),
    };
    std::sync::Arc::new(Float64Array::from(out))
}

impl Transformer for Imputer {
    fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let p = &self.params;
        let outs = outputs(&p.input_cols, &p.output_cols);
        let mut cols = Vec::with_capacity(outs.len());
        for ((name, out), fill) in p.input_cols.iter().zip(outs).zip(&self.fills) {
            let fill = fill.ok_or_else(|| not_fitted(Self::KIND, name))?;
            let arr = f64_column(batch, Self::KIND, name)?;
            cols.push((out.clone(), fill_missing(&arr, fill)));
        }
        with_columns(batch, cols)
    }
}

impl OnlineEstimator for Imputer {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        fold_columns(batch, Self::KIND, &self.params.input_cols, &mut self.states)?;
        self.refresh();
        Ok(())
    }
}

impl Mergeable for Imputer {
    fn merge(&mut self, other: &Self) -> Result<()> {
        combine_columns(
            Self::KIND,
            (&self.params, &other.params),
            &mut self.states,
            &other.states,
        )?;
        self.refresh();
        Ok(())
    }
}

feature_step!(Imputer, online);

#[cfg(test)]
#[path = "imputer_tests.rs"]
mod tests;
