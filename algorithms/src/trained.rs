//! A trained model as one value: the [`Pipeline`] that featurizes raw rows and the learner that
//! scores them, saved as one checksummed, versioned model file (`eddy learn --save`, read by
//! `eddy predict` and the serving layer). Serving a row runs exactly the featurization that
//! training ran.
//!
//! [`OnlineModel`] holds any of eddy's online learners behind one serializable enum, so a file
//! says which learner it holds and loading restores that one. Batch models are stored as their
//! seeded online counterparts (see [`learners`](crate::learners)), except a decision tree,
//! which has none: [`OnlineModel::Tree`] predicts like any model and refuses to learn.

use std::path::Path;

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::batch::DecisionTreeModel;
use crate::error::{Error, Result};
use crate::features::{Examples, Features};
use crate::learner::{OnlineLearner, Predictor, Task};
use crate::model;
use crate::online::fm::FactorizationMachine;
use crate::online::kmeans::StreamingKMeans;
use crate::online::linear::{FtrlLogisticRegression, SgdLinearRegression, SgdLogisticRegression};
use crate::online::naive_bayes::{GaussianNb, MultinomialNb};
use crate::online::passive_aggressive::PassiveAggressive;
use crate::online::softmax::Softmax;
use crate::pipeline::Pipeline;

/// The kind written in model files that hold a [`TrainedModel`].
pub const TRAINED_MODEL_KIND: &str = "eddy-trained-model";

/// Any of eddy's online learners, or a fitted decision tree (which predicts but does not learn).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnlineModel {
    /// FTRL-Proximal logistic regression.
    Ftrl(FtrlLogisticRegression),
    /// SGD logistic regression.
    SgdLogistic(SgdLogisticRegression),
    /// SGD linear regression.
    SgdLinear(SgdLinearRegression),
    /// Factorization machine.
    Fm(FactorizationMachine),
    /// Passive-aggressive.
    PassiveAggressive(PassiveAggressive),
    /// Gaussian naive Bayes.
    GaussianNb(GaussianNb),
    /// Multinomial naive Bayes.
    MultinomialNb(MultinomialNb),
    /// Softmax regression.
    Softmax(Softmax),
    /// Streaming k-means.
    KMeans(StreamingKMeans),
    /// A fitted decision tree (batch only: [`OnlineLearner::learn`] refuses it).
    Tree(DecisionTreeModel),
    /// A deep CTR learner (cargo feature `torch`).
    #[cfg(feature = "torch")]
    Deep(Box<crate::deep::DeepModel>),
}

/// Runs `$body` with `$m` bound to the learner inside; a tree runs `$tree` instead when given
/// (what it cannot do as a learner).
macro_rules! each_model {
    ($self:expr, $m:ident => $body:expr) => {
        each_model!($self, $m => $body, Tree($m) => $body)
    };
    ($self:expr, $m:ident => $body:expr, Tree($t:pat) => $tree:expr) => {
        match $self {
            OnlineModel::Ftrl($m) => $body,
            OnlineModel::SgdLogistic($m) => $body,
            OnlineModel::SgdLinear($m) => $body,
            OnlineModel::Fm($m) => $body,
            OnlineModel::PassiveAggressive($m) => $body,
            OnlineModel::GaussianNb($m) => $body,
            OnlineModel::MultinomialNb($m) => $body,
            OnlineModel::Softmax($m) => $body,
            OnlineModel::KMeans($m) => $body,
            #[cfg(feature = "torch")]
            OnlineModel::Deep($m) => $body,
            OnlineModel::Tree($t) => $tree,
        }
    };
}

impl OnlineModel {
    /// The learner's name, as `eddy learn --model` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            OnlineModel::Ftrl(_) => "ftrl",
            OnlineModel::SgdLogistic(_) => "sgd",
            OnlineModel::SgdLinear(_) => "sgd-regression",
            OnlineModel::Fm(_) => "fm",
            OnlineModel::PassiveAggressive(_) => "pa",
            OnlineModel::GaussianNb(_) => "nb (gaussian)",
            OnlineModel::MultinomialNb(_) => "nb (multinomial)",
            OnlineModel::Softmax(_) => "softmax",
            OnlineModel::KMeans(_) => "kmeans",
            OnlineModel::Tree(_) => "tree",
            #[cfg(feature = "torch")]
            OnlineModel::Deep(m) => m.params().kind.name(),
        }
    }
}

/// The error of asking a fitted tree to learn.
fn tree_cannot_learn() -> Error {
    Error::param(
        "learner",
        "`tree` is a batch learner: a fitted tree does not learn online (fit it again)",
    )
}

impl Predictor for OnlineModel {
    fn task(&self) -> Task {
        each_model!(self, m => m.task())
    }

    fn predict(&self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
        each_model!(self, m => m.predict(x, out))
    }

    fn predict_scores(&self, x: &Features, out: &mut Vec<f32>) -> Result<usize> {
        each_model!(self, m => m.predict_scores(x, out))
    }
}

impl OnlineLearner for OnlineModel {
    fn learn(&mut self, examples: &Examples) -> Result<()> {
        each_model!(self, m => m.learn(examples), Tree(_) => Err(tree_cannot_learn()))
    }

    fn predict_learn(&mut self, examples: &Examples, out: &mut Vec<f32>) -> Result<()> {
        each_model!(self, m => m.predict_learn(examples, out), Tree(_) => Err(tree_cannot_learn()))
    }

    /// Rows learned online (0 for a fitted tree, as for a batch model stored as its seeded
    /// online counterpart).
    fn rows_seen(&self) -> u64 {
        each_model!(self, m => m.rows_seen(), Tree(_) => 0)
    }
}

/// A featurizing pipeline and the model trained on its output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainedModel {
    /// Featurization of raw rows (stored as its versioned JSON document).
    #[serde(with = "pipeline_json")]
    pub pipeline: Pipeline,
    /// The learner.
    pub model: OnlineModel,
}

mod pipeline_json {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::pipeline::Pipeline;

    pub fn serialize<S: Serializer>(p: &Pipeline, s: S) -> Result<S::Ok, S::Error> {
        let json = p.to_json().map_err(serde::ser::Error::custom)?;
        s.serialize_str(&json.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Pipeline, D::Error> {
        let text = String::deserialize(d)?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(serde::de::Error::custom)?;
        Pipeline::from_json(value).map_err(serde::de::Error::custom)
    }
}

impl TrainedModel {
    /// Predictions for raw rows: featurized by the pipeline, scored by the model.
    pub fn predict_batch(
        &self,
        batch: &RecordBatch,
        features: &mut Features,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        self.pipeline.features(batch, features)?;
        self.model.predict(features, out)
    }

    /// Writes the model file (temp file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        model::save_model(path, TRAINED_MODEL_KIND, self)
    }

    /// Reads a model file, refusing a corrupt, truncated, foreign or newer one.
    pub fn load(path: &Path) -> Result<Self> {
        model::load_model(path, TRAINED_MODEL_KIND)
    }

    /// The model as bytes (the model-file format), for registries and serving.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        model::encode(TRAINED_MODEL_KIND, self)
    }

    /// Reads bytes written by [`to_bytes`](TrainedModel::to_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        model::decode(bytes, TRAINED_MODEL_KIND)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};

    use super::*;
    use crate::feature::categorical::{FeatureHasher, FeatureHasherParams, Featurizer, LabelSpec};
    use crate::online::linear::FtrlLogisticParams;
    use crate::transform::Params;

    fn batch() -> RecordBatch {
        let n = 200;
        let f: Vec<f64> = (0..n).map(|i| (i % 7) as f64).collect();
        let c: Vec<String> = (0..n).map(|i| format!("v{}", i % 4)).collect();
        let y: Vec<i64> = (0..n).map(|i| i64::from(i % 4 == 1)).collect();
        RecordBatch::try_from_iter([
            ("f", Arc::new(Float64Array::from(f)) as ArrayRef),
            ("c", Arc::new(StringArray::from(c)) as ArrayRef),
            ("label", Arc::new(Int64Array::from(y)) as ArrayRef),
        ])
        .unwrap()
    }

    #[test]
    fn save_load_predicts_identically_and_corruption_is_refused() {
        let hasher = FeatureHasher::new(
            FeatureHasherParams {
                numeric: vec!["f".into()],
                categorical: vec!["c".into()],
                bits: 10,
                ..Default::default()
            }
            .check()
            .unwrap(),
        );
        let pipeline = Pipeline::new(
            vec![],
            Featurizer::Hasher(hasher),
            Some(LabelSpec::new("label")),
        );
        let model = FtrlLogisticParams {
            bits: 10,
            ..Default::default()
        }
        .build()
        .unwrap();
        let mut trained = TrainedModel {
            pipeline,
            model: OnlineModel::Ftrl(model),
        };
        let b = batch();
        let mut ex = Examples::new(Features::Sparse(Default::default()), vec![], None).unwrap();
        trained.pipeline.examples_into(&b, &mut ex).unwrap();
        trained.model.learn(&ex).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.eddy");
        trained.save(&path).unwrap();
        let back = TrainedModel::load(&path).unwrap();
        let (mut f1, mut f2) = (
            Features::Sparse(Default::default()),
            Features::Sparse(Default::default()),
        );
        let (mut p1, mut p2) = (Vec::new(), Vec::new());
        trained.predict_batch(&b, &mut f1, &mut p1).unwrap();
        back.predict_batch(&b, &mut f2, &mut p2).unwrap();
        assert_eq!(p1, p2);
        assert!(p1[1] > p1[0], "learned that c=v1 clicks");

        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let e = TrainedModel::load(&path).unwrap_err().to_string();
        assert!(e.contains("m.eddy"), "{e}");
    }
}
