//! Progressive validation against a hand-written test-then-train loop.

use ndarray::Array2;
use proptest::prelude::*;

use super::learner::{Event, RunningMean};
use crate::eval::*;
use crate::features::{Examples, Features};
use crate::learner::{OnlineLearner, Predictor, Task};

/// `n` examples whose feature 0 is the example's id; labels from `labels`, cycled.
fn stream(labels: &[f32], n: usize, weighted: bool) -> Examples {
    let x = Array2::from_shape_fn((n, 2), |(i, j)| if j == 0 { i as f32 } else { 1.0 });
    let y = (0..n).map(|i| labels[i % labels.len()]).collect();
    let w = weighted.then(|| (0..n).map(|i| 0.5 + (i % 4) as f32).collect());
    Examples::new(Features::Dense(x), y, w).unwrap()
}

/// Cuts `data` into consecutive batches of the given sizes (the rest as one last batch).
fn batches(data: &Examples, sizes: &[usize]) -> Vec<Examples> {
    let mut out = Vec::new();
    let mut at = 0;
    for &s in sizes {
        let end = (at + s).min(data.len());
        out.push(data.slice(at, end));
        at = end;
    }
    out.push(data.slice(at, data.len()));
    out
}

/// The definition, one example at a time: predict `i`, then learn `i - delay`; learn the rest
/// at the end. Returns the predictions.
fn reference(learner: &mut RunningMean, data: &Examples, delay: usize) -> Vec<f32> {
    let mut preds = Vec::new();
    let mut one = Vec::new();
    for i in 0..data.len() {
        learner
            .predict(&data.slice(i, i + 1).features, &mut one)
            .unwrap();
        preds.push(one[0]);
        if i >= delay {
            learner
                .learn(&data.slice(i - delay, i - delay + 1))
                .unwrap();
        }
    }
    let from = data.len().saturating_sub(delay);
    learner.learn(&data.slice(from, data.len())).unwrap();
    preds
}

fn metrics_of(
    task: Task,
    p: &[f32],
    data: &Examples,
    range: std::ops::Range<usize>,
) -> MetricValues {
    let mut set = MetricSet::for_task(task);
    let w = data.weights.as_deref().map(|w| &w[range.clone()]);
    set.update_batch(&p[range.clone()], &data.labels[range], w)
        .unwrap();
    set.values()
}

fn assert_values(got: &MetricValues, want: &MetricValues, suffix: &str) {
    assert!(got.len() >= want.len());
    for (name, v) in want.iter() {
        let g = got.get(&format!("{name}{suffix}")).unwrap();
        let ok = (g.is_nan() && v.is_nan()) || (g - v).abs() <= 1e-12 * (1.0 + v.abs());
        assert!(ok, "{name}{suffix}: {g} vs {v}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_the_reference_loop(
        labels in prop::collection::vec(prop_oneof![Just(0.0f32), Just(1.0f32)], 1..8),
        n in 0usize..80,
        sizes in prop::collection::vec(0usize..20, 0..8),
        delay in prop_oneof![Just(0usize), 0usize..12],
        window in 1u64..30,
        skip in 0u64..90,
        weighted in any::<bool>(),
    ) {
        let task = Task::BinaryClassification;
        let data = stream(&labels, n, weighted);
        let mut want_learner = RunningMean::new(task);
        let preds = reference(&mut want_learner, &data, delay);

        let config = ProgressiveConfig {
            delay: delay as u64,
            window: Some(window),
            tail: Some(Tail::Skip { rows: skip }),
            ..Default::default()
        };
        let mut learner = RunningMean::new(task);
        let (report, windows) = config.build(task)?.run(&mut learner, batches(&data, &sizes))?;

        // Same calls in the same order: each example predicted with exactly the examples
        // before `i - delay` learned, every example learned once, in order.
        let events = learner.events();
        prop_assert_eq!(&events, &want_learner.events());
        let mut learned = 0u64;
        for e in &events {
            match *e {
                Event::Predict { id, learned: seen } => {
                    prop_assert_eq!(seen, (id as u64).saturating_sub(delay as u64));
                    prop_assert_eq!(seen, learned);
                }
                Event::Learn { id } => {
                    prop_assert_eq!(id as u64, learned);
                    learned += 1;
                }
            }
        }
        prop_assert_eq!(learned, n as u64);

        prop_assert_eq!(report.rows, n as u64);
        assert_values(&report.metrics, &metrics_of(task, &preds, &data, 0..n), "");
        let start = (skip as usize).min(n);
        assert_values(&report.metrics, &metrics_of(task, &preds, &data, start..n), "_tail");
        prop_assert_eq!(windows.len() as u64, (n as u64).div_ceil(window));
        for (k, w) in windows.iter().enumerate() {
            let (a, b) = (k * window as usize, ((k + 1) * window as usize).min(n));
            prop_assert_eq!((w.index, w.start_row, w.end_row), (k as u64, a as u64, b as u64));
            assert_values(&w.window, &metrics_of(task, &preds, &data, a..b), "");
            assert_values(&w.cumulative, &metrics_of(task, &preds, &data, 0..b), "");
        }
    }
}

#[test]
fn delay_zero_equals_predict_then_learn() {
    let task = Task::Regression;
    let data = stream(&[0.0, 1.0, 1.0, 3.0], 50, false);
    let mut manual = RunningMean::new(task);
    let mut preds = Vec::new();
    let mut one = Vec::new();
    for i in 0..data.len() {
        let row = data.slice(i, i + 1);
        manual.predict(&row.features, &mut one).unwrap();
        preds.extend_from_slice(&one);
        manual.learn(&row).unwrap();
    }
    let mut learner = RunningMean::new(task);
    let mut pv = ProgressiveConfig::default().build(learner.task()).unwrap();
    for b in batches(&data, &[7, 0, 13, 1]) {
        pv.process(&mut learner, &b).unwrap();
    }
    assert_eq!(pv.pending_rows(), 0);
    let report = pv.finish(&mut learner).unwrap();
    assert_eq!(learner.events(), manual.events());
    let want = metrics_of(task, &preds, &data, 0..50);
    assert_eq!(
        want.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        ["rmse", "mae"]
    );
    assert_values(&report.metrics, &want, "");
}

#[test]
fn delayed_examples_wait_and_are_flushed_at_the_end() {
    let task = Task::BinaryClassification;
    let data = stream(&[1.0, 0.0], 10, false);
    let mut learner = RunningMean::new(task);
    let config = ProgressiveConfig {
        delay: 4,
        ..Default::default()
    };
    let mut pv = config.build(task).unwrap();
    pv.process(&mut learner, &data.slice(0, 3)).unwrap();
    assert_eq!((pv.pending_rows(), learner.rows_seen()), (3, 0));
    pv.process(&mut learner, &data.slice(3, 10)).unwrap();
    assert_eq!((pv.pending_rows(), learner.rows_seen()), (4, 6));
    pv.finish(&mut learner).unwrap();
    assert_eq!((pv.pending_rows(), learner.rows_seen()), (0, 10));
}

#[test]
fn tail_matches_the_peers_and_report_keys_are_ordered() {
    // Python: start = n - int(round(n * 0.9)), rounding half to even.
    for (n, start) in [(5, 1), (15, 1), (25, 3), (100, 10), (1001, 100), (0, 0)] {
        assert_eq!(Tail::peers(n).start_row(), start, "n = {n}");
    }
    assert_eq!(Tail::peers(10).suffix(), "_tail90");
    let task = Task::BinaryClassification;
    let data = stream(&[1.0, 0.0, 0.0], 40, false);
    let config = ProgressiveConfig {
        tail: Some(Tail::peers(40)),
        ..Default::default()
    };
    let mut learner = RunningMean::new(task);
    let (report, windows) = config
        .build(task)
        .unwrap()
        .run(&mut learner, [&data])
        .unwrap();
    assert!(windows.is_empty());
    let keys: Vec<_> = report.metrics.iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "logloss",
            "auc",
            "accuracy",
            "logloss_tail90",
            "auc_tail90",
            "accuracy_tail90"
        ]
    );
    let line = report.to_json_line();
    assert!(line.starts_with(r#"{"rows":40,"seconds":"#), "{line}");
    assert!(
        line.contains(r#","rows_per_s":"#) && line.contains(r#","logloss":"#),
        "{line}"
    );
}

#[test]
fn bad_configs_and_learners_are_errors() {
    let task = Task::BinaryClassification;
    let window0 = ProgressiveConfig {
        window: Some(0),
        ..Default::default()
    };
    assert!(window0.build(task).is_err());
    let frac = ProgressiveConfig {
        tail: Some(Tail::LastFraction {
            fraction: 0.0,
            total_rows: 10,
        }),
        ..Default::default()
    };
    assert!(frac.build(task).is_err());
    let wrong = ProgressiveConfig {
        metrics: vec![MetricKind::Rmse],
        ..Default::default()
    };
    assert!(wrong.build(Task::Multiclass { classes: 3 }).is_err());
    let parsed: ProgressiveConfig = serde_json::from_str(
        r#"{"metrics":["auc","auc_last100"],"delay":3,"window":1000,"tail":{"last-fraction":{"fraction":0.9,"total-rows":5000}}}"#,
    )
    .unwrap();
    assert_eq!(
        parsed.metrics,
        [MetricKind::Auc, MetricKind::WindowedAuc { window: 100 }]
    );
    assert_eq!(parsed.tail, Some(Tail::peers(5000)));
    assert!(serde_json::from_str::<ProgressiveConfig>(r#"{"dealy":3}"#).is_err());

    let data = stream(&[1.0, 0.0], 6, false);
    for delay in [0, 2] {
        let mut short = RunningMean::new(task);
        short.short = 1;
        let config = ProgressiveConfig {
            delay,
            ..Default::default()
        };
        assert!(config
            .build(task)
            .unwrap()
            .process(&mut short, &data)
            .is_err());
    }
}
