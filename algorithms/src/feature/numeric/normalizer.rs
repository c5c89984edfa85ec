//! `normalizer`: divides each row's input columns by their p-norm (stateless).
//!
//! `‖x‖_p = (Σ |x_j|^p)^(1/p)` over the row's input columns (`p = inf`: `max |x_j|`), computed
//! scaled by the largest `|x_j|` so it neither overflows nor underflows. Each input column `j`
//! is replaced (or written to `output_cols[j]`) by `x_j / ‖x‖_p`; a zero norm leaves the row as
//! is. Nulls count as 0 in the norm and stay null. A NaN in a row makes the norm and every
//! output of that row NaN. A `±inf` makes the norm `+inf`: finite entries become 0, infinite
//! ones NaN (IEEE `inf / inf`). Outputs are `Float64`.

use arrow::array::{Array, Float64Array};
use arrow::compute::kernels::numeric::div;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::common::{check_cols, ext_f64, feature_step, outputs, valid_params};
use crate::columns::{f64_column, with_columns};
use crate::error::{Error, Result};
use crate::transform::{Estimator, Params, Transformer};

/// Parameters of [`Normalizer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizerParams {
    /// Numeric columns forming the vector of each row. Required, non-empty, distinct.
    pub input_cols: Vec<String>,
    /// One output name per input column. Default `None`: replace the inputs in place.
    pub output_cols: Option<Vec<String>>,
    /// The norm's order: any `p ≥ 1`, or `inf` (`"inf"` in JSON). Default 2.
    #[serde(with = "ext_f64")]
    pub p: f64,
}

impl Default for NormalizerParams {
    fn default() -> Self {
        NormalizerParams {
            input_cols: Vec::new(),
            output_cols: None,
            p: 2.0,
        }
    }
}

valid_params! {
    /// Checked [`NormalizerParams`].
    NormalizerValidParams(NormalizerParams)
}

impl Params for NormalizerParams {
    type Valid = NormalizerValidParams;

    fn check(&self) -> Result<NormalizerValidParams> {
        let kind = Normalizer::KIND;
        check_cols(kind, &self.input_cols, self.output_cols.as_deref())?;
        if self.p.is_nan() || self.p < 1.0 {
            return Err(Error::param(
                format!("{kind}.p"),
                format!("must be >= 1 or inf, got {}", self.p),
            ));
        }
        Ok(NormalizerValidParams(self.clone()))
    }
}

impl Estimator for NormalizerParams {
    type Fitted = Normalizer;

    /// Checks the params; a normalizer learns nothing from data.
    fn fit(&self, _batches: &[RecordBatch]) -> Result<Normalizer> {
        Ok(Normalizer::new(self.check()?))
    }
}

/// A row-wise p-norm normalizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NormalizerState")]
pub struct Normalizer {
    params: NormalizerValidParams,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NormalizerState {
    params: NormalizerParams,
}

impl TryFrom<NormalizerState> for Normalizer {
    type Error = Error;

    fn try_from(s: NormalizerState) -> Result<Self> {
        Ok(Normalizer::new(s.params.check()?))
    }
}

impl Normalizer {
    /// The kind name in pipeline files.
    pub const KIND: &'static str = "normalizer";

    /// A normalizer with checked params.
    pub fn new(params: NormalizerValidParams) -> Self {
        Normalizer { params }
    }

    /// The parameters.
    pub fn params(&self) -> &NormalizerValidParams {
        &self.params
    }
}

/// Calls `f(row, |x|)` for every non-null slot of `arr`.
fn for_each_abs(arr: &Float64Array, mut f: impl FnMut(usize, f64)) {
    let nulls = arr.nulls();
    for (i, &v) in arr.values().iter().enumerate() {
        if nulls.is_none_or(|n| n.is_valid(i)) {
            f(i, v.abs());
        }
    }
}

/// The p-norm of every row of `cols`, one pass per column (plus one for the maximum).
fn row_norms(cols: &[&Float64Array], rows: usize, p: f64) -> Vec<f64> {
    let mut max = vec![0.0f64; rows];
    for arr in cols {
        for_each_abs(arr, |i, a| {
            if a.is_nan() || max[i].is_nan() {
                max[i] = f64::NAN;
            } else if a > max[i] {
                max[i] = a;
            }
        });
    }
    if p.is_infinite() {
        return max;
    }
    let mut acc = vec![0.0f64; rows];
    for arr in cols {
        for_each_abs(arr, |i, a| {
            let m = max[i];
            if m.is_finite() && m > 0.0 {
                let r = a / m;
                acc[i] += if p == 1.0 {
                    r
                } else if p == 2.0 {
                    r * r
                } else {
                    r.powf(p)
                };
            }
        });
    }
    max.iter()
        .zip(&acc)
        .map(|(&m, &s)| {
            if m.is_finite() && m > 0.0 {
                m * if p == 1.0 {
                    s
                } else if p == 2.0 {
                    s.sqrt()
                } else {
                    s.powf(1.0 / p)
                }
            } else {
                m // 0, NaN or +inf
            }
        })
        .collect()
}

impl Transformer for Normalizer {
    fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let p = &self.params;
        let arrs = p
            .input_cols
            .iter()
            .map(|c| f64_column(batch, Self::KIND, c))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Float64Array> = arrs.iter().map(|a| a.as_ref()).collect();
        let norms = row_norms(&refs, batch.num_rows(), p.p);
        let divisors =
            Float64Array::from_iter_values(
                norms.into_iter().map(|n| if n == 0.0 { 1.0 } else { n }),
            );
        let outs = outputs(&p.input_cols, &p.output_cols);
        let mut cols = Vec::with_capacity(outs.len());
        for (arr, out) in refs.iter().zip(outs) {
            cols.push((out.clone(), div(*arr, &divisors)?));
        }
        with_columns(batch, cols)
    }
}

feature_step!(Normalizer, stateless);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::numeric::testutil::*;
    use proptest::prelude::*;

    fn normalizer(p: f64) -> Normalizer {
        let params = NormalizerParams {
            input_cols: vec!["a".into(), "b".into()],
            p,
            ..Default::default()
        };
        params.fit(&[]).unwrap()
    }

    #[test]
    fn norms_against_first_principles() {
        let b = batch(&[
            (
                "a",
                vec![
                    Some(3.0),
                    Some(0.0),
                    None,
                    Some(f64::NAN),
                    Some(1e300),
                    Some(f64::INFINITY),
                ],
            ),
            (
                "b",
                vec![
                    Some(-4.0),
                    Some(0.0),
                    Some(2.0),
                    Some(1.0),
                    Some(1e300),
                    Some(1.0),
                ],
            ),
        ]);
        let get = |p: f64| {
            let out = normalizer(p).transform(&b).unwrap();
            (col(&out, "a"), col(&out, "b"))
        };
        let (a, bb) = get(2.0);
        assert!(close(a[0], Some(0.6), 1e-15) && close(bb[0], Some(-0.8), 1e-15));
        assert_eq!(
            (a[1], bb[1]),
            (Some(0.0), Some(0.0)),
            "zero norm leaves the row"
        );
        assert_eq!((a[2], bb[2]), (None, Some(1.0)), "null counts as 0");
        assert!(a[3].unwrap().is_nan() && bb[3].unwrap().is_nan());
        let h = 1.0 / 2f64.sqrt();
        assert!(close(a[4], Some(h), 1e-15), "no overflow: {:?}", a[4]);
        assert!(a[5].unwrap().is_nan() && bb[5] == Some(0.0));
        let (a, bb) = get(1.0);
        assert!(close(a[0], Some(3.0 / 7.0), 1e-15) && close(bb[0], Some(-4.0 / 7.0), 1e-15));
        let (a, bb) = get(f64::INFINITY);
        assert!(close(a[0], Some(0.75), 1e-15) && close(bb[0], Some(-1.0), 1e-15));
        let (a, _) = get(3.0);
        let n3 = (27.0f64 + 64.0).powf(1.0 / 3.0);
        assert!(close(a[0], Some(3.0 / n3), 1e-14));
        for bad in [0.5, f64::NAN, -1.0] {
            let p = NormalizerParams {
                input_cols: vec!["a".into()],
                p: bad,
                ..Default::default()
            };
            assert!(p.check().unwrap_err().to_string().contains("normalizer.p"));
        }
    }

    proptest! {
        #[test]
        fn one_row_equals_batch_and_unit_norm(
            a in messy_values(1..30),
            b in messy_values(30..31),
            p in prop::sample::select(vec![1.0, 1.5, 2.0, 3.0, f64::INFINITY]),
        ) {
            let b: Vec<Option<f64>> = b[..a.len()].to_vec();
            let batch = batch(&[("a", a), ("b", b)]);
            let n = normalizer(p);
            check_one_row_equals_batch(&n, &batch)?;
            let out = n.transform(&batch).unwrap();
            for (x, y) in col(&out, "a").into_iter().zip(col(&out, "b")) {
                let (x, y) = (x.unwrap_or(0.0).abs(), y.unwrap_or(0.0).abs());
                if x.is_finite() && y.is_finite() && (x > 0.0 || y > 0.0) {
                    let norm = if p.is_infinite() { x.max(y) } else { (x.powf(p) + y.powf(p)).powf(1.0 / p) };
                    prop_assert!((norm - 1.0).abs() < 1e-9, "norm {}", norm);
                }
            }
        }
    }

    #[test]
    fn save_load_roundtrip_and_corruption() {
        let b = dense(&[("a", vec![-1.0, 0.5]), ("b", vec![2.0, 0.0])]);
        check_save_load(&normalizer(2.0), &b);
        check_save_load(&normalizer(f64::INFINITY), &b);
    }
}
