//! `robust-scaler`: `(x − median) / (q_hi − q_lo)` per column, robust to outliers.
//!
//! The median and the quantiles `quantile_range` (default the IQR, 25–75 %) come from a
//! [`QuantileSketch`] per column, so they are within its rank-error bound (exact while fewer
//! than `sketch_size` values have been seen) and mergeable. A zero range scales by 1. Nulls
//! stay null, NaN stays NaN, ±inf map to ±inf; only finite values enter the sketch.

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::column_stat::{combine_columns, fold_columns};
use super::common::{
    check_cols, check_sketch_size, corrupt, feature_step, map_values, not_fitted, outputs,
    valid_params,
};
use super::sketch::{QuantileSketch, DEFAULT_SKETCH_SIZE};
use crate::columns::{f64_column, with_columns};
use crate::error::{Error, Result};
use crate::transform::{Estimator, Mergeable, OnlineEstimator, Params, Transformer};

/// Parameters of [`RobustScaler`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RobustScalerParams {
    /// Numeric columns to scale. Required, non-empty, distinct.
    pub input_cols: Vec<String>,
    /// One output name per input column. Default `None`: replace the inputs in place.
    pub output_cols: Option<Vec<String>>,
    /// Subtract the median. Default `true`.
    pub with_centering: bool,
    /// Divide by the quantile range. Default `true`.
    pub with_scaling: bool,
    /// The quantile range in percent, `0 ≤ lo < hi ≤ 100`. Default `(25, 75)` (the IQR).
    pub quantile_range: (f64, f64),
    /// Capacity `k` of each column's sketch (even, 8..=65536). Default 1024: rank error
    /// ≤ 1 % of the values seen up to 10^6 values (see [`QuantileSketch`]).
    pub sketch_size: usize,
}

impl Default for RobustScalerParams {
    fn default() -> Self {
        RobustScalerParams {
            input_cols: Vec::new(),
            output_cols: None,
            with_centering: true,
            with_scaling: true,
            quantile_range: (25.0, 75.0),
            sketch_size: DEFAULT_SKETCH_SIZE,
        }
    }
}

valid_params! {
    /// Checked [`RobustScalerParams`].
    RobustScalerValidParams(RobustScalerParams)
}

impl Params for RobustScalerParams {
    type Valid = RobustScalerValidParams;

    fn check(&self) -> Result<RobustScalerValidParams> {
        let kind = RobustScaler::KIND;
        check_cols(kind, &self.input_cols, self.output_cols.as_deref())?;
        check_sketch_size(kind, self.sketch_size)?;
        let (lo, hi) = self.quantile_range;
        if !(0.0 <= lo && lo < hi && hi <= 100.0) {
            return Err(Error::param(
                format!("{kind}.quantile_range"),
                format!("need 0 <= lo < hi <= 100, got ({lo}, {hi})"),
            ));
        }
        Ok(RobustScalerValidParams(self.clone()))
    }
}

impl Estimator for RobustScalerParams {
    type Fitted = RobustScaler;

    fn fit(&self, batches: &[RecordBatch]) -> Result<RobustScaler> {
        let mut s = RobustScaler::new(self.check()?);
        for b in batches {
            s.update(b)?;
        }
        Ok(s)
    }
}

/// A robust scaler: fitted or following the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RobustScalerState")]
pub struct RobustScaler {
    params: RobustScalerValidParams,
    sketches: Vec<QuantileSketch>,
    /// `(center, scale)` per column, derived from the sketches after every change.
    #[serde(skip)]
    affine: Vec<Option<(f64, f64)>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RobustScalerState {
    params: RobustScalerParams,
    sketches: Vec<QuantileSketch>,
}

impl TryFrom<RobustScalerState> for RobustScaler {
    type Error = Error;

    fn try_from(s: RobustScalerState) -> Result<Self> {
        let params = s.params.check()?;
        let k = params.sketch_size;
        if s.sketches.len() != params.input_cols.len() || s.sketches.iter().any(|s| s.k() != k) {
            return Err(corrupt(
                RobustScaler::KIND,
                "sketches do not match the columns",
            ));
        }
        let mut r = RobustScaler {
            params,
            sketches: s.sketches,
            affine: Vec::new(),
        };
        r.refresh();
        Ok(r)
    }
}

impl RobustScaler {
    /// The kind name in pipeline files.
    pub const KIND: &'static str = "robust-scaler";

    /// A scaler with no statistics yet.
    pub fn new(params: RobustScalerValidParams) -> Self {
        let sketches = vec![QuantileSketch::empty(params.sketch_size); params.input_cols.len()];
        let mut r = RobustScaler {
            params,
            sketches,
            affine: Vec::new(),
        };
        r.refresh();
        r
    }

    /// The parameters.
    pub fn params(&self) -> &RobustScalerValidParams {
        &self.params
    }

    /// The sketch of each input column.
    pub fn sketches(&self) -> &[QuantileSketch] {
        &self.sketches
    }

    /// The `(center, scale)` applied to each column (`None` before any finite value).
    pub fn centers_and_scales(&self) -> &[Option<(f64, f64)>] {
        &self.affine
    }

    fn refresh(&mut self) {
        let p = &self.params;
        let (lo, hi) = p.quantile_range;
        self.affine = self
            .sketches
            .iter()
            .map(|s| {
                let q = s.quantiles(&[0.5, lo / 100.0, hi / 100.0])?;
                let center = if p.with_centering { q[0] } else { 0.0 };
                let range = q[2] - q[1];
                let scale = if p.with_scaling && range > 0.0 {
                    range
                } else {
                    1.0
                };
                Some((center, scale))
            })
            .collect();
    }
}

impl Transformer for RobustScaler {
    fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let p = &self.params;
        let outs = outputs(&p.input_cols, &p.output_cols);
        let mut cols = Vec::with_capacity(outs.len());
        for ((name, out), a) in p.input_cols.iter().zip(outs).zip(&self.affine) {
            let (center, scale) = a.ok_or_else(|| not_fitted(Self::KIND, name))?;
            let arr = f64_column(batch, Self::KIND, name)?;
            cols.push((out.clone(), map_values(&arr, |x| (x - center) / scale)));
        }
        with_columns(batch, cols)
    }
}

impl OnlineEstimator for RobustScaler {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        fold_columns(
            batch,
            Self::KIND,
            &self.params.input_cols,
            &mut self.sketches,
        )?;
        self.refresh();
        Ok(())
    }
}

impl Mergeable for RobustScaler {
    fn merge(&mut self, other: &Self) -> Result<()> {
        combine_columns(
            Self::KIND,
            (&self.params, &other.params),
            &mut self.sketches,
            &other.sketches,
        )?;
        self.refresh();
        Ok(())
    }
}

feature_step!(RobustScaler, online);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::numeric::testutil::*;
    use proptest::prelude::*;

    fn params(cols: &[&str], k: usize) -> RobustScalerParams {
        RobustScalerParams {
            input_cols: cols.iter().map(|c| c.to_string()).collect(),
            sketch_size: k,
            ..Default::default()
        }
    }

    #[test]
    fn scales_against_first_principles() {
        // finite values 1..=9 (nearest-rank): median 5, q25 = 3 (rank ⌈2.25⌉), q75 = 7
        let mut xs: Vec<Option<f64>> = (1..=9).map(|i| Some(f64::from(i))).collect();
        xs.extend([None, Some(f64::NAN), Some(f64::INFINITY)]);
        let b = batch(&[("x", xs), ("c", vec![Some(2.0); 12])]);
        let s = params(&["x", "c"], 64)
            .fit(std::slice::from_ref(&b))
            .unwrap();
        assert_eq!(
            s.centers_and_scales(),
            &[Some((5.0, 4.0)), Some((2.0, 1.0))]
        );
        let out = s.transform(&b).unwrap();
        let x = col(&out, "x");
        assert_eq!(x[0], Some(-1.0));
        assert_eq!(x[4], Some(0.0));
        assert_eq!(x[9], None);
        assert!(x[10].unwrap().is_nan());
        assert_eq!(x[11], Some(f64::INFINITY));
        assert_eq!(col(&out, "c"), vec![Some(0.0); 12]);
        let mut p = params(&["x"], 64);
        p.quantile_range = (80.0, 20.0);
        assert!(p
            .check()
            .unwrap_err()
            .to_string()
            .contains("quantile_range"));
        p.quantile_range = (0.0, 100.0);
        p.sketch_size = 7;
        assert!(p.check().unwrap_err().to_string().contains("sketch_size"));
    }

    proptest! {
        #[test]
        fn online_merge_and_one_row_within_sketch_bound(
            xs in prop::collection::vec(-1e3f64..1e3, 1..400),
            cut in 0.0f64..1.0,
        ) {
            let n = xs.len();
            let b = dense(&[("x", xs.clone())]);
            let p = params(&["x"], 16);
            let whole = p.fit(std::slice::from_ref(&b)).unwrap();
            // online over one-row batches inserts in the same order: the same sketch
            let mut online = RobustScaler::new(p.check().unwrap());
            for i in 0..n {
                online.update(&b.slice(i, 1)).unwrap();
            }
            prop_assert_eq!(&online, &whole);
            // merged halves: the median is within the merged sketch's rank bound
            let k = (cut * n as f64) as usize;
            let mut merged = p.fit(&[b.slice(0, k)]).unwrap();
            merged.merge(&p.fit(&[b.slice(k, n - k)]).unwrap()).unwrap();
            let e = merged.sketches()[0].max_rank_error() as f64;
            let (center, _) = merged.centers_and_scales()[0].unwrap();
            let below = xs.iter().filter(|&&v| v < center).count() as f64;
            let at_most = xs.iter().filter(|&&v| v <= center).count() as f64;
            prop_assert!(below <= n as f64 / 2.0 + e && at_most >= n as f64 / 2.0 - e);
            check_one_row_equals_batch(&whole, &b)?;
        }
    }

    #[test]
    fn save_load_roundtrip_and_corruption() {
        let xs: Vec<f64> = (0..100).map(|i| f64::from(i * 37 % 101)).collect();
        let b = dense(&[("x", xs)]);
        let s = params(&["x"], 8).fit(std::slice::from_ref(&b)).unwrap();
        check_save_load(&s, &b);
        let mut j = crate::transform::FeatureStep::save(&s).unwrap();
        j["sketches"][0]["k"] = serde_json::json!(16);
        assert!(crate::feature::load_step(RobustScaler::KIND, j).is_err());
    }
}
