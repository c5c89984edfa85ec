//! From [`Examples`] to linfa's inputs: densified `f64` records, checked labels and weights.

use ndarray::{Array1, Array2};

use crate::error::{Error, Result};
use crate::features::{Examples, FeatureRow, Features};

/// The widest sparse matrix the batch learners densify: `2^12 = 4096` columns.
///
/// Training densifies into an `n × d` matrix of `f64` and the linear solvers work on `d × d`
/// systems, so wide hashed data (`2^18`–`2^22` columns) belongs to the online learners. Dense
/// input is used as given, whatever its width.
pub const MAX_DENSE_DIM: u64 = 1 << 12;

/// An error for a row whose `column` (`"features"`, `"label"` or `"weight"`) holds a value the
/// learner cannot use.
pub(crate) fn invalid(learner: &str, column: &str, row: usize, message: String) -> Error {
    Error::InvalidValue {
        step: learner.to_string(),
        column: column.to_string(),
        row,
        message,
    }
}

/// A fit that linfa refused (a singular system, a solver failure), attributed to the learner.
pub(crate) fn fit_failed(learner: &str, e: impl std::fmt::Display) -> Error {
    Error::param(learner, format!("training failed: {e}"))
}

/// Checks that `ex` is non-empty, consistently shaped, and that its labels are finite.
pub(crate) fn check_examples(learner: &str, ex: &Examples) -> Result<()> {
    let rows = ex.features.rows();
    if ex.labels.len() != rows || ex.weights.as_ref().is_some_and(|w| w.len() != rows) {
        return Err(Error::Shape(format!(
            "{learner}: {} labels and {} weights for {rows} rows",
            ex.labels.len(),
            ex.weights.as_ref().map_or(rows, Vec::len)
        )));
    }
    if rows == 0 {
        return Err(Error::Shape(format!("{learner}: no examples to train on")));
    }
    if let Some(row) = ex.labels.iter().position(|y| !y.is_finite()) {
        let message = format!("label {} is not finite", ex.labels[row]);
        return Err(invalid(learner, "label", row, message));
    }
    Ok(())
}

/// The features as a dense `f64` matrix: dense input converted, sparse input densified when
/// its dimension is at most [`MAX_DENSE_DIM`]. Refuses non-finite values, naming the row.
pub(crate) fn dense_records(learner: &str, x: &Features) -> Result<Array2<f64>> {
    let records = match x {
        Features::Dense(a) => a.mapv(f64::from),
        Features::Sparse(m) => {
            if m.dim() > MAX_DENSE_DIM {
                return Err(Error::Shape(format!(
                    "{learner}: sparse features of dimension {} are wider than the {MAX_DENSE_DIM} \
                     columns a batch learner densifies; train hashed high-dimensional data with \
                     an online learner, or featurize into fewer columns",
                    m.dim()
                )));
            }
            let mut a = Array2::zeros((m.rows(), m.dim() as usize));
            for r in 0..m.rows() {
                let (indices, values) = m.row(r);
                for (&j, &v) in indices.iter().zip(values) {
                    a[[r, j as usize]] += f64::from(v);
                }
            }
            a
        }
    };
    if let Some(row) = records
        .rows()
        .into_iter()
        .position(|r| r.iter().any(|v| !v.is_finite()))
    {
        return Err(invalid(
            learner,
            "features",
            row,
            "a feature value is not finite".into(),
        ));
    }
    Ok(records)
}

/// The sample weights as `f64`, or `None` when absent: each must be finite and `>= 0`, and
/// at least one positive.
pub(crate) fn sample_weights(learner: &str, ex: &Examples) -> Result<Option<Array1<f64>>> {
    let Some(w) = &ex.weights else {
        return Ok(None);
    };
    if let Some(row) = w.iter().position(|v| !v.is_finite() || *v < 0.0) {
        let message = format!("weight {} is not a finite number >= 0", w[row]);
        return Err(invalid(learner, "weight", row, message));
    }
    if w.iter().all(|&v| v == 0.0) {
        return Err(invalid(learner, "weight", 0, "every weight is 0".into()));
    }
    Ok(Some(w.iter().map(|&v| f64::from(v)).collect()))
}

/// Refuses sample weights other than 1, for learners linfa trains without sample weights
/// (ignoring them silently would train a different model than asked for).
pub(crate) fn refuse_weights(learner: &str, ex: &Examples) -> Result<()> {
    let Some(w) = &ex.weights else {
        return Ok(());
    };
    match w.iter().position(|&v| v != 1.0) {
        Some(row) => Err(invalid(
            learner,
            "weight",
            row,
            format!(
                "weight {} is not 1, and {learner} has no sample weights; drop the weights or \
                 resample the examples",
                w[row]
            ),
        )),
        None => Ok(()),
    }
}

/// Refuses `x` unless it has exactly the model's dimension (so every index is in range).
pub(crate) fn check_dim(learner: &str, x: &Features, dim: u64) -> Result<()> {
    if x.dim() != dim {
        return Err(Error::Shape(format!(
            "{learner}: features of dimension {} for a model trained on dimension {dim}",
            x.dim()
        )));
    }
    Ok(())
}

/// The value of column `j` in `row` (0 if absent; repeated sparse indices add up).
#[inline]
pub(crate) fn value_at(row: &FeatureRow<'_>, j: usize) -> f64 {
    match row {
        FeatureRow::Dense(x) => x.get(j).map_or(0.0, |&v| f64::from(v)),
        FeatureRow::Sparse { indices, values } => indices
            .iter()
            .zip(values.iter())
            .filter(|(&i, _)| i as usize == j)
            .map(|(_, &v)| f64::from(v))
            .sum(),
    }
}
