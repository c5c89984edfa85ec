//! `max-abs-scaler`: divides each column by its largest absolute finite value, so outputs lie
//! in `[−1, 1]` on the fitted data and sparsity (zeros) is kept.
//!
//! Statistic: `max |x|` over finite values (exact, mergeable); a column whose maximum is 0
//! scales by 1. Nulls stay null, NaN stays NaN, ±inf map to ±inf; none enter the statistic.

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::column_stat::{combine_columns, fold_columns};
use super::common::{
    check_cols, corrupt, feature_step, map_values, not_fitted, outputs, valid_params,
};
use crate::columns::{f64_column, with_columns};
use crate::error::{Error, Result};
use crate::transform::{Estimator, Mergeable, OnlineEstimator, Params, Transformer};

/// Parameters of [`MaxAbsScaler`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaxAbsScalerParams {
    /// Numeric columns to scale. Required, non-empty, distinct.
    pub input_cols: Vec<String>,
    /// One output name per input column. Default `None`: replace the inputs in place.
    pub output_cols: Option<Vec<String>>,
}

valid_params! {
    /// Checked [`MaxAbsScalerParams`].
    MaxAbsScalerValidParams(MaxAbsScalerParams)
}

impl Params for MaxAbsScalerParams {
    type Valid = MaxAbsScalerValidParams;

    fn check(&self) -> Result<MaxAbsScalerValidParams> {
        check_cols(
            MaxAbsScaler::KIND,
            &self.input_cols,
            self.output_cols.as_deref(),
        )?;
        Ok(MaxAbsScalerValidParams(self.clone()))
    }
}

impl Estimator for MaxAbsScalerParams {
    type Fitted = MaxAbsScaler;

    fn fit(&self, batches: &[RecordBatch]) -> Result<MaxAbsScaler> {
        let mut s = MaxAbsScaler::new(self.check()?);
        for b in batches {
            s.update(b)?;
        }
        Ok(s)
    }
}

/// A max-abs scaler: fitted or following the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "MaxAbsScalerState")]
pub struct MaxAbsScaler {
    params: MaxAbsScalerValidParams,
    /// `max |x|` per column; `None` before any finite value.
    max_abs: Vec<Option<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaxAbsScalerState {
    params: MaxAbsScalerParams,
    max_abs: Vec<Option<f64>>,
}

impl TryFrom<MaxAbsScalerState> for MaxAbsScaler {
    type Error = Error;

    fn try_from(s: MaxAbsScalerState) -> Result<Self> {
        let params = s.params.check()?;
        let ok = |m: &Option<f64>| m.is_none_or(|v| v.is_finite() && v >= 0.0);
        if s.max_abs.len() != params.input_cols.len() || !s.max_abs.iter().all(ok) {
            return Err(corrupt(
                MaxAbsScaler::KIND,
                "statistics do not match the columns",
            ));
        }
        Ok(MaxAbsScaler {
            params,
            max_abs: s.max_abs,
        })
    }
}

impl MaxAbsScaler {
    /// The kind name in pipeline files.
    pub const KIND: &'static str = "max-abs-scaler";

    /// A scaler with no statistics yet.
    pub fn new(params: MaxAbsScalerValidParams) -> Self {
        let max_abs = vec![None; params.input_cols.len()];
        MaxAbsScaler { params, max_abs }
    }

    /// The parameters.
    pub fn params(&self) -> &MaxAbsScalerValidParams {
        &self.params
    }

    /// `max |x|` per input column (`None` before any finite value).
    pub fn max_abs(&self) -> &[Option<f64>] {
        &self.max_abs
    }
}

impl Transformer for MaxAbsScaler {
    fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let p = &self.params;
        let outs = outputs(&p.input_cols, &p.output_cols);
        let mut cols = Vec::with_capacity(outs.len());
        for ((name, out), m) in p.input_cols.iter().zip(outs).zip(&self.max_abs) {
            let m = m.ok_or_else(|| not_fitted(Self::KIND, name))?;
            let arr = f64_column(batch, Self::KIND, name)?;
            let scale = if m > 0.0 { m } else { 1.0 };
            cols.push((out.clone(), map_values(&arr, |x| x / scale)));
        }
        with_columns(batch, cols)
    }
}

impl OnlineEstimator for MaxAbsScaler {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        fold_columns(
            batch,
            Self::KIND,
            &self.params.input_cols,
            &mut self.max_abs,
        )?;
        Ok(())
    }
}

impl Mergeable for MaxAbsScaler {
    fn merge(&mut self, other: &Self) -> Result<()> {
        combine_columns(
            Self::KIND,
            (&self.params, &other.params),
            &mut self.max_abs,
            &other.max_abs,
        )?;
        Ok(())
    }
}

feature_step!(MaxAbsScaler, online);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::numeric::testutil::*;
    use proptest::prelude::*;

    fn params(cols: &[&str]) -> MaxAbsScalerParams {
        MaxAbsScalerParams {
            input_cols: cols.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn scales_against_first_principles() {
        let b = batch(&[
            (
                "x",
                vec![
                    Some(-4.0),
                    Some(2.0),
                    None,
                    Some(f64::NAN),
                    Some(f64::INFINITY),
                    Some(0.0),
                ],
            ),
            ("z", vec![Some(0.0); 6]),
        ]);
        let s = params(&["x", "z"]).fit(std::slice::from_ref(&b)).unwrap();
        assert_eq!(s.max_abs(), &[Some(4.0), Some(0.0)]);
        let out = s.transform(&b).unwrap();
        let x = col(&out, "x");
        assert_eq!(&x[..3], &[Some(-1.0), Some(0.5), None]);
        assert!(x[3].unwrap().is_nan());
        assert_eq!(&x[4..], &[Some(f64::INFINITY), Some(0.0)]);
        assert_eq!(col(&out, "z"), vec![Some(0.0); 6]);
        let unfitted = MaxAbsScaler::new(params(&["x"]).check().unwrap());
        assert!(matches!(unfitted.transform(&b), Err(Error::NotFitted(_))));
    }

    proptest! {
        #[test]
        fn online_merge_and_one_row_agree(xs in messy_values(1..50), cut in 0.0f64..1.0) {
            let n = xs.len();
            let b = batch(&[("x", xs)]);
            let p = params(&["x"]);
            let whole = p.fit(std::slice::from_ref(&b)).unwrap();
            let mut online = MaxAbsScaler::new(p.check().unwrap());
            for i in 0..n {
                online.update(&b.slice(i, 1)).unwrap();
            }
            let k = (cut * n as f64) as usize;
            let mut merged = p.fit(&[b.slice(0, k)]).unwrap();
            merged.merge(&p.fit(&[b.slice(k, n - k)]).unwrap()).unwrap();
            prop_assert_eq!(&online, &whole);
            prop_assert_eq!(&merged, &whole);
            check_one_row_equals_batch(&whole, &b)?;
        }
    }

    #[test]
    fn save_load_roundtrip_and_corruption() {
        let b = batch(&[("x", vec![Some(1.0), None, Some(-4.0)])]);
        let s = params(&["x"]).fit(std::slice::from_ref(&b)).unwrap();
        check_save_load(&s, &b);
    }
}
