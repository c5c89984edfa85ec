//! Categorical and hashing feature steps, and the steps that assemble the learner's matrix.
//!
//! | step | kind | online? | mergeable? | null | NaN / ±inf | empty string | unseen value |
//! |---|---|---|---|---|---|---|---|
//! | [`StringIndexer`] | `string-indexer` | yes (vocabulary grows) | yes (counts add) | not counted; null index | (text `"NaN"`, a value) | a value | [`Unseen`]: error / null / bucket |
//! | [`OneHotEncoder`] | `one-hot-encoder` | yes | yes | no entry | (text, a value) | a value | [`Unseen`]: error / no entry / bucket |
//! | [`FeatureHasher`] | `feature-hasher` (matrix) | stateless | — | no entry | numeric: no entry | a value | hashed like any value |
//! | [`VectorAssembler`] | `vector-assembler` (matrix) | one-hot part | one-hot part | [`InvalidValues`]: error / constant | same as null | (one-hot) a value | one-hot policy |
//! | [`TargetEncoder`] | `target-encoder` | yes | yes (sums add) | encoded as the prior | label NaN/inf: error | a value | the prior |
//! | [`WindowedAggregateFeatures`] | `windowed-aggregates` | yes (rows fold in) | no (state is per key, partition by key) | null value: counted, not summed; null key: its own key | kept apart (sum/mean NaN or ±inf) | a key like any other | a new key: empty window |
//!
//! "(matrix)" steps implement [`ToFeatures`](crate::transform::ToFeatures) rather than
//! [`FeatureStep`](crate::transform::FeatureStep); they are saved inside a [`Featurizer`], which
//! serde reads and writes. A missing input column is always [`Error::MissingColumn`] naming the
//! step and column; non-text categorical columns are cast to their text form (`1`, `2.5`, `true`).
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{ArrayRef, Float64Array, StringArray};
//! use arrow::record_batch::RecordBatch;
//! use eddy_algorithms::feature::categorical::{FeatureHasherParams, FeatureHasher};
//! use eddy_algorithms::features::Features;
//! use eddy_algorithms::transform::{Params, ToFeatures};
//!
//! let batch = RecordBatch::try_from_iter([
//!     ("price", Arc::new(Float64Array::from(vec![1.5, 2.0])) as ArrayRef),
//!     ("city", Arc::new(StringArray::from(vec!["paris", "oslo"])) as ArrayRef),
//!     ("site", Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef),
//! ])?;
//! let params = FeatureHasherParams {
//!     numeric: vec!["price".into()],
//!     categorical: vec!["city".into(), "site".into()],
//!     crosses: vec![vec!["city".into(), "site".into()]],
//!     bits: 18,
//!     ..Default::default()
//! };
//! let hasher = FeatureHasher::new(params.check()?);
//! let mut out = Features::Sparse(Default::default());
//! hasher.to_features(&batch, &mut out)?;
//! assert_eq!((out.rows(), out.dim()), (2, 1 << 18));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | module | what |
//! |---|---|
//! | `vocab` | per-column category counts and the value → index map (shared by indexer and one-hot) |
//! | `string_indexer` | [`StringIndexer`] |
//! | `one_hot` | [`OneHotEncoder`] |
//! | `hasher` | [`FeatureHasher`] and hashed crosses |
//! | `assembler` | [`VectorAssembler`] |
//! | `featurizer` | [`Featurizer`], [`LabelSpec`] |
//! | `target_encoder` | [`TargetEncoder`] |
//! | `windowed` | [`WindowedAggregateFeatures`] |

mod assembler;
mod featurizer;
mod hasher;
mod one_hot;
mod string_indexer;
mod target_encoder;
mod vocab;
mod window_state;
mod windowed;

#[cfg(test)]
mod tests;

pub use assembler::{
    AssemblerOutput, InvalidValues, VectorAssembler, VectorAssemblerParams,
    VectorAssemblerValidParams,
};
pub use featurizer::{Featurizer, LabelSpec};
pub use hasher::{FeatureHasher, FeatureHasherParams, FeatureHasherValidParams};
pub use one_hot::{OneHotEncoder, OneHotEncoderParams, OneHotEncoderValidParams};
pub use string_indexer::{StringIndexer, StringIndexerParams, StringIndexerValidParams};
pub use target_encoder::{TargetEncoder, TargetEncoderParams, TargetEncoderValidParams};
pub use vocab::{StringOrder, Unseen};
pub use windowed::{
    WindowAgg, WindowRange, WindowedAggregateFeatures, WindowedAggregateParams,
    WindowedAggregateValidParams,
};

use crate::error::{Error, Result};
use crate::features::{CsrMatrix, Features};

/// The kind names of this module's steps (see [`StepKind`](super::StepKind)).
pub(crate) use one_hot::KIND as ONE_HOT_KIND;
pub(crate) use string_indexer::KIND as STRING_INDEXER_KIND;
pub(crate) use target_encoder::KIND as TARGET_ENCODER_KIND;
pub(crate) use windowed::KIND as WINDOWED_KIND;

/// The error of a saved state that does not load.
pub(crate) fn state_error(kind: &str, e: impl std::fmt::Display) -> Error {
    Error::ModelFile {
        path: format!("<{kind} state>"),
        message: e.to_string(),
    }
}

/// Serializes a step for [`FeatureStep::save`](crate::transform::FeatureStep::save).
pub(crate) fn save_json<T: serde::Serialize>(kind: &str, step: &T) -> Result<serde_json::Value> {
    serde_json::to_value(step).map_err(|e| state_error(kind, e))
}

/// Checks a list of input columns: not empty (unless `allow_empty`), no empty or repeated names.
pub(crate) fn check_columns(param: &str, columns: &[String], allow_empty: bool) -> Result<()> {
    if columns.is_empty() && !allow_empty {
        return Err(Error::param(param, "needs at least one column"));
    }
    for (i, c) in columns.iter().enumerate() {
        if c.is_empty() {
            return Err(Error::param(param, "a column name is empty"));
        }
        if columns[..i].contains(c) {
            return Err(Error::param(param, format!("column `{c}` is listed twice")));
        }
    }
    Ok(())
}

/// The output names: `outputs` when given (one per column), else `{column}{suffix}`.
pub(crate) fn output_names(
    param: &str,
    columns: &[String],
    outputs: &[String],
    suffix: &str,
) -> Result<Vec<String>> {
    if outputs.is_empty() {
        return Ok(columns.iter().map(|c| format!("{c}{suffix}")).collect());
    }
    if outputs.len() != columns.len() {
        return Err(Error::param(
            param,
            format!("{} outputs for {} columns", outputs.len(), columns.len()),
        ));
    }
    check_columns(param, outputs, false)?;
    Ok(outputs.to_vec())
}

/// `out` as a cleared sparse matrix of `dim` columns, keeping its allocations when it already
/// is one.
pub(crate) fn sparse_out(out: &mut Features, dim: u64) -> &mut CsrMatrix {
    if !matches!(out, Features::Sparse(_)) {
        *out = Features::Sparse(CsrMatrix::default());
    }
    match out {
        Features::Sparse(m) => {
            m.clear(dim);
            m
        }
        Features::Dense(_) => unreachable!("set to sparse just above"),
    }
}
