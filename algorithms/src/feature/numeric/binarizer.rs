//! `binarizer`: `1` where `x > threshold`, else `0` (stateless).
//!
//! Outputs are `Float64`. Nulls stay null, NaN stays NaN; `±inf` compare as usual.

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::common::{check_cols, ext_f64, feature_step, map_values, outputs, valid_params};
use crate::columns::{f64_column, with_columns};
use crate::error::{Error, Result};
use crate::transform::{Estimator, Params, Transformer};

/// Parameters of [`Binarizer`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BinarizerParams {
    /// Numeric columns to binarize. Required, non-empty, distinct.
    pub input_cols: Vec<String>,
    /// One output name per input column. Default `None`: replace the inputs in place.
    pub output_cols: Option<Vec<String>>,
    /// Values strictly above it become 1. Default 0; any value but NaN.
    #[serde(with = "ext_f64")]
    pub threshold: f64,
}

valid_params! {
    /// Checked [`BinarizerParams`].
    BinarizerValidParams(BinarizerParams)
}

impl Params for BinarizerParams {
    type Valid = BinarizerValidParams;

    fn check(&self) -> Result<BinarizerValidParams> {
        let kind = Binarizer::KIND;
        check_cols(kind, &self.input_cols, self.output_cols.as_deref())?;
        if self.threshold.is_nan() {
            return Err(Error::param(format!("{kind}.threshold"), "must not be NaN"));
        }
        Ok(BinarizerValidParams(self.clone()))
    }
}

impl Estimator for BinarizerParams {
    type Fitted = Binarizer;

    /// Checks the params; a binarizer learns nothing from data.
    fn fit(&self, _batches: &[RecordBatch]) -> Result<Binarizer> {
        Ok(Binarizer::new(self.check()?))
    }
}

/// A binarizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "BinarizerState")]
pub struct Binarizer {
    params: BinarizerValidParams,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BinarizerState {
    params: BinarizerParams,
}

impl TryFrom<BinarizerState> for Binarizer {
    type Error = Error;

    fn try_from(s: BinarizerState) -> Result<Self> {
        Ok(Binarizer::new(s.params.check()?))
    }
}

impl Binarizer {
    /// The kind name in pipeline files.
    pub const KIND: &'static str = "binarizer";

    /// A binarizer with checked params.
    pub fn new(params: BinarizerValidParams) -> Self {
        Binarizer { params }
    }

    /// The parameters.
    pub fn params(&self) -> &BinarizerValidParams {
        &self.params
    }
}

impl Transformer for Binarizer {
    fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let p = &self.params;
        let t = p.threshold;
        let outs = outputs(&p.input_cols, &p.output_cols);
        let mut cols = Vec::with_capacity(outs.len());
        for (name, out) in p.input_cols.iter().zip(outs) {
            let arr = f64_column(batch, Self::KIND, name)?;
            let values = map_values(&arr, |x| {
                if x.is_nan() {
                    x
                } else if x > t {
                    1.0
                } else {
                    0.0
                }
            });
            cols.push((out.clone(), values));
        }
        with_columns(batch, cols)
    }
}

feature_step!(Binarizer, stateless);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::numeric::testutil::*;
    use proptest::prelude::*;

    fn binarizer(threshold: f64) -> Binarizer {
        let p = BinarizerParams {
            input_cols: vec!["x".into()],
            threshold,
            ..Default::default()
        };
        p.fit(&[]).unwrap()
    }

    #[test]
    fn thresholds_against_first_principles() {
        let b = batch(&[(
            "x",
            vec![
                Some(0.5),
                Some(0.4),
                Some(1.0),
                None,
                Some(f64::NAN),
                Some(f64::INFINITY),
            ],
        )]);
        let out = binarizer(0.5).transform(&b).unwrap();
        let x = col(&out, "x");
        assert_eq!(&x[..4], &[Some(0.0), Some(0.0), Some(1.0), None]);
        assert!(x[4].unwrap().is_nan());
        assert_eq!(x[5], Some(1.0));
        let all = binarizer(f64::NEG_INFINITY).transform(&b).unwrap();
        assert_eq!(col(&all, "x")[0], Some(1.0));
        let bad = BinarizerParams {
            input_cols: vec!["x".into()],
            threshold: f64::NAN,
            ..Default::default()
        };
        assert!(bad
            .check()
            .unwrap_err()
            .to_string()
            .contains("binarizer.threshold"));
        assert!(matches!(
            binarizer(0.0).transform(&dense(&[("y", vec![1.0])])),
            Err(Error::MissingColumn { .. })
        ));
    }

    proptest! {
        #[test]
        fn one_row_equals_batch(xs in messy_values(1..40), t in -1e3f64..1e3) {
            check_one_row_equals_batch(&binarizer(t), &batch(&[("x", xs)]))?;
        }
    }

    #[test]
    fn save_load_roundtrip_and_corruption() {
        let b = dense(&[("x", vec![-1.0, 0.5, 7.0])]);
        check_save_load(&binarizer(0.25), &b);
        check_save_load(&binarizer(f64::NEG_INFINITY), &b);
    }
}
