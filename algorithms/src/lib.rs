//! # eddy-algorithms — features, learners, evaluation
//!
//! Everything that learns lives here: feature steps over Arrow record batches, the
//! [`Features`](features::Features) matrix learners consume, and (as the feature-operator and
//! learner issues land) online and batch learners, progressive validation and pipelines. It
//! builds on `eddy-core` and never depends on `eddy-ps`: parameter-server training meets it
//! through the `GradientModel` / `UpdateRule` traits.
//!
//! ## Modules
//! | module | what |
//! |---|---|
//! | [`conformance`] | the suite every online learner passes |
//! | [`columns`] | typed column access with errors naming step and column |
//! | [`eval`] | streaming metrics and progressive validation (test-then-train, label delay, window and tail reports) |
//! | [`feature`] | feature steps: numeric and categorical, loaded by kind |
//! | [`features`] | [`CsrMatrix`](features::CsrMatrix), [`Features`](features::Features), [`Examples`](features::Examples) |
//! | [`transform`] | the step contracts: `Transformer`, `Estimator`, `OnlineEstimator`, `Mergeable`, `ToFeatures`, `Params` |
//! | [`batch`] | batch learners through linfa (logistic, linear/ridge, k-means, decision tree) and the warm-start weights |
//! | [`learner`] | learner contracts: `Predictor`, `OnlineLearner`, `BatchLearner`, `UpdateRule`, `GradientModel` |
//! | [`learners`] | the learner registry: one name → checked params → a built learner, for the CLI, TOML and the library |
//! | [`pipeline`] | [`Pipeline`](pipeline::Pipeline): steps + featurizer, saved as one versioned document; [`StandardPipeline`](pipeline::StandardPipeline), the scale → hash/assemble pipeline of `eddy learn` and workflows |
//! | [`stream`] | feature steps as dataflow operators (`stream.feature_steps(..)`) |
//! | [`trained`] | [`TrainedModel`](trained::TrainedModel): pipeline + learner in one model file |
//! | `deep` | (cargo feature `torch`) deep CTR learners through tch: wide & deep, DeepFM, DCN-v2 |
//! | [`hash`] | MurmurHash3 for feature hashing |
//! | [`error`] | the crate's error type |

pub mod batch;
pub mod columns;
pub mod conformance;
#[cfg(feature = "torch")]
pub mod deep;
pub mod error;
pub mod eval;
pub mod feature;
pub mod features;
pub mod hash;
pub mod learner;
pub mod learners;
pub mod model;
pub mod online;
pub mod optim;
pub mod pipeline;
pub mod stream;
pub mod trained;
pub mod transform;

pub use error::{Error, Result};
