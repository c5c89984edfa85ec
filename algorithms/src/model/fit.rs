//! The cross-field check of a decoded [`TrainedModel`]: the learner must accept the feature
//! matrices its own pipeline produces.
//!
//! A file whose checksum is valid may still pair a pipeline and a learner that disagree (a
//! hasher widened to 30 bits in front of a 2^18-weight learner): it would load and then fail
//! on every row. The check scores one probe row of the pipeline's shape — the last feature
//! index set (sparse), or an all-zero row of the pipeline's width (dense) — through the
//! learner's own `predict`, which applies that learner's dimension checks, so every learner
//! is covered without per-learner code.

use ndarray::Array2;

use crate::feature::categorical::{AssemblerOutput, Featurizer};
use crate::features::{CsrMatrix, Features};
use crate::learner::Predictor;
use crate::trained::TrainedModel;

/// Dense probe rows wider than this are not built (no dense featurizer is that wide; the
/// learner's own check then runs on the first request).
const MAX_DENSE_PROBE: u64 = 1 << 24;

/// Refuses a trained model whose learner cannot score a row of its pipeline's shape.
pub(crate) fn check_trained(t: &TrainedModel) -> Result<(), String> {
    let dim = t.pipeline.dim();
    let dense = match t.pipeline.featurizer() {
        Featurizer::Hasher(_) => false,
        Featurizer::Assembler(a) => a.params().output == AssemblerOutput::Dense,
    };
    let probe = if dense {
        if dim > MAX_DENSE_PROBE {
            return Ok(());
        }
        Features::Dense(Array2::zeros((1, dim as usize)))
    } else {
        let last = dim
            .checked_sub(1)
            .and_then(|d| u32::try_from(d).ok())
            .ok_or_else(|| format!("the pipeline's feature dimension {dim} is out of range"))?;
        let mut m = CsrMatrix::with_capacity(dim, 1, 1);
        m.push(last, 0.0);
        m.finish_row();
        Features::Sparse(m)
    };
    let mut out = Vec::with_capacity(1);
    t.model.predict(&probe, &mut out).map_err(|e| {
        format!(
            "the pipeline makes features of dimension {dim}, which the `{}` learner does not \
             accept: {e}",
            t.model.name()
        )
    })
}
