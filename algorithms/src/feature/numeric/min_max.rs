//! `min-max-scaler`: rescales each column linearly from its observed `[min, max]` to the
//! feature range `[min, max]` of the params.
//!
//! `y = (x − lo) / (hi − lo) · (max − min) + min`, with `lo`/`hi` the smallest and largest
//! finite value seen (exact, mergeable). A constant column (`hi == lo`) maps to the middle of
//! the range, `(min + max) / 2`, as in Spark. Values outside the fitted range extrapolate (they
//! are not clipped). Nulls stay null, NaN stays NaN, ±inf map to ±inf (to NaN for a constant
//! column: the middle of the range has no sign); none of these enter the statistics.

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::column_stat::{combine_columns, fold_columns};
use super::common::{
    check_cols, corrupt, feature_step, map_values, not_fitted, outputs, valid_params,
};
use super::stats::Extent;
use crate::columns::{f64_column, with_columns};
use crate::error::{Error, Result};
use crate::transform::{Estimator, Mergeable, OnlineEstimator, Params, Transformer};

/// Parameters of [`MinMaxScaler`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MinMaxScalerParams {
    /// Numeric columns to scale. Required, non-empty, distinct.
    pub input_cols: Vec<String>,
    /// One output name per input column. Default `None`: replace the inputs in place.
    pub output_cols: Option<Vec<String>>,
    /// Lower end of the output range. Default 0; finite, below `max`.
    pub min: f64,
    /// Upper end of the output range. Default 1; finite, above `min`.
    pub max: f64,
}

impl Default for MinMaxScalerParams {
    fn default() -> Self {
        MinMaxScalerParams {
            input_cols: Vec::new(),
            output_cols: None,
            min: 0.0,
            max: 1.0,
        }
    }
}

valid_params! {
    /// Checked [`MinMaxScalerParams`].
    MinMaxScalerValidParams(MinMaxScalerParams)
}

impl Params for MinMaxScalerParams {
    type Valid = MinMaxScalerValidParams;

    fn check(&self) -> Result<MinMaxScalerValidParams> {
        let kind = MinMaxScaler::KIND;
        check_cols(kind, &self.input_cols, self.output_cols.as_deref())?;
        if !self.min.is_finite() || !self.max.is_finite() || self.min >= self.max {
            let field = if self.min.is_finite() { "max" } else { "min" };
            return Err(Error::param(
                format!("{kind}.{field}"),
                format!("need finite min < max, got [{}, {}]", self.min, self.max),
            ));
        }
        Ok(MinMaxScalerValidParams(self.clone()))
    }
}

impl Estimator for MinMaxScalerParams {
    type Fitted = MinMaxScaler;

    fn fit(&self, batches: &[RecordBatch]) -> Result<MinMaxScaler> {
        let mut s = MinMaxScaler::new(self.check()?);
        for b in batches {
            s.update(b)?;
        }
        Ok(s)
    }
}

/// A min-max scaler: fitted or following the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "MinMaxScalerState")]
pub struct MinMaxScaler {
    params: MinMaxScalerValidParams,
    extents: Vec<Extent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MinMaxScalerState {
    params: MinMaxScalerParams,
    extents: Vec<Extent>,
}

impl TryFrom<MinMaxScalerState> for MinMaxScaler {
    type Error = Error;

    fn try_from(s: MinMaxScalerState) -> Result<Self> {
        let params = s.params.check()?;
        if s.extents.len() != params.input_cols.len() || !s.extents.iter().all(Extent::is_valid) {
            return Err(corrupt(
                MinMaxScaler::KIND,
                "extents do not match the columns",
            ));
        }
        Ok(MinMaxScaler {
            params,
            extents: s.extents,
        })
    }
}

impl MinMaxScaler {
    /// The kind name in pipeline files.
    pub const KIND: &'static str = "min-max-scaler";

    /// A scaler with no statistics yet.
    pub fn new(params: MinMaxScalerValidParams) -> Self {
        let extents = vec![Extent::default(); params.input_cols.len()];
        MinMaxScaler { params, extents }
    }

    /// The parameters.
    pub fn params(&self) -> &MinMaxScalerValidParams {
        &self.params
    }

    /// The observed `(min, max)` per input column (`None` before any finite value).
    pub fn extents(&self) -> &[Extent] {
        &self.extents
    }
}

impl Transformer for MinMaxScaler {
    fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let p = &self.params;
        let outs = outputs(&p.input_cols, &p.output_cols);
        let mut cols = Vec::with_capacity(outs.len());
        for ((name, out), e) in p.input_cols.iter().zip(outs).zip(&self.extents) {
            let Some((lo, hi)) = e.0 else {
                return Err(not_fitted(Self::KIND, name));
            };
            let arr = f64_column(batch, Self::KIND, name)?;
            let (min, width) = (p.min, p.max - p.min);
            let values = if hi > lo {
                let range = hi - lo;
                map_values(&arr, |x| (x - lo) / range * width + min)
            } else {
                let mid = min + width / 2.0;
                map_values(&arr, |x| if x.is_finite() { mid } else { f64::NAN })
            };
            cols.push((out.clone(), values));
        }
        with_columns(batch, cols)
    }
}

impl OnlineEstimator for MinMaxScaler {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        fold_columns(
            batch,
            Self::KIND,
            &self.params.input_cols,
            &mut self.extents,
        )?;
        Ok(())
    }
}

impl Mergeable for MinMaxScaler {
    fn merge(&mut self, other: &Self) -> Result<()> {
        combine_columns(
            Self::KIND,
            (&self.params, &other.params),
            &mut self.extents,
            &other.extents,
        )?;
        Ok(())
    }
}

feature_step!(MinMaxScaler, online);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::numeric::testutil::*;
    use proptest::prelude::*;

    fn params(cols: &[&str]) -> MinMaxScalerParams {
        MinMaxScalerParams {
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
                    Some(2.0),
                    Some(6.0),
                    None,
                    Some(f64::NAN),
                    Some(4.0),
                    Some(f64::NEG_INFINITY),
                ],
            ),
            ("c", vec![Some(3.0); 6]),
        ]);
        let mut p = params(&["x", "c"]);
        p.min = -1.0;
        p.max = 1.0;
        let s = p.fit(std::slice::from_ref(&b)).unwrap();
        assert_eq!(s.extents()[0].0, Some((2.0, 6.0)));
        let out = s.transform(&b).unwrap();
        let x = col(&out, "x");
        assert_eq!(&x[..3], &[Some(-1.0), Some(1.0), None]);
        assert!(x[3].unwrap().is_nan());
        assert_eq!(x[4], Some(0.0));
        assert_eq!(x[5], Some(f64::NEG_INFINITY));
        // constant column → the middle of [-1, 1]
        assert_eq!(col(&out, "c"), vec![Some(0.0); 6]);
        // outside the fitted range extrapolates
        let o = s
            .transform(&dense(&[("x", vec![10.0]), ("c", vec![3.0])]))
            .unwrap();
        assert_eq!(col(&o, "x"), vec![Some(3.0)]);
    }

    #[test]
    fn bad_params_and_unfitted() {
        let mut p = params(&["x"]);
        p.min = 1.0;
        assert!(p
            .check()
            .unwrap_err()
            .to_string()
            .contains("min-max-scaler.max"));
        p.min = f64::NAN;
        assert!(p
            .check()
            .unwrap_err()
            .to_string()
            .contains("min-max-scaler.min"));
        let s = MinMaxScaler::new(params(&["x"]).check().unwrap());
        assert!(matches!(
            s.transform(&dense(&[("x", vec![1.0])])),
            Err(Error::NotFitted(_))
        ));
        let e = s.clone().transform(&dense(&[("y", vec![1.0])]));
        assert!(e.is_err());
    }

    proptest! {
        #[test]
        fn online_merge_and_one_row_agree(xs in messy_values(1..50), cut in 0.0f64..1.0) {
            let n = xs.len();
            let b = batch(&[("x", xs)]);
            let p = params(&["x"]);
            let whole = p.fit(std::slice::from_ref(&b)).unwrap();
            let mut online = MinMaxScaler::new(p.check().unwrap());
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
        let b = batch(&[
            ("x", vec![Some(1.0), None, Some(4.0)]),
            ("y", vec![Some(0.5); 3]),
        ]);
        let s = params(&["x", "y"]).fit(std::slice::from_ref(&b)).unwrap();
        check_save_load(&s, &b);
    }
}
