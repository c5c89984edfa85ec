//! From a node's spec to runtime objects: the feature [`Pipeline`], the learner (with its
//! hyperparameters from the node's `params` table), warm starts, and batch fits. Every model a
//! node publishes is a [`TrainedModel`]: batch models are stored as their online counterpart
//! seeded with the fitted parameters (a logistic regression as FTRL with its weights, k-means as
//! streaming k-means with its centres), so serving, `eddy predict` and warm starts read one
//! format and predict what the batch model predicts.

use arrow::record_batch::RecordBatch;
use eddy_algorithms::batch::{KMeansParams, LogisticRegressionParams};
use eddy_algorithms::features::{Examples, Features};
use eddy_algorithms::learner::BatchLearner;
use eddy_algorithms::online::kmeans::{KMeansInit, StreamingKMeans, StreamingKMeansParams};
use eddy_algorithms::online::linear::{FtrlLogisticParams, SgdLinearParams};
use eddy_algorithms::pipeline::{Pipeline, StandardPipeline};
use eddy_algorithms::trained::{OnlineModel, TrainedModel};
use eddy_algorithms::transform::Params;

use crate::error::{Error, Result};
use crate::spec::{FeaturesSpec, LearnerKind, TrainSpec};

/// The feature pipeline a `[features.<name>]` section describes.
pub(crate) fn pipeline(f: &FeaturesSpec) -> Result<Pipeline> {
    let standard = StandardPipeline {
        label: f.label.clone(),
        numeric: f.numeric.clone(),
        categorical: f.categorical.clone(),
        crosses: f.crosses.clone(),
        scale: f.scale,
        dense: f.dense,
        hash_bits: f.hash_bits,
    };
    Ok(standard.build()?)
}

/// Decodes a node's `params` table as the learner's params type.
pub(crate) fn params<T: serde::de::DeserializeOwned>(node: &str, table: &toml::Table) -> Result<T> {
    T::deserialize(toml::Value::Table(table.clone())).map_err(|e| Error::Node {
        node: node.to_string(),
        message: format!("params: {}", e.message()),
    })
}

/// Decodes a `params` table as `learner`'s parameters, as [`online`] and [`fit_batch`] do,
/// so that a misspelt or mistyped parameter is refused by `eddy validate` rather than by the
/// node's first attempt. The width (`dim`, `k` for streaming k-means) comes from the feature
/// pipeline at run time; a stand-in is used here.
pub(crate) fn params_error(
    learner: LearnerKind,
    table: &toml::Table,
) -> std::result::Result<(), String> {
    fn decode<T: serde::de::DeserializeOwned>(
        table: toml::Table,
    ) -> std::result::Result<(), String> {
        T::deserialize(toml::Value::Table(table))
            .map(drop)
            .map_err(|e| {
                format!(
                    "{} (see the learner's parameters in docs/workflow.md)",
                    e.message()
                )
            })
    }
    let table = table.clone();
    match learner {
        LearnerKind::Ftrl => decode::<FtrlLogisticParams>(table),
        LearnerKind::Sgd => decode::<SgdLinearParams>(table),
        LearnerKind::Logistic => decode::<LogisticRegressionParams>(table),
        LearnerKind::KMeans => decode::<KMeansParams>(table),
        LearnerKind::StreamingKMeans => {
            let mut table = table;
            table.insert("dim".into(), toml::Value::Integer(1));
            table.entry("k").or_insert(toml::Value::Integer(8));
            decode::<StreamingKMeansParams>(table)
        }
    }
}

/// A fresh online learner of `t.learner` over `dim` features.
pub(crate) fn online(node: &str, t: &TrainSpec, dim: u64) -> Result<OnlineModel> {
    Ok(match t.learner {
        LearnerKind::Ftrl => {
            let mut p: FtrlLogisticParams = params(node, &t.params)?;
            p.dim = Some(dim);
            OnlineModel::Ftrl(p.build()?)
        }
        LearnerKind::Sgd => {
            let mut p: SgdLinearParams = params(node, &t.params)?;
            p.dim = Some(dim);
            OnlineModel::SgdLogistic(p.build_logistic()?)
        }
        LearnerKind::StreamingKMeans => {
            let mut table = t.params.clone();
            table.insert("dim".into(), toml::Value::Integer(dim as i64));
            table.entry("k").or_insert(toml::Value::Integer(8));
            let p: StreamingKMeansParams = params(node, &table)?;
            OnlineModel::KMeans(StreamingKMeans::new(p.check()?))
        }
        LearnerKind::Logistic | LearnerKind::KMeans => {
            return Err(Error::Node {
                node: node.to_string(),
                message: format!("`{}` is a batch learner", t.learner.name()),
            })
        }
    })
}

/// A fresh learner of `t` seeded from `parent` (trained on the same features): linear weights
/// carry over to a linear learner, centres to streaming k-means.
pub(crate) fn warm_started(
    node: &str,
    t: &TrainSpec,
    dim: u64,
    parent: &OnlineModel,
) -> Result<OnlineModel> {
    let mut model = online(node, t, dim)?;
    let linear = match parent {
        OnlineModel::Ftrl(p) => Some((p.weights().collect::<Vec<f32>>(), p.intercept())),
        OnlineModel::SgdLogistic(p) => Some((
            (0..p.dim() as usize)
                .map(|i| p.weight(i).unwrap_or(0.0))
                .collect(),
            p.intercept(),
        )),
        _ => None,
    };
    match (&mut model, linear, parent) {
        (OnlineModel::Ftrl(m), Some((w, b)), _) => m.warm_start(&w, b)?,
        (OnlineModel::SgdLogistic(m), Some((w, b)), _) => m.warm_start(&w, b)?,
        (OnlineModel::KMeans(_), None, OnlineModel::KMeans(p)) => {
            let mut table = t.params.clone();
            let k = p.weights().len();
            let mut centers = Vec::new();
            let mut c = Vec::new();
            for j in 0..k {
                p.center(j, &mut c);
                centers.extend_from_slice(&c);
            }
            table.insert("dim".into(), toml::Value::Integer(dim as i64));
            table.insert("k".into(), toml::Value::Integer(k as i64));
            let mut sp: StreamingKMeansParams = params(node, &table)?;
            let weight = p.weights().iter().sum::<f64>() / k.max(1) as f64;
            sp.init = KMeansInit::Centers { centers, weight };
            model = OnlineModel::KMeans(StreamingKMeans::new(sp.check()?));
        }
        _ => {
            return Err(Error::Node {
                node: node.to_string(),
                message: format!(
                    "cannot warm-start a `{}` learner from a {} model",
                    t.learner.name(),
                    parent.name()
                ),
            })
        }
    }
    Ok(model)
}

/// Featurizes all of `batches` as one set of examples, updating the pipeline's statistics first.
pub(crate) fn examples(pipeline: &mut Pipeline, batches: &[RecordBatch]) -> Result<Examples> {
    let schema = batches[0].schema();
    let all = arrow::compute::concat_batches(&schema, batches)
        .map_err(|e| Error::InvalidArgument(format!("concatenating batches: {e}")))?;
    pipeline.update(&all)?;
    let mut ex = Examples::new(Features::Sparse(Default::default()), Vec::new(), None)?;
    pipeline.examples_into(&all, &mut ex)?;
    Ok(ex)
}

/// Fits a linfa learner on `ex` and stores the result as its seeded online counterpart.
pub(crate) fn fit_batch(
    node: &str,
    t: &TrainSpec,
    pipeline: &Pipeline,
    ex: &Examples,
) -> Result<TrainedModel> {
    let dim = pipeline.dim();
    let model = match t.learner {
        LearnerKind::Logistic => {
            let p: LogisticRegressionParams = params(node, &t.params)?;
            let fitted = p.check()?.fit(ex)?;
            let w = fitted.linear_weights();
            let mut ftrl = FtrlLogisticParams {
                dim: Some(dim),
                ..Default::default()
            }
            .build()?;
            ftrl.warm_start(&w.weights, w.intercept)?;
            OnlineModel::Ftrl(ftrl)
        }
        LearnerKind::KMeans => {
            let p: KMeansParams = params(node, &t.params)?;
            let fitted = p.check()?.fit(ex)?;
            let c = fitted.centroids();
            let k = c.nrows();
            let mut sp = StreamingKMeansParams::new(dim, k);
            sp.seed = p.seed;
            sp.init = KMeansInit::Centers {
                centers: c.iter().copied().collect(),
                weight: ex.features.rows() as f64 / k as f64,
            };
            OnlineModel::KMeans(StreamingKMeans::new(sp.check()?))
        }
        _ => {
            return Err(Error::Node {
                node: node.to_string(),
                message: format!("`{}` is an online learner", t.learner.name()),
            })
        }
    };
    Ok(TrainedModel {
        pipeline: pipeline.clone(),
        model,
    })
}
