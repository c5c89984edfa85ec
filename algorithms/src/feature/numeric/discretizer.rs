//! `quantile-discretizer`: buckets by approximate quantiles that follow the stream.
//!
//! Each column keeps a [`QuantileSketch`]; the splits are `−inf`, the sketch's
//! `i / num_buckets` quantiles (`i = 1..num_buckets`, duplicates dropped, so a column with few
//! distinct values gets fewer buckets) and `+inf`, recomputed after every `update` / `merge`.
//! Quantiles are data values and a value equal to a split goes to the upper bucket (as in
//! Spark). Bucketing is then the [`Bucketizer`](super::Bucketizer)'s: the output is the bucket
//! index as `Float64`, nulls stay null, ±inf land in the first/last bucket, NaN follows
//! [`NanPolicy`] (default error; `keep`: the extra bucket whose index is the number of
//! buckets). Only finite values enter the sketch.

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::bucketizer::{bucketize, NanPolicy, OutOfRangePolicy};
use super::column_stat::{combine_columns, fold_columns};
use super::common::{
    check_cols, check_sketch_size, corrupt, feature_step, not_fitted, outputs, valid_params,
};
use super::sketch::{QuantileSketch, DEFAULT_SKETCH_SIZE};
use crate::columns::{f64_column, with_columns};
use crate::error::{Error, Result};
use crate::transform::{Estimator, Mergeable, OnlineEstimator, Params, Transformer};

/// The most buckets a column may ask for.
const MAX_BUCKETS: usize = 100_000;

/// Parameters of [`QuantileDiscretizer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuantileDiscretizerParams {
    /// Numeric columns to discretize. Required, non-empty, distinct.
    pub input_cols: Vec<String>,
    /// One output name per input column. Default `None`: replace the inputs in place.
    pub output_cols: Option<Vec<String>>,
    /// Number of buckets, `2..=100000`. Default 2.
    pub num_buckets: usize,
    /// NaN values. Default `error`.
    pub nan: NanPolicy,
    /// Capacity `k` of each column's sketch (even, 8..=65536). Default 1024.
    pub sketch_size: usize,
}

impl Default for QuantileDiscretizerParams {
    fn default() -> Self {
        QuantileDiscretizerParams {
            input_cols: Vec::new(),
            output_cols: None,
            num_buckets: 2,
            nan: NanPolicy::Error,
            sketch_size: DEFAULT_SKETCH_SIZE,
        }
    }
}

valid_params! {
    /// Checked [`QuantileDiscretizerParams`].
    QuantileDiscretizerValidParams(QuantileDiscretizerParams)
}

impl Params for QuantileDiscretizerParams {
    type Valid = QuantileDiscretizerValidParams;

    fn check(&self) -> Result<QuantileDiscretizerValidParams> {
        let kind = QuantileDiscretizer::KIND;
        check_cols(kind, &self.input_cols, self.output_cols.as_deref())?;
        check_sketch_size(kind, self.sketch_size)?;
        if !(2..=MAX_BUCKETS).contains(&self.num_buckets) {
            return Err(Error::param(
                format!("{kind}.num_buckets"),
                format!("must be in 2..={MAX_BUCKETS}, got {}", self.num_buckets),
            ));
        }
        Ok(QuantileDiscretizerValidParams(self.clone()))
    }
}

impl Estimator for QuantileDiscretizerParams {
    type Fitted = QuantileDiscretizer;

    fn fit(&self, batches: &[RecordBatch]) -> Result<QuantileDiscretizer> {
        let mut s = QuantileDiscretizer::new(self.check()?);
        for b in batches {
            s.update(b)?;
        }
        Ok(s)
    }
}

/// A quantile discretizer: fitted or following the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "QuantileDiscretizerState")]
pub struct QuantileDiscretizer {
    params: QuantileDiscretizerValidParams,
    sketches: Vec<QuantileSketch>,
    /// The splits per column, derived from the sketches after every change.
    #[serde(skip)]
    splits: Vec<Option<Vec<f64>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuantileDiscretizerState {
    params: QuantileDiscretizerParams,
    sketches: Vec<QuantileSketch>,
}

impl TryFrom<QuantileDiscretizerState> for QuantileDiscretizer {
    type Error = Error;

    fn try_from(s: QuantileDiscretizerState) -> Result<Self> {
        let params = s.params.check()?;
        let k = params.sketch_size;
        if s.sketches.len() != params.input_cols.len() || s.sketches.iter().any(|s| s.k() != k) {
            return Err(corrupt(
                QuantileDiscretizer::KIND,
                "sketches do not match the columns",
            ));
        }
        let mut d = QuantileDiscretizer {
            params,
            sketches: s.sketches,
            splits: Vec::new(),
        };
        d.refresh();
        Ok(d)
    }
}

impl QuantileDiscretizer {
    /// The kind name in pipeline files.
    pub const KIND: &'static str = "quantile-discretizer";

    /// A discretizer with no statistics yet.
    pub fn new(params: QuantileDiscretizerValidParams) -> Self {
        let sketches = vec![QuantileSketch::empty(params.sketch_size); params.input_cols.len()];
        let mut d = QuantileDiscretizer {
            params,
            sketches,
            splits: Vec::new(),
        };
        d.refresh();
        d
    }

    /// The parameters.
    pub fn params(&self) -> &QuantileDiscretizerValidParams {
        &self.params
    }

    /// The sketch of each input column.
    pub fn sketches(&self) -> &[QuantileSketch] {
        &self.sketches
    }

    /// The current splits of each column (from `−inf` to `+inf`; `None` before any value).
    pub fn splits(&self) -> &[Option<Vec<f64>>] {
        &self.splits
    }

    fn refresh(&mut self) {
        let nb = self.params.num_buckets;
        let qs: Vec<f64> = (1..nb).map(|i| i as f64 / nb as f64).collect();
        self.splits = self
            .sketches
            .iter()
            .map(|s| {
                let mut splits = vec![f64::NEG_INFINITY];
                splits.extend(s.quantiles(&qs)?);
                splits.push(f64::INFINITY);
                splits.dedup();
                Some(splits)
            })
            .collect();
    }
}

impl Transformer for QuantileDiscretizer {
    fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let p = &self.params;
        let outs = outputs(&p.input_cols, &p.output_cols);
        let mut cols = Vec::with_capacity(outs.len());
        for ((name, out), splits) in p.input_cols.iter().zip(outs).zip(&self.splits) {
            let splits = splits
                .as_ref()
                .ok_or_else(|| not_fitted(Self::KIND, name))?;
            let arr = f64_column(batch, Self::KIND, name)?;
            let b = bucketize(
                Self::KIND,
                name,
                &arr,
                splits,
                OutOfRangePolicy::Clamp,
                p.nan,
            )?;
            cols.push((out.clone(), b));
        }
        with_columns(batch, cols)
    }
}

impl OnlineEstimator for QuantileDiscretizer {
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

impl Mergeable for QuantileDiscretizer {
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

feature_step!(QuantileDiscretizer, online);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::numeric::testutil::*;
    use proptest::prelude::*;

    fn params(cols: &[&str], nb: usize, k: usize) -> QuantileDiscretizerParams {
        QuantileDiscretizerParams {
            input_cols: cols.iter().map(|c| c.to_string()).collect(),
            num_buckets: nb,
            sketch_size: k,
            ..Default::default()
        }
    }

    #[test]
    fn splits_and_buckets_against_first_principles() {
        // 1..=8 in 4 buckets: nearest-rank quantiles at 1/4, 2/4, 3/4 are 2, 4, 6
        let xs: Vec<f64> = (1..=8).map(f64::from).collect();
        let b = dense(&[("x", xs), ("c", vec![5.0; 8])]);
        let d = params(&["x", "c"], 4, 64)
            .fit(std::slice::from_ref(&b))
            .unwrap();
        let inf = f64::INFINITY;
        assert_eq!(d.splits()[0], Some(vec![-inf, 2.0, 4.0, 6.0, inf]));
        // a constant column collapses to two buckets
        assert_eq!(d.splits()[1], Some(vec![-inf, 5.0, inf]));
        let out = d.transform(&b).unwrap();
        let want: Vec<Option<f64>> = [0., 1., 1., 2., 2., 3., 3., 3.].map(Some).to_vec();
        assert_eq!(col(&out, "x"), want);
        let odd = batch(&[
            ("x", vec![Some(-inf), Some(f64::NAN), None]),
            ("c", vec![Some(1.0); 3]),
        ]);
        assert!(matches!(
            d.transform(&odd),
            Err(Error::InvalidValue { row: 1, .. })
        ));
        let mut p = params(&["x", "c"], 4, 64);
        p.nan = NanPolicy::Keep;
        let d = p.fit(std::slice::from_ref(&b)).unwrap();
        assert_eq!(
            col(&d.transform(&odd).unwrap(), "x"),
            vec![Some(0.0), Some(4.0), None]
        );
        assert!(params(&["x"], 1, 64)
            .check()
            .unwrap_err()
            .to_string()
            .contains("num_buckets"));
        let empty = QuantileDiscretizer::new(params(&["x"], 2, 64).check().unwrap());
        assert!(matches!(empty.transform(&b), Err(Error::NotFitted(_))));
    }

    proptest! {
        #[test]
        fn online_merge_and_one_row_agree(
            xs in prop::collection::vec(-1e3f64..1e3, 1..300),
            nb in 2usize..6,
            cut in 0.0f64..1.0,
        ) {
            let n = xs.len();
            let b = dense(&[("x", xs.clone())]);
            let p = params(&["x"], nb, 16);
            let whole = p.fit(std::slice::from_ref(&b)).unwrap();
            let mut online = QuantileDiscretizer::new(p.check().unwrap());
            for i in 0..n {
                online.update(&b.slice(i, 1)).unwrap();
            }
            prop_assert_eq!(&online, &whole);
            // merged: every split is within the merged sketch's rank bound of its quantile
            let k = (cut * n as f64) as usize;
            let mut merged = p.fit(&[b.slice(0, k)]).unwrap();
            merged.merge(&p.fit(&[b.slice(k, n - k)]).unwrap()).unwrap();
            let e = merged.sketches()[0].max_rank_error() as f64;
            let splits = merged.splits()[0].clone().unwrap();
            for &s in &splits[1..splits.len() - 1] {
                let below = xs.iter().filter(|&&v| v < s).count() as f64;
                let at_most = xs.iter().filter(|&&v| v <= s).count() as f64;
                let ok = (1..nb).any(|i| {
                    let qn = i as f64 / nb as f64 * n as f64;
                    below <= qn + e && at_most >= qn - e
                });
                prop_assert!(ok, "split {} not near any quantile (e = {})", s, e);
            }
            check_one_row_equals_batch(&whole, &b)?;
        }
    }

    #[test]
    fn save_load_roundtrip_and_corruption() {
        let xs: Vec<f64> = (0..60).map(|i| f64::from(i * 13 % 61)).collect();
        let b = dense(&[("x", xs)]);
        let d = params(&["x"], 3, 8).fit(std::slice::from_ref(&b)).unwrap();
        check_save_load(&d, &b);
    }
}
