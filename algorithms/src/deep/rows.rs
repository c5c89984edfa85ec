//! Rows of features kept as plain CSR (the learner's pending mini-batch, and the scratch a
//! prediction gathers from), and the gather/scatter between them and the sparse tables.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::features::{Examples, FeatureRow, Features};

/// Rows of `(index, value)` features in CSR form, with labels and weights when training.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Rows {
    pub(super) indptr: Vec<u32>,
    pub(super) indices: Vec<u32>,
    pub(super) values: Vec<f32>,
    pub(super) labels: Vec<f32>,
    pub(super) weights: Vec<f32>,
}

impl Rows {
    /// Number of rows.
    pub(super) fn len(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    /// Empties the rows, keeping the allocations.
    pub(super) fn clear(&mut self) {
        self.indptr.clear();
        self.indptr.push(0);
        self.indices.clear();
        self.values.clear();
        self.labels.clear();
        self.weights.clear();
    }

    /// Appends row `i` of `x` (a dense row contributes its non-zero columns).
    pub(super) fn push(&mut self, x: &Features, i: usize) {
        if self.indptr.is_empty() {
            self.indptr.push(0);
        }
        match x.row(i) {
            FeatureRow::Sparse { indices, values } => {
                self.indices.extend_from_slice(indices);
                self.values.extend_from_slice(values);
            }
            FeatureRow::Dense(row) => {
                for (j, &v) in row.iter().enumerate() {
                    if v != 0.0 {
                        self.indices.push(j as u32);
                        self.values.push(v);
                    }
                }
            }
        }
        self.indptr.push(self.indices.len() as u32);
    }

    /// Appends row `i` of `x` with its label and weight (checked by [`check_examples`]).
    pub(super) fn push_example(&mut self, x: &Features, i: usize, label: f32, weight: f32) {
        self.push(x, i);
        self.labels.push(label);
        self.weights.push(weight);
    }

    /// Row `r` as parallel index and value slices.
    pub(super) fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r] as usize, self.indptr[r + 1] as usize);
        (&self.indices[a..b], &self.values[a..b])
    }

    /// Checks the invariants of deserialized rows (a corrupt snapshot is refused).
    pub(super) fn validate(&self, dim: u64) -> Result<()> {
        let ok = self.indptr.first() == Some(&0)
            && self.indptr.windows(2).all(|w| w[0] <= w[1])
            && *self.indptr.last().unwrap_or(&0) as usize == self.indices.len()
            && self.indices.len() == self.values.len()
            && self.labels.len() == self.len()
            && self.weights.len() == self.len()
            && self.indices.iter().all(|&i| u64::from(i) < dim);
        if ok {
            Ok(())
        } else {
            Err(Error::Shape("deep learner: corrupt pending batch".into()))
        }
    }
}

/// Refuses a batch with a label outside `[0, 1]` or a negative or non-finite weight, naming
/// the row, before any of it is learned.
pub(super) fn check_examples(ex: &Examples) -> Result<()> {
    for (i, &label) in ex.labels.iter().enumerate() {
        if !(0.0..=1.0).contains(&label) {
            return Err(invalid(
                "label",
                i,
                format!("must be in [0, 1], got {label}"),
            ));
        }
        let w = ex.weight(i);
        if !(w.is_finite() && w >= 0.0) {
            return Err(invalid(
                "weight",
                i,
                format!("must be finite and >= 0, got {w}"),
            ));
        }
    }
    Ok(())
}

fn invalid(column: &str, row: usize, message: String) -> Error {
    Error::InvalidValue {
        step: "deep learner".into(),
        column: column.into(),
        row,
        message,
    }
}
