//! Numeric feature steps: scalers, imputer, bucketizer and quantile discretizer, binarizer,
//! normalizer and polynomial expansion, plus the streaming [`QuantileSketch`] they share.
//!
//! Every step has `XxxParams` (serde, documented defaults; `input_cols` and optional
//! `output_cols` — by default the input columns are replaced in place) checked into
//! `XxxValidParams`, and a step type implementing [`Transformer`](crate::transform::Transformer)
//! and [`FeatureStep`](crate::transform::FeatureStep). Stateful steps are built by
//! [`Estimator::fit`](crate::transform::Estimator::fit) on their params or by `new(valid)`
//! followed by [`OnlineEstimator::update`](crate::transform::OnlineEstimator::update).
//!
//! | kind | step | online | mergeable | null / NaN / ±inf |
//! |---|---|---|---|---|
//! | `standard-scaler` | [`StandardScaler`] | yes (exact) | yes (Chan) | null → null, NaN → NaN, ±inf → ±inf; only finite values enter the statistics |
//! | `min-max-scaler` | [`MinMaxScaler`] | yes (exact) | yes | as above; constant column → middle of the range |
//! | `max-abs-scaler` | [`MaxAbsScaler`] | yes (exact) | yes | as above |
//! | `robust-scaler` | [`RobustScaler`] | yes (sketch) | yes (sketch) | as above; median and IQR within the sketch bound |
//! | `imputer` | [`Imputer`] | yes (mean, most-frequent exact; median via sketch) | yes | null and NaN are *missing* and get the surrogate; ±inf are kept and not counted |
//! | `bucketizer` | [`Bucketizer`] | stateless | — | null → null; NaN → error or the extra bucket `n_buckets` (policy); outside the splits → error or the first/last bucket (policy) |
//! | `quantile-discretizer` | [`QuantileDiscretizer`] | yes (sketch) | yes (sketch) | as the bucketizer; splits span −inf..inf so nothing is out of range |
//! | `binarizer` | [`Binarizer`] | stateless | — | `x > threshold` → 1 else 0; null → null, NaN → NaN |
//! | `normalizer` | [`Normalizer`] | stateless | — | across a row's input columns; null counts as 0 and stays null; a NaN makes the row NaN |
//! | `polynomial-expansion` | [`PolynomialExpansion`] | stateless | — | products: null if any factor is null, IEEE for NaN/±inf |
//!
//! Shared rules:
//! - Inputs may be any numeric Arrow type (cast to `Float64`); outputs are `Float64`.
//! - A missing input column is [`Error::MissingColumn`](crate::error::Error::MissingColumn)
//!   naming the step and column; a non-numeric one is `Error::ColumnType`.
//! - Statistics are computed over the non-null **finite** values only.
//! - A stateful step whose column has seen no finite value yet refuses to transform with
//!   `Error::NotFitted` (constant imputation needs no statistics).
//! - `transform` never mutates; transforming N one-row batches equals one N-row batch.
//! - [`load_step`](crate::feature::load_step) reads every kind back from its `save()` JSON, re-checking the parameters and the
//!   consistency of the statistics; a corrupt state is an error, never a panic.

mod binarizer;
mod bucketizer;
mod column_stat;
pub(crate) mod common;
mod discretizer;
mod impute_state;
mod imputer;
mod max_abs;
mod min_max;
mod normalizer;
mod polynomial;
mod robust;
pub mod sketch;
mod standard;
pub mod stats;
#[cfg(test)]
mod testutil;

pub use binarizer::{Binarizer, BinarizerParams, BinarizerValidParams};
pub use bucketizer::{
    Bucketizer, BucketizerParams, BucketizerValidParams, NanPolicy, OutOfRangePolicy,
};
pub use discretizer::{
    QuantileDiscretizer, QuantileDiscretizerParams, QuantileDiscretizerValidParams,
};
pub use imputer::{ImputeStrategy, Imputer, ImputerParams, ImputerValidParams};
pub use max_abs::{MaxAbsScaler, MaxAbsScalerParams, MaxAbsScalerValidParams};
pub use min_max::{MinMaxScaler, MinMaxScalerParams, MinMaxScalerValidParams};
pub use normalizer::{Normalizer, NormalizerParams, NormalizerValidParams};
pub use polynomial::{
    PolynomialExpansion, PolynomialExpansionParams, PolynomialExpansionValidParams,
};
pub use robust::{RobustScaler, RobustScalerParams, RobustScalerValidParams};
pub use sketch::QuantileSketch;
pub(crate) use standard::scaled;
pub use standard::{StandardScaler, StandardScalerParams, StandardScalerValidParams};
