//! `standard-scaler`: `(x − mean) / std` per column.
//!
//! Statistics: count, mean and population variance of each column's finite values
//! ([`Moments`]: two-pass per batch, folded in with Chan's formula; mergeable). A zero standard
//! deviation scales by 1. Transform: nulls stay null, NaN stays NaN, ±inf map to ±inf; these
//! are never folded into the statistics. Output columns are `Float64`. A column that has seen
//! no finite value makes `transform` fail with [`Error::NotFitted`].

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::column_stat::{combine_columns, fold_columns};
use super::common::{
    check_cols, corrupt, feature_step, map_values, not_fitted, outputs, valid_params,
};
use super::stats::Moments;
use crate::columns::{f64_column, with_columns};
use crate::error::{Error, Result};
use crate::transform::{Estimator, Mergeable, OnlineEstimator, Params, Transformer};

/// Parameters of [`StandardScaler`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StandardScalerParams {
    /// Numeric columns to scale (integers are cast to `Float64`). Required, non-empty, distinct.
    pub input_cols: Vec<String>,
    /// One output name per input column. Default `None`: the inputs are replaced in place.
    pub output_cols: Option<Vec<String>>,
    /// Subtract the mean. Default `true`.
    pub with_mean: bool,
    /// Divide by the population standard deviation. Default `true`.
    pub with_std: bool,
}

impl Default for StandardScalerParams {
    fn default() -> Self {
        StandardScalerParams {
            input_cols: Vec::new(),
            output_cols: None,
            with_mean: true,
            with_std: true,
        }
    }
}

valid_params! {
    /// Checked [`StandardScalerParams`].
    StandardScalerValidParams(StandardScalerParams)
}

impl Params for StandardScalerParams {
    type Valid = StandardScalerValidParams;

    fn check(&self) -> Result<StandardScalerValidParams> {
        check_cols(
            StandardScaler::KIND,
            &self.input_cols,
            self.output_cols.as_deref(),
        )?;
        Ok(StandardScalerValidParams(self.clone()))
    }
}

impl Estimator for StandardScalerParams {
    type Fitted = StandardScaler;

    fn fit(&self, batches: &[RecordBatch]) -> Result<StandardScaler> {
        let mut s = StandardScaler::new(self.check()?);
        for b in batches {
            s.update(b)?;
        }
        Ok(s)
    }
}

/// A standard scaler: fitted or following the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StandardScalerState")]
pub struct StandardScaler {
    params: StandardScalerValidParams,
    stats: Vec<Moments>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StandardScalerState {
    params: StandardScalerParams,
    stats: Vec<Moments>,
}

impl TryFrom<StandardScalerState> for StandardScaler {
    type Error = Error;

    fn try_from(s: StandardScalerState) -> Result<Self> {
        let params = s.params.check()?;
        if s.stats.len() != params.input_cols.len() || !s.stats.iter().all(Moments::is_valid) {
            return Err(corrupt(
                StandardScaler::KIND,
                "statistics do not match the columns",
            ));
        }
        Ok(StandardScaler {
            params,
            stats: s.stats,
        })
    }
}

impl StandardScaler {
    /// The kind name in pipeline files.
    pub const KIND: &'static str = "standard-scaler";

    /// A scaler with no statistics yet (to be followed by `update`).
    pub fn new(params: StandardScalerValidParams) -> Self {
        let stats = vec![Moments::default(); params.input_cols.len()];
        StandardScaler { params, stats }
    }

    /// The parameters.
    pub fn params(&self) -> &StandardScalerValidParams {
        &self.params
    }

    /// The statistics, one per input column.
    pub fn stats(&self) -> &[Moments] {
        &self.stats
    }
}

impl StandardScaler {
    /// The shift and divisor of input column `col`: `x` scales to `(x - shift) / sd`. The one
    /// formula of the batch transform and a pipeline's per-row path.
    pub(crate) fn affine(&self, col: usize) -> Result<(f64, f64)> {
        let p = &self.params;
        let m = &self.stats[col];
        if m.count == 0 {
            return Err(not_fitted(Self::KIND, &p.input_cols[col]));
        }
        let shift = if p.with_mean { m.mean } else { 0.0 };
        let sd = m.variance().sqrt();
        let sd = if p.with_std && sd > 0.0 { sd } else { 1.0 };
        Ok((shift, sd))
    }

    /// Folds one value of input column `col` into its statistics: a one-row batch's update
    /// ([`Moments::of_value`]).
    pub(crate) fn fold_value(&mut self, col: usize, x: f64) {
        self.stats[col].merge(&Moments::of_value(x));
    }
}

/// `x` standard-scaled by [`StandardScaler::affine`]'s `shift` and `sd`.
#[inline]
pub(crate) fn scaled(x: f64, shift: f64, sd: f64) -> f64 {
    (x - shift) / sd
}

impl Transformer for StandardScaler {
    fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let p = &self.params;
        let outs = outputs(&p.input_cols, &p.output_cols);
        let mut cols = Vec::with_capacity(outs.len());
        for (col, (name, out)) in p.input_cols.iter().zip(outs).enumerate() {
            let (shift, sd) = self.affine(col)?;
            let arr = f64_column(batch, Self::KIND, name)?;
            cols.push((out.clone(), map_values(&arr, |x| scaled(x, shift, sd))));
        }
        with_columns(batch, cols)
    }
}

impl OnlineEstimator for StandardScaler {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        fold_columns(batch, Self::KIND, &self.params.input_cols, &mut self.stats)?;
        Ok(())
    }
}

impl Mergeable for StandardScaler {
    fn merge(&mut self, other: &Self) -> Result<()> {
        combine_columns(
            Self::KIND,
            (&self.params, &other.params),
            &mut self.stats,
            &other.stats,
        )?;
        Ok(())
    }
}

feature_step!(StandardScaler, online);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::numeric::testutil::*;
    use proptest::prelude::*;

    fn params(cols: &[&str]) -> StandardScalerParams {
        StandardScalerParams {
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
                    Some(1.0),
                    Some(3.0),
                    None,
                    Some(f64::NAN),
                    Some(8.0),
                    Some(f64::INFINITY),
                ],
            ),
            ("y", vec![Some(2.0); 6]),
        ]);
        let s = params(&["x", "y"]).fit(std::slice::from_ref(&b)).unwrap();
        // x: finite values 1, 3, 8: mean 4, population variance 26/3
        let sd = (26.0f64 / 3.0).sqrt();
        let out = s.transform(&b).unwrap();
        let x = col(&out, "x");
        assert!(close(x[0], Some(-3.0 / sd), 1e-12));
        assert!(close(x[1], Some(-1.0 / sd), 1e-12));
        assert_eq!(x[2], None);
        assert!(x[3].unwrap().is_nan());
        assert!(close(x[4], Some(4.0 / sd), 1e-12));
        assert_eq!(x[5], Some(f64::INFINITY));
        // zero variance: scale 1
        assert_eq!(col(&out, "y"), vec![Some(0.0); 6]);

        let mut p = params(&["x"]);
        p.with_mean = false;
        p.output_cols = Some(vec!["x_scaled".into()]);
        let s = p.fit(std::slice::from_ref(&b)).unwrap();
        let out = s.transform(&b).unwrap();
        assert!(close(col(&out, "x_scaled")[0], Some(1.0 / sd), 1e-12));
        assert_eq!(out.column_by_name("x"), b.column_by_name("x"));
    }

    #[test]
    fn missing_columns_types_and_unfitted_are_errors() {
        let b = dense(&[("x", vec![1.0, 2.0])]);
        let e = params(&["x", "z"])
            .fit(std::slice::from_ref(&b))
            .unwrap_err();
        assert!(
            matches!(e, Error::MissingColumn { ref column, .. } if column == "z"),
            "{e}"
        );
        let s = StandardScaler::new(params(&["x"]).check().unwrap());
        assert!(matches!(s.transform(&b), Err(Error::NotFitted(_))));
        assert!(params(&[]).check().is_err());
        let json = serde_json::json!({"input_cols": ["a"], "with_mean": 1});
        assert!(serde_json::from_value::<StandardScalerParams>(json).is_err());
    }

    proptest! {
        #[test]
        fn online_merge_and_one_row_agree(
            xs in messy_values(1..60),
            cut in 0.0f64..1.0,
        ) {
            let n = xs.len();
            let ys: Vec<Option<f64>> = xs.iter().rev().cloned().collect();
            let b = batch(&[("x", xs), ("y", ys)]);
            let p = params(&["x", "y"]);
            let whole = p.fit(std::slice::from_ref(&b)).unwrap();
            let k = (cut * n as f64) as usize;
            let (l, r) = (b.slice(0, k), b.slice(k, n - k));
            // online over a stream of batches
            let mut online = StandardScaler::new(p.check().unwrap());
            for i in 0..n {
                online.update(&b.slice(i, 1)).unwrap();
            }
            // merged partial states
            let mut merged = p.fit(&[l]).unwrap();
            merged.merge(&p.fit(&[r]).unwrap()).unwrap();
            for other in [&online, &merged] {
                for (a, o) in whole.stats().iter().zip(other.stats()) {
                    prop_assert_eq!(a.count, o.count);
                    prop_assert!(close(Some(a.mean), Some(o.mean), 1e-9));
                    prop_assert!(close(Some(a.m2), Some(o.m2), 1e-9));
                }
                match (whole.transform(&b), other.transform(&b)) {
                    (Ok(x), Ok(y)) => assert_batches_close(&x, &y, 1e-6),
                    (x, y) => prop_assert_eq!(x.is_ok(), y.is_ok()),
                }
            }
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
        let mut j = crate::transform::FeatureStep::save(&s).unwrap();
        j["stats"][0]["m2"] = serde_json::json!(-1.0);
        assert!(crate::feature::load_step(StandardScaler::KIND, j).is_err());
    }
}
