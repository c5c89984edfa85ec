//! [`TargetEncoder`]: each category replaced by its smoothed mean target.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array};
use arrow::record_batch::RecordBatch;

use super::{check_columns, output_names, save_json};
use crate::columns::{f64_column, str_column, with_columns};
use crate::error::{Error, Result};
use crate::transform::{Estimator, FeatureStep, Mergeable, OnlineEstimator, Params, Transformer};

pub(crate) const KIND: &str = "target-encoder";

/// Parameters of a [`TargetEncoder`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct TargetEncoderParams {
    /// The categorical columns (non-text columns by their text form). Required.
    pub columns: Vec<String>,
    /// The numeric target column (0/1 for a click, any number for regression). Required for
    /// fitting and updating; transforming does not read it.
    pub label: String,
    /// Output column names, one per column; empty (the default): `{column}_te`.
    pub outputs: Vec<String>,
    /// `m`, the weight of the prior: the encoding is `(sum + m·prior) / (count + m)`. Default
    /// 10, finite and ≥ 0.
    pub smoothing: f64,
}

impl Default for TargetEncoderParams {
    fn default() -> Self {
        TargetEncoderParams {
            columns: Vec::new(),
            label: String::new(),
            outputs: Vec::new(),
            smoothing: 10.0,
        }
    }
}

/// Checked [`TargetEncoderParams`].
#[derive(Debug, Clone, PartialEq)]
pub struct TargetEncoderValidParams {
    params: TargetEncoderParams,
    outputs: Vec<String>,
}

impl TargetEncoderValidParams {
    /// The parameters.
    pub fn params(&self) -> &TargetEncoderParams {
        &self.params
    }
}

impl Params for TargetEncoderParams {
    type Valid = TargetEncoderValidParams;

    fn check(&self) -> Result<TargetEncoderValidParams> {
        check_columns(&format!("{KIND}.columns"), &self.columns, false)?;
        if self.label.is_empty() {
            return Err(Error::param(format!("{KIND}.label"), "is required"));
        }
        if !(self.smoothing.is_finite() && self.smoothing >= 0.0) {
            return Err(Error::param(
                format!("{KIND}.smoothing"),
                "must be finite and ≥ 0",
            ));
        }
        let outputs = output_names(
            &format!("{KIND}.outputs"),
            &self.columns,
            &self.outputs,
            "_te",
        )?;
        Ok(TargetEncoderValidParams {
            params: self.clone(),
            outputs,
        })
    }
}

/// Sum and count of the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Stat {
    sum: f64,
    count: u64,
}

impl Stat {
    fn add(&mut self, other: Stat) {
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// Replaces each category by `(sum + m·prior) / (count + m)` over the rows seen with it, where
/// `prior` is the mean target over all rows (0 before any row). Output: one `Float64` column per
/// input column.
///
/// An unseen category, and a null one, is encoded as the prior; an empty string is a category.
/// A row's category counts for its column only when non-null; every row counts for the prior.
/// A null, NaN or ±inf target while fitting is an error naming the row. To avoid target
/// leakage in training, transform a batch before updating with it (progressive order).
/// Online updates and merges add sums and counts, so they equal a batch fit (up to float
/// summation order).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Saved", into = "Saved")]
pub struct TargetEncoder {
    valid: TargetEncoderValidParams,
    global: Stat,
    stats: Vec<HashMap<String, Stat>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    params: TargetEncoderParams,
    global: Stat,
    stats: Vec<Vec<(String, Stat)>>,
}

impl TryFrom<Saved> for TargetEncoder {
    type Error = Error;

    fn try_from(s: Saved) -> Result<Self> {
        let mut step = TargetEncoder::new(s.params.check()?);
        let bad = |m: String| Error::param(format!("{KIND}.stats"), m);
        if s.stats.len() != step.stats.len() {
            return Err(bad(format!(
                "{} tables for {} columns",
                s.stats.len(),
                step.stats.len()
            )));
        }
        if !s.global.sum.is_finite() {
            return Err(bad("the global sum is not finite".into()));
        }
        for (table, saved) in step.stats.iter_mut().zip(s.stats) {
            for (value, stat) in saved {
                if stat.count == 0 || stat.count > s.global.count || !stat.sum.is_finite() {
                    return Err(bad(format!("bad statistics for value `{value}`")));
                }
                if table.insert(value.clone(), stat).is_some() {
                    return Err(bad(format!("value `{value}` is listed twice")));
                }
            }
        }
        step.global = s.global;
        Ok(step)
    }
}

impl From<TargetEncoder> for Saved {
    fn from(t: TargetEncoder) -> Saved {
        let stats = t
            .stats
            .iter()
            .map(|m| {
                let mut v: Vec<(String, Stat)> = m.iter().map(|(k, s)| (k.clone(), *s)).collect();
                v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                v
            })
            .collect();
        Saved {
            params: t.valid.params,
            global: t.global,
            stats,
        }
    }
}

impl TargetEncoder {
    /// An encoder that has seen nothing (every category encodes as 0).
    pub fn new(valid: TargetEncoderValidParams) -> Self {
        let stats = vec![HashMap::new(); valid.params.columns.len()];
        TargetEncoder {
            valid,
            global: Stat::default(),
            stats,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &TargetEncoderParams {
        &self.valid.params
    }

    /// The mean target over all rows seen (0 before any).
    pub fn prior(&self) -> f64 {
        if self.global.count == 0 {
            0.0
        } else {
            self.global.sum / self.global.count as f64
        }
    }

    /// The encoding of `value` in input column `column` (by position).
    pub fn encode(&self, column: usize, value: &str) -> f64 {
        let prior = self.prior();
        match self.stats.get(column).and_then(|m| m.get(value)) {
            Some(s) => {
                let m = self.valid.params.smoothing;
                (s.sum + m * prior) / (s.count as f64 + m)
            }
            None => prior,
        }
    }

    fn fold(&mut self, batch: &RecordBatch) -> Result<()> {
        let p = &self.valid.params;
        let labels = f64_column(batch, KIND, &p.label)?;
        for row in 0..labels.len() {
            if labels.is_null(row) || !labels.value(row).is_finite() {
                return Err(Error::InvalidValue {
                    step: KIND.into(),
                    column: p.label.clone(),
                    row,
                    message: "target is missing or not finite".into(),
                });
            }
        }
        let columns = p
            .columns
            .iter()
            .map(|c| str_column(batch, KIND, c))
            .collect::<Result<Vec<_>>>()?;
        for (table, values) in self.stats.iter_mut().zip(&columns) {
            for (row, v) in values.iter().enumerate() {
                let Some(v) = v else { continue };
                let y = labels.value(row);
                match table.get_mut(v) {
                    Some(s) => s.add(Stat { sum: y, count: 1 }),
                    None => {
                        table.insert(v.to_owned(), Stat { sum: y, count: 1 });
                    }
                }
            }
        }
        self.global.add(Stat {
            sum: labels.values().iter().sum(),
            count: labels.len() as u64,
        });
        Ok(())
    }
}

impl Transformer for TargetEncoder {
    fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let p = &self.valid.params;
        let prior = self.prior();
        let mut out = Vec::with_capacity(p.columns.len());
        for (k, (column, name)) in p.columns.iter().zip(&self.valid.outputs).enumerate() {
            let values = str_column(batch, KIND, column)?;
            let encoded: Float64Array = values
                .iter()
                .map(|v| Some(v.map_or(prior, |v| self.encode(k, v))))
                .collect();
            out.push((name.clone(), Arc::new(encoded) as ArrayRef));
        }
        with_columns(batch, out)
    }
}

impl OnlineEstimator for TargetEncoder {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        self.fold(batch)
    }
}

impl Mergeable for TargetEncoder {
    fn merge(&mut self, other: &Self) -> Result<()> {
        if other.valid.params != self.valid.params {
            return Err(Error::param(
                KIND,
                "cannot merge encoders with different parameters",
            ));
        }
        for (a, b) in self.stats.iter_mut().zip(&other.stats) {
            for (v, s) in b {
                a.entry(v.clone()).or_default().add(*s);
            }
        }
        self.global.add(other.global);
        Ok(())
    }
}

impl Estimator for TargetEncoderParams {
    type Fitted = TargetEncoder;

    fn fit(&self, batches: &[RecordBatch]) -> Result<TargetEncoder> {
        let mut step = TargetEncoder::new(self.check()?);
        for b in batches {
            step.fold(b)?;
        }
        Ok(step)
    }
}

impl FeatureStep for TargetEncoder {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn save(&self) -> Result<serde_json::Value> {
        save_json(KIND, self)
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        self.fold(batch)
    }

    fn transforms_before_update(&self) -> bool {
        true
    }

    fn clone_box(&self) -> Box<dyn FeatureStep> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, StringArray};
    use arrow::datatypes::Float64Type;

    fn batch(c: Vec<Option<&str>>, y: Vec<Option<f64>>) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("c", Arc::new(StringArray::from(c)) as ArrayRef),
            ("y", Arc::new(Float64Array::from(y)) as ArrayRef),
        ])
        .unwrap()
    }

    #[test]
    fn smoothed_means_by_hand() {
        let p = TargetEncoderParams {
            columns: vec!["c".into()],
            label: "y".into(),
            smoothing: 2.0,
            ..Default::default()
        };
        let b = batch(
            vec![Some("a"), Some("a"), Some("a"), Some("b"), None],
            vec![Some(1.0), Some(1.0), Some(0.0), Some(0.0), Some(1.0)],
        );
        let t = p.fit(&[b]).unwrap();
        // prior = 3/5; a: (2 + 2·0.6)/(3 + 2) = 0.64; b: (0 + 1.2)/(1 + 2) = 0.4
        assert!((t.prior() - 0.6).abs() < 1e-12);
        let out = t
            .transform(&batch(
                vec![Some("a"), Some("b"), Some("zz"), None],
                vec![None; 4],
            ))
            .unwrap();
        let e = out
            .column_by_name("c_te")
            .unwrap()
            .as_primitive::<Float64Type>();
        let want = [0.64, 0.4, 0.6, 0.6];
        for (got, want) in e.values().iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }

    #[test]
    fn bad_targets_and_state_refused() {
        let p = TargetEncoderParams {
            columns: vec!["c".into()],
            label: "y".into(),
            ..Default::default()
        };
        let e = p
            .fit(&[batch(vec![Some("a"), Some("b")], vec![Some(1.0), None])])
            .unwrap_err();
        assert!(e.to_string().contains("row 1"), "{e}");
        assert!(TargetEncoderParams {
            smoothing: -1.0,
            ..p.clone()
        }
        .check()
        .is_err());
        let t = p.fit(&[batch(vec![Some("a")], vec![Some(1.0)])]).unwrap();
        let saved = t.save().unwrap();
        let back: TargetEncoder = serde_json::from_value(saved.clone()).unwrap();
        assert_eq!(back, t);
        let mut bad = saved;
        bad["stats"][0][0][1]["count"] = serde_json::json!(5);
        assert!(serde_json::from_value::<TargetEncoder>(bad).is_err());
    }
}
