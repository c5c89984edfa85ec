//! `bucketizer`: maps values to bucket indices by given splits (stateless).
//!
//! Splits `s_0 < s_1 < … < s_m` (at least two, `±inf` allowed, no NaN) define `m` buckets:
//! bucket `i` is `[s_i, s_{i+1})`, the last one also holds `s_m`. The output is the bucket
//! index as `Float64` (as in Spark, so numeric steps can follow). Values outside `[s_0, s_m]`
//! follow [`OutOfRangePolicy`] (default: clamp into the first/last bucket); NaN follows
//! [`NanPolicy`] (default: error; `keep` puts it in the extra bucket `m`); nulls stay null.

use arrow::array::{ArrayRef, Float64Array};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::common::{
    check_cols, ext_f64_lists, feature_step, outputs, try_map_values, valid_params,
};
use crate::columns::{f64_column, with_columns};
use crate::error::{Error, Result};
use crate::transform::{Estimator, Params, Transformer};

/// What happens to a value below the first split or above the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutOfRangePolicy {
    /// Into the first (below) or last (above) bucket. The default.
    #[default]
    Clamp,
    /// `Error::InvalidValue` naming the column and row.
    Error,
}

/// What happens to a NaN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NanPolicy {
    /// `Error::InvalidValue` naming the column and row. The default.
    #[default]
    Error,
    /// Into an extra bucket whose index is the number of buckets.
    Keep,
}

/// Parameters of [`Bucketizer`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BucketizerParams {
    /// Numeric columns to bucketize. Required, non-empty, distinct.
    pub input_cols: Vec<String>,
    /// One output name per input column. Default `None`: replace the inputs in place.
    pub output_cols: Option<Vec<String>>,
    /// Split lists: one shared by every column, or one per input column. Each strictly
    /// increasing, at least two values, no NaN; `±inf` written `"inf"` / `"-inf"` in JSON.
    /// Required.
    #[serde(with = "ext_f64_lists")]
    pub splits: Vec<Vec<f64>>,
    /// Values outside the splits. Default `clamp`.
    pub out_of_range: OutOfRangePolicy,
    /// NaN values. Default `error`.
    pub nan: NanPolicy,
}

valid_params! {
    /// Checked [`BucketizerParams`].
    BucketizerValidParams(BucketizerParams)
}

/// Checks one split list (strictly increasing, ≥ 2 values, no NaN).
pub(crate) fn check_splits(field: &str, splits: &[f64]) -> Result<()> {
    if splits.len() < 2 {
        return Err(Error::param(field, "needs at least two splits"));
    }
    if splits.iter().any(|s| s.is_nan()) || splits.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::param(
            field,
            "must be strictly increasing, without NaN",
        ));
    }
    Ok(())
}

impl Params for BucketizerParams {
    type Valid = BucketizerValidParams;

    fn check(&self) -> Result<BucketizerValidParams> {
        let kind = Bucketizer::KIND;
        check_cols(kind, &self.input_cols, self.output_cols.as_deref())?;
        let n = self.splits.len();
        if n != 1 && n != self.input_cols.len() {
            return Err(Error::param(
                format!("{kind}.splits"),
                format!(
                    "needs one list or one per input column ({}), got {n}",
                    self.input_cols.len()
                ),
            ));
        }
        for (i, s) in self.splits.iter().enumerate() {
            check_splits(&format!("{kind}.splits[{i}]"), s)?;
        }
        Ok(BucketizerValidParams(self.clone()))
    }
}

impl Estimator for BucketizerParams {
    type Fitted = Bucketizer;

    /// Checks the params; a bucketizer learns nothing from data.
    fn fit(&self, _batches: &[RecordBatch]) -> Result<Bucketizer> {
        Ok(Bucketizer::new(self.check()?))
    }
}

/// Bucket index of every value of `arr` by `splits` (checked), with the policies.
pub(crate) fn bucketize(
    kind: &str,
    column: &str,
    arr: &Float64Array,
    splits: &[f64],
    out_of_range: OutOfRangePolicy,
    nan: NanPolicy,
) -> Result<ArrayRef> {
    let buckets = splits.len() - 1;
    let (first, last) = (splits[0], splits[buckets]);
    let invalid = |row: usize, message: String| Error::InvalidValue {
        step: kind.into(),
        column: column.into(),
        row,
        message,
    };
    try_map_values(arr, |row, x| {
        if x.is_nan() {
            return match nan {
                NanPolicy::Keep => Ok(buckets as f64),
                NanPolicy::Error => Err(invalid(row, "NaN (nan policy is `error`)".into())),
            };
        }
        if x < first || x > last {
            return match out_of_range {
                OutOfRangePolicy::Clamp if x < first => Ok(0.0),
                OutOfRangePolicy::Clamp => Ok((buckets - 1) as f64),
                OutOfRangePolicy::Error => Err(invalid(
                    row,
                    format!("{x} is outside the splits [{first}, {last}]"),
                )),
            };
        }
        if x == last {
            return Ok((buckets - 1) as f64);
        }
        Ok((splits.partition_point(|&s| s <= x) - 1) as f64)
    })
}

/// A bucketizer with fixed splits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "BucketizerState")]
pub struct Bucketizer {
    params: BucketizerValidParams,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketizerState {
    params: BucketizerParams,
}

impl TryFrom<BucketizerState> for Bucketizer {
    type Error = Error;

    fn try_from(s: BucketizerState) -> Result<Self> {
        Ok(Bucketizer::new(s.params.check()?))
    }
}

impl Bucketizer {
    /// The kind name in pipeline files.
    pub const KIND: &'static str = "bucketizer";

    /// A bucketizer with checked params.
    pub fn new(params: BucketizerValidParams) -> Self {
        Bucketizer { params }
    }

    /// The parameters.
    pub fn params(&self) -> &BucketizerValidParams {
        &self.params
    }
}

impl Transformer for Bucketizer {
    fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let p = &self.params;
        let outs = outputs(&p.input_cols, &p.output_cols);
        let mut cols = Vec::with_capacity(outs.len());
        for (i, (name, out)) in p.input_cols.iter().zip(outs).enumerate() {
            let splits = p.splits.get(i).unwrap_or(&p.splits[0]);
            let arr = f64_column(batch, Self::KIND, name)?;
            let b = bucketize(Self::KIND, name, &arr, splits, p.out_of_range, p.nan)?;
            cols.push((out.clone(), b));
        }
        with_columns(batch, cols)
    }
}

feature_step!(Bucketizer, stateless);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::numeric::testutil::*;
    use proptest::prelude::*;

    const INF: f64 = f64::INFINITY;

    fn params(cols: &[&str], splits: Vec<Vec<f64>>) -> BucketizerParams {
        BucketizerParams {
            input_cols: cols.iter().map(|c| c.to_string()).collect(),
            splits,
            ..Default::default()
        }
    }

    #[test]
    fn buckets_against_first_principles() {
        let b = batch(&[(
            "x",
            vec![
                Some(-5.0),
                Some(0.0),
                Some(0.5),
                Some(1.0),
                Some(2.0),
                Some(3.0),
                None,
            ],
        )]);
        let s = Bucketizer::new(params(&["x"], vec![vec![0.0, 1.0, 2.0]]).check().unwrap());
        let out = s.transform(&b).unwrap();
        // [0,1) → 0, [1,2] → 1; -5 and 3 clamp; 2 is in the last bucket
        let want = vec![
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(1.0),
            Some(1.0),
            Some(1.0),
            None,
        ];
        assert_eq!(col(&out, "x"), want);

        let mut p = params(&["x"], vec![vec![0.0, 1.0, 2.0]]);
        p.out_of_range = OutOfRangePolicy::Error;
        let e = Bucketizer::new(p.check().unwrap())
            .transform(&b)
            .unwrap_err();
        assert!(matches!(e, Error::InvalidValue { row: 0, .. }), "{e}");

        let nan = dense(&[("x", vec![1.5, f64::NAN]), ("y", vec![-INF, INF])]);
        let mut p = params(&["x", "y"], vec![vec![0.0, 1.0, 2.0], vec![-INF, 0.0, INF]]);
        assert!(matches!(
            Bucketizer::new(p.check().unwrap()).transform(&nan),
            Err(Error::InvalidValue { row: 1, .. })
        ));
        p.nan = NanPolicy::Keep;
        let out = Bucketizer::new(p.check().unwrap()).transform(&nan).unwrap();
        assert_eq!(col(&out, "x"), vec![Some(1.0), Some(2.0)]);
        assert_eq!(col(&out, "y"), vec![Some(0.0), Some(1.0)]);
    }

    #[test]
    fn bad_splits_are_named() {
        for (splits, field) in [
            (vec![vec![1.0]], "bucketizer.splits[0]"),
            (vec![vec![0.0, 0.0]], "bucketizer.splits[0]"),
            (
                vec![vec![0.0, 1.0], vec![f64::NAN, 1.0]],
                "bucketizer.splits[1]",
            ),
            (vec![], "bucketizer.splits"),
        ] {
            let e = params(&["a", "b"], splits).check().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    proptest! {
        #[test]
        fn one_row_equals_batch(
            xs in messy_values(1..40),
            mut splits in prop::collection::btree_set(-500i32..500, 2..6),
            keep in any::<bool>(),
        ) {
            let splits: Vec<f64> = std::mem::take(&mut splits).into_iter().map(f64::from).collect();
            let mut p = params(&["x"], vec![splits.clone()]);
            p.nan = if keep { NanPolicy::Keep } else { NanPolicy::Error };
            let s = Bucketizer::new(p.check().unwrap());
            let b = batch(&[("x", xs.clone())]);
            check_one_row_equals_batch(&s, &b)?;
            if let Ok(out) = s.transform(&b) {
                // oracle: a linear scan over the buckets
                for (x, y) in xs.iter().zip(col(&out, "x")) {
                    let want = x.map(|x| {
                        let m = splits.len() - 1;
                        if x.is_nan() { return m as f64; }
                        let i = (0..m).rev().find(|&i| x >= splits[i]).unwrap_or(0);
                        i as f64
                    });
                    prop_assert_eq!(y, want);
                }
            }
        }
    }

    #[test]
    fn save_load_roundtrip_and_corruption() {
        let b = dense(&[("x", vec![-1.0, 0.5, 7.0])]);
        let s = Bucketizer::new(
            params(&["x"], vec![vec![-INF, 0.0, 1.0, INF]])
                .check()
                .unwrap(),
        );
        check_save_load(&s, &b);
        let j = crate::transform::FeatureStep::save(&s).unwrap();
        assert_eq!(j["params"]["splits"][0][0], "-inf");
    }
}
