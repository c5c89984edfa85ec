//! Tests of [`Pipeline`](super::Pipeline) and [`StandardPipeline`](super::StandardPipeline).

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};

use super::*;
use crate::feature::categorical::{FeatureHasher, FeatureHasherParams};
use crate::feature::numeric::{StandardScaler, StandardScalerParams};
use crate::transform::{Estimator, Params};

fn batch(rows: usize, offset: usize) -> RecordBatch {
    let f: Vec<f64> = (0..rows)
        .map(|i| ((i + offset) % 13) as f64 * 0.7)
        .collect();
    let c: Vec<String> = (0..rows)
        .map(|i| format!("v{}", (i + offset) % 5))
        .collect();
    let d: Vec<String> = (0..rows)
        .map(|i| format!("w{}", (i + offset) % 3))
        .collect();
    let y: Vec<i64> = (0..rows).map(|i| ((i + offset) % 3 == 0) as i64).collect();
    RecordBatch::try_from_iter([
        ("f", Arc::new(Float64Array::from(f)) as ArrayRef),
        ("c", Arc::new(StringArray::from(c)) as ArrayRef),
        ("d", Arc::new(StringArray::from(d)) as ArrayRef),
        ("label", Arc::new(Int64Array::from(y)) as ArrayRef),
    ])
    .unwrap()
}

fn pipeline() -> Pipeline {
    let scaler: StandardScaler = StandardScalerParams {
        input_cols: vec!["f".into()],
        ..Default::default()
    }
    .fit(&[batch(50, 0)])
    .unwrap();
    let hasher = FeatureHasher::new(
        FeatureHasherParams {
            numeric: vec!["f".into()],
            categorical: vec!["c".into(), "d".into()],
            crosses: vec![vec!["c".into(), "d".into()]],
            bits: 12,
            ..Default::default()
        }
        .check()
        .unwrap(),
    );
    Pipeline::new(
        vec![Box::new(scaler)],
        Featurizer::Hasher(hasher),
        Some(LabelSpec::new("label")),
    )
}

#[test]
fn save_load_gives_identical_features() {
    let p = pipeline();
    let json = p.to_json().unwrap();
    let back = Pipeline::from_json(json.clone()).unwrap();
    assert_eq!(back, p);
    let b = batch(40, 3);
    let (mut x1, mut x2) = (
        Features::Sparse(Default::default()),
        Features::Sparse(Default::default()),
    );
    p.features(&b, &mut x1).unwrap();
    back.features(&b, &mut x2).unwrap();
    assert_eq!(x1, x2);
    // through serde too (how it travels inside model files)
    let text = serde_json::to_string(&p).unwrap();
    let again: Pipeline = serde_json::from_str(&text).unwrap();
    assert_eq!(again, p);
}

#[test]
fn pipeline_files_round_trip_and_damaged_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("features.eddy");
    let p = pipeline();
    p.save(&path).unwrap();
    let back = Pipeline::load(&path).unwrap();
    let b = batch(25, 7);
    assert_eq!(back.transform(&b).unwrap(), p.transform(&b).unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let e = Pipeline::load(&path).unwrap_err().to_string();
    assert!(e.contains("features.eddy"), "{e}");
}

#[test]
fn newer_formats_unknown_kinds_and_corruption_are_refused() {
    let mut json = pipeline().to_json().unwrap();
    json["format"] = serde_json::json!(PIPELINE_FORMAT + 1);
    let e = Pipeline::from_json(json).unwrap_err().to_string();
    assert!(e.contains("newer eddy"), "{e}");

    let mut json = pipeline().to_json().unwrap();
    json["steps"][0]["kind"] = serde_json::json!("flux-capacitor");
    let e = Pipeline::from_json(json).unwrap_err().to_string();
    assert!(e.contains("flux-capacitor"), "{e}");

    let mut json = pipeline().to_json().unwrap();
    json["steps"][0]["state"] = serde_json::json!({"nonsense": true});
    assert!(Pipeline::from_json(json).is_err());

    assert!(Pipeline::from_json(serde_json::json!({"steps": []})).is_err());
}

#[test]
fn update_follows_the_stream_and_examples_carry_labels() {
    let mut p = pipeline();
    let before = p.to_json().unwrap();
    p.update(&batch(30, 100)).unwrap();
    assert_ne!(p.to_json().unwrap(), before, "the scaler statistics moved");
    let mut ex = Examples::new(Features::Sparse(Default::default()), vec![], None).unwrap();
    p.examples_into(&batch(9, 0), &mut ex).unwrap();
    let mut q = pipeline();
    let mut ex2 = ex.clone();
    q.learn_examples_into(&batch(30, 100), &mut ex2).unwrap();
    assert_eq!(
        q.to_json().unwrap(),
        p.to_json().unwrap(),
        "one-pass update == update"
    );
    assert_eq!(ex.len(), 9);
    assert_eq!(ex.labels[0], 1.0);
    assert_eq!(ex.features.rows(), 9);
}

#[test]
fn a_label_statistic_trains_on_what_it_served_before_the_batch() {
    use crate::feature::categorical::{TargetEncoder, TargetEncoderParams};

    let te = TargetEncoderParams {
        columns: vec!["c".into()],
        label: "label".into(),
        smoothing: 1.0,
        ..Default::default()
    };
    let hasher = FeatureHasher::new(
        FeatureHasherParams {
            numeric: vec!["c_te".into()],
            bits: 8,
            ..Default::default()
        }
        .check()
        .unwrap(),
    );
    let mut p = Pipeline::new(
        vec![Box::new(TargetEncoder::new(te.check().unwrap()))],
        Featurizer::Hasher(hasher),
        Some(LabelSpec::new("label")),
    );
    p.update(&batch(30, 0)).unwrap();
    let b = batch(12, 30);
    let served = {
        let mut f = Features::Sparse(Default::default());
        p.features(&b, &mut f).unwrap();
        f
    };
    let mut ex = Examples::new(Features::Sparse(Default::default()), vec![], None).unwrap();
    let mut learned = p.clone();
    learned.learn_examples_into(&b, &mut ex).unwrap();
    assert_eq!(ex.features, served, "no row sees its own label");
    let mut updated = p.clone();
    updated.update(&b).unwrap();
    assert_eq!(
        updated, learned,
        "update and learning fold the batch in alike"
    );
    assert_ne!(updated, p, "the batch was folded in");
}

#[test]
fn the_standard_pipeline_scales_then_hashes_or_assembles() {
    let mut spec = StandardPipeline {
        label: "y".into(),
        numeric: vec!["x".into()],
        categorical: vec!["c".into()],
        crosses: vec![vec!["c".into(), "x".into()]],
        scale: true,
        dense: false,
        hash_bits: 10,
    };
    let sparse = spec.build().unwrap();
    assert_eq!(sparse.dim(), 1 << 10);
    assert_eq!(sparse.steps().len(), 1, "the scaler");
    spec.dense = true;
    spec.scale = false;
    let dense = spec.build().unwrap();
    assert_eq!(dense.dim(), 1);
    assert!(dense.steps().is_empty());
    spec.hash_bits = 40;
    spec.dense = false;
    assert!(spec.build().is_err(), "too many bits is refused");
}

#[test]
fn for_schema_splits_columns_by_type_and_refuses_what_it_cannot_use() {
    use crate::learners::LearnerKind;
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Schema::new(vec![
        Field::new("label", DataType::Int64, false),
        Field::new("f", DataType::Float64, true),
        Field::new("n", DataType::Int32, true),
        Field::new("c", DataType::Utf8, true),
        Field::new("b", DataType::Boolean, true),
    ]);
    let p = StandardPipeline::for_schema(&schema, "label", LearnerKind::Ftrl, 18).unwrap();
    assert_eq!(
        (p.numeric.clone(), p.categorical.clone()),
        (
            vec!["f".to_string(), "n".to_string()],
            vec!["c".to_string(), "b".to_string()]
        )
    );
    assert!(!p.dense && p.scale && p.hash_bits == 18);
    let km = StandardPipeline::for_schema(&schema, "label", LearnerKind::StreamingKmeans, 18);
    assert!(km.unwrap().dense);
    let nb = StandardPipeline::for_schema(&schema, "label", LearnerKind::Nb, 18).unwrap();
    assert!(
        nb.numeric.is_empty() && !nb.dense,
        "multinomial NB counts categories only"
    );
    let err = StandardPipeline::for_schema(&schema, "y", LearnerKind::Ftrl, 18).unwrap_err();
    assert!(err.to_string().contains("`y` is not a column"), "{err}");
    let dates = Schema::new(vec![
        Field::new("label", DataType::Int64, false),
        Field::new("d", DataType::Date32, true),
    ]);
    let err = StandardPipeline::for_schema(&dates, "label", LearnerKind::Ftrl, 18).unwrap_err();
    assert!(err.to_string().contains("column `d`"), "{err}");
}
