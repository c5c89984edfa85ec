//! The learner registry: one name → checked params → a built learner, for every entry point
//! (`eddy learn --model NAME --param k=v`, workflow `learner = "NAME"` with a `params` table,
//! the library's training job).
//!
//! ```
//! use eddy_algorithms::learners::{LearnerKind, LearnerSpec};
//! use eddy_algorithms::learner::Predictor;
//!
//! let mut spec = LearnerSpec::new(LearnerKind::Ftrl);
//! spec.set("ftrl.alpha", serde_json::json!(0.05))?;
//! spec.check()?; // a misspelt or mistyped parameter is refused here
//! let model = spec.online(1 << 18, false)?;
//! assert_eq!(model.name(), "ftrl");
//! # Ok::<(), eddy_algorithms::Error>(())
//! ```
//!
//! ## Names
//! | name | kind | features | params type |
//! |---|---|---|---|
//! | `ftrl` | online, binary | hashed | [`FtrlLogisticParams`] |
//! | `sgd` | online, binary | hashed | [`SgdLinearParams`] |
//! | `sgd-regression` | online, regression | hashed | [`SgdLinearParams`] |
//! | `fm` | online, binary | hashed | [`FmParams`] |
//! | `pa` | online, binary | hashed | [`PassiveAggressiveParams`] |
//! | `nb` | online, multiclass | hashed categorical (multinomial) or dense numeric (Gaussian) | [`MultinomialNbParams`] / [`GaussianNbParams`] |
//! | `softmax` | online, multiclass | hashed | [`SoftmaxParams`] |
//! | `streaming-kmeans` | online, clustering | dense numeric | [`StreamingKMeansParams`] |
//! | `logistic` | batch (linfa), binary | hashed, densified | [`LogisticRegressionParams`] |
//! | `linear` | batch (linfa), regression, L2-regularized (ridge; `alpha = 0` is ordinary least squares) | hashed, densified | [`RidgeParams`] |
//! | `kmeans` | batch (linfa), clustering | dense numeric | [`KMeansParams`] |
//! | `tree` | batch (linfa), multiclass (CART; labels are class indices) | hashed, densified | [`DecisionTreeParams`] |
//! | `deepfm` | online, binary (cargo feature `torch`) | hashed | `deep::DeepParams` |
//! | `wide-deep` | online, binary (cargo feature `torch`) | hashed | `deep::DeepParams` |
//! | `dcn` | online, binary (DCN-v2; cargo feature `torch`) | hashed | `deep::DeepParams` |
//!
//! ## Params
//! A spec's params are one table, the learner's own params type in kebab- or snake-case as that
//! type spells it (`ftrl = { alpha = 0.05 }` in TOML is `--param ftrl.alpha=0.05` on the
//! command line). Unknown or mistyped keys are refused by [`LearnerSpec::check`]. The width of
//! the learner — `dim` — comes from the feature pipeline, so a `dim` in the params is refused;
//! `classes` (nb, softmax) defaults to 2 and `k` (streaming-kmeans) to 8 when absent.
//!
//! ## Stored form
//! Every trained model is an [`OnlineModel`]: a batch model is stored as its online counterpart
//! seeded with the fitted parameters (a logistic regression as FTRL with its weights, a linear
//! regression as SGD regression, k-means as streaming k-means with its centres), so serving,
//! `eddy predict` and warm starts read one format and predict what the batch model predicts.
//! A decision tree has no online counterpart: it is stored as itself
//! ([`OnlineModel::Tree`]), predicts like any model and refuses to learn or to warm-start an
//! online learner.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::batch::{DecisionTreeParams, KMeansParams, LogisticRegressionParams, RidgeParams};
use crate::error::{Error, Result};
use crate::features::Examples;
use crate::learner::BatchLearner;
use crate::online::fm::{FactorizationMachine, FmParams};
use crate::online::kmeans::{KMeansInit, StreamingKMeans, StreamingKMeansParams};
use crate::online::linear::{FtrlLogisticParams, SgdLinearParams};
use crate::online::naive_bayes::{
    GaussianNb, GaussianNbParams, MultinomialNb, MultinomialNbParams,
};
use crate::online::passive_aggressive::{PassiveAggressive, PassiveAggressiveParams};
use crate::online::softmax::{Softmax, SoftmaxParams};
use crate::trained::OnlineModel;
use crate::transform::Params;

/// Every learner of the registry (see the [module docs](self) for the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LearnerKind {
    /// FTRL-Proximal logistic regression.
    Ftrl,
    /// SGD logistic regression.
    Sgd,
    /// SGD linear regression (squared loss).
    SgdRegression,
    /// Factorization machine (binary, logistic loss).
    Fm,
    /// Passive-aggressive classifier.
    Pa,
    /// Naive Bayes: multinomial over hashed categories, Gaussian over dense numeric columns.
    Nb,
    /// Softmax regression.
    Softmax,
    /// Streaming k-means (half-life decay).
    StreamingKmeans,
    /// Batch logistic regression (linfa, L-BFGS).
    Logistic,
    /// Batch linear regression (linfa least squares with an L2 penalty, `alpha` 1 by default).
    Linear,
    /// Batch k-means (linfa, k-means++).
    Kmeans,
    /// Batch decision tree (linfa CART classifier).
    Tree,
    /// DeepFM through tch.
    #[cfg(feature = "torch")]
    #[serde(rename = "deepfm")]
    DeepFm,
    /// Wide & deep through tch.
    #[cfg(feature = "torch")]
    WideDeep,
    /// DCN-v2 through tch.
    #[cfg(feature = "torch")]
    Dcn,
}

impl LearnerKind {
    /// The learners every build has, in the order of the docs.
    const CLASSIC: [LearnerKind; 12] = [
        LearnerKind::Ftrl,
        LearnerKind::Sgd,
        LearnerKind::SgdRegression,
        LearnerKind::Fm,
        LearnerKind::Pa,
        LearnerKind::Nb,
        LearnerKind::Softmax,
        LearnerKind::StreamingKmeans,
        LearnerKind::Logistic,
        LearnerKind::Linear,
        LearnerKind::Kmeans,
        LearnerKind::Tree,
    ];
    /// Every learner, in the order of the docs.
    #[cfg(not(feature = "torch"))]
    pub const ALL: [LearnerKind; 12] = Self::CLASSIC;
    /// Every learner, in the order of the docs (with the deep learners of feature `torch`).
    #[cfg(feature = "torch")]
    pub const ALL: [LearnerKind; 15] = {
        let deep = [LearnerKind::DeepFm, LearnerKind::WideDeep, LearnerKind::Dcn];
        let mut all = [LearnerKind::Ftrl; 15];
        let mut i = 0;
        while i < all.len() {
            all[i] = match i < Self::CLASSIC.len() {
                true => Self::CLASSIC[i],
                false => deep[i - Self::CLASSIC.len()],
            };
            i += 1;
        }
        all
    };

    /// The name in CLI flags and TOML.
    pub fn name(self) -> &'static str {
        match self {
            LearnerKind::Ftrl => "ftrl",
            LearnerKind::Sgd => "sgd",
            LearnerKind::SgdRegression => "sgd-regression",
            LearnerKind::Fm => "fm",
            LearnerKind::Pa => "pa",
            LearnerKind::Nb => "nb",
            LearnerKind::Softmax => "softmax",
            LearnerKind::StreamingKmeans => "streaming-kmeans",
            LearnerKind::Logistic => "logistic",
            LearnerKind::Linear => "linear",
            LearnerKind::Kmeans => "kmeans",
            LearnerKind::Tree => "tree",
            #[cfg(feature = "torch")]
            LearnerKind::DeepFm => "deepfm",
            #[cfg(feature = "torch")]
            LearnerKind::WideDeep => "wide-deep",
            #[cfg(feature = "torch")]
            LearnerKind::Dcn => "dcn",
        }
    }

    /// Whether the learner learns batch by batch (else it is fitted once on bounded data).
    pub fn is_online(self) -> bool {
        !matches!(
            self,
            LearnerKind::Logistic | LearnerKind::Linear | LearnerKind::Kmeans | LearnerKind::Tree
        )
    }

    /// Whether the learner clusters (it ignores labels; no supervised metrics).
    pub fn is_clustering(self) -> bool {
        matches!(self, LearnerKind::StreamingKmeans | LearnerKind::Kmeans)
    }

    /// Whether the learner always reads dense numeric columns rather than hashed features.
    pub fn needs_dense(self) -> bool {
        self.is_clustering()
    }

    /// The dotted key a bare parameter name stands for when the learner's params nest it in
    /// a table (`alpha` is `ftrl.alpha` for FTRL): the shorthand of Python keywords
    /// (`eddy.learner("ftrl", alpha=0.05)`) and of the CLI's `--alpha`/`--beta`/`--l1`/`--l2`.
    pub fn nested_key(self, key: &str) -> Option<String> {
        match (self, key) {
            (LearnerKind::Ftrl, "alpha" | "beta" | "l1" | "l2") => Some(format!("ftrl.{key}")),
            _ => None,
        }
    }

    /// Whether the learner densifies hashed features to fit (so the hashed space must be at
    /// most [`MAX_DENSE_DIM`](crate::batch::MAX_DENSE_DIM) columns wide).
    pub fn densifies_hashed(self) -> bool {
        matches!(
            self,
            LearnerKind::Logistic | LearnerKind::Linear | LearnerKind::Tree
        )
    }
}

impl fmt::Display for LearnerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LearnerKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        LearnerKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| Error::InvalidParam {
                param: "learner".into(),
                message: format!(
                    "unknown learner `{s}` (one of: {})",
                    LearnerKind::ALL.map(|k| k.name()).join(", ")
                ),
            })
    }
}

/// A learner by name with its params table (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LearnerSpec {
    /// Which learner.
    pub kind: LearnerKind,
    /// Its params, as the learner's params type spells them.
    pub params: Map<String, Value>,
}

/// The stand-in width [`LearnerSpec::check`] decodes params with (the real one comes from the
/// feature pipeline).
const CHECK_DIM: u64 = 8;

impl LearnerSpec {
    /// `kind` with default params.
    pub fn new(kind: LearnerKind) -> Self {
        LearnerSpec {
            kind,
            params: Map::new(),
        }
    }

    /// `kind` with `params`.
    pub fn with_params(kind: LearnerKind, params: Map<String, Value>) -> Self {
        LearnerSpec { kind, params }
    }

    /// Sets one parameter; a dotted key (`ftrl.alpha`) sets a field of a nested table.
    pub fn set(&mut self, key: &str, value: Value) -> Result<()> {
        let mut table = &mut self.params;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            if part.is_empty() {
                return Err(param_error(key, "empty key segment"));
            }
            if parts.peek().is_none() {
                table.insert(part.to_string(), value);
                return Ok(());
            }
            let entry = table
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            table = entry
                .as_object_mut()
                .ok_or_else(|| param_error(key, &format!("`{part}` is not a table")))?;
        }
        Err(param_error(key, "empty key"))
    }

    /// Decodes the params as the learner's params type and checks their ranges, so that a
    /// misspelt, mistyped or out-of-range parameter is refused before anything runs.
    pub fn check(&self) -> Result<()> {
        match self.kind {
            LearnerKind::Logistic => self.decode::<LogisticRegressionParams>()?.check().map(drop),
            LearnerKind::Linear => self.decode::<RidgeParams>()?.check().map(drop),
            LearnerKind::Kmeans => self.decode::<KMeansParams>()?.check().map(drop),
            LearnerKind::Tree => self.decode::<DecisionTreeParams>()?.check().map(drop),
            LearnerKind::Nb => {
                // either variant must accept the table
                self.online(CHECK_DIM, false)?;
                self.online(CHECK_DIM, true).map(drop)
            }
            _ => self.online(CHECK_DIM, false).map(drop),
        }
    }

    /// A fresh online learner over `dim` features; `dense` says the features are dense numeric
    /// columns (it picks Gaussian over multinomial naive Bayes). A batch learner is refused.
    pub fn online(&self, dim: u64, dense: bool) -> Result<OnlineModel> {
        Ok(match self.kind {
            LearnerKind::Ftrl => {
                let mut p: FtrlLogisticParams = self.decode()?;
                p.dim = Some(dim);
                OnlineModel::Ftrl(p.build()?)
            }
            LearnerKind::Sgd => {
                let mut p: SgdLinearParams = self.decode()?;
                p.dim = Some(dim);
                OnlineModel::SgdLogistic(p.build_logistic()?)
            }
            LearnerKind::SgdRegression => {
                let mut p: SgdLinearParams = self.decode()?;
                p.dim = Some(dim);
                OnlineModel::SgdLinear(p.build_regression()?)
            }
            LearnerKind::Fm => {
                let p: FmParams = self.decode_with(dim, &[])?;
                OnlineModel::Fm(FactorizationMachine::new(p.check()?))
            }
            LearnerKind::Pa => {
                let p: PassiveAggressiveParams = self.decode_with(dim, &[])?;
                OnlineModel::PassiveAggressive(PassiveAggressive::new(p.check()?))
            }
            LearnerKind::Nb if dense => {
                let p: GaussianNbParams = self.decode_with(dim, &[("classes", 2)])?;
                OnlineModel::GaussianNb(GaussianNb::new(p.check()?))
            }
            LearnerKind::Nb => {
                let p: MultinomialNbParams = self.decode_with(dim, &[("classes", 2)])?;
                OnlineModel::MultinomialNb(MultinomialNb::new(p.check()?))
            }
            LearnerKind::Softmax => {
                let p: SoftmaxParams = self.decode_with(dim, &[("classes", 2)])?;
                OnlineModel::Softmax(Softmax::new(p.check()?))
            }
            LearnerKind::StreamingKmeans => {
                let p: StreamingKMeansParams = self.decode_with(dim, &[("k", 8)])?;
                OnlineModel::KMeans(StreamingKMeans::new(p.check()?))
            }
            #[cfg(feature = "torch")]
            LearnerKind::DeepFm | LearnerKind::WideDeep | LearnerKind::Dcn => {
                OnlineModel::Deep(Box::new(self.deep(dim)?))
            }
            LearnerKind::Logistic
            | LearnerKind::Linear
            | LearnerKind::Kmeans
            | LearnerKind::Tree => {
                return Err(param_error(
                    "learner",
                    &format!(
                        "`{}` is a batch learner: it is fitted, not trained online",
                        self.kind
                    ),
                ))
            }
        })
    }

    /// Fits a batch learner on `examples` (of width `dim`) and returns it as its seeded online
    /// counterpart (see the [module docs](self)). An online learner is refused.
    pub fn fit(&self, dim: u64, examples: &Examples) -> Result<OnlineModel> {
        Ok(match self.kind {
            LearnerKind::Logistic => {
                let p: LogisticRegressionParams = self.decode()?;
                let w = p.check()?.fit(examples)?.linear_weights();
                let mut ftrl = FtrlLogisticParams {
                    dim: Some(dim),
                    ..Default::default()
                }
                .build()?;
                ftrl.warm_start(&w.weights, w.intercept)?;
                OnlineModel::Ftrl(ftrl)
            }
            LearnerKind::Linear => {
                let p: RidgeParams = self.decode()?;
                let w = p.check()?.fit(examples)?.linear_weights();
                let mut sgd = SgdLinearParams {
                    dim: Some(dim),
                    ..Default::default()
                }
                .build_regression()?;
                sgd.warm_start(&w.weights, w.intercept)?;
                OnlineModel::SgdLinear(sgd)
            }
            LearnerKind::Kmeans => {
                let p: KMeansParams = self.decode()?;
                let fitted = p.check()?.fit(examples)?;
                let c = fitted.centroids();
                let k = c.nrows();
                let mut sp = StreamingKMeansParams::new(dim, k);
                sp.seed = p.seed;
                sp.init = KMeansInit::Centers {
                    centers: c.iter().copied().collect(),
                    weight: examples.features.rows() as f64 / k.max(1) as f64,
                };
                OnlineModel::KMeans(StreamingKMeans::new(sp.check()?))
            }
            LearnerKind::Tree => {
                let p: DecisionTreeParams = self.decode()?;
                OnlineModel::Tree(p.check()?.fit(examples)?)
            }
            online => {
                return Err(param_error(
                    "learner",
                    &format!("`{online}` is an online learner: it is trained, not fitted"),
                ))
            }
        })
    }

    /// A fresh online learner of this spec seeded from `parent` (trained on the same
    /// features): linear weights carry over to a linear learner, centres to streaming k-means.
    pub fn warm_started(&self, dim: u64, parent: &OnlineModel) -> Result<OnlineModel> {
        let mut model = self.online(dim, false)?;
        let linear = match parent {
            OnlineModel::Ftrl(p) => Some((p.weights().collect::<Vec<f32>>(), p.intercept())),
            OnlineModel::SgdLogistic(p) => Some((
                (0..p.dim() as usize)
                    .map(|i| p.weight(i).unwrap_or(0.0))
                    .collect(),
                p.intercept(),
            )),
            OnlineModel::SgdLinear(p) => Some((
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
            (OnlineModel::SgdLinear(m), Some((w, b)), _) => m.warm_start(&w, b)?,
            (OnlineModel::KMeans(_), None, OnlineModel::KMeans(p)) => {
                let k = p.weights().len();
                let mut centers = Vec::new();
                let mut c = Vec::new();
                for j in 0..k {
                    p.center(j, &mut c);
                    centers.extend_from_slice(&c);
                }
                let mut sp: StreamingKMeansParams = self.decode_with(dim, &[("k", k as i64)])?;
                sp.k = k;
                let weight = p.weights().iter().sum::<f64>() / k.max(1) as f64;
                sp.init = KMeansInit::Centers { centers, weight };
                model = OnlineModel::KMeans(StreamingKMeans::new(sp.check()?));
            }
            _ => {
                return Err(param_error(
                    "warm-start",
                    &format!(
                        "cannot warm-start a `{}` learner from a {} model",
                        self.kind,
                        parent.name()
                    ),
                ))
            }
        }
        Ok(model)
    }

    /// A deep learner: the params with `dim` from the pipeline and `kind` from the name (a
    /// `kind` in the params must agree with the name).
    #[cfg(feature = "torch")]
    fn deep(&self, dim: u64) -> Result<crate::deep::DeepModel> {
        use crate::deep::{DeepKind, DeepModel, DeepParams};
        let kind = match self.kind {
            LearnerKind::DeepFm => DeepKind::DeepFm,
            LearnerKind::WideDeep => DeepKind::WideDeep,
            _ => DeepKind::Dcn,
        };
        let mut spec = self.clone();
        let named = Value::from(kind.name());
        match spec.params.get("kind") {
            Some(k) if *k != named => {
                return Err(param_error(
                    "kind",
                    &format!("`{k}` disagrees with the learner `{}`", self.kind),
                ))
            }
            _ => spec.params.insert("kind".into(), named),
        };
        let p: DeepParams = spec.decode_with(dim, &[])?;
        DeepModel::new(p.check()?)
    }

    /// The params as `T` (the learner's own type).
    fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        if self.params.contains_key("dim") {
            return Err(param_error(
                "dim",
                "the width comes from the feature pipeline (set `hash-bits` there)",
            ));
        }
        T::deserialize(Value::Object(self.params.clone()))
            .map_err(|e| param_error("params", &e.to_string()))
    }

    /// The params as `T` (a params type with a `dim` field) with `dim` set and `defaults`
    /// for absent integer keys: what [`online`](Self::online) builds from, for callers that
    /// build the learner's parts themselves (parameter-server training).
    pub fn decode_with<T: DeserializeOwned>(
        &self,
        dim: u64,
        defaults: &[(&str, i64)],
    ) -> Result<T> {
        if self.params.contains_key("dim") {
            return self.decode();
        }
        let mut table = self.params.clone();
        table.insert("dim".into(), Value::from(dim));
        for (key, value) in defaults {
            table
                .entry(key.to_string())
                .or_insert_with(|| Value::from(*value));
        }
        T::deserialize(Value::Object(table)).map_err(|e| param_error("params", &e.to_string()))
    }
}

fn param_error(param: &str, message: &str) -> Error {
    Error::InvalidParam {
        param: param.to_string(),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::learner::Predictor;

    #[test]
    fn every_name_round_trips_and_none_clash() {
        for kind in LearnerKind::ALL {
            assert_eq!(kind.name().parse::<LearnerKind>().unwrap(), kind);
        }
        let mut names: Vec<_> = LearnerKind::ALL.iter().map(|k| k.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), LearnerKind::ALL.len());
        let e = "svm".parse::<LearnerKind>().unwrap_err().to_string();
        assert!(e.contains("streaming-kmeans"), "{e}");
    }

    #[test]
    fn every_learner_checks_with_default_params() {
        for kind in LearnerKind::ALL {
            LearnerSpec::new(kind)
                .check()
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
        }
    }

    #[test]
    fn dotted_keys_set_nested_params() {
        let mut spec = LearnerSpec::new(LearnerKind::Ftrl);
        spec.set("ftrl.alpha", json!(0.05)).unwrap();
        spec.set("ftrl.l2", json!(1.0)).unwrap();
        assert_eq!(spec.params["ftrl"], json!({"alpha": 0.05, "l2": 1.0}));
        spec.check().unwrap();
    }

    #[test]
    fn misspelt_mistyped_and_width_params_are_refused() {
        let mut spec = LearnerSpec::new(LearnerKind::Ftrl);
        spec.set("ftrl.alpah", json!(0.05)).unwrap();
        let e = spec.check().unwrap_err().to_string();
        assert!(e.contains("alpah"), "{e}");
        let mut spec = LearnerSpec::new(LearnerKind::Fm);
        spec.set("factors", json!("eight")).unwrap();
        assert!(spec.check().is_err());
        let mut spec = LearnerSpec::new(LearnerKind::Softmax);
        spec.set("dim", json!(4)).unwrap();
        let e = spec.check().unwrap_err().to_string();
        assert!(e.contains("pipeline"), "{e}");
    }

    #[test]
    fn online_and_batch_learners_refuse_the_other_verb() {
        let ex = Examples::new(
            crate::features::Features::Sparse(Default::default()),
            Vec::new(),
            None,
        )
        .unwrap();
        assert!(LearnerSpec::new(LearnerKind::Logistic)
            .online(8, false)
            .is_err());
        assert!(LearnerSpec::new(LearnerKind::Ftrl).fit(8, &ex).is_err());
    }

    /// Two dense columns; the class is 1 where `x0 > 0.5` and `x1 > 0.5` (a tree's rule).
    fn quadrant(n: usize) -> Examples {
        let mut x = ndarray::Array2::zeros((n, 2));
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let (a, b) = (((i * 7) % 10) as f32 / 10.0, ((i * 3) % 10) as f32 / 10.0);
            x[[i, 0]] = a + 0.05;
            x[[i, 1]] = b + 0.05;
            y.push(f32::from(a + 0.05 > 0.5 && b + 0.05 > 0.5));
        }
        Examples::new(crate::features::Features::Dense(x), y, None).unwrap()
    }

    #[test]
    fn tree_is_fitted_from_the_registry_and_only_fitted() {
        let mut spec = LearnerSpec::new(LearnerKind::Tree);
        spec.set("max-depth", json!(4)).unwrap();
        spec.set("split-quality", json!("entropy")).unwrap();
        spec.check().unwrap();
        let ex = quadrant(60);
        let mut model = spec.fit(2, &ex).unwrap();
        assert_eq!(model.name(), "tree");
        assert_eq!(
            model.task(),
            crate::learner::Task::Multiclass { classes: 2 }
        );
        let mut out = Vec::new();
        model.predict(&ex.features, &mut out).unwrap();
        assert_eq!(out, ex.labels, "a depth-4 tree separates a quadrant");
        use crate::learner::OnlineLearner;
        let e = model.learn(&ex).unwrap_err().to_string();
        assert!(e.contains("batch learner"), "{e}");
        assert_eq!(model.rows_seen(), 0);
        assert!(spec.online(2, true).is_err());
        let e = LearnerSpec::new(LearnerKind::Ftrl)
            .warm_started(2, &model)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tree"), "{e}");
    }

    #[test]
    fn tree_params_are_checked_like_the_others() {
        let mut spec = LearnerSpec::new(LearnerKind::Tree);
        spec.set("max-depth", json!(0)).unwrap();
        let e = spec.check().unwrap_err().to_string();
        assert!(e.contains("max-depth"), "{e}");
        let mut spec = LearnerSpec::new(LearnerKind::Tree);
        spec.set("depth", json!(3)).unwrap();
        let e = spec.check().unwrap_err().to_string();
        assert!(e.contains("depth"), "{e}");
        let mut spec = LearnerSpec::new(LearnerKind::Tree);
        spec.set("split-quality", json!("variance")).unwrap();
        assert!(spec.check().is_err());
        // the other batch learners' ranges are checked here too, not first at fit time
        let mut spec = LearnerSpec::new(LearnerKind::Kmeans);
        spec.set("n-clusters", json!(0)).unwrap();
        let e = spec.check().unwrap_err().to_string();
        assert!(e.contains("n-clusters"), "{e}");
    }

    #[test]
    fn nb_picks_its_variant_from_the_features() {
        let spec = LearnerSpec::new(LearnerKind::Nb);
        assert!(matches!(
            spec.online(4, true).unwrap(),
            OnlineModel::GaussianNb(_)
        ));
        assert!(matches!(
            spec.online(4, false).unwrap(),
            OnlineModel::MultinomialNb(_)
        ));
        let softmax = LearnerSpec::new(LearnerKind::Softmax)
            .online(4, false)
            .unwrap();
        assert_eq!(
            softmax.task(),
            crate::learner::Task::Multiclass { classes: 2 }
        );
    }

    #[test]
    fn nested_keys_set_what_the_dotted_key_sets() {
        let mut bare = LearnerSpec::new(LearnerKind::Ftrl);
        let key = LearnerKind::Ftrl.nested_key("alpha").unwrap();
        bare.set(&key, json!(0.05)).unwrap();
        let mut dotted = LearnerSpec::new(LearnerKind::Ftrl);
        dotted.set("ftrl.alpha", json!(0.05)).unwrap();
        assert_eq!(bare, dotted);
        assert_eq!(LearnerKind::Ftrl.nested_key("bits"), None);
        assert_eq!(LearnerKind::Fm.nested_key("alpha"), None);
    }
}
