//! Cross-step properties: online update == batch fit, merge == union, N one-row transforms ==
//! one N-row transform, save → load gives identical output, corrupted state is refused.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use proptest::prelude::*;

use super::*;
use crate::feature::load_step;
use crate::features::{CsrMatrix, Features};
use crate::transform::{Estimator, Mergeable, OnlineEstimator, Params, ToFeatures, Transformer};

type Row = (Option<String>, Option<String>, Option<f64>, bool, i64);

fn rows() -> impl Strategy<Value = Vec<Row>> {
    let cat = proptest::option::weighted(0.9, prop_oneof![Just(String::new()), "[a-e]{1,2}"]);
    let num = proptest::option::weighted(
        0.9,
        prop_oneof![8 => -5.0..5.0f64, 1 => Just(f64::NAN), 1 => Just(0.0)],
    );
    proptest::collection::vec((cat.clone(), cat, num, any::<bool>(), 0..50i64), 0..40)
}

fn batch(rows: &[Row]) -> RecordBatch {
    let col = |f: fn(&Row) -> Option<String>| {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>())) as ArrayRef
    };
    RecordBatch::try_from_iter([
        ("a", col(|r| r.0.clone())),
        ("b", col(|r| r.1.clone())),
        (
            "x",
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
        (
            "y",
            Arc::new(Float64Array::from(
                rows.iter()
                    .map(|r| f64::from(u8::from(r.3)))
                    .collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
        (
            "ts",
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.4).collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
    ])
    .unwrap()
}

fn one_rows(b: &RecordBatch) -> Vec<RecordBatch> {
    (0..b.num_rows()).map(|i| b.slice(i, 1)).collect()
}

fn indexer() -> StringIndexerParams {
    StringIndexerParams {
        columns: vec!["a".into(), "b".into()],
        min_frequency: 2,
        unseen: Unseen::Bucket,
        ..Default::default()
    }
}

fn encoder() -> TargetEncoderParams {
    TargetEncoderParams {
        columns: vec!["a".into(), "b".into()],
        label: "y".into(),
        smoothing: 3.0,
        ..Default::default()
    }
}

fn hasher() -> FeatureHasher {
    let p = FeatureHasherParams {
        numeric: vec!["x".into()],
        categorical: vec!["a".into()],
        crosses: vec![vec!["a".into(), "b".into()]],
        bits: 12,
        signed: true,
        bias: true,
        ..Default::default()
    };
    FeatureHasher::new(p.check().unwrap())
}

fn assembler() -> VectorAssemblerParams {
    VectorAssemblerParams {
        numeric: vec!["x".into()],
        one_hot: Some(OneHotEncoderParams {
            columns: vec!["a".into(), "b".into()],
            unseen: Unseen::Skip,
            ..Default::default()
        }),
        output: AssemblerOutput::Sparse,
        invalid: InvalidValues::Replace(-1.0),
    }
}

fn windowed(window: WindowRange) -> WindowedAggregateParams {
    WindowedAggregateParams {
        keys: vec!["a".into()],
        column: "x".into(),
        window,
        time_column: Some("ts".into()),
        ..Default::default()
    }
}

fn csr(f: &dyn ToFeatures, b: &RecordBatch) -> CsrMatrix {
    let mut out = Features::Sparse(CsrMatrix::default());
    f.to_features(b, &mut out).unwrap();
    match out {
        Features::Sparse(m) => m,
        Features::Dense(_) => panic!("sparse expected"),
    }
}

/// Batches equal as values, with NaN equal to NaN (arrow's `==` on arrays is bitwise-aware).
fn same(a: &RecordBatch, b: &RecordBatch) -> bool {
    a.schema() == b.schema()
        && a.columns()
            .iter()
            .zip(b.columns())
            .all(|(x, y)| x.to_data() == y.to_data())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn online_update_equals_fit_and_merge_equals_union(rows in rows(), cut in 0usize..40) {
        let all = batch(&rows);
        let cut = cut.min(rows.len());
        let (left, right) = (batch(&rows[..cut]), batch(&rows[cut..]));

        let fitted = indexer().fit(std::slice::from_ref(&all)).unwrap();
        let mut online = StringIndexer::new(indexer().check().unwrap());
        for r in one_rows(&all) {
            OnlineEstimator::update(&mut online, &r).unwrap();
        }
        prop_assert_eq!(&online, &fitted);
        let mut merged = indexer().fit(std::slice::from_ref(&left)).unwrap();
        merged.merge(&indexer().fit(std::slice::from_ref(&right)).unwrap()).unwrap();
        prop_assert_eq!(&merged, &fitted);
        prop_assert!(same(&merged.transform(&all).unwrap(), &fitted.transform(&all).unwrap()));

        let te = encoder().fit(std::slice::from_ref(&all)).unwrap();
        let mut te_online = TargetEncoder::new(encoder().check().unwrap());
        for r in one_rows(&all) {
            OnlineEstimator::update(&mut te_online, &r).unwrap();
        }
        let mut te_merged = encoder().fit(&[left]).unwrap();
        te_merged.merge(&encoder().fit(&[right]).unwrap()).unwrap();
        // 0/1 targets: sums are exact in any order
        prop_assert_eq!(&te_online, &te);
        prop_assert_eq!(&te_merged, &te);

        let w = windowed(WindowRange::TimeMs(10)).fit(std::slice::from_ref(&all)).unwrap();
        let mut w_online = WindowedAggregateFeatures::new(windowed(WindowRange::TimeMs(10)).check().unwrap());
        for r in one_rows(&all) {
            OnlineEstimator::update(&mut w_online, &r).unwrap();
        }
        // NaN-aware: compare the saved states
        let saved = |w: &WindowedAggregateFeatures| crate::transform::FeatureStep::save(w).unwrap();
        prop_assert_eq!(saved(&w_online), saved(&w));
    }

    #[test]
    fn one_row_batches_equal_one_batch(rows in rows(), history in rows()) {
        let b = batch(&rows);
        let h = hasher();
        let whole = csr(&h, &b);
        let a = assembler().fit(&[batch(&history)]).unwrap();
        let whole_a = csr(&a, &b);
        for (i, r) in one_rows(&b).iter().enumerate() {
            let one = csr(&h, r);
            prop_assert_eq!(one.row(0), whole.row(i));
            let one = csr(&a, r);
            prop_assert_eq!(one.row(0), whole_a.row(i));
        }
        for range in [WindowRange::Rows(3), WindowRange::TimeMs(7)] {
            let w = windowed(range).fit(&[batch(&history)]).unwrap();
            let t = w.transform(&b).unwrap();
            for (i, r) in one_rows(&b).iter().enumerate() {
                prop_assert!(same(&w.transform(r).unwrap(), &t.slice(i, 1)));
            }
        }
        let idx = indexer().fit(&[batch(&history)]).unwrap();
        let t = idx.transform(&b).unwrap();
        for (i, r) in one_rows(&b).iter().enumerate() {
            prop_assert!(same(&idx.transform(r).unwrap(), &t.slice(i, 1)));
        }
    }

    #[test]
    fn saved_steps_load_and_transform_identically(rows in rows()) {
        let b = batch(&rows);
        let steps: Vec<Box<dyn crate::transform::FeatureStep>> = vec![
            Box::new(indexer().fit(std::slice::from_ref(&b)).unwrap()),
            Box::new(OneHotEncoderParams { columns: vec!["a".into()], unseen: Unseen::Bucket, ..Default::default() }
                .fit(std::slice::from_ref(&b)).unwrap()),
            Box::new(encoder().fit(std::slice::from_ref(&b)).unwrap()),
            Box::new(windowed(WindowRange::Rows(2)).fit(std::slice::from_ref(&b)).unwrap()),
            Box::new(windowed(WindowRange::TimeMs(5)).fit(std::slice::from_ref(&b)).unwrap()),
        ];
        for step in steps {
            let back = load_step(step.kind(), step.save().unwrap()).unwrap();
            prop_assert_eq!(back.kind(), step.kind());
            prop_assert!(same(&back.transform(&b).unwrap(), &step.transform(&b).unwrap()));
        }
        let f = Featurizer::Assembler(assembler().fit(std::slice::from_ref(&b)).unwrap());
        let back: Featurizer = serde_json::from_value(serde_json::to_value(&f).unwrap()).unwrap();
        prop_assert_eq!(csr(&back, &b), csr(&f, &b));
    }
}

#[test]
fn windowed_aggregates_before_the_current_row() {
    let rows: Vec<Row> = [
        ("u", 1.0, 0),
        ("v", 10.0, 1),
        ("u", 2.0, 2),
        ("u", f64::NAN, 3),
        ("u", 4.0, 4),
    ]
    .iter()
    .map(|&(k, x, t)| (Some(k.to_string()), None, Some(x), false, t))
    .collect();
    let mut w = WindowedAggregateFeatures::new(windowed(WindowRange::Rows(2)).check().unwrap());
    let mut seen = Vec::new();
    for r in one_rows(&batch(&rows)) {
        let out = w.transform(&r).unwrap();
        let get = |name: &str| -> Option<f64> {
            let c = out.column_by_name(name).unwrap();
            let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Float64).unwrap();
            let c =
                arrow::array::AsArray::as_primitive::<arrow::datatypes::Float64Type>(&c).clone();
            arrow::array::Array::is_valid(&c, 0).then(|| c.value(0))
        };
        seen.push((
            get("x_last2_count"),
            get("x_last2_sum"),
            get("x_last2_mean"),
            get("x_last2_last"),
        ));
        OnlineEstimator::update(&mut w, &r).unwrap();
    }
    assert_eq!(
        seen[0],
        (Some(0.0), Some(0.0), None, None),
        "a new key has an empty window"
    );
    assert_eq!(seen[1], (Some(0.0), Some(0.0), None, None));
    assert_eq!(seen[2], (Some(1.0), Some(1.0), Some(1.0), Some(1.0)));
    assert_eq!(seen[3], (Some(2.0), Some(3.0), Some(1.5), Some(2.0)));
    let (n, s, m, l) = seen[4];
    assert_eq!(n, Some(2.0));
    assert!(
        s.unwrap().is_nan() && m.unwrap().is_nan(),
        "a NaN in the window: NaN sum and mean"
    );
    assert!(l.unwrap().is_nan(), "NaN is a value, so it is the last one");
    assert_eq!(w.keys_held(), 2);
}

#[test]
fn windowed_params_and_corrupt_state() {
    assert!(windowed(WindowRange::Rows(0))
        .check()
        .unwrap_err()
        .to_string()
        .contains("rows"));
    let p = WindowedAggregateParams {
        time_column: None,
        ..windowed(WindowRange::TimeMs(5))
    };
    assert!(p.check().unwrap_err().to_string().contains("time-column"));
    let rows: Vec<Row> = (0..6)
        .map(|i| (Some("k".into()), None, Some(i as f64), true, i))
        .collect();
    let w = windowed(WindowRange::Rows(3)).fit(&[batch(&rows)]).unwrap();
    let saved = crate::transform::FeatureStep::save(&w).unwrap();
    assert!(load_step("windowed-aggregates", saved.clone()).is_ok());
    let mut bad = saved.clone();
    bad["params"]["window"] = serde_json::json!({"rows": 2});
    let e = load_step("windowed-aggregates", bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("windowed-aggregates"), "{e}");
    let mut bad = saved;
    bad["windows"][0][1]["acc"]["rows"] = serde_json::json!(9);
    assert!(load_step("windowed-aggregates", bad).is_err());
    assert!(load_step("string-indexer", serde_json::json!({"params": {}})).is_err());
    // transforming reads keys (and times) only: a served row need not carry the aggregated
    // column (often the label); folding a batch in needs it
    let full = w.transform(&batch(&rows)).unwrap();
    let without = w
        .transform(&batch(&rows).project(&[0, 1, 4]).unwrap())
        .unwrap();
    for name in w.outputs() {
        assert_eq!(
            without.column_by_name(name).unwrap(),
            full.column_by_name(name).unwrap()
        );
    }
    let mut w = w;
    let e = crate::transform::OnlineEstimator::update(
        &mut w,
        &batch(&rows).project(&[0, 1, 4]).unwrap(),
    )
    .unwrap_err();
    assert!(
        matches!(e, crate::Error::MissingColumn { ref column, .. } if column == "x"),
        "{e}"
    );
}

#[test]
fn float_event_times_of_whole_milliseconds_read_as_int64() {
    let rows: Vec<Row> = (0..6)
        .map(|i| (Some("k".into()), None, Some(i as f64), true, 1_000 * i))
        .collect();
    let w = windowed(WindowRange::TimeMs(2_500))
        .fit(&[batch(&rows)])
        .unwrap();
    // `ts` as a JSON request gives it: Float64
    let with_float_ts = |ts: Vec<f64>| {
        let b = batch(&rows);
        let i = b.schema().index_of("ts").unwrap();
        let mut columns = b.columns().to_vec();
        columns[i] = Arc::new(Float64Array::from(ts));
        let fields: Vec<_> = b
            .schema()
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "ts" => {
                    arrow::datatypes::Field::new("ts", arrow::datatypes::DataType::Float64, true)
                }
                _ => f.as_ref().clone(),
            })
            .collect();
        RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns).unwrap()
    };
    let whole: Vec<f64> = (0..6).map(|i| 1_000.0 * i as f64).collect();
    assert_eq!(
        w.transform(&with_float_ts(whole)).unwrap().columns()[6..],
        w.transform(&batch(&rows)).unwrap().columns()[6..]
    );
    let e = w
        .transform(&with_float_ts(vec![0.0, 1.5, 2.0, 3.0, 4.0, 5.0]))
        .unwrap_err();
    assert!(
        matches!(e, crate::Error::InvalidValue { row: 1, ref column, .. } if column == "ts"),
        "{e}"
    );
}
