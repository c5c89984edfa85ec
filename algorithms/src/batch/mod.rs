//! Batch learners trained on bounded data through [linfa](https://github.com/rust-ml/linfa) 0.8
//! (pure Rust, ndarray 0.16, no BLAS), and the warm-start path from a batch linear model to its
//! online counterpart.
//!
//! Each learner follows the params pattern: `XxxParams` (serde, documented defaults) →
//! [`check`](crate::transform::Params::check) → the learner, a [`BatchLearner`] whose `fit`
//! returns a serializable [`Predictor`]:
//!
//! | params → learner | model | task | fitted by |
//! |---|---|---|---|
//! | [`LogisticRegressionParams`] → [`LogisticRegression`] | [`LogisticRegressionModel`] | binary | `linfa-logistic` (L-BFGS) |
//! | [`LinearRegressionParams`] → [`LinearRegression`] | [`LinearRegressionModel`] | regression | `linfa-linear` (least squares) |
//! | [`RidgeParams`] → [`Ridge`] | [`LinearRegressionModel`] | regression | `linfa-linear` on an augmented system |
//! | [`KMeansParams`] → [`KMeans`] | [`KMeansModel`] | clustering | `linfa-clustering` (seeded k-means++) |
//! | [`DecisionTreeParams`] → [`DecisionTree`] | [`DecisionTreeModel`] | multiclass | `linfa-trees` (CART) |
//!
//! Fitted models keep their own plain parameters (weights, centroids, a flat tree), not linfa's
//! types, so a saved model does not depend on linfa's serialization and predicts on sparse rows
//! without densifying them.
//!
//! ## Input
//! - [`Features::Dense`](crate::features::Features::Dense) is used as is.
//! - [`Features::Sparse`](crate::features::Features::Sparse) is densified (duplicate indices in a
//!   row add up, as in a dot product) when its dimension is at most [`MAX_DENSE_DIM`] columns;
//!   a wider matrix is refused with [`Error::Shape`](crate::error::Error::Shape) naming its
//!   dimension. Hashed `2^18`–`2^22`-dimensional data is for the online learners.
//! - Non-finite feature values, labels or weights are refused with
//!   [`Error::InvalidValue`](crate::error::Error::InvalidValue) naming the row; so is an empty
//!   training set.
//! - Sample weights are honoured by [`LinearRegression`], [`Ridge`] and [`DecisionTree`]. linfa's
//!   logistic regression and k-means have no sample weights, so [`LogisticRegression`] and
//!   [`KMeans`] refuse examples with any weight other than 1 instead of silently ignoring it.
//! - A model predicts on features of exactly the dimension it was trained on.
//!
//! ## Warm start
//! [`LogisticRegressionModel::linear_weights`] and [`LinearRegressionModel::linear_weights`]
//! export a [`LinearModelWeights`]: "train on history, then follow the stream". Weight `i`
//! belongs to column `i` of the features the batch model was trained on, so the online learner
//! must be fed by the same featurizer. The margin `b + Σ w_i x_i` is the same as the online
//! linear learners', so an online learner seeded with these weights (its `warm_start(weights,
//! intercept)`) predicts what the batch model predicts until it learns.
//!
//! ## Modules
//! | module | what |
//! |---|---|
//! | [`logistic`] | [`LogisticRegression`] |
//! | [`linear`] | [`LinearRegression`], [`Ridge`] |
//! | [`kmeans`] | [`KMeans`] |
//! | [`tree`] | [`DecisionTree`] |
//! | [`weights`] | [`LinearModelWeights`], the warm-start value |
//!
//! [`BatchLearner`]: crate::learner::BatchLearner
//! [`Predictor`]: crate::learner::Predictor

mod data;
pub mod kmeans;
pub mod linear;
pub mod logistic;
pub mod tree;
pub mod weights;

#[cfg(test)]
mod tests;

pub use data::MAX_DENSE_DIM;
pub use kmeans::{KMeans, KMeansModel, KMeansParams};
pub use linear::{
    LinearRegression, LinearRegressionModel, LinearRegressionParams, Ridge, RidgeParams,
};
pub use logistic::{LogisticRegression, LogisticRegressionModel, LogisticRegressionParams};
pub use tree::{DecisionTree, DecisionTreeModel, DecisionTreeParams, SplitQuality};
pub use weights::LinearModelWeights;
