//! Training/serving parity over every feature-step kind and every learner (issue #12).
//!
//! - Every [`StepKind`] × every [`Featurizer`] kind: over a stream of batches, the features the
//!   training path computes (`Pipeline::learn_examples_into`, as the training engine's learner
//!   operator calls it) equal `features()` of the pipeline serving holds for that batch; they do
//!   not depend on the batch's own labels (a served row has none); the pipeline read back from
//!   its saved document gives the same features; and the model published with it answers the
//!   same prediction over HTTP as in process.
//! - Every [`LearnerKind`]: trained by the training engine ([`TrainJob`]) on the standard
//!   pipeline, published, and served over HTTP by a real server on 127.0.0.1:0, its served
//!   predictions (and class probabilities) equal the in-process ones.
//!
//! Both loops `match` on the enums with no wildcard, so a new step kind, featurizer or learner
//! fails to compile here until it is covered.

mod serving_support;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use eddy_algorithms::feature::categorical::{
    FeatureHasher, FeatureHasherParams, Featurizer, InvalidValues, LabelSpec, OneHotEncoder,
    OneHotEncoderParams, StringIndexer, StringIndexerParams, TargetEncoder, TargetEncoderParams,
    VectorAssembler, VectorAssemblerParams, WindowRange, WindowedAggregateFeatures,
    WindowedAggregateParams,
};
use eddy_algorithms::feature::numeric::{
    Binarizer, BinarizerParams, Bucketizer, BucketizerParams, Imputer, ImputerParams, MaxAbsScaler,
    MaxAbsScalerParams, MinMaxScaler, MinMaxScalerParams, Normalizer, NormalizerParams,
    PolynomialExpansion, PolynomialExpansionParams, QuantileDiscretizer, QuantileDiscretizerParams,
    RobustScaler, RobustScalerParams, StandardScaler, StandardScalerParams,
};
use eddy_algorithms::feature::{load_step, StepKind};
use eddy_algorithms::features::{Examples, Features};
use eddy_algorithms::learner::{OnlineLearner, Predictor, Task};
use eddy_algorithms::learners::{LearnerKind, LearnerSpec};
use eddy_algorithms::online::linear::FtrlLogisticParams;
use eddy_algorithms::pipeline::{Pipeline, StandardPipeline};
use eddy_algorithms::trained::{OnlineModel, TrainedModel};
use eddy_algorithms::transform::{FeatureStep, Params};
use eddy_core::source::memory::MemorySource;
use eddy_workflow::registry::{NewVersion, Registry};
use eddy_workflow::serving::ServeConfig;
use eddy_workflow::train::{TrainConfig, TrainJob};
use serde_json::{json, Map, Value};

const ROWS: usize = 36;
const BATCHES: usize = 4;

/// Raw rows: numeric `x`, `z`, `xn` (every fifth null), category `c`, key `k`, event time `t`
/// (Int64 ms) and a 0/1 `label` that mostly follows `c`.
fn batch(rows: usize, offset: usize) -> RecordBatch {
    let i = |r: usize| r + offset;
    let x: Vec<f64> = (0..rows)
        .map(|r| ((i(r) * 7) % 13) as f64 * 0.5 - 2.0)
        .collect();
    let z: Vec<f64> = (0..rows).map(|r| ((i(r) * 3) % 11) as f64 + 1.0).collect();
    let xn: Vec<Option<f64>> = (0..rows)
        .map(|r| (i(r) % 5 != 0).then(|| (i(r) % 9) as f64))
        .collect();
    let c: Vec<String> = (0..rows).map(|r| format!("c{}", i(r) % 6)).collect();
    let k: Vec<String> = (0..rows).map(|r| format!("u{}", i(r) % 4)).collect();
    let t: Vec<i64> = (0..rows).map(|r| 1_000 * i(r) as i64).collect();
    let label: Vec<i64> = (0..rows)
        .map(|r| i64::from((i(r) % 6 < 2) != (i(r) % 7 == 0)))
        .collect();
    RecordBatch::try_from_iter([
        ("x", Arc::new(Float64Array::from(x)) as ArrayRef),
        ("z", Arc::new(Float64Array::from(z)) as ArrayRef),
        ("xn", Arc::new(Float64Array::from(xn)) as ArrayRef),
        ("c", Arc::new(StringArray::from(c)) as ArrayRef),
        ("k", Arc::new(StringArray::from(k)) as ArrayRef),
        ("t", Arc::new(Int64Array::from(t)) as ArrayRef),
        ("label", Arc::new(Int64Array::from(label)) as ArrayRef),
    ])
    .unwrap()
}

/// `b` with every label flipped.
fn flip_labels(b: &RecordBatch) -> RecordBatch {
    let i = b.schema().index_of("label").unwrap();
    let old = b.column(i).as_any().downcast_ref::<Int64Array>().unwrap();
    let flipped: Int64Array = old.iter().map(|v| v.map(|v| 1 - v)).collect();
    let mut columns = b.columns().to_vec();
    columns[i] = Arc::new(flipped);
    RecordBatch::try_new(b.schema(), columns).unwrap()
}

fn cols(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A fresh step of `kind` over the raw columns. No wildcard: a new kind must be added here.
fn step(kind: StepKind) -> Box<dyn FeatureStep> {
    let xz = cols(&["x", "z"]);
    match kind {
        StepKind::StandardScaler => Box::new(StandardScaler::new(
            StandardScalerParams {
                input_cols: xz,
                ..Default::default()
            }
            .check()
            .unwrap(),
        )),
        StepKind::MinMaxScaler => Box::new(MinMaxScaler::new(
            MinMaxScalerParams {
                input_cols: xz,
                ..Default::default()
            }
            .check()
            .unwrap(),
        )),
        StepKind::MaxAbsScaler => Box::new(MaxAbsScaler::new(
            MaxAbsScalerParams {
                input_cols: xz,
                ..Default::default()
            }
            .check()
            .unwrap(),
        )),
        StepKind::RobustScaler => Box::new(RobustScaler::new(
            RobustScalerParams {
                input_cols: xz,
                ..Default::default()
            }
            .check()
            .unwrap(),
        )),
        StepKind::Imputer => Box::new(Imputer::new(
            ImputerParams {
                input_cols: cols(&["xn"]),
                ..Default::default()
            }
            .check()
            .unwrap(),
        )),
        StepKind::Bucketizer => Box::new(Bucketizer::new(
            BucketizerParams {
                input_cols: cols(&["x"]),
                splits: vec![vec![-1.0, 0.0, 1.0]],
                ..Default::default()
            }
            .check()
            .unwrap(),
        )),
        StepKind::QuantileDiscretizer => Box::new(QuantileDiscretizer::new(
            QuantileDiscretizerParams {
                input_cols: cols(&["z"]),
                num_buckets: 4,
                ..Default::default()
            }
            .check()
            .unwrap(),
        )),
        StepKind::Binarizer => Box::new(Binarizer::new(
            BinarizerParams {
                input_cols: xz,
                threshold: 1.0,
                ..Default::default()
            }
            .check()
            .unwrap(),
        )),
        StepKind::Normalizer => Box::new(Normalizer::new(
            NormalizerParams {
                input_cols: xz,
                ..Default::default()
            }
            .check()
            .unwrap(),
        )),
        StepKind::PolynomialExpansion => Box::new(
            PolynomialExpansion::new(
                PolynomialExpansionParams {
                    input_cols: xz,
                    ..Default::default()
                }
                .check()
                .unwrap(),
            )
            .unwrap(),
        ),
        StepKind::StringIndexer => Box::new(StringIndexer::new(
            StringIndexerParams {
                columns: cols(&["c"]),
                ..Default::default()
            }
            .check()
            .unwrap(),
        )),
        StepKind::OneHotEncoder => Box::new(OneHotEncoder::new(
            OneHotEncoderParams {
                columns: cols(&["c"]),
                ..Default::default()
            }
            .check()
            .unwrap(),
        )),
        StepKind::TargetEncoder => Box::new(TargetEncoder::new(
            TargetEncoderParams {
                columns: cols(&["c"]),
                label: "label".into(),
                ..Default::default()
            }
            .check()
            .unwrap(),
        )),
        // the key's click rate over the last 5 s of event time: the label as a feature
        StepKind::WindowedAggregates => Box::new(WindowedAggregateFeatures::new(
            WindowedAggregateParams {
                keys: cols(&["k"]),
                column: "label".into(),
                window: WindowRange::TimeMs(5_000),
                time_column: Some("t".into()),
                ..Default::default()
            }
            .check()
            .unwrap(),
        )),
    }
}

/// The featurizer kinds, so the loop below covers every [`Featurizer`] variant.
#[derive(Debug, Clone, Copy)]
enum Fz {
    Hasher,
    Assembler,
}

/// The kind of a featurizer (no wildcard: a new variant must be added to [`Fz`]).
fn fz_of(f: &Featurizer) -> Fz {
    match f {
        Featurizer::Hasher(_) => Fz::Hasher,
        Featurizer::Assembler(_) => Fz::Assembler,
    }
}

/// A featurizer of kind `fz` over every feature column of `transformed` (the step's output):
/// all but the label and the event time, and `xn` only once imputed.
fn featurizer(fz: Fz, kind: StepKind, transformed: &RecordBatch) -> Featurizer {
    let (mut numeric, mut categorical) = (Vec::new(), Vec::new());
    for f in transformed.schema().fields() {
        let name = f.name().as_str();
        if ["label", "t"].contains(&name) || (name == "xn" && kind != StepKind::Imputer) {
            continue;
        }
        match f.data_type() {
            t if t.is_numeric() => numeric.push(name.to_string()),
            DataType::Utf8 => categorical.push(name.to_string()),
            other => panic!("{kind}: unexpected output type {other} of `{name}`"),
        }
    }
    let out = match fz {
        Fz::Hasher => Featurizer::Hasher(FeatureHasher::new(
            FeatureHasherParams {
                numeric,
                categorical,
                bits: 10,
                ..Default::default()
            }
            .check()
            .unwrap(),
        )),
        // windowed means of an empty window are null: the assembler's constant stands in
        Fz::Assembler => Featurizer::Assembler(VectorAssembler::new(
            VectorAssemblerParams {
                numeric,
                invalid: InvalidValues::Replace(0.0),
                ..Default::default()
            }
            .check()
            .unwrap(),
        )),
    };
    assert!(matches!(
        (fz, fz_of(&out)),
        (Fz::Hasher, Fz::Hasher) | (Fz::Assembler, Fz::Assembler)
    ));
    out
}

fn empty_examples() -> Examples {
    Examples::new(Features::Sparse(Default::default()), vec![], None).unwrap()
}

/// `pipeline.features(b)`.
fn features(pipeline: &Pipeline, b: &RecordBatch) -> Features {
    let mut f = Features::Sparse(Default::default());
    pipeline.features(b, &mut f).unwrap();
    f
}

/// Trains `kind` × `fz` over the stream, checking feature parity batch by batch; returns the
/// trained pipeline with an FTRL model learned on the training path's examples.
fn train_checked(kind: StepKind, fz: Fz) -> TrainedModel {
    let what = format!("{kind} + {fz:?}");
    let first = batch(ROWS, 0);
    let mut probe = step(kind);
    assert_eq!(probe.kind(), kind.name(), "{what}: the step's saved kind");
    let transformed = probe.follow(&first).unwrap();
    let mut pipeline = Pipeline::new(
        vec![step(kind)],
        featurizer(fz, kind, &transformed),
        Some(LabelSpec::new("label")),
    );
    let mut model = OnlineModel::Ftrl(
        FtrlLogisticParams {
            dim: Some(pipeline.dim()),
            ..Default::default()
        }
        .build()
        .unwrap(),
    );
    let (mut ex, mut flipped) = (empty_examples(), empty_examples());
    for n in 0..BATCHES {
        let b = batch(ROWS, n * ROWS);
        let before = pipeline.clone();
        pipeline.learn_examples_into(&b, &mut ex).unwrap();
        // the pipeline serving holds when the batch's rows are requested: a step whose
        // statistics are labels or a key's history has not folded them in yet
        let serving = match pipeline.steps()[0].transforms_before_update() {
            true => &before,
            false => &pipeline,
        };
        assert_eq!(
            ex.features,
            features(serving, &b),
            "{what}: batch {n}: training features != served features"
        );
        let mut other = before.clone();
        other
            .learn_examples_into(&flip_labels(&b), &mut flipped)
            .unwrap();
        assert_eq!(
            flipped.features, ex.features,
            "{what}: batch {n}: a row's own label reached its training features"
        );
        let reloaded = Pipeline::from_json(pipeline.to_json().unwrap()).unwrap();
        assert_eq!(
            features(&reloaded, &b),
            features(&pipeline, &b),
            "{what}: batch {n}: the saved pipeline featurizes differently"
        );
        model.learn(&ex).unwrap();
    }
    let saved = &pipeline.steps()[0];
    let back = load_step(saved.kind(), saved.save().unwrap()).unwrap();
    assert_eq!(back.save().unwrap(), saved.save().unwrap(), "{what}");
    TrainedModel { pipeline, model }
}

/// Row `r` of `b` as a request row (JSON), without the label: serving does not know it.
fn request_row(b: &RecordBatch, r: usize) -> Value {
    let mut row = Map::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if f.name() == "label" {
            continue;
        }
        let v = if c.is_null(r) {
            Value::Null
        } else if let Some(a) = c.as_any().downcast_ref::<Float64Array>() {
            json!(a.value(r))
        } else if let Some(a) = c.as_any().downcast_ref::<Int64Array>() {
            json!(a.value(r))
        } else if let Some(a) = c.as_any().downcast_ref::<StringArray>() {
            json!(a.value(r))
        } else {
            panic!("column `{}`: no JSON form", f.name())
        };
        row.insert(f.name().clone(), v);
    }
    Value::Object(row)
}

/// In-process predictions of `t` on `b`: predictions, and class probabilities as serving
/// reports them.
fn in_process(t: &TrainedModel, b: &RecordBatch) -> (Vec<f32>, Option<Vec<Vec<f32>>>) {
    let mut f = Features::Sparse(Default::default());
    let mut preds = Vec::new();
    t.predict_batch(b, &mut f, &mut preds).unwrap();
    let probs = match t.model.task() {
        Task::BinaryClassification => Some(preds.iter().map(|&p| vec![1.0 - p, p]).collect()),
        Task::Multiclass { .. } => {
            let mut scores = Vec::new();
            let width = t.model.predict_scores(&f, &mut scores).unwrap();
            Some(scores.chunks(width).map(<[f32]>::to_vec).collect())
        }
        Task::Regression | Task::Clustering { .. } => None,
    };
    (preds, probs)
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Publishes every model, serves the registry over HTTP on 127.0.0.1:0, and checks each
/// model's served answer for `request` against its in-process predictions.
fn serve_and_compare(models: &[(String, TrainedModel)], request: &RecordBatch) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    for (name, t) in models {
        registry
            .publish(name, &t.to_bytes().unwrap(), NewVersion::default())
            .unwrap();
    }
    let rows: Vec<Value> = (0..request.num_rows())
        .map(|r| request_row(request, r))
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = serving_support::start(registry, ServeConfig::default(), false).await;
        let client = serving_support::client();
        for (name, t) in models {
            let (status, answer) =
                serving_support::predict(&client, server.http, name, json!(rows)).await;
            assert_eq!(status, 200, "{name}: {answer}");
            let (preds, probs) = in_process(t, request);
            assert_eq!(floats(&answer["predictions"]), preds, "{name}: predictions");
            match probs {
                Some(p) => {
                    let served: Vec<Vec<f32>> = answer["probabilities"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(floats)
                        .collect();
                    assert_eq!(served, p, "{name}: probabilities");
                }
                None => assert!(answer.get("probabilities").is_none(), "{name}: {answer}"),
            }
        }
        server.stop().await;
    });
}

#[test]
fn every_feature_step_kind_trains_on_the_features_it_serves() {
    let mut models = Vec::new();
    for kind in StepKind::ALL {
        for fz in [Fz::Hasher, Fz::Assembler] {
            let t = train_checked(kind, fz);
            models.push((format!("{kind}-{fz:?}").to_lowercase(), t));
        }
    }
    // the last training batch: every step has seen its categories and keys
    serve_and_compare(&models, &batch(ROWS, (BATCHES - 1) * ROWS));
}

/// The standard pipeline a learner trains on (as `eddy learn` and `[features]` build it).
/// No wildcard: a new learner must choose its features here.
fn learner_pipeline(kind: LearnerKind) -> Pipeline {
    let (numeric, categorical, dense) = match kind {
        LearnerKind::StreamingKmeans | LearnerKind::Kmeans => (cols(&["x", "z"]), vec![], true),
        // multinomial naive Bayes counts hashed categories
        LearnerKind::Nb => (vec![], cols(&["c", "k"]), false),
        LearnerKind::Ftrl
        | LearnerKind::Sgd
        | LearnerKind::SgdRegression
        | LearnerKind::Fm
        | LearnerKind::Pa
        | LearnerKind::Softmax
        | LearnerKind::Logistic
        | LearnerKind::Linear
        | LearnerKind::Tree => (cols(&["x", "z"]), cols(&["c", "k"]), false),
    };
    StandardPipeline {
        label: "label".into(),
        numeric,
        categorical,
        crosses: vec![],
        scale: true,
        dense,
        hash_bits: 6,
    }
    .build()
    .unwrap()
}

/// Trains `kind` with the training engine on `BATCHES` batches.
fn engine_trained(kind: LearnerKind) -> TrainedModel {
    let mut spec = LearnerSpec::new(kind);
    if matches!(kind, LearnerKind::Kmeans) {
        spec.set("n-clusters", json!(3)).unwrap();
    }
    if matches!(kind, LearnerKind::StreamingKmeans) {
        spec.set("k", json!(3)).unwrap();
    }
    let mut config = TrainConfig::new(format!("parity-{kind}"), spec);
    config.batch_rows = Some(ROWS);
    let job = TrainJob::new(config).unwrap();
    let batches: Vec<RecordBatch> = (0..BATCHES).map(|n| batch(ROWS, n * ROWS)).collect();
    let input = job
        .flow()
        .source("rows", MemorySource::from_batches(batches).unwrap());
    let outcome = job
        .start(input, learner_pipeline(kind), None)
        .unwrap()
        .join()
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
    outcome.trained
}

#[test]
fn every_learner_serves_what_it_predicts_in_process() {
    let models: Vec<(String, TrainedModel)> = LearnerKind::ALL
        .into_iter()
        .map(|kind| (format!("learner-{kind}"), engine_trained(kind)))
        .collect();
    // unseen rows (offsets past the training stream)
    serve_and_compare(&models, &batch(ROWS, 10 * ROWS));
}
